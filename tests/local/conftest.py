"""The real shim process (`local/serve.py`) on loopback. The reliability suite here (marker `reliability`:
schema fuzzing, dependency faults, soak) records its figures, printed at the end of the run and written to
`.cache/reliability/figures.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.shim import REPO

FIGURES: dict[str, Any] = {}
FIGURES_PATH = REPO / ".cache" / "reliability" / "figures.json"


@pytest.fixture(scope="session")
def figures() -> dict[str, Any]:
    """Numbers worth reporting, by test."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_PATH.write_text(json.dumps(FIGURES, indent=2, sort_keys=True))
    terminalreporter.section("reliability figures")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {json.dumps(value, sort_keys=True)}")


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability")
