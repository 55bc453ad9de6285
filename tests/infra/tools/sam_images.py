"""Print the image build settings `sam build` reads for each function, as JSON (runs in the aws-sam-cli venv).

argv: the template, then `Name=value` parameter overrides as `sam build --parameter-overrides` takes them. SAM CLI
resolves the functions' Metadata with those values: this is the tag and the build arguments it would build with.
"""

from __future__ import annotations

import json
import sys

from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider


def main() -> None:
    overrides = dict(pair.split("=", 1) for pair in sys.argv[2:])
    stacks, _ = SamLocalStackProvider.get_stacks(sys.argv[1], parameter_overrides=overrides)
    functions = SamFunctionProvider(stacks).get_all()
    json.dump({fn.name: fn.metadata for fn in functions}, sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main()
