"""Prometheus metrics behind a small recording interface.

Each `Metrics` owns its own `CollectorRegistry` (never the global default), so two apps or two tests in one
process count separately. Core modules call the `observe_*` / `cache_*` / `llm_request` methods and never
import prometheus_client. Every label value is bounded: route templates, registered voice ids, fixed words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from tts_service import __version__

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SYNTH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
_TTFA_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
_LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "WEBSOCKET"})
_LLM_OUTCOMES = frozenset({"ok", "error", "timeout"})
REJECT_REASONS = frozenset(
    {
        "unauthorized",
        "rate_limited",
        "payload_too_large",
        "timeout",
        "busy",
        "origin_not_allowed",
        "shutting_down",
        "slow_client",
        "too_many_streams",
    }
)
# Label values that come from code, not users, but are still checked so a bug cannot explode cardinality.
_SAFE_LABEL = re.compile(r"^[A-Za-z0-9_.:/{}\-]{1,80}$")

# The classic text format: every scraper reads it, and our names need nothing newer.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# `*_created` series double the exposition and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _label(value: str, fallback: str = "other") -> str:
    return value if _SAFE_LABEL.match(value) else fallback


class Metrics:
    """The service's metric families in a private registry, with methods to record into them."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        if process:
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
        Gauge("tts_build_info", "Version of the running service.", ["version"], registry=reg).labels(__version__).set(1)

        # --- HTTP ---
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests (and WebSocket connections) by route template, method and status.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time from request to the end of the response, by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        # Name kept as the deployment guide's autoscaling section uses it.
        self.in_flight = Gauge("requests_in_flight", "HTTP requests being served now.", registry=reg)
        self.rejected = Counter(
            "http_requests_rejected",
            "Requests refused before or instead of being served, by reason.",
            ["reason"],
            registry=reg,
        )

        # --- synthesis ---
        self.synthesis_duration = Histogram(
            "tts_synthesis_duration_seconds",
            "Compute time of one synthesis (whole text or whole stream), by voice.",
            ["voice"],
            buckets=_SYNTH_BUCKETS,
            registry=reg,
        )
        self.audio_seconds = Counter(
            "tts_audio_seconds", "Seconds of audio synthesized, by voice.", ["voice"], registry=reg
        )
        self.real_time_factor = Histogram(
            "tts_real_time_factor",
            "Synthesis time divided by audio duration (below 1: faster than real time), by voice.",
            ["voice"],
            buckets=_RTF_BUCKETS,
            registry=reg,
        )
        self.ttfa = Histogram(
            "tts_time_to_first_audio_seconds",
            "Time from the start of a stream to its first audio, by voice.",
            ["voice"],
            buckets=_TTFA_BUCKETS,
            registry=reg,
        )
        self.cache_hits = Counter("tts_cache_hits", "Cache lookups that found an entry.", ["cache"], registry=reg)
        self.cache_misses = Counter("tts_cache_misses", "Cache lookups that found nothing.", ["cache"], registry=reg)
        self.cache_bytes = Gauge("tts_cache_size_bytes", "Bytes held by a cache.", ["cache"], registry=reg)
        self.cache_entries = Gauge("tts_cache_entries", "Entries held by a cache.", ["cache"], registry=reg)
        self.voices_loaded = Gauge("tts_voices_loaded", "Voices loaded in memory now.", registry=reg)
        self.synth_admitted = Gauge(
            "tts_synthesis_admitted", "Syntheses running or queued for a worker now.", registry=reg
        )
        self.synth_capacity = Gauge(
            "tts_synthesis_capacity", "Syntheses admitted at most (workers + queue); more get 503.", registry=reg
        )

        self.dependency_failures = Counter(
            "tts_dependency_failures",
            "Calls to a dependency that failed or timed out and were let through (fail open).",
            ["dependency", "outcome"],
            registry=reg,
        )

        # --- LLM ---
        self.llm_requests = Counter(
            "tts_llm_requests",
            "LLM calls by provider and outcome (ok, error, timeout).",
            ["provider", "outcome"],
            registry=reg,
        )
        self.llm_duration = Histogram(
            "tts_llm_request_duration_seconds",
            "LLM call latency by provider, whatever the outcome.",
            ["provider"],
            buckets=_LLM_BUCKETS,
            registry=reg,
        )

        # --- chat ---
        self.memory_failures = Counter(
            "tts_chat_memory_failures",
            "Conversation memory operations that failed; chat answered without memory.",
            ["op"],
            registry=reg,
        )

        # Series that exist from the start read 0 instead of "no data" on dashboards and in rate().
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for outcome in ("timeout", "error"):
            self.dependency_failures.labels("rate_limit_storage", outcome)
        self.cache_hits.labels("audio")
        self.cache_misses.labels("audio")

    # --- recording interface ---

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One finished HTTP request (or WebSocket connection, method WEBSOCKET)."""
        method = method if method in _METHODS else "OTHER"
        route = _label(route, "unmatched")
        self.http_requests.labels(route, method, str(status)).inc()
        if method != "WEBSOCKET":
            self.http_duration.labels(route, method).observe(seconds)

    def observe_rejected(self, reason: str) -> None:
        """A request refused by a guard: one of REJECT_REASONS."""
        self.rejected.labels(reason if reason in REJECT_REASONS else "other").inc()

    def observe_synthesis(self, voice: str, seconds: float, audio_seconds: float) -> None:
        """A synthesis that produced `audio_seconds` of audio in `seconds` of compute."""
        voice = _label(voice)
        self.synthesis_duration.labels(voice).observe(seconds)
        self.audio_seconds.labels(voice).inc(audio_seconds)
        if audio_seconds > 0:
            self.real_time_factor.labels(voice).observe(seconds / audio_seconds)

    def observe_ttfa(self, voice: str, seconds: float) -> None:
        """Time to first audio of a stream."""
        self.ttfa.labels(_label(voice)).observe(seconds)

    def cache_hit(self, cache: str) -> None:
        """A cache lookup that found its entry."""
        self.cache_hits.labels(_label(cache)).inc()

    def cache_miss(self, cache: str) -> None:
        """A cache lookup that found nothing."""
        self.cache_misses.labels(_label(cache)).inc()

    def cache_size(self, cache: str, entries: int, size_bytes: int) -> None:
        """The current size of a cache."""
        self.cache_entries.labels(_label(cache)).set(entries)
        self.cache_bytes.labels(_label(cache)).set(size_bytes)

    def dependency_failure(self, dependency: str, outcome: str) -> None:
        """A dependency call that failed (`error`) or ran out of time (`timeout`); the service went on without it."""
        self.dependency_failures.labels(_label(dependency), "timeout" if outcome == "timeout" else "error").inc()

    def llm_request(self, provider: str, outcome: str, seconds: float) -> None:
        """One LLM call: outcome `ok`, `error` or `timeout`."""
        provider = _label(provider)
        self.llm_requests.labels(provider, outcome if outcome in _LLM_OUTCOMES else "error").inc()
        self.llm_duration.labels(provider).observe(seconds)

    def memory_failure(self, op: str) -> None:
        """A conversation memory operation (`recall`, `store`, ...) that failed; chat went on without memory."""
        self.memory_failures.labels(_label(op)).inc()

    def watch_engine(self, voices_loaded: Callable[[], float], admitted: Callable[[], float], capacity: float) -> None:
        """Gauges read from the engine at scrape time."""
        self.voices_loaded.set_function(voices_loaded)
        self.synth_admitted.set_function(admitted)
        self.synth_capacity.set(capacity)

    # --- reading ---

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 when absent): for tests and diagnostics."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


@lru_cache
def get_metrics() -> Metrics:
    """The process-wide metrics the engine and the apps record into by default."""
    return Metrics()
