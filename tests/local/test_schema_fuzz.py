"""Schemathesis against the shim's own OpenAPI schema: every HTTP operation, valid and invalid input.

No answer may be a 5xx but the documented `503 llm_not_configured` of the chat routes (the shim runs with no LLM
key), and every answer must be one the schema documents: its status, content type and body.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.process import Usage, usage
from tests.support.shim import Shim, running_shim

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

EXAMPLES = 120
"""Generated cases per operation and mode (operations without inputs have only one case to give)."""
SPOKEN_EXAMPLES = 60
"""More cases per synthesizing operation with the voice left to its default, so most of them are spoken."""
MIN_CASES = 1000
LLM_ROUTES = ("/chat", "/voice-chat")
SPOKEN = ("/tts", "/tts/stream", "/v1/audio/speech")


def with_default_voice(case: Case[Any]) -> Case[Any]:
    """Generated voice names are almost never registered ones (404): speak with the defaults instead."""
    if isinstance(case.body, dict):
        for field in ("voice", "language", "speaker"):
            case.body.pop(field, None)
        if case.operation.path == "/v1/audio/speech":
            case.body.update(model="tts-1", voice="alloy")
    return case


@pytest.fixture(scope="module")
def shim(logs_dir: Path) -> Iterator[Shim]:
    env = {"DATA_DIR": str(logs_dir / "data"), "OPENAI_API_KEY": "", "LLM_PROVIDER": "openai"}
    with running_shim(env, logs_dir / "fuzz-shim.log") as running:
        yield running


def server_error(case: Case[Any], status: int, content: bytes) -> str | None:
    """Why a 5xx is not allowed, or None for the one that is documented."""
    if status < 500:
        return None
    body = content[:2000].decode("utf-8", "replace")
    if status == 503 and case.operation.path in LLM_ROUTES and '"llm_not_configured"' in body:
        return None
    return f"{status} on {case.operation.label}: {body[:300]}"


def test_every_operation_answers_generated_requests_as_documented(shim: Shim, figures: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_url(f"{shim.base}/openapi.json")
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    before: Usage = usage(shim.proc.pid)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the schema cannot describe
        operations.append(result.ok())
    for operation in operations:
        has_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
        passes = [(GenerationMode.POSITIVE, False, EXAMPLES)]
        if has_input:
            passes.append((GenerationMode.NEGATIVE, False, EXAMPLES))
        if operation.path in SPOKEN:
            passes.append((GenerationMode.POSITIVE, True, SPOKEN_EXAMPLES))
        for mode, default_voice, examples in passes:
            strategy = operation.as_strategy(generation_mode=mode)
            if default_voice:
                strategy = strategy.map(with_default_voice)

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: Case[Any]) -> None:
                response = case.call(base_url=shim.base, timeout=120)
                statuses[f"{response.status_code}"] += 1
                problem = server_error(case, response.status_code, response.content)
                assert problem is None, problem
                case.validate_response(
                    response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
                )

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing in this operation can be made invalid
            except Exception as exc:  # collected, so one failing operation does not hide another
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    cases = sum(statuses.values())
    after = usage(shim.proc.pid)
    figures["schema_fuzz"] = {
        "operations": len(operations),
        "cases": cases,
        "statuses": dict(sorted(statuses.items())),
        "seconds": round(time.monotonic() - started, 1),
        "rss_mb": [round(before.rss_mb), round(after.rss_mb)],
    }
    assert not failures, "\n\n".join(failures)
    assert cases >= MIN_CASES
    assert {op.path for op in operations} >= {"/tts", "/tts/stream", "/v1/audio/speech", "/chat", "/voice-chat"}
    assert shim.proc.poll() is None, "the shim is still up"
