"""Each function as functions/Dockerfile builds it, invoked with real API Gateway events, outside the repository.

The Dockerfile is replayed (tests/infra/dockerbuild.py) with each function's build arguments from template.yaml:
the base image's requirement file into one venv, then per function the core package as built from a copy of
`src/` + `pyproject.toml`, with the same extras, into a venv layered on the base; `models/` and the function's
`app.py` copied as COPY says. The handler runs with `python -I` from the
replayed task root, so a dependency missing from pyproject.toml, a file the Dockerfile forgets to copy or a
.dockerignore rule that drops one fails here, where in-repo unit tests cannot see it.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.infra.cfn import Evaluator, load_template
from tests.infra.dockerbuild import Builder, Image
from tests.infra.helpers import EVENTS, json_lines, load_event, logs
from tests.support.decode import decode

REPO = Path(__file__).resolve().parents[2]
# The functions' ARG default (`make sam-build` passes the commit tag instead).
BASE_IMAGE = "tts-service/piper-base:dev"
DOCKERFILE = "functions/Dockerfile"
LOGICAL_IDS = {"tts": "TtsFunction", "voices": "VoicesFunction", "chat": "ChatFunction", "stream": "StreamFunction"}

pytestmark = pytest.mark.slow

TRACE_HEADER = "Root=1-67470a3e-1f2e3d4c5b6a798877665544;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    workdir = tmp_path_factory.mktemp("images")
    return Builder(
        workdir,
        {BASE_IMAGE: (REPO / "layers/piper/Dockerfile", REPO / "layers/piper")},
        log=workdir / "build.log",
    )


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A DynamoDB on loopback (moto's server) for the stream function's connection table."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 ~0.4 s to import; only this slow fixture needs it

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


AWS_OFFLINE = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def build_args(name: str) -> dict[str, str]:
    """What `sam build` passes for the function (template.yaml's DockerBuildArgs), FROM the replayed base."""
    meta = load_template(REPO / "template.yaml")["Resources"][LOGICAL_IDS[name]]["Metadata"]
    assert meta["Dockerfile"] == DOCKERFILE
    assert meta["DockerContext"] == "."
    return {**meta["DockerBuildArgs"], "BASE_IMAGE": BASE_IMAGE}


def run_tool(
    image: Image, tool: str, args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `tests/infra/tools/<tool>` with the image's isolated Python, from its /tmp (outside the repository)."""
    runner = image.host(f"/tmp/{tool}")
    shutil.copy2(REPO / "tests/infra/tools" / tool, runner)
    return subprocess.run(
        [str(image.python), "-I", str(runner), *args],
        cwd=image.host("/tmp"),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def invoke(image: Image, name: str, event_names: list[str], extra_env: dict[str, str]) -> tuple[dict[str, Any], str]:
    """Run the image's CMD handler in a fresh process on `event_names`; return its results and its stdout."""
    template_env = Evaluator(load_template(REPO / "template.yaml")).function_env(LOGICAL_IDS[name])
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(image.host("/tmp")),
        **{k: str(image.host(v)) if v.startswith("/") else v for k, v in template_env.items()},
        **image.host_env(),
        **AWS_OFFLINE,
        "AWS_LAMBDA_FUNCTION_NAME": f"tts-service-{name}",
        **extra_env,
    }
    events = image.host("/tmp/events.json")
    events.write_text(json.dumps([load_event(e) for e in event_names]))
    result_path = image.host("/tmp/result.json")
    (handler,) = image.cmd
    run = run_tool(
        image, "invoke_handler.py", [str(image.host("/var/task")), handler, str(events), str(result_path)], env, 300
    )
    assert run.returncode == 0, f"{name} failed to start or answer:\n{run.stderr[-6000:]}"
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result, run.stdout


def check_isolated(image: Image, result: dict[str, Any]) -> None:
    core = Path(result["core"])
    assert image.site in core.parents, f"tts_service imported from {core}, not from the image"
    assert not any(str(REPO) in p for p in result["sys_path"] if p), result["sys_path"]


def check_logs(stdout: str, event_names: list[str], service: str) -> None:
    """Every stdout line is JSON; each invocation logged its API Gateway request id as correlation id."""
    entries = logs(json_lines(stdout))
    invocations = [e for e in entries if e.get("message") == "invocation"]
    assert [e["correlation_id"] for e in invocations] == [
        load_event(n)["requestContext"]["requestId"] for n in event_names
    ]
    assert {e["service"] for e in invocations} == {service}


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (22050, 2, 1)
        return wav.getnframes() / wav.getframerate()


def check_tts(responses: list[dict[str, Any]]) -> None:
    as_json, as_wav, healthz, openai_mp3 = responses
    assert as_json["statusCode"] == 200, as_json
    assert 0.8 < wav_seconds(base64.b64decode(json.loads(as_json["body"])["audio_base64"])) < 4.0
    assert as_wav["statusCode"] == 200
    assert as_wav["isBase64Encoded"] is True
    assert 0.6 < wav_seconds(base64.b64decode(as_wav["body"])) < 4.0
    assert healthz["statusCode"] == 200
    assert json.loads(healthz["body"])["status"] == "ready"
    assert openai_mp3["statusCode"] == 200, openai_mp3
    assert openai_mp3["isBase64Encoded"] is True, openai_mp3
    mp3 = decode("mp3", base64.b64decode(openai_mp3["body"]))
    assert 2.0 < mp3.seconds < 8.0
    assert mp3.rms > 300


def check_voices(responses: list[dict[str, Any]]) -> None:
    detail, health = responses
    assert detail["statusCode"] == 200
    assert any(v["id"] == "en_US-joe-medium" for v in json.loads(detail["body"]))
    assert health["statusCode"] == 200
    assert json.loads(health["body"]) == {"status": "ok"}


def check_chat(responses: list[dict[str, Any]]) -> None:
    chat, provider = responses
    # No key in this environment: a clean JSON 503, not an import error or a 500.
    assert chat["statusCode"] == 503, chat
    assert json.loads(chat["body"])["error"]["code"] == "llm_not_configured"
    assert provider["statusCode"] == 200, provider
    assert json.loads(provider["body"])["provider"] == "openai"


def check_stream(responses: list[dict[str, Any]]) -> None:
    assert [r["statusCode"] for r in responses] == [200, 200]


CASES: dict[str, tuple[list[str], Callable[[list[dict[str, Any]]], None]]] = {
    "tts": (
        ["http_post_tts.json", "http_post_tts_wav.json", "http_get_healthz.json", "http_post_v1_speech_mp3.json"],
        check_tts,
    ),
    "voices": (["http_get_voices_detail.json", "http_get_health.json"], check_voices),
    "chat": (["http_post_chat.json", "http_get_llm_provider.json"], check_chat),
    "stream": (["ws_connect.json", "ws_disconnect.json"], check_stream),
}


@pytest.mark.parametrize("name", list(CASES))
def test_function_image_answers_real_events(builder: Builder, moto_endpoint: str, name: str) -> None:
    # GIVEN the function's image, replayed from the Dockerfile with its build arguments (the base once for all)
    image = builder.build(name, REPO / DOCKERFILE, REPO, build_args(name))
    assert image.cmd == ["app.handler"]
    assert not (image.host("/var/task") / "tests").exists()
    assert not image.host("/tmp/core").exists()

    # Tracing on (as with the template's Tracing=Active): the Tracer and the image's X-Ray SDK must load and wrap
    # the handler; with no daemon on this machine the segments go nowhere (UDP to loopback).
    extra_env: dict[str, str] = {"POWERTOOLS_TRACE_DISABLED": "false", "_X_AMZN_TRACE_ID": TRACE_HEADER}
    table = None
    if name == "stream":
        extra_env["AWS_ENDPOINT_URL"] = moto_endpoint
        table = create_connection_table(moto_endpoint, image.env)
        extra_env["STREAM_TABLE_NAME"] = table

    # WHEN a fresh process imports app.handler from the image and API Gateway events arrive
    events, check = CASES[name]
    result, stdout = invoke(image, name, events, extra_env)

    # THEN the answers are right, the code came from the image, and the logs are JSON with correlation ids
    check([r["response"] for r in result["results"]])
    check_isolated(image, result)
    assert result["xray_loaded"], "the Tracer did not load the X-Ray SDK from the image"
    check_logs(stdout, events, name)
    if table is not None:
        # $connect stored the connection and $disconnect removed it: the real boto3 in the image did both
        dynamo = boto3.client("dynamodb", endpoint_url=moto_endpoint, **boto_offline())
        assert dynamo.scan(TableName=table)["Count"] == 0
    # AND the image's own packages encode every audio format (no system ffmpeg: the replay has none on PATH)
    check_encodes_every_format(image)


def check_encodes_every_format(image: Image) -> None:
    """Encode a test signal in every format with the image's Python and packages; decode it here."""
    out = image.host("/tmp/encoded")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(image.host("/tmp")), **image.host_env()}
    run = run_tool(image, "encode_formats.py", [str(out)], env, 120)
    assert run.returncode == 0, f"encoding failed in the image:\n{run.stderr[-4000:]}"
    result = json.loads((out / "result.json").read_text())
    for module, path in result["modules"].items():
        assert not Path(path).is_relative_to(REPO), f"{module} came from {path}, not the image"
    for fmt, rate in result["rates"].items():
        decoded = decode(fmt, (out / fmt).read_bytes(), rate)
        assert decoded.sample_rate == rate
        assert abs(decoded.seconds - 3.0) < 0.15, (fmt, decoded.seconds)
        assert decoded.rms > 1000, (fmt, decoded.rms)


def boto_offline() -> dict[str, str]:
    return {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def create_connection_table(endpoint: str, _env: dict[str, str]) -> str:
    """The connection table as template.yaml declares it, on moto's server."""
    props = load_template(REPO / "template.yaml")["Resources"]["StreamTable"]["Properties"]
    dynamo = boto3.client("dynamodb", endpoint_url=endpoint, **boto_offline())
    name = "tts-service-StreamTable"
    dynamo.create_table(
        TableName=name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
    )
    dynamo.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
    return name


def undeclared_import(context: Path) -> None:
    api = context / "src/tts_service/api/voices.py"
    api.write_text(api.read_text() + "\nimport yaml  # noqa: E402  undeclared in pyproject.toml\n")


def forgotten_copy(context: Path) -> None:
    dockerfile = context / DOCKERFILE
    dockerfile.write_text(dockerfile.read_text().replace("COPY models ${LAMBDA_TASK_ROOT}/models\n", ""))


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        (undeclared_import, "ModuleNotFoundError: No module named 'yaml'"),
        (forgotten_copy, r"map\.json"),
    ],
    ids=["undeclared-dependency", "file-not-copied"],
)
def test_a_broken_package_is_caught(
    builder: Builder, tmp_path: Path, breakage: Callable[[Path], None], error: str
) -> None:
    # GIVEN a copy of the repository with one packaging mistake
    context = tmp_path / "repo"
    context.mkdir()
    for item in ("pyproject.toml", "README.md", "LICENSE", "NOTICE", ".dockerignore", "src", "models", "functions"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, context / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / item)
    breakage(context)

    # WHEN its voices image is replayed and invoked THEN the function fails, naming the cause
    image = builder.build(f"voices-{breakage.__name__}", context / DOCKERFILE, context, build_args("voices"))
    with pytest.raises(AssertionError, match=error):
        invoke(image, "voices", ["http_get_health.json"], {})


def test_events_used_here_exist() -> None:
    for events, _ in CASES.values():
        for name in events:
            assert (EVENTS / name).is_file(), name
