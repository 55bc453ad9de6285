"""Restart the process with glibc's malloc asking for transparent huge pages, before anything is loaded.

onnxruntime keeps a voice's weights and its arena in memory it gets from malloc. In 4 KB pages, a stream's first
audio after 1.2 s idle took 93-141 ms against 78-83 ms right after another request: every step, espeak and
Python's included, ran ~2x slower, while 30 ms of busy CPU beforehand did not help. In 2 MB pages (this glibc
tunable; the kernel's THP mode is `madvise`, the default of most distributions) the same first audio took
0.78-0.88x the time after idle and 0.93-0.99x right after a request, and 4 clients' throughput was 1.03x
(in-process, paired process runs of 8 streams each). Resident memory under the hostile-text bench rose by
~10-15 MB (docs/performance.md). glibc older than 2.35 ignores the tunable.
"""

from __future__ import annotations

import os
import sys

TUNABLES = "glibc.malloc.hugetlb=1"


def restart_with_huge_pages() -> None:
    """Re-execute this process (same pid, same arguments) with `TUNABLES`, unless GLIBC_TUNABLES is set already:
    an operator's own value, even empty, is left alone (`GLIBC_TUNABLES=` turns this off)."""
    if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ:
        return
    os.execve(sys.executable, sys.orig_argv, {**os.environ, "GLIBC_TUNABLES": TUNABLES})
