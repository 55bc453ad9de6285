"""Run inside a replayed image: import the image's CMD handler as the Lambda runtime does, invoke it with events.

Usage: python -I invoke_handler.py TASK_ROOT MODULE.ATTR EVENTS_JSON RESULT_JSON
Writes the responses, the init time and where `tts_service` was imported from into RESULT_JSON; the handler's
own output (JSON logs, EMF) goes to stdout as it would to CloudWatch.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any


class Context:
    """The Lambda context attributes Powertools and Mangum read."""

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "replayed")
    function_version = "$LATEST"
    memory_limit_in_mb = 2048
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    log_group_name = f"/aws/lambda/{function_name}"
    log_stream_name = "2026/11/27/[$LATEST]replayed"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def main() -> None:
    task_root, handler_ref, events_path, result_path = sys.argv[1:5]
    started = time.perf_counter()
    # The Lambda runtime puts the task root first on sys.path and runs from it.
    sys.path.insert(0, task_root)
    os.chdir(task_root)
    module_name, attr = handler_ref.rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), attr)
    init_seconds = time.perf_counter() - started
    results: list[dict[str, Any]] = []
    for event in json.loads(Path(events_path).read_text()):
        t0 = time.perf_counter()
        response = handler(event, Context())
        results.append({"response": response, "seconds": time.perf_counter() - t0})
    core = sys.modules["tts_service"].__file__
    Path(result_path).write_text(
        json.dumps(
            {
                "init_seconds": init_seconds,
                "results": results,
                "core": core,
                "sys_path": sys.path,
                "xray_loaded": "aws_xray_sdk.core" in sys.modules,
            }
        )
    )


if __name__ == "__main__":
    main()
