"""`make smoke` as an operator runs it after `make serve`: it passes against the running shim (with keys, both
WebSocket authentications) and fails clearly against a port where nothing listens."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.shim import REPO, free_port, running_shim

KEY = "smoke-slow-key-0123456789"


def make_smoke(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    smoke_args = " ".join(args)
    return subprocess.run(
        ["make", "-s", "smoke", f"URL={url}", f"SMOKE_ARGS={smoke_args}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_make_smoke_passes_against_the_running_shim(tmp_path: Path) -> None:
    log = tmp_path / "shim.log"
    env = {"API_KEYS": KEY, "PUBLIC_BASE_URL": "https://tts.example.com", "DATA_DIR": str(tmp_path / "data")}
    with running_shim(env=env, log_path=log) as shim:
        for auth in ("header", "ticket"):
            run = make_smoke(shim.base, "--api-key", KEY, "--ws-auth", auth)
            assert run.returncode == 0, run.stdout + run.stderr
            lines = run.stdout.splitlines()
            for check in ("health", "healthz", "voices", "tts", "ws"):
                assert any(line.startswith(f"PASS {check}: ") for line in lines), run.stdout
            assert any(line.startswith("SKIP chat: LLM not configured") for line in lines), run.stdout
            assert lines[-1].startswith(f"smoke OK against {shim.base}: 5 ok, 0 failing, 1 skipped")
    # AND the start-up log line names the public URL the deployment is reached at
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    serving = next(r for r in records if r.get("message") == "serving")
    assert serving["public_base_url"] == "https://tts.example.com"
    assert KEY not in log.read_text()


@pytest.mark.slow
def test_make_smoke_fails_clearly_where_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = make_smoke(url, "--timeout", "5")
    assert run.returncode != 0
    lines = [line for line in run.stdout.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]
    assert len(lines) == 6
    assert all(line.startswith("FAIL ") and "refused" in line.lower() for line in lines)
    assert f"smoke FAILED against {url}: 0 ok, 6 failing, 0 skipped" in run.stdout
