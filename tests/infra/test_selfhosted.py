"""Self-hosting files: hadolint on every Dockerfile, Kubernetes schemas, and the hardening they promise."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.infra import kustomize
from tests.infra.dockerbuild import Builder, DockerIgnore, expand, instructions
from tests.support.audio import parse_wav
from tests.support.decode import decode
from tts_service.config import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
SHIM_DOCKERFILE = REPO / "infra" / "Dockerfile"
EXPECTED_DOCKERFILES = {
    "layers/piper/Dockerfile",
    "functions/Dockerfile",
    "infra/Dockerfile",
    "frontend/Dockerfile",
}


def dockerfiles() -> list[Path]:
    skip = {".git", "node_modules", ".aws-sam"}
    found = []
    for path in REPO.rglob("Dockerfile*"):
        rel = path.relative_to(REPO)
        if not (set(rel.parts) & skip or rel.parts[0].startswith(".venv")):
            found.append(path)
    return sorted(found)


def test_every_image_has_its_dockerfile() -> None:
    assert {p.relative_to(REPO).as_posix() for p in dockerfiles()} >= EXPECTED_DOCKERFILES


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_hadolint_passes(dockerfile: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    run = subprocess.run([str(hadolint), str(dockerfile)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def layouts() -> dict[str, Path]:
    """Every folder `kubectl apply -k` may be pointed at: the base and each overlay."""
    return {"base": K8S, **{f"overlays/{d.name}": d for d in sorted((K8S / "overlays").iterdir()) if d.is_dir()}}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """What each layout applies (built as kustomize would), and the adapter rule applied beside them."""
    docs = [(name, doc) for name, folder in layouts().items() for doc in kustomize.build(folder)]
    for path in sorted((K8S / "monitoring").glob("*.yaml")):
        docs.extend(("monitoring", doc) for doc in kustomize.load_docs(path))
    return docs


def manifest(kind: str, name: str, layout: str = "base") -> dict[str, Any]:
    (doc,) = [d for where, d in manifests() if where == layout and d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize(
    ("layout", "doc"),
    manifests(),
    ids=lambda v: v if isinstance(v, str) else v["kind"] + "/" + v["metadata"]["name"],
)
def test_kubernetes_manifest_validates_against_the_schema(layout: str, doc: dict[str, Any]) -> None:
    # strict: a misspelt or misplaced field is an error, not silently dropped by the API server
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_deployment_is_hardened_and_probed() -> None:
    pod = manifest("Deployment", "tts-service")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(container["resources"]["limits"])
    # every writable path is a volume; models are mounted read-only at /models
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    env = {e["name"]: e for e in container["env"]}
    assert env["STREAM_CACHE_DIR"]["value"].startswith("/tmp/")
    assert env["DATA_DIR"]["value"] in mounts
    # secrets only through Secret references
    for name in ("OPENAI_API_KEY", "QDRANT_API_KEY", "API_KEYS"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "tts-service-secrets"
        assert "value" not in env[name]
    config = manifest("ConfigMap", "tts-service-config")["data"]
    assert not {k for k in config if re.search("KEY|SECRET|TOKEN|PASSWORD", k) and not k.endswith("_URI")}
    # the grace period outlasts the app's own shutdown budget
    assert pod["terminationGracePeriodSeconds"] > float(config["SHUTDOWN_GRACE_SECS"])


def test_service_and_hpa_point_at_the_deployment() -> None:
    deployment = manifest("Deployment", "tts-service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = manifest("Service", "tts-service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = manifest("HorizontalPodAutoscaler", "tts-service")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tts-service"}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] >= 2


def test_several_replicas_share_one_qdrant_server_on_a_persistent_volume() -> None:
    # More than one replica (the Deployment's, or the autoscaler's floor) with the embedded store would split
    # conversations between pods and lose them with each pod: every replica must point at one Qdrant server.
    replicas = max(
        manifest("Deployment", "tts-service")["spec"]["replicas"],
        manifest("HorizontalPodAutoscaler", "tts-service")["spec"]["minReplicas"],
    )
    assert replicas > 1
    url = manifest("ConfigMap", "tts-service-config")["data"]["QDRANT_URL"]
    match = re.fullmatch(r"https?://([a-z0-9-]+):(\d+)", url)
    assert match, f"QDRANT_URL {url!r} does not name a Service of these manifests"
    service = manifest("Service", match[1])
    assert any(int(match[2]) == p["port"] for p in service["spec"]["ports"])
    (server,) = [
        d
        for where, d in manifests()
        if where == "base"
        and d["kind"] == "StatefulSet"
        and service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert server["spec"]["replicas"] == 1
    (claim,) = server["spec"]["volumeClaimTemplates"]
    (container,) = server["spec"]["template"]["spec"]["containers"]
    storage = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert storage[claim["metadata"]["name"]] == "/qdrant/storage"
    assert server["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_voice_map_configmap_is_models_map_json() -> None:
    data = manifest("ConfigMap", "tts-service-voice-map")["data"]["map.json"]
    assert json.loads(data) == json.loads((REPO / "models" / "map.json").read_text())


def test_the_pod_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    config = manifest("ConfigMap", "tts-service-config")["data"]
    (container,) = manifest("Deployment", "tts-service")["spec"]["template"]["spec"]["containers"]
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    secret_refs = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    # the Downward API: what the kubelet puts there (a CPU limit with divisor 1 reads as whole cores, rounded up)
    for entry in container["env"]:
        ref = entry.get("valueFrom", {}).get("resourceFieldRef")
        if ref is not None:
            assert ref["resource"] == "limits.cpu"
            assert ref["divisor"] == "1"
            plain[entry["name"]] = str(math.ceil(float(container["resources"]["limits"]["cpu"])))
    external = {k for k in config if k.startswith("OTEL_")}  # OpenTelemetry's standard variables
    assert set(config) - external | set(plain) | secret_refs <= fields
    for name in list(os.environ):
        if name in fields:
            monkeypatch.delenv(name)
    for name, value in {**config, **plain, "MODELS_DIR": str(REPO / "models")}.items():
        if name in external:
            continue
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.port == 8085
    assert settings.synth_workers == 2
    assert settings.ort_intra_op_threads == 1
    assert settings.public_base_url == "https://tts.example.com"
    assert str(settings.trusted_proxies) == config["TRUSTED_PROXIES"]


def test_compose_runs_the_shim_hardened_with_optional_qdrant() -> None:
    compose = yaml.safe_load((REPO / "infra" / "compose.yaml").read_text())
    tts = compose["services"]["tts"]
    assert tts["build"] == {"context": "..", "dockerfile": "infra/Dockerfile"}
    assert tts["read_only"] is True
    assert tts["cap_drop"] == ["ALL"]
    assert "../models:/models:ro" in tts["volumes"]
    assert any(t.startswith("/tmp") for t in tts["tmpfs"])
    assert compose["services"]["qdrant"]["profiles"] == ["qdrant"]
    assert not any(
        re.search(r"KEY\s*:\s*['\"]?[A-Za-z0-9]", line)
        for line in (REPO / "infra/compose.yaml").read_text().splitlines()
        if "${" not in line
    )


def shim_image() -> dict[str, Any]:
    steps = instructions(SHIM_DOCKERFILE)
    final = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    env: dict[str, str] = {}
    result: dict[str, Any] = {"env": env}
    for keyword, args in steps[final:]:
        if keyword == "ENV":
            for pair in shlex.split(args):
                key, value = pair.split("=", 1)
                env[key] = value
        elif keyword in ("USER", "CMD", "HEALTHCHECK", "EXPOSE"):
            result[keyword] = args
    return result


def test_shim_image_runs_as_non_root_with_models_at_slash_models() -> None:
    image = shim_image()
    user = image["USER"].split(":")[0]
    assert user not in ("0", "root")
    assert image["env"]["MODELS_DIR"] == "/models"
    assert image["env"]["PORT"] == image["EXPOSE"] == "8085"
    assert "/health" in image["HEALTHCHECK"]
    assert "PORT" in image["HEALTHCHECK"]
    assert json.loads(image["CMD"]) == ["python", "local/serve.py"]


@pytest.fixture
def shim_port() -> Iterator[tuple[int, dict[str, str]]]:
    """The shim started as the image starts it (its CMD, its ENV) on a port of our choosing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    image = shim_image()
    env = {
        **os.environ,
        **{k: v for k, v in image["env"].items() if not v.startswith("/") and k != "PATH"},
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MODELS_DIR": str(REPO / "models"),
    }
    env.pop("PIPER_ESPEAKNG_DATA_DIRECTORY", None)
    proc = subprocess.Popen(
        [sys.executable, *json.loads(image["CMD"])[1:]],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
def test_the_image_healthcheck_passes_against_the_shim_on_its_port(shim_port: tuple[int, dict[str, str]]) -> None:
    port, env = shim_port
    healthcheck = shim_image()["HEALTHCHECK"]
    argv = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    argv[0] = sys.executable
    deadline = time.monotonic() + 60
    while True:
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10, check=False)
        if run.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert run.returncode == 0, run.stderr
    # and the same command fails when nothing listens on PORT: the check is real
    other = {**env, "PORT": "9"}
    assert subprocess.run(argv, env=other, capture_output=True, timeout=10, check=False).returncode != 0


