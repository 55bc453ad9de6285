"""Settings read from the environment, one typed field per variable."""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The container's CPU limit in cores (cgroup v2 `cpu.max`, or v1's quota / period), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _default_workers() -> int:
    """One worker per core this process may use: its CPU affinity, capped by a container's CPU limit (Docker's
    --cpus, a Kubernetes limit), which os.cpu_count() does not see."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


class Settings(BaseSettings):
    """Service configuration; every field maps to the upper-case environment variable of its name.

    Each field's docstring is its description (`use_attribute_docstrings`), and the `# --- <section> ---` comments
    group them: `python -m tts_service.config_doc` renders both into docs/configuration.md (`make docs`).
    """

    model_config = SettingsConfigDict(
        env_ignore_empty=True, extra="ignore", case_sensitive=False, use_attribute_docstrings=True
    )

    # --- HTTP ---
    port: int = Field(8085, ge=1, le=65535)
    """HTTP + WebSocket port of the local shim."""
    host: str = "0.0.0.0"
    """Bind address of the local shim."""
    public_base_url: str | None = None
    """Where clients reach the service (`https://tts.example.com`, or with a path prefix): absolute URLs in
    responses (`conversation_url` and `Content-Location` of `/chat`, `GET /client-config`) and in the start-up log.
    Unset: the request's own scheme and host, which behind a TLS proxy are the inner ones (`http://tts:8085`), so set
    it in every layout with a proxy."""
    public_ws_url: str | None = None
    """The streaming WebSocket endpoint clients use when it is not under PUBLIC_BASE_URL (the API Gateway
    WebSocket API, whose URL the SAM template sets); unset: PUBLIC_BASE_URL as ws(s) with `/ws/tts` and
    `/ws/chat`."""
    request_timeout_secs: float = Field(60.0, gt=0)
    """Time until a response starts; later -> 504 `timeout`. A stream that has started runs on (the send timeout
    bounds a stalled one); WebSockets are not timed. Keep LLM_TIMEOUT_SECS below it."""
    rate_limit_per_minute: int = Field(60, ge=1)
    """Requests per client per minute (a moving window; the client is its API key when it presented a valid one,
    else its IP); more -> 429 `rate_limited` with `Retry-After`. Health checks and `/metrics` are exempt."""

    # --- Operations ---
    environment: Literal["production", "development"] = "production"
    """`development` allows localhost CORS origins when CORS_ALLOWED_ORIGINS is unset; nothing else changes."""
    api_keys: str | None = Field(None, repr=False)
    """Comma-separated API keys, or the path of a file with one key per line (`#` comments; a path that does not
    exist fails at start). Set: every endpoint but `/health`, `/healthz` and the console's static files needs
    `Authorization: Bearer <key>` or `X-API-Key: <key>` (401 `unauthorized`). Unset: no auth."""
    ws_ticket_ttl_secs: int = Field(60, ge=5, le=3600)
    """How long a ticket from POST /ws-ticket may wait for the WebSocket handshake that spends it."""
    cors_allowed_origins: str | None = None
    """Comma-separated allowed browser origins (`*` for any). Unset: none in production; in development
    `http(s)://localhost`, `127.0.0.1` or `[::1]` on any port. A refused preflight is 403 `origin_not_allowed`,
    without CORS headers."""
    max_body_bytes: int = Field(1 << 20, ge=1024)
    """Largest request body accepted; more -> 413 `payload_too_large` (from `Content-Length` at once, or while
    reading a chunked body)."""
    rate_limit_enabled: bool = True
    """Per-client rate limiting; switch off where a gateway already throttles (API Gateway on Lambda)."""
    rate_limit_burst: int | None = Field(None, ge=1)
    """Requests a client may send back to back (a second window of BURST requests per BURST x 60 / PER_MINUTE s,
    the bound of a token bucket); unset: the whole per-minute budget."""
    rate_limit_storage_uri: str | None = Field(None, repr=False)
    """`limits` storage for counters shared by all replicas (`redis://host:6379/0`); unset: in this process's
    memory."""
    rate_limit_storage_timeout_secs: float = Field(0.5, gt=0)
    """Budget of one rate-limit check against that storage (and its socket timeouts); past it, or on any error,
    the request goes through unlimited."""
    rate_limit_storage_retry_secs: float = Field(5.0, ge=0)
    """After such a failure, how long the storage is left alone (requests go through unlimited, without waiting)."""
    trusted_proxies: str | None = None
    """Comma-separated IPs/CIDRs (`10.0.0.0/8,127.0.0.1`) whose X-Forwarded-For is believed: the client is the
    last address not in the list. From anyone else the header is ignored."""
    tts_cache_mb: float = Field(64.0, ge=0)
    """Synthesized audio kept for identical requests (text after trimming, voice, speaker, speed, noise, volume,
    sentence silence), LRU by bytes, in MiB; 0 disables the cache."""
    liveness_max_synth_failures: int = Field(3, ge=1)
    """Syntheses failing in a row on the server's side (no success between) before /health fails (restart)."""
    debug_samples: bool = False
    """Keep recent /tts requests (PII-redacted text and audio) on local disk for debugging; off by default."""
    debug_samples_dir: Path | None = None
    """Folder of the debug samples; unset: `<DATA_DIR>/debug-samples`."""
    debug_samples_ttl_secs: float = Field(3600.0, gt=0)
    """How long a debug sample is kept."""
    debug_samples_max: int = Field(100, ge=1)
    """Most debug samples kept (a ring: the oldest go first)."""
    debug_samples_purge_secs: float = Field(60.0, gt=0)
    """How often expired debug samples are purged."""
    shutdown_grace_secs: float = Field(20.0, ge=0)
    """On SIGTERM, how long in-flight requests and streams get to finish before they are closed."""
    console_enabled: bool = True
    """The local shim serves the web console at `/` (its files are public: no data, no key needed)."""
    console_dir: Path | None = None
    """The console's folder (`index.html`, `assets/`); unset: `frontend/` beside the shim's `local/` folder."""
    stream_send_timeout_secs: float = Field(20.0, gt=0)
    """A send to a client (a chunk of a streamed response, a WebSocket frame) not taken within this ends the
    response or WebSocket and frees its synthesis. Above one chunk's playing time (~6 s, plus sentence_silence),
    so players that read at the speed of speech are never cut."""
    ws_idle_timeout_secs: float = Field(300.0, gt=0)
    """A WebSocket with no message either way for this long is closed (1001)."""
    ws_max_message_bytes: int = Field(256 * 1024, ge=16 * 1024)
    """Largest WebSocket message the local server reads (the longest chat message, JSON-escaped, fits); a larger
    one closes the connection with 1009 (uvicorn's own default would be 16 MiB)."""
    max_streams_per_client: int = Field(8, ge=1)
    """Streams (WebSockets, POST /tts/stream, streamed /v1/audio/speech) one client (API key, else IP) may have
    open at once in one process; more: 429 `too_many_streams`."""

    # --- Voices ---
    models_dir: Path = Path("models")
    """Folder holding `map.json` and any voice files it names by relative path."""
    voice_map: Path | None = None
    """Voice map file; unset: `<MODELS_DIR>/map.json`."""
    voice_cache_size: int = Field(4, ge=1)
    """How many voices stay loaded at once (LRU; the default voice is pinned)."""
    verify_voice_hashes: bool = True
    """Check each voice file's sha256 against the map before loading it."""
    warm_voices: str | None = None
    """Comma-separated voice ids loaded and spoken once at start besides the default; readiness waits for them.
    Keep them within VOICE_CACHE_SIZE - 1 so none is evicted."""
    piper_espeakng_data_directory: Path | None = None
    """eSpeak-ng data: the `espeak-ng-data` folder or its parent. Unset: the data bundled with piper-tts."""

    # --- Synthesis ---
    max_text_chars: int = Field(5000, ge=1)
    """Longest text accepted, in characters after trimming."""
    max_audio_seconds: float = Field(600.0, gt=0)
    """Longest speech one request may make (slow `speed` and long `sentence_silence` stretch text into hours):
    refused with 413 `audio_too_long` when the estimate from text, speed and silences exceeds it, and stopped
    there if synthesis gets past it."""
    synth_workers: int = Field(default_factory=_default_workers, ge=1, json_schema_extra={"doc_default": "cores"})
    """Synthesis worker threads, each with its own sessions; a request's pieces are spread over them. Default: the
    cores this process may use (its affinity, capped by a container's CPU limit: cgroup `cpu.max`)."""
    synth_queue_size: int = Field(32, ge=0)
    """Syntheses that may wait for a worker; one more is refused with 503 `busy` at once."""
    ort_intra_op_threads: int = Field(1, ge=1)
    """onnxruntime threads of each worker's sessions; keep SYNTH_WORKERS x this at the cores."""
    ort_allow_spinning: bool = True
    """Let idle onnxruntime threads spin (matters only with ORT_INTRA_OP_THREADS > 1)."""
    max_sentence_phonemes: int = Field(300, ge=50)
    """Sentences longer than this many phonemes are cut before synthesis to bound memory."""

    # --- Streaming ---
    stream_chunked_decode: bool = True
    """Split voices into frontend + decoder graphs and decode in bounded windows (fast, bounded memory, early
    first audio); false: whole-graph synthesis with the CPU arena off (slower)."""
    stream_cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "tts-service" / "streaming",
        json_schema_extra={"doc_default": "`~/.cache/tts-service/streaming`"},
    )
    """Folder of the split graphs made once per voice (the default voice lives in site-packages, so not beside
    it); must be ours and not writable by others. On Lambda: baked into the image, or a path under `/tmp`."""
    stream_first_chunk_frames: int = Field(24, ge=4, le=512)
    """Frames (256 samples each) in a stream's first decoded chunk: the time-to-first-audio knob. A long first
    sentence gets up to 4x more, so its first chunk plays until the next one is decoded; while other requests
    share the workers, every stream's first chunk gets 4x (its next one waits its turn)."""
    decode_window_frames: int = Field(512, ge=64, le=8192)
    """Most frames (256 samples each) per decoder run: bounds what a decoder run takes from the memory arena
    (~190 MB at 512), whatever the text or the speed."""
    arena_trim_idle_secs: float = Field(2.0, ge=0)
    """After this long with no synthesis, the sessions' arenas are given back (the next request regrows them,
    ~25% slower for that one request); 0 keeps them for the life of the process (fastest, most memory)."""
    stream_max_audio_bytes: int = Field(16384, ge=1024, le=1 << 20)
    """Largest PCM payload of one audio event (16 KB -> ~22 KB base64, under API Gateway's 32 KB frames; the API
    Gateway WebSocket always uses 16384)."""
    stream_max_pending_chars: int = Field(5000, ge=1)
    """Incremental text held before a sentence ends; more is refused (`text_too_long`)."""
    stream_table_name: str | None = None
    """DynamoDB table of API Gateway WebSocket connections (partition key connection_id, TTL expires_at)."""
    stream_state_ttl_secs: int = Field(7200, ge=60)
    """How long a WebSocket connection's state lives in DynamoDB after its last message."""

    # --- LLM ---
    llm_provider: Literal["openai", "ollama"] = "openai"
    """Chat provider: OpenAI (or any OpenAI-compatible server, see OPENAI_BASE_URL) or Ollama."""
    llm_model: str | None = None
    """Chat model; unset: gpt-3.5-turbo (openai) or llama3 (ollama)."""
    openai_api_key: str | None = Field(None, repr=False)
    """Required for `openai` (without it chat answers 503 `llm_not_configured`); a keyless compatible server takes
    any placeholder."""
    openai_base_url: str | None = None
    """Any OpenAI-compatible server (`http://host:8000/v1`); unset: api.openai.com. Keyless ones: any key."""
    ollama_base_url: str = "http://localhost:11434"
    """The Ollama server (LLM_PROVIDER=ollama)."""
    llm_timeout_secs: float = Field(30.0, gt=0)
    """Budget for a whole LLM reply (streamed: each next token) and each embedding; below REQUEST_TIMEOUT_SECS."""
    llm_max_retries: int = Field(1, ge=0, le=5)
    """Retries of a failed OpenAI call (connection errors, 429, 5xx) inside the timeout budget."""
    llm_temperature: float | None = Field(None, ge=0.0, le=2.0)
    """Sampling temperature sent to the provider; unset: the provider's default."""
    llm_max_tokens: int | None = Field(512, ge=1)
    """Longest reply in tokens (max_tokens / num_predict); unset: the provider's default."""
    system_prompt: str = (
        "You are a helpful voice assistant. Answer in plain spoken sentences, briefly, without markdown, "
        "lists or code unless asked."
    )
    """First message of every request to the LLM."""
    embedding_model: str | None = None
    """Embeddings model on the same provider; enables similarity recall. Unset: recall by order only."""
    max_message_chars: int = Field(10000, ge=1)
    """Longest chat message accepted, in characters after trimming."""

    # --- Storage ---
    qdrant_url: str | None = None
    """A Qdrant server (`http://qdrant:6333`); any number of workers may share it. Unset: the embedded store at
    QDRANT_PATH."""
    qdrant_api_key: str | None = Field(None, repr=False)
    """API key of the Qdrant server at QDRANT_URL."""
    qdrant_allow_http: bool = False
    """On AWS Lambda QDRANT_URL must be https (turn text and the Qdrant key cross the network); true allows http."""
    data_dir: Path = Path("data")
    """Where the service keeps state on disk (the embedded Qdrant store, debug samples)."""
    qdrant_path: Path | None = None
    """Embedded Qdrant folder; unset: `<DATA_DIR>/qdrant`. One process at a time (a lock file enforces it)."""
    qdrant_collection: str = "conversations"
    """Qdrant collection of the conversation turns."""
    memory_enabled: bool = True
    """Store turns and send history to the LLM; off: every message is a new conversation."""
    memory_turns: int = Field(4, ge=0, le=100)
    """How many of the latest turns (user + assistant) are sent with each message."""
    memory_recall_k: int = Field(3, ge=0, le=50)
    """How many older turns most similar to the message are added (needs EMBEDDING_MODEL)."""
    memory_retention_days: float | None = Field(30.0, gt=0)
    """Turns older than this are deleted; unset: kept until DELETE /conversations/{id}."""
    memory_purge_interval_secs: float = Field(3600.0, gt=0)
    """How often the local server deletes expired turns (Lambda: the template's hourly EventBridge rule)."""
    memory_timeout_secs: float = Field(3.0, gt=0)
    """Budget for one memory operation; past it the reply goes on without memory."""
    aws_lambda_function_name: str | None = None
    """Set by AWS Lambda; there the embedded store is refused (it would live in one instance's /tmp)."""

    # --- AWS ---
    openai_api_key_secret: str | None = None
    """Secrets Manager secret (name or ARN), or `ssm:<parameter name>`, holding OPENAI_API_KEY; read at Lambda
    init. A key given directly wins."""
    qdrant_api_key_secret: str | None = None
    """Secrets Manager secret (name or ARN), or `ssm:<parameter name>`, holding QDRANT_API_KEY; read at Lambda
    init."""
    api_keys_secret: str | None = None
    """Secrets Manager secret (name or ARN), or `ssm:<parameter name>`, holding API_KEYS; read at Lambda init."""
    voices_s3_uri: str | None = None
    """`s3://bucket/prefix/` holding map.json and the voice files it names, copied to VOICES_DOWNLOAD_DIR at Lambda
    init; that folder then becomes MODELS_DIR."""
    voices_download_dir: Path = Path("/tmp/models")
    """Where VOICES_S3_URI is copied."""

    # --- Logging ---
    log_level: str | None = None
    """Log level (`debug`, `info`, `warning`, `error`); unset: RUST_LOG, else `info`. Logs are one JSON object per
    line."""
    rust_log: str | None = None
    """Honoured when LOG_LEVEL is unset, for operators used to the old server; its first bare level wins
    (`warn,hyper=info` -> WARNING)."""

    @field_validator("public_base_url", "public_ws_url")
    @classmethod
    def _check_public_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        name = info.field_name or "public_base_url"
        parts = urlsplit(value.strip())
        schemes = ("http", "https") if name == "public_base_url" else ("ws", "wss")
        if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                f"{name.upper()} must be {' or '.join(schemes)}://host[:port][/path], without query or fragment"
            )
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.llm_timeout_secs >= self.request_timeout_secs:
            raise ValueError(
                f"LLM_TIMEOUT_SECS={self.llm_timeout_secs:g} must be below REQUEST_TIMEOUT_SECS="
                f"{self.request_timeout_secs:g}, or a slow LLM would outlive the request"
            )
        if self.piper_espeakng_data_directory is not None and self.espeak_data_dir is None:
            raise ValueError(
                f"PIPER_ESPEAKNG_DATA_DIRECTORY={self.piper_espeakng_data_directory} holds no espeak-ng-data"
            )
        return self

    @property
    def qdrant_local_path(self) -> Path:
        return self.qdrant_path or self.data_dir / "qdrant"

    @property
    def warm_voice_ids(self) -> list[str]:
        return list(dict.fromkeys(v.strip() for v in (self.warm_voices or "").split(",") if v.strip()))

    @property
    def voice_map_path(self) -> Path:
        return self.voice_map or self.models_dir / "map.json"

    @property
    def espeak_data_dir(self) -> Path | None:
        """The espeak-ng-data folder to hand to piper, or None for piper's bundled copy."""
        base = self.piper_espeakng_data_directory
        if base is None:
            return None
        for candidate in (base / "espeak-ng-data", base):
            if (candidate / "phontab").is_file():
                return candidate
        return None

    @property
    def effective_log_level(self) -> str:
        raw = self.log_level or self.rust_log or "info"
        # RUST_LOG may carry per-target filters ("info,hyper=warn"); the first bare level wins.
        for part in raw.split(","):
            level = part.strip().lower()
            if "=" not in level and level:
                return {"trace": "DEBUG", "warn": "WARNING"}.get(level, level.upper())
        return "INFO"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
