"""LLM provider clients: OpenAI (official SDK, any compatible server) and Ollama (httpx on its HTTP API).

Both answer whole (`complete`) or token by token (`stream`), embed text, and report every failure as one of
`LlmNotConfigured`, `LlmUnavailable`, `LlmTimeout` or `LlmBadResponse`, never as a library exception.
`LLM_TIMEOUT_SECS` bounds a whole reply, or when streaming the wait for each next piece.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import httpx
import openai

from tts_service.config import Settings
from tts_service.errors import LlmBadResponse, LlmNotConfigured, LlmTimeout, LlmUnavailable, ServiceError
from tts_service.observability import tracing
from tts_service.observability.metrics import get_metrics

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

logger = logging.getLogger(__name__)

Message = dict[str, str]
"""One chat message: `{"role": "system" | "user" | "assistant", "content": "..."}`."""

DEFAULT_MODELS = {"openai": "gpt-3.5-turbo", "ollama": "llama3"}
PROBE_TIMEOUT_SECS = 3.0

T = TypeVar("T")


class _PerLoop(Generic[T]):
    """One HTTP client per event loop: pooled connections must not outlive the loop that opened them."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        item = self._items.get(loop)
        if item is None:
            item = self._items[loop] = self._factory()
        return item

    def pop(self) -> T | None:
        """This loop's client, forgotten (the caller closes it), or None."""
        return self._items.pop(asyncio.get_running_loop(), None)


class LlmClient(ABC):
    """A chat provider: replies, token streams, embeddings and a reachability probe."""

    provider: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.llm_model or DEFAULT_MODELS[self.provider]
        self.embedding_model = settings.embedding_model
        self.timeout = settings.llm_timeout_secs

    @property
    def configured(self) -> bool:
        """Whether the settings name a usable provider (no call is made)."""
        return True

    def require_configured(self) -> None:
        if not self.configured:
            raise LlmNotConfigured(self.not_configured_reason())

    def not_configured_reason(self) -> str:
        return f"LLM provider {self.provider} is not configured"

    async def complete(self, messages: list[Message]) -> str:
        """The whole reply to `messages`."""
        self.require_configured()
        started = time.perf_counter()
        outcome = "error"
        with tracing.span("llm.chat", self._span_attributes()) as span:
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await self._complete(messages)
                if not reply.strip():
                    raise LlmBadResponse("the LLM returned an empty reply")
                outcome = "ok"
            except TimeoutError:
                outcome = "timeout"
                raise self._timeout() from None
            except LlmTimeout:
                outcome = "timeout"
                raise
            finally:
                tracing.set_attributes(span, {"tts.llm.outcome": outcome})
                self._observe(outcome, started)
        return reply

    async def stream(self, messages: list[Message]) -> AsyncIterator[str]:
        """The reply as text pieces while the provider writes it.

        LLM_TIMEOUT_SECS bounds the wait for each piece (the first one included) rather than the whole reply, so
        a long spoken answer may take as long as it needs while a stalled provider is still cut off.
        """
        self.require_configured()
        started = time.perf_counter()
        outcome = "cancelled"
        pieces = self._stream(messages)
        produced = False
        # Not made current: the caller's code runs between the pieces, in its own context.
        span = tracing.start_span("llm.chat", {**self._span_attributes(), "tts.llm.streamed": True})
        error: BaseException | None = None
        try:
            while True:
                try:
                    piece = await asyncio.wait_for(anext(pieces), self.timeout)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    outcome = "timeout"
                    raise self._timeout("stream") from None
                if piece:
                    produced = True
                    yield piece
            if not produced:
                raise LlmBadResponse("the LLM returned an empty reply")
            outcome = "ok"
        except LlmTimeout:
            outcome = "timeout"
            raise
        except ServiceError as exc:
            outcome = "error"
            error = exc
            raise
        finally:
            await pieces.aclose()
            if outcome != "cancelled":  # a barge-in is the user's choice, not a provider outcome
                self._observe(outcome, started)
            tracing.set_attributes(span, {"tts.llm.outcome": outcome})
            tracing.end_span(span, error)

    def _span_attributes(self) -> tracing.Attributes:
        # The GenAI semantic conventions' names; never the messages.
        return {"gen_ai.system": self.provider, "gen_ai.request.model": self.model}

    def _observe(self, outcome: str, started: float) -> None:
        seconds = time.perf_counter() - started
        get_metrics().llm_request(self.provider, outcome, seconds)
        log = logger.info if outcome == "ok" else logger.warning
        log(
            "llm call",
            extra={"provider": self.provider, "model": self.model, "outcome": outcome, "seconds": round(seconds, 3)},
        )

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, from EMBEDDING_MODEL on this provider."""
        self.require_configured()
        if not self.embedding_model:
            raise LlmNotConfigured("EMBEDDING_MODEL is not set")
        attributes = {**self._span_attributes(), "gen_ai.request.model": self.embedding_model, "tts.texts": len(texts)}
        with tracing.span("llm.embed", attributes):
            try:
                async with asyncio.timeout(self.timeout):
                    vectors = await self._embed(texts)
            except TimeoutError:
                raise self._timeout("embedding") from None
        if len(vectors) != len(texts) or any(not v for v in vectors):
            raise LlmBadResponse("the embeddings endpoint returned the wrong number of vectors")
        return vectors

    async def probe(self) -> str | None:
        """None when the provider answers; otherwise the error code that explains why not."""
        if not self.configured:
            return LlmNotConfigured.code
        try:
            async with asyncio.timeout(min(PROBE_TIMEOUT_SECS, self.timeout)):
                await self._probe()
        except TimeoutError:
            return LlmTimeout.code
        except ServiceError as exc:
            return exc.code
        return None

    @abstractmethod
    async def aclose(self) -> None:
        """Close this event loop's HTTP client and its pooled connections (at shutdown, before the loop ends)."""

    def _timeout(self, what: str = "reply") -> LlmTimeout:
        return LlmTimeout(f"the LLM {what} stalled past LLM_TIMEOUT_SECS={self.timeout:g}", provider=self.provider)

    @abstractmethod
    async def _complete(self, messages: list[Message]) -> str: ...

    @abstractmethod
    def _stream(self, messages: list[Message]) -> AsyncGenerator[str, None]: ...

    @abstractmethod
    async def _embed(self, texts: list[str]) -> list[list[float]]: ...

    @abstractmethod
    async def _probe(self) -> None: ...


