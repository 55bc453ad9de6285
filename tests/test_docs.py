"""The documentation stays true to the code: docs/configuration.md is what the generator makes from `Settings`,
every relative link in README.md and docs/*.md reaches a file, and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tts_service import config_doc
from tts_service.config import Settings

REPO = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250
# [text](target) and ![alt](target); the target ends at whitespace (a title) or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _relative_links(text: str) -> list[str]:
    text = FENCE.sub("", text)
    targets = [match.group(1) for match in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]


def test_configuration_doc_is_generated_from_settings() -> None:
    expected = config_doc.render()
    actual = (REPO / config_doc.DEFAULT_PATH).read_text(encoding="utf-8")
    assert actual == expected, "docs/configuration.md is out of date with tts_service.config.Settings: run make docs"


def test_every_setting_has_a_description_and_a_section() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not undocumented, f"Settings fields without a docstring: {undocumented}"
    grouped = [name for _, names in config_doc.sections() for name in names]
    assert sorted(grouped) == sorted(Settings.model_fields)


def test_secrets_show_no_default() -> None:
    text = config_doc.render()
    secrets = [name for name, field in Settings.model_fields.items() if field.repr is False]
    assert secrets, "the secret fields are marked repr=False"
    for name in secrets:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name.upper()}` |"))
        assert row.split(" | ")[2] == "unset (secret)", row


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_reach_files(path: Path) -> None:
    broken = []
    for target in _relative_links(path.read_text(encoding="utf-8")):
        file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if file_part and not (path.parent / file_part).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(REPO)} links to missing files: {broken}"


def test_link_check_sees_links() -> None:
    sample = (
        "See [api](docs/api.md#errors), ![plot](performance/x.png) and [web](https://example.com).\n```\n[no](x)\n```"
    )
    assert _relative_links(sample) == ["docs/api.md#errors", "performance/x.png"]


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"
