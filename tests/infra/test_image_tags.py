"""Images are tagged <version>-<short commit>: `make image`, `make sam-build`, and the deployment files' examples."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from tests.infra.test_template import OFFLINE_AWS_ENV, sam_python

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def make(*args: str, cwd: Path = REPO) -> str:
    run = subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return run.stdout


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()


def test_the_tag_is_the_version_and_the_commit_and_says_when_the_tree_is_dirty(tmp_path: Path) -> None:
    # GIVEN the Makefile in a repository of its own (the real one may be dirty while tests run)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    sha = git(tmp_path, "rev-parse", "--short=12", "HEAD")
    # THEN a clean tree's tag names the version and the commit
    assert make("-s", "image-tag", cwd=tmp_path).strip() == f"{VERSION}-{sha}"
    # AND an uncommitted change is said, so an image never claims a commit it was not built from
    with (tmp_path / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    assert make("-s", "image-tag", cwd=tmp_path).strip() == f"{VERSION}-{sha}-dirty"


def test_make_image_and_sam_build_use_the_commit_tag() -> None:
    tag = make("-s", "image-tag").strip()
    assert re.fullmatch(rf"{re.escape(VERSION)}-[0-9a-f]{{12}}(-dirty)?", tag)
    image = make("-n", "image")
    assert f"-t tts-service:{tag} " in image
    assert f"--build-arg REVISION={tag.split('-')[1]}" in image
    sam = make("-n", "sam-build", "SAM_STAMP=Makefile")  # the venv's stamp is not this test's business
    assert f"-t tts-service/piper-base:{tag} layers/piper" in sam
    assert f"sam build --parameter-overrides ImageTag={tag}" in sam


def test_sam_builds_every_function_with_the_tag_on_the_base_of_the_same_tag() -> None:
    # WHEN SAM CLI resolves the functions' build metadata with the ImageTag `make sam-build` passes
    for template in (REPO / "template.yaml", REPO / "infra/lambda-web-adapter/template.yaml"):
        out = subprocess.run(
            [str(sam_python()), str(REPO / "tests/infra/tools/sam_images.py"), str(template), "ImageTag=0.1.0-abc123"],
            env={**os.environ, **OFFLINE_AWS_ENV},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        metadata = json.loads(out.stdout)
        assert metadata
        # THEN every image is tagged with it, and builds FROM the image of the same commit
        for name, meta in metadata.items():
            assert meta["DockerTag"].endswith("-0.1.0-abc123"), name
            base = meta["DockerBuildArgs"].get("BASE_IMAGE") or meta["DockerBuildArgs"]["SHIM_IMAGE"]
            assert base.endswith(":0.1.0-abc123"), name


def test_the_shim_image_records_its_commit() -> None:
    text = (REPO / "infra/Dockerfile").read_text()
    assert 'org.opencontainers.image.revision="${REVISION}"' in text
    assert "ARG SHIM_IMAGE\n" in (REPO / "infra/lambda-web-adapter/Dockerfile").read_text()  # no fixed default
