"""Lambda init, before the app reads its settings: secrets from Secrets Manager/SSM, extra voices from S3.

Why at run time and not `{{resolve:secretsmanager:...}}` in the template: a resolved secret lands in the
function's configuration in plain text (visible to anyone who may read it, and in every deployment diff) and a
rotated secret needs a redeploy. Here the template only passes the secret's ARN (`OPENAI_API_KEY_SECRET`), the
function's role may read that one secret, and each new instance reads the current value once.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any

from tts_service.config import Settings, get_settings
from tts_service.engine.registry import PKG_PREFIX

logger = logging.getLogger(__name__)

# Setting that names where a secret lives -> setting that receives its value.
SECRET_SETTINGS = {
    "openai_api_key_secret": "openai_api_key",
    "qdrant_api_key_secret": "qdrant_api_key",
    "api_keys_secret": "api_keys",
}
SSM_PREFIX = "ssm:"


def prepare_environment() -> Settings:
    """Resolve secrets and fetch S3 voices into the environment, then return the settings that result."""
    settings = get_settings()
    changed = resolve_secrets(settings)
    if settings.voices_s3_uri:
        os.environ["MODELS_DIR"] = str(fetch_voices(settings.voices_s3_uri, settings.voices_download_dir))
        os.environ.pop("VOICE_MAP", None)
        changed = True
    if changed:
        get_settings.cache_clear()
    return get_settings()


def resolve_secrets(settings: Settings) -> bool:
    """Export each secret named by a `*_SECRET` setting as the variable it stands for; True if any was."""
    resolved = False
    for ref_field, target in SECRET_SETTINGS.items():
        ref = getattr(settings, ref_field)
        if not ref or getattr(settings, target):
            continue  # not configured, or given directly (local runs): nothing to fetch
        os.environ[target.upper()] = read_secret(ref)
        logger.info("secret resolved", extra={"setting": target.upper(), "source": _kind(ref)})
        resolved = True
    return resolved


def read_secret(ref: str) -> str:
    """The string value of a Secrets Manager secret (name or ARN) or of `ssm:<name>`, a SecureString parameter."""
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 boto3 behind it, only for secrets

    value: Any
    if ref.startswith(SSM_PREFIX):
        value = parameters.get_parameter(ref.removeprefix(SSM_PREFIX), decrypt=True)
    else:
        value = parameters.get_secret(ref)
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_kind(ref)} secret {_name(ref)!r} is empty or not a string")
    return value.strip()


def fetch_voices(uri: str, dest: Path) -> Path:
    """Copy `map.json` under `s3://bucket/prefix/` and the voice files it names into `dest`; return `dest`.

    Only the map and the files it names (paths relative to the map) are read, object by object: the function's
    role needs `s3:GetObject` on the voices prefix and nothing else, no listing of the bucket.
    """
    import boto3  # noqa: PLC0415 the `aws` extra, only when voices come from S3
    from botocore.exceptions import ClientError  # noqa: PLC0415 the `aws` extra, only when voices come from S3

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ValueError(f"VOICES_S3_URI must look like s3://bucket/prefix/, got {uri!r}")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    s3 = boto3.client("s3")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        s3.download_file(bucket, prefix + "map.json", str(root / "map.json"))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise ValueError(f"{uri} holds no map.json; the voices folder needs one") from None
        raise
    refs = _voice_files(json.loads((root / "map.json").read_text()))
    for ref in refs:
        rel = PurePosixPath(ref)
        target = (root / rel).resolve()
        if rel.is_absolute() or not target.is_relative_to(root):
            raise ValueError(f"voice file {ref!r} escapes the voices folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, prefix + rel.as_posix(), str(target))
    logger.info("voices fetched", extra={"bucket": bucket, "prefix": prefix, "files": len(refs) + 1, "dest": str(root)})
    return root


def _voice_files(voice_map: Any) -> list[str]:
    """The map's file references that live beside it (not `pkg:` files shipped in the image, nor absolute paths)."""
    refs: list[str] = []
    voices = voice_map.get("voices") if isinstance(voice_map, dict) else None
    for spec in (voices or {}).values():
        for part in ("model", "config"):
            ref = spec.get(part) if isinstance(spec, dict) else None
            path = ref.get("path") if isinstance(ref, dict) else ref
            if isinstance(path, str) and path and not path.startswith(PKG_PREFIX) and not path.startswith("/"):
                refs.append(path)
    return list(dict.fromkeys(refs))


def _kind(ref: str) -> str:
    return "ssm" if ref.startswith(SSM_PREFIX) else "secretsmanager"


def _name(ref: str) -> str:
    # The secret's name is fine to show; an ARN says a little more than needed (account id), so keep its tail.
    name = ref.removeprefix(SSM_PREFIX)
    return name.rsplit(":", 1)[-1] if name.startswith("arn:") else name