# Build contexts (the function images and the shim use the repository root: template.yaml's DockerContext: .) and
# the build arguments each image is built with: one functions/Dockerfile per function.
BUILDS = [
    ("layers/piper/Dockerfile", "layers/piper", {}),
    *(("functions/Dockerfile", ".", {"FUNCTION": name}) for name in ("tts", "voices", "chat", "stream")),
    ("infra/Dockerfile", ".", {}),
    ("infra/lambda-web-adapter/Dockerfile", "infra/lambda-web-adapter", {}),
    ("frontend/Dockerfile", "frontend", {}),
]


@pytest.mark.parametrize(
    ("dockerfile", "context", "build_args"),
    BUILDS,
    ids=[" ".join([path, *(f"{k}={v}" for k, v in args.items())]) for path, _, args in BUILDS],
)
def test_every_copy_source_is_in_the_build_context(dockerfile: str, context: str, build_args: dict[str, str]) -> None:
    # A COPY of a file that .dockerignore leaves out fails only at `docker build`: check it here.
    root = REPO / context
    ignore = DockerIgnore(root)
    for keyword, args in instructions(REPO / dockerfile):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        for source in shlex.split(expand(args, build_args))[:-1]:
            assert (root / source).exists(), f"{dockerfile}: COPY {source} does not exist"
            assert not ignore.excluded(PurePosixPath(source)), f"{dockerfile}: COPY {source} is in .dockerignore"


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignore = DockerIgnore(REPO)
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "src/tts_service/__pycache__/x.pyc"):
        assert ignore.excluded(PurePosixPath(heavy)), heavy
    assert not ignore.excluded(PurePosixPath("src/tts_service/app.py"))


