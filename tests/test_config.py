"""SYNTH_WORKERS' default follows a container's CPU limit, which os.cpu_count() does not see."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from tts_service.config import Settings, cgroup_cpu_limit


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),  # cgroup v2, docker run --cpus 2
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),  # no limit
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),  # not in a cgroup we can read
    ],
)
def test_the_cgroup_cpu_limit_is_read(tmp_path: Path, files: dict[str, str], cores: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == cores


def test_the_default_worker_count_is_capped_by_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNTH_WORKERS", raising=False)
    monkeypatch.setattr("tts_service.config.cgroup_cpu_limit", lambda: 1.5)
    assert Settings().synth_workers == min(len(os.sched_getaffinity(0)), math.ceil(1.5))
    monkeypatch.setattr("tts_service.config.cgroup_cpu_limit", lambda: None)
    assert Settings().synth_workers == len(os.sched_getaffinity(0))
