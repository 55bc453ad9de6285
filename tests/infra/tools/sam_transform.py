"""Print the CloudFormation that the SAM transform makes of a template, as JSON (runs in the aws-sam-cli venv).

Offline: SAM's managed-policy lookup is answered with no policies (the template names none by ARN).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The IAM lookup `sam validate` would do for managed policy names; nothing to look up here."""

    def load(self) -> dict[str, str]:
        return {}


def main() -> None:
    template: dict[str, Any] = yaml_parse(Path(sys.argv[1]).read_text())
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            # What `sam build` writes into the built template after building the image from Metadata.
            tag = resource.get("Metadata", {}).get("DockerTag", "latest")
            if isinstance(tag, dict):  # !Sub python3.12-${ImageTag}: the parameter's default
                default = template["Parameters"]["ImageTag"]["Default"]
                tag = tag["Fn::Sub"].replace("${ImageTag}", default)
            props.setdefault("ImageUri", f"{logical_id.lower()}:{tag}")
    json.dump(transform(template, {}, NoManagedPolicies()), sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main()
