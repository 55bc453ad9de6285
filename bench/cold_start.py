"""Cold start of each Lambda function: a fresh process imports functions/<name>/app.py (Lambda init) and answers
its first API Gateway event; also the peak RSS, which is what the function's memory setting must hold.

    .venv/bin/python bench/cold_start.py [--rounds 3]

Numbers are medians over the rounds on this machine; Lambda's CPU share depends on the memory setting (one vCPU at
1,769 MB), so compare functions with each other, not with Lambda's wall clock.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "tests" / "events"

# The first event each function answers after init; for tts that is "first audio".
FIRST_EVENT = {
    "tts": "http_post_tts.json",
    "voices": "http_get_voices_detail.json",
    "chat": "http_get_llm_provider.json",
    "stream": "ws_connect.json",
}

CHILD = r"""
import importlib.util, json, resource, sys, time, uuid
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t1 = time.perf_counter()

class Context:
    function_name = "bench"; function_version = "$LATEST"; memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = str(uuid.uuid4())
    def get_remaining_time_in_millis(self): return 29000

response = module.handler(json.load(open(sys.argv[2])), Context())
t2 = time.perf_counter()
print(json.dumps({"status": response["statusCode"], "init_s": t1 - t0, "first_s": t2 - t1,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), file=sys.stderr)
"""


def run_once(name: str, env: dict[str, str]) -> dict[str, Any]:
    # Wall time from spawning the interpreter: its start-up is part of every cold start.
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO / "functions" / name / "app.py"), str(EVENTS / FIRST_EVENT[name])],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"{name} failed:\n{run.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(run.stderr.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def moto_dynamodb() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 ~0.4 s to import, only for the stream function

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access line per DynamoDB call otherwise

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("functions", nargs="*", default=list(FIRST_EVENT))
    args = parser.parse_args()

    import boto3  # noqa: PLC0415 after argument parsing: --help stays quick

    server, endpoint = moto_dynamodb()
    aws = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_table(
        TableName="bench-connections",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "connection_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
    )
    cache = tempfile.mkdtemp(prefix="tts-bench-split-")
    env = {
        **os.environ,
        **aws,
        "MODELS_DIR": str(REPO / "models"),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "LOG_LEVEL": "WARNING",
        "SYNTH_WORKERS": "1",
        "ORT_INTRA_OP_THREADS": "2",
        "STREAM_TABLE_NAME": "bench-connections",
        # The stream image ships the split graphs (built at image build time): warm this cache once first.
        "STREAM_CACHE_DIR": cache,
    }
    try:
        if "stream" in args.functions:
            split = run_once("stream", env)
            print(
                f"stream, first run with an empty graph cache (what the image build does): init {split['init_s']:.2f} s"
            )
        header = ("function", "status", "process->answer s", "init s", "first call s", "peak RSS MB")
        print(f"{header[0]:8} {header[1]:>6} {header[2]:>18} {header[3]:>7} {header[4]:>12} {header[5]:>11}")
        for name in args.functions:
            rounds = [run_once(name, env) for _ in range(args.rounds)]
            med = {k: statistics.median(r[k] for r in rounds) for k in ("wall_s", "init_s", "first_s", "rss_mb")}
            print(
                f"{name:8} {rounds[0]['status']:>6} {med['wall_s']:>18.2f} {med['init_s']:>7.2f} "
                f"{med['first_s']:>12.3f} {med['rss_mb']:>11.0f}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
