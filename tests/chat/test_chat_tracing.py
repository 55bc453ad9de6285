"""Chat traced: the LLM call and the Qdrant operations are child spans of the request, without any text."""

from __future__ import annotations

import json

from tests.fakes.llm_server import FakeLlmServer
from tests.support.chat import AppFactory
from tests.support.otlp import OtlpReceiver
from tts_service.observability import tracing


def test_llm_and_qdrant_calls_are_children_of_the_chat_request(
    make_client: AppFactory, fake_llm: FakeLlmServer, otlp: OtlpReceiver
) -> None:
    # GIVEN chat with the embedded Qdrant store and the fake LLM on loopback
    client, _ = make_client(llm_timeout_secs=10.0)  # the first OpenAI client of a process takes a while
    fake_llm.script("A private reply.")
    # WHEN a message is answered
    answer = client.post("/chat", json={"message": "My private question", "conversation_id": "t-1"})
    assert answer.status_code == 200, answer.text
    tracing.flush()
    # THEN the collector sees the request, the LLM call and the store's operations in one trace
    wanted = {"POST /chat", "llm.chat", "qdrant.recall", "qdrant.store"}
    spans = otlp.wait_for(lambda got: wanted <= {s.name for s in got})
    named = {s.name: s for s in spans if s.name in wanted}
    server = named["POST /chat"]
    assert {s.trace_id for s in named.values()} == {server.trace_id}
    for name in ("llm.chat", "qdrant.recall", "qdrant.store"):
        assert named[name].parent_span_id == server.span_id, name
    llm = named["llm.chat"].attributes
    assert llm["gen_ai.system"] == "openai"
    assert llm["gen_ai.request.model"] == "fake-model"
    assert llm["tts.llm.outcome"] == "ok"
    store = named["qdrant.store"].attributes
    assert store["db.system"] == "qdrant"
    assert store["db.operation"] == "store"
    # AND no message, reply or conversation id is in any span
    dumped = json.dumps([s.attributes for s in spans])
    assert "private" not in dumped
    assert "t-1" not in dumped
