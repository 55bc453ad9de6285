"""The shim restarts itself so that malloc hands onnxruntime transparent huge pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tts_service.hugepages import TUNABLES

CHILD = """
import ctypes, json, os, sys
before = os.environ.get("RESTARTED_FROM")
if before is None:
    os.environ["RESTARTED_FROM"] = str(os.getpid())
from tts_service.hugepages import restart_with_huge_pages
restart_with_huge_pages()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size = 64 << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)
huge = [line for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages:")]
print(json.dumps({"pid": os.getpid(), "from": os.environ.get("RESTARTED_FROM"), "arg": sys.argv[1],
                  "tunables": os.environ.get("GLIBC_TUNABLES"), "huge_kb": int(huge[0].split()[1])}))
"""


def run(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, "an argument"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    answer: dict[str, object] = json.loads(out.stdout)
    return answer


def thp_mode() -> str:
    text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    return text[text.index("[") + 1 : text.index("]")]


def test_the_process_restarts_in_place_with_huge_pages() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    answer = run(env)
    # Same process, same arguments, now with the tunable
    assert answer["tunables"] == TUNABLES
    assert answer["pid"] == int(str(answer["from"]))
    assert answer["arg"] == "an argument"
    if thp_mode() in ("always", "madvise"):
        assert int(str(answer["huge_kb"])) >= 2048  # malloc's 64 MB block sits in 2 MB pages


def test_an_operators_own_tunables_are_left_alone() -> None:
    answer = run({**os.environ, "GLIBC_TUNABLES": ""})
    assert answer["tunables"] == ""
    if thp_mode() == "madvise":
        assert answer["huge_kb"] == 0  # nothing asked for huge pages