class OpenAIClient(LlmClient):
    """OpenAI chat completions and embeddings through the official SDK; OPENAI_BASE_URL for compatible servers."""

    provider = "openai"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._clients: _PerLoop[openai.AsyncOpenAI] = _PerLoop(self._make_client)

    @property
    def configured(self) -> bool:
        # Keyless compatible servers (vLLM, llama.cpp) take any placeholder key; no key at all is a config error.
        return bool(self.settings.openai_api_key)

    def not_configured_reason(self) -> str:
        return "LLM_PROVIDER=openai needs OPENAI_API_KEY (any placeholder for a keyless compatible server)"

    async def aclose(self) -> None:
        client = self._clients.pop()
        if client is not None:
            await client.close()

    def _make_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self.settings.openai_api_key,
            base_url=self.settings.openai_base_url or None,
            timeout=self.timeout,
            max_retries=self.settings.llm_max_retries,
        )

    async def _complete(self, messages: list[Message]) -> str:
        try:
            response = await self._clients.get().chat.completions.create(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                stream=False,
                temperature=_given(self.settings.llm_temperature),
                max_tokens=_given(self.settings.llm_max_tokens),
            )
            content = response.choices[0].message.content
        except Exception as exc:
            raise _map_openai(exc) from exc
        if not isinstance(content, str):
            raise LlmBadResponse("the LLM reply has no text content")
        return content

    async def _stream(self, messages: list[Message]) -> AsyncGenerator[str, None]:
        try:
            stream = await self._clients.get().chat.completions.create(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                stream=True,
                temperature=_given(self.settings.llm_temperature),
                max_tokens=_given(self.settings.llm_max_tokens),
            )
        except Exception as exc:
            raise _map_openai(exc) from exc
        try:
            async for event in stream:
                if not event.choices:
                    continue  # usage-only chunks
                piece = event.choices[0].delta.content
                if piece:
                    yield piece
        except Exception as exc:
            raise _map_openai(exc) from exc
        finally:
            await stream.close()

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        assert self.embedding_model is not None
        try:
            response = await self._clients.get().embeddings.create(
                model=self.embedding_model, input=texts, encoding_format="float"
            )
            ordered = sorted(response.data, key=lambda item: item.index)
            return [[float(x) for x in item.embedding] for item in ordered]
        except Exception as exc:
            raise _map_openai(exc) from exc

    async def _probe(self) -> None:
        try:
            await self._clients.get().models.list(timeout=PROBE_TIMEOUT_SECS)
        except openai.APIStatusError as exc:
            # Some compatible servers have no /models; an HTTP answer below 500 still proves they are up.
            if exc.status_code >= 500:
                raise _map_openai(exc) from exc
        except Exception as exc:
            raise _map_openai(exc) from exc


def _given(value: T | None) -> T | openai.Omit:
    """The SDK's marker for "leave this parameter out" in place of None."""
    return openai.omit if value is None else value