@pytest.mark.slow
def test_the_shim_image_replayed_serves_speech_and_passes_its_healthcheck(tmp_path: Path) -> None:
    # GIVEN infra/Dockerfile replayed (both stages: the venv built in `build`, copied into the final stage)
    builder = Builder(tmp_path, {}, log=tmp_path / "build.log")
    image = builder.build("shim", SHIM_DOCKERFILE, REPO)
    assert image.user.split(":")[0] not in ("0", "root")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**image.host_env(), "PORT": str(port), "HOST": "127.0.0.1", "HOME": str(image.host("/nonexistent"))}
    command = image.cmd
    python = shutil.which(command[0], path=env["PATH"])
    assert python is not None, python
    assert str(image.root) in python, python

    # WHEN the container's command starts it, outside the repository
    proc = subprocess.Popen(
        [python, *command[1:]],
        cwd=image.host(image.workdir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # THEN the image's HEALTHCHECK passes once it listens, /healthz turns ready and /tts speaks
        check = json.loads(image.healthcheck[image.healthcheck.index("CMD") + 3 :])
        check[0] = shutil.which(check[0], path=env["PATH"]) or check[0]
        deadline = time.monotonic() + 90
        while subprocess.run(check, env=env, capture_output=True, timeout=10, check=False).returncode != 0:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the shim never became healthy"
            time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            ready = client.get("/healthz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ready"
            # AND the web console is there at /, with its modules
            console = client.get("/")
            assert console.status_code == 200
            assert "Piper TTS console" in console.text
            assert client.get("/assets/app.js").headers["content-type"].startswith("text/javascript")
            wav = client.post("/tts", json={"text": "Self hosted."}, headers={"accept": "audio/wav"})
            assert wav.status_code == 200
            assert wav.content[:4] == b"RIFF"
            assert len(wav.content) > 20_000
            # AND the image's own packages encode every format the OpenAI-compatible route offers. The reference is
            # that route's own WAV: every format is then the same cached synthesis, and only codec padding (up to
            # ~0.09 s for AAC) remains, not the durations Piper samples afresh for each synthesis.
            body = {"model": "tts-1", "voice": "alloy", "input": "Self hosted.", "response_format": "wav"}
            reference = parse_wav(client.post("/v1/audio/speech", json=body).content).seconds
            for fmt in ("mp3", "opus", "aac", "flac", "pcm", "mulaw", "alaw"):
                answer = client.post("/v1/audio/speech", json={**body, "response_format": fmt})
                assert answer.status_code == 200, answer.text
                decoded = decode(fmt, answer.content, int(answer.headers["x-sample-rate"]))
                assert abs(decoded.seconds - reference) < 0.15, fmt
                assert decoded.rms > 300, fmt
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
