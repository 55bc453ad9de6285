"""The pre-commit hook and CI run one definition of the checks: `make lint`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def make_recipe(target: str) -> list[str]:
    """The commands of a Makefile target, with `$(VENV)/bin/` dropped (the tools come from the project's .venv)."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(VENV)/bin/", ""))
    return recipe


def test_the_pre_commit_hook_runs_make_lint() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [hook["entry"] for hook in hooks] == ["make lint"]
    (hook,) = hooks
    assert hook["language"] == "system"  # the project's own .venv, never a copy of the tools pre-commit installs
    assert hook["pass_filenames"] is False  # the whole tree, as CI checks it


def test_make_lint_is_ruff_check_ruff_format_check_and_mypy() -> None:
    assert make_recipe("lint") == ["ruff check .", "ruff format --check .", "mypy"]


def test_mypy_checks_the_tests_and_the_bench_too() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["tool"]["mypy"]["strict"] is True
    assert set(config["tool"]["mypy"]["files"]) == {"src", "functions", "local", "tests", "bench"}