def _map_openai(exc: Exception) -> ServiceError:
    """Translate an SDK (or decoding) failure into the service's hierarchy."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return LlmTimeout("the LLM provider did not answer in time", provider="openai")
    if isinstance(exc, openai.APIConnectionError):
        return LlmUnavailable("cannot reach the LLM provider, or it dropped the connection", provider="openai")
    if isinstance(exc, openai.APIStatusError):
        logger.warning("llm refused", extra={"provider": "openai", "provider_status": exc.status_code})
        return LlmUnavailable(
            f"the LLM provider answered HTTP {exc.status_code}", provider="openai", provider_status=exc.status_code
        )
    if isinstance(
        exc, (ValueError, TypeError, KeyError, IndexError, AttributeError, openai.APIResponseValidationError)
    ):
        # json.JSONDecodeError is a ValueError; missing fields surface as the others.
        return LlmBadResponse("the LLM provider sent a reply that could not be read", provider="openai")
    if isinstance(exc, (httpx.TransportError, OSError)):
        return LlmUnavailable("cannot reach the LLM provider, or it dropped the connection", provider="openai")
    if isinstance(exc, openai.OpenAIError):
        return LlmUnavailable("the LLM provider call failed", provider="openai")
    logger.error("unexpected llm failure", extra={"provider": "openai", "error_type": type(exc).__name__})
    return LlmBadResponse("the LLM provider call failed unexpectedly", provider="openai")


class OllamaClient(LlmClient):
    """Ollama's HTTP API through httpx: `/api/chat` (NDJSON when streaming), `/api/embed`, `/api/tags`."""

    provider = "ollama"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.base_url = settings.ollama_base_url.rstrip("/")
        self._clients: _PerLoop[httpx.AsyncClient] = _PerLoop(self._make_client)

    async def aclose(self) -> None:
        client = self._clients.pop()
        if client is not None:
            await client.aclose()

    def _make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(self.timeout))

    def _body(self, messages: list[Message], stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.settings.llm_temperature is not None:
            options["temperature"] = self.settings.llm_temperature
        if self.settings.llm_max_tokens is not None:
            options["num_predict"] = self.settings.llm_max_tokens
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": stream}
        if options:
            body["options"] = options
        return body

    async def _complete(self, messages: list[Message]) -> str:
        try:
            response = await self._clients.get().post("/api/chat", json=self._body(messages, stream=False))
            _check_status(response)
            return _ollama_content(response.json(), final=True)
        except Exception as exc:
            raise _map_httpx(exc) from exc

    async def _stream(self, messages: list[Message]) -> AsyncGenerator[str, None]:
        try:
            async with self._clients.get().stream("POST", "/api/chat", json=self._body(messages, stream=True)) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _check_status(resp)
                done = False
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    piece = _ollama_content(item, final=False)
                    if piece:
                        yield piece
                    if item.get("done"):
                        done = True
                        break
                if not done:
                    raise LlmBadResponse("the LLM stream ended before its last message", provider="ollama")
        except Exception as exc:
            raise _map_httpx(exc) from exc

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        try:
            response = await self._clients.get().post(
                "/api/embed", json={"model": self.embedding_model, "input": texts}
            )
            _check_status(response)
            vectors = response.json()["embeddings"]
            return [[float(x) for x in vec] for vec in vectors]
        except Exception as exc:
            raise _map_httpx(exc) from exc

    async def _probe(self) -> None:
        try:
            response = await self._clients.get().get("/api/tags", timeout=PROBE_TIMEOUT_SECS)
            if response.status_code >= 500:
                _check_status(response)
        except Exception as exc:
            raise _map_httpx(exc) from exc


def _check_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = str(response.json().get("error", ""))[:200]
    except (ValueError, AttributeError):
        detail = ""
    # The provider's own words go to the log (operators need "model not found"), not to clients.
    logger.warning(
        "llm refused", extra={"provider": "ollama", "provider_status": response.status_code, "detail": detail}
    )
    raise LlmUnavailable(
        f"the LLM provider answered HTTP {response.status_code}",
        provider="ollama",
        provider_status=response.status_code,
    )


def _ollama_content(item: Any, *, final: bool) -> str:
    if not isinstance(item, dict):
        raise LlmBadResponse("the LLM provider sent a reply that could not be read", provider="ollama")
    if "error" in item:
        logger.warning("llm error", extra={"provider": "ollama", "detail": str(item["error"])[:200]})
        raise LlmUnavailable("the LLM provider reported an error mid-reply", provider="ollama")
    message = item.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or (final and not item.get("done", True)):
        raise LlmBadResponse("the LLM provider sent a reply without text", provider="ollama")
    return content


def _map_httpx(exc: Exception) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return LlmTimeout("the LLM provider did not answer in time", provider="ollama")
    if isinstance(exc, (httpx.TransportError, OSError)):
        return LlmUnavailable("cannot reach the LLM provider, or it dropped the connection", provider="ollama")
    if isinstance(exc, (ValueError, TypeError, KeyError, IndexError, AttributeError)):
        return LlmBadResponse("the LLM provider sent a reply that could not be read", provider="ollama")
    logger.error("unexpected llm failure", extra={"provider": "ollama", "error_type": type(exc).__name__})
    return LlmBadResponse("the LLM provider call failed unexpectedly", provider="ollama")


def make_llm(settings: Settings) -> LlmClient:
    """The client for LLM_PROVIDER."""
    if settings.llm_provider == "ollama":
        return OllamaClient(settings)
    return OpenAIClient(settings)
