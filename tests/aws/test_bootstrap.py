"""Lambda init: secrets named by ARN/parameter are read at run time; extra voices come from S3 (moto)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.support.aws import fake_aws_env
from tts_service.aws.bootstrap import fetch_voices, prepare_environment, read_secret
from tts_service.config import get_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and a region (as on Lambda), with every AWS call served by moto."""
    fake_aws_env(monkeypatch, "eu-west-1")
    # prepare_environment() writes these into os.environ; setting them first makes monkeypatch restore them.
    names = ("OPENAI_API_KEY", "QDRANT_API_KEY", "API_KEYS", "VOICE_MAP")
    for name in (*names, "OPENAI_API_KEY_SECRET", "QDRANT_API_KEY_SECRET", "API_KEYS_SECRET"):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.setenv("MODELS_DIR", os.environ.get("MODELS_DIR", str(REPO / "models")))
    get_settings.cache_clear()
    with mock_aws():
        yield
    get_settings.cache_clear()


def unique(name: str) -> str:
    # Powertools caches parameter values per name for a few seconds; each test uses its own names.
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_secrets_manager_arn_and_ssm_parameter_become_settings(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the OpenAI key in Secrets Manager (passed by ARN, as the template does) and the Qdrant key in SSM
    arn = boto3.client("secretsmanager").create_secret(Name=unique("openai"), SecretString="sk-test-123\n")["ARN"]
    param = "/" + unique("tts/qdrant")
    boto3.client("ssm").put_parameter(Name=param, Value="qd-key-456", Type="SecureString")
    monkeypatch.setenv("OPENAI_API_KEY_SECRET", arn)
    monkeypatch.setenv("QDRANT_API_KEY_SECRET", f"ssm:{param}")
    keys = boto3.client("secretsmanager").create_secret(Name=unique("api-keys"), SecretString="k1,k2")["Name"]
    monkeypatch.setenv("API_KEYS_SECRET", keys)

    # WHEN the function initialises
    settings = prepare_environment()

    # THEN the settings the app reads hold the values, and the secrets never appear in the settings' repr
    assert settings.openai_api_key == "sk-test-123"
    assert settings.qdrant_api_key == "qd-key-456"
    assert settings.api_keys == "k1,k2"
    assert get_settings() is settings
    assert "sk-test-123" not in repr(settings)


def test_a_key_given_directly_wins_and_nothing_is_fetched(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    monkeypatch.setenv("OPENAI_API_KEY_SECRET", "arn:aws:secretsmanager:eu-west-1:210987654321:secret:absent-AbCdEf")
    assert prepare_environment().openai_api_key == "sk-local"  # the absent secret was never read


def test_a_missing_secret_fails_the_cold_start(aws: None) -> None:
    with pytest.raises(Exception, match=r"(?i)not found|can't find|ResourceNotFound"):
        read_secret(unique("no-such-secret"))


def test_an_empty_secret_is_refused(aws: None) -> None:
    name = unique("blank")
    boto3.client("secretsmanager").create_secret(Name=name, SecretString="  ")
    with pytest.raises(ValueError, match="empty"):
        read_secret(name)


def upload(bucket: str, files: dict[str, bytes]) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def map_naming(*paths: str) -> bytes:
    """The repo's map plus a voice whose model and config are the given files beside the map."""
    voice_map = json.loads((REPO / "models" / "map.json").read_bytes())
    model, config = paths
    voice_map["voices"]["de_DE-test-medium"] = {"language": "de_DE", "model": {"path": model}, "config": config}
    return json.dumps(voice_map).encode()


def test_voices_from_s3_replace_the_baked_models_folder(
    aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a voices prefix in S3 with a map naming a voice in a subfolder, and files the map does not name
    voice_map = map_naming("de/voice.onnx", "de/voice.onnx.json")
    upload(
        "voices",
        {
            "v1/map.json": voice_map,
            "v1/de/voice.onnx": b"onnx",
            "v1/de/voice.onnx.json": b"{}",
            "v1/notes/unrelated.txt": b"x",
            "v1/": b"",
            "other/map.json": b"{}",
        },
    )
    monkeypatch.setenv("VOICES_S3_URI", "s3://voices/v1")
    monkeypatch.setenv("VOICES_DOWNLOAD_DIR", str(tmp_path / "models"))
    calls: list[str] = []
    session = boto3.Session()  # this test's own default session: the hook goes with it
    session.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)

    # WHEN the function initialises
    settings = prepare_environment()

    # THEN the map and the files it names are under the download folder, which is now MODELS_DIR
    assert settings.models_dir == (tmp_path / "models").resolve()
    assert json.loads((settings.models_dir / "map.json").read_bytes()) == json.loads(voice_map)
    assert (settings.models_dir / "de" / "voice.onnx").read_bytes() == b"onnx"
    assert sorted(p.name for p in settings.models_dir.rglob("*") if p.is_file()) == [
        "map.json",
        "voice.onnx",
        "voice.onnx.json",
    ]
    # AND it only read objects: the role needs s3:GetObject on the prefix, no listing of the bucket
    assert calls
    assert set(calls) <= {"GetObject", "HeadObject"}


def test_s3_voices_without_a_map_fail_loudly(aws: None, tmp_path: Path) -> None:
    upload("nomap", {"v1/voice.onnx": b"onnx"})
    with pytest.raises(ValueError, match="no map.json"):
        fetch_voices("s3://nomap/v1/", tmp_path)


@pytest.mark.parametrize("ref", ["../../escape.txt", "/etc/passwd-like/../../escape.txt", "de/../../escape.txt"])
def test_map_paths_cannot_escape_the_voices_folder(aws: None, tmp_path: Path, ref: str) -> None:
    upload("evil", {"v1/map.json": map_naming(ref, "ok.json"), "v1/ok.json": b"{}", "escape.txt": b"x"})
    if ref.startswith("/"):
        # An absolute path names a file in the image, not in S3: nothing is fetched for it.
        fetch_voices("s3://evil/v1/", tmp_path / "models")
    else:
        with pytest.raises(ValueError, match="escapes"):
            fetch_voices("s3://evil/v1/", tmp_path / "models")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("uri", ["voices/v1", "s3:///v1", "https://voices.s3.amazonaws.com/v1"])
def test_a_malformed_s3_uri_is_refused(aws: None, tmp_path: Path, uri: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix/"):
        fetch_voices(uri, tmp_path)
