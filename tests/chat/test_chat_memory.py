"""Conversation memory in real embedded Qdrant: history sent to the LLM, restarts, DELETE, failures, recall."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tests.fakes.llm_server import FakeLlmServer
from tests.support.chat import AppFactory, SettingsFactory
from tts_service.chat import ChatService
from tts_service.chat.memory import purge_expired
from tts_service.observability.metrics import get_metrics

PROVIDERS = ("openai", "ollama")


def history_sent(fake: FakeLlmServer) -> list[tuple[str, str]]:
    """(role, content) of the last chat request, without the system prompt."""
    messages = fake.chat_requests()[-1]["messages"]
    return [(m["role"], m["content"]) for m in messages if m["role"] != "system"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_turns_are_sent_back_in_order(provider: str, make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN a conversation of three turns
    client, _ = make_client(provider)
    fake_llm.script("Nice to meet you, Ada.", "Blue is a fine colour.", "Your name is Ada.")
    first = client.post("/chat", json={"message": "My name is Ada."}).json()
    conv = first["conversation_id"]
    client.post("/chat", json={"message": "My favourite colour is blue.", "conversation_id": conv})
    # WHEN the third message arrives
    third = client.post("/chat", json={"message": "What is my name?", "conversation_id": conv}).json()
    # THEN the LLM received both earlier turns, in order, before the new message
    assert third["memory"] == "ok"
    assert third["conversation_id"] == conv
    assert history_sent(fake_llm) == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "My favourite colour is blue."),
        ("assistant", "Blue is a fine colour."),
        ("user", "What is my name?"),
    ]
    # AND GET returns the stored turns
    stored = client.get(f"/conversations/{conv}").json()
    assert stored["turns"] == 3
    assert [(m["role"], m["content"], m["turn"]) for m in stored["messages"]][:2] == [
        ("user", "My name is Ada.", 0),
        ("assistant", "Nice to meet you, Ada.", 0),
    ]
    assert stored["messages"][-1]["content"] == "Your name is Ada."
    assert stored["messages"][0]["timestamp"].endswith("Z")


def test_only_the_last_n_turns_are_sent(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client(memory_turns=2)
    conv = "conv-last-n"
    for i in range(4):
        fake_llm.script(f"Reply {i}.")
        client.post("/chat", json={"message": f"Message {i}.", "conversation_id": conv})
    fake_llm.script("Last.")
    client.post("/chat", json={"message": "Message 4.", "conversation_id": conv})
    assert history_sent(fake_llm) == [
        ("user", "Message 2."),
        ("assistant", "Reply 2."),
        ("user", "Message 3."),
        ("assistant", "Reply 3."),
        ("user", "Message 4."),
    ]


def test_conversations_do_not_mix(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client()
    client.post("/chat", json={"message": "Secret one.", "conversation_id": "alice"})
    client.post("/chat", json={"message": "Hello.", "conversation_id": "bob"})
    assert history_sent(fake_llm) == [("user", "Hello.")]


def test_memory_survives_a_restart(
    make_settings: SettingsFactory, make_client: AppFactory, fake_llm: FakeLlmServer, services: list[ChatService]
) -> None:
    # GIVEN a turn stored by one service instance
    settings = make_settings()
    client, service = make_client(settings=settings)
    fake_llm.script("Noted: the code word is pelican.")
    client.post("/chat", json={"message": "The code word is pelican.", "conversation_id": "restart-1"})
    # WHEN the service stops (releasing the embedded store) and a new one starts on the same data path
    service.memory.close()
    client2, _ = make_client(settings=make_settings())
    client2.post("/chat", json={"message": "What is the code word?", "conversation_id": "restart-1"})
    # THEN the new instance sends the old turn to the LLM
    assert history_sent(fake_llm)[:2] == [
        ("user", "The code word is pelican."),
        ("assistant", "Noted: the code word is pelican."),
    ]
    assert (settings.qdrant_local_path / ".lock").exists()


def test_delete_erases(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN a stored conversation
    client, _ = make_client()
    client.post("/chat", json={"message": "Remember my phone number 555 1234.", "conversation_id": "purge-me"})
    client.post("/chat", json={"message": "Keep this too.", "conversation_id": "keep-me"})
    assert client.get("/conversations/purge-me").status_code == 200
    # WHEN it is deleted
    response = client.delete("/conversations/purge-me")
    # THEN its messages are gone, from GET and from what the LLM sees next time; others stay
    assert response.status_code == 200
    assert response.json() == {"conversation_id": "purge-me", "deleted": 2}
    missing = client.get("/conversations/purge-me")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "conversation_not_found"
    client.post("/chat", json={"message": "What is my number?", "conversation_id": "purge-me"})
    assert history_sent(fake_llm) == [("user", "What is my number?")]
    assert client.get("/conversations/keep-me").status_code == 200
    # AND deleting what is not there is a 404, as for GET
    gone = client.delete("/conversations/nothing-here")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "conversation_not_found"


def test_conversations_are_listed_most_recent_first(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN no conversation yet: an empty list, not an error
    client, _ = make_client()
    assert client.get("/conversations").json() == {"conversations": []}
    # AND then two conversations, the older one continued last
    client.post("/chat", json={"message": "First about apples.", "conversation_id": "apples"})
    client.post("/chat", json={"message": "First about pears.", "conversation_id": "pears"})
    client.post("/chat", json={"message": "More apples, " + "very " * 40 + "long.", "conversation_id": "apples"})
    # WHEN they are listed
    listed = client.get("/conversations").json()["conversations"]
    # THEN the latest active comes first, titled by its first message, with its turn count
    assert [c["conversation_id"] for c in listed] == ["apples", "pears"]
    assert listed[0]["title"] == "First about apples."
    assert listed[0]["turns"] == 2
    assert listed[1] == {**listed[1], "title": "First about pears.", "turns": 1}
    assert listed[0]["updated"] > listed[1]["updated"]
    assert listed[0]["updated"].endswith("Z")
    # AND a deleted conversation leaves the list
    client.delete("/conversations/apples")
    assert [c["conversation_id"] for c in client.get("/conversations").json()["conversations"]] == ["pears"]


def test_conversation_id_is_validated_on_paths(make_client: AppFactory) -> None:
    client, _ = make_client()
    response = client.get("/conversations/bad%20id")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_store_held_by_another_process_means_memory_unavailable(
    make_settings: SettingsFactory, make_client: AppFactory, fake_llm: FakeLlmServer
) -> None:
    # GIVEN the embedded store is open elsewhere (another worker holds its lock)
    settings = make_settings()
    settings.qdrant_local_path.mkdir(parents=True)
    holder = QdrantClient(path=str(settings.qdrant_local_path))
    try:
        client, _ = make_client(settings=settings)
        failures_before = get_metrics().value("tts_chat_memory_failures_total", op="recall")
        fake_llm.script("Still here.")
        # WHEN a message continues a conversation
        response = client.post("/chat", json={"message": "Hello?", "conversation_id": "locked"})
        # THEN the chat answers, without memory, and says so
        assert response.status_code == 200
        assert response.json()["reply"] == "Still here."
        assert response.json()["memory"] == "unavailable"
        assert response.headers["X-Memory"] == "unavailable"
        assert get_metrics().value("tts_chat_memory_failures_total", op="recall") == failures_before + 1
        # AND the conversation endpoints report the store as unavailable (503), never a false "not found"
        history = client.get("/conversations/locked")
        assert history.status_code == 503
        assert history.json()["error"]["code"] == "memory_unavailable"
        assert "another process" in history.json()["error"]["message"]
        # AND no client learns where the store is on disk, from the error or from /llm/provider
        assert str(settings.qdrant_local_path) not in history.text
        assert str(settings.data_dir) not in client.get("/llm/provider").text
    finally:
        holder.close()


def test_qdrant_server_down_means_memory_unavailable(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client, _ = make_client(qdrant_url=f"http://127.0.0.1:{port}", memory_timeout_secs=2.0)
    fake_llm.script("Answer without memory.")
    response = client.post("/chat", json={"message": "Hi", "conversation_id": "c1"})
    assert response.status_code == 200
    assert response.json() == {
        "reply": "Answer without memory.",
        "conversation_id": "c1",
        "conversation_url": "http://testserver/conversations/c1",
        "memory": "unavailable",
    }
    provider = client.get("/llm/provider")
    assert provider.json()["memory"] == {"enabled": True, "mode": "server", "collection": "conversations"}
    assert f":{port}" not in provider.text
    assert "127.0.0.1" not in provider.text


def test_on_lambda_an_http_qdrant_url_is_refused_unless_allowed(
    make_client: AppFactory, fake_llm: FakeLlmServer
) -> None:
    # GIVEN something listening where an http QDRANT_URL points, on Lambda
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client, _ = make_client(qdrant_url=url, aws_lambda_function_name="tts-chat", memory_timeout_secs=1.0)
        # WHEN a chat continues a conversation
        response = client.post("/chat", json={"message": "Hi", "conversation_id": "c-http"})
        # THEN it answers without memory, and never opened a connection to the store in clear
        assert response.status_code == 200
        assert response.json()["memory"] == "unavailable"
        with pytest.raises(BlockingIOError):
            listener.accept()
        refused = client.get("/conversations/c-http")
        assert refused.status_code == 503
        assert "https" in refused.json()["error"]["message"]
        assert url not in refused.text
        # AND with QDRANT_ALLOW_HTTP the operator may use http (a private network): the store is contacted
        allowed, _ = make_client(
            qdrant_url=url, aws_lambda_function_name="tts-chat", qdrant_allow_http=True, memory_timeout_secs=1.0
        )
        allowed.post("/chat", json={"message": "Hi", "conversation_id": "c-http"})
        conn, _ = listener.accept()
        conn.close()


def test_lambda_without_qdrant_url_has_no_memory(make_client: AppFactory, data_dir: Path) -> None:
    client, _ = make_client(aws_lambda_function_name="tts-chat")
    first = client.post("/chat", json={"message": "Hi", "conversation_id": "lam"})
    assert first.status_code == 200
    assert first.json()["memory"] == "unavailable"
    assert not (data_dir / "qdrant").exists()  # no private per-instance store was made


def test_without_embedder_no_vectors_are_stored(make_settings: SettingsFactory, make_client: AppFactory) -> None:
    settings = make_settings()
    client, service = make_client(settings=settings)
    client.post("/chat", json={"message": "Hello there.", "conversation_id": "novec"})
    service.memory.close()
    store = QdrantClient(path=str(settings.qdrant_local_path))
    try:
        assert store.get_collection("conversations").config.params.vectors == {}
        points, _ = store.scroll("conversations", with_vectors=True, limit=10)
        assert len(points) == 2
        assert all(not p.vector for p in points)
        assert {p.payload["role"] for p in points if p.payload} == {"user", "assistant"}
        assert {p.payload["conversation_id"] for p in points if p.payload} == {"novec"}
    finally:
        store.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_similar_older_turns_are_recalled(provider: str, make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN an embedder, only the last turn sent by order, and older turns on different topics
    client, _ = make_client(provider, embedding_model="fake-embed", memory_turns=1, memory_recall_k=1)
    conv = "recall"
    fake_llm.script("Your cat is called Whiskers.", "Paris is in France.", "Bread needs flour.")
    client.post("/chat", json={"message": "My cat is called Whiskers.", "conversation_id": conv})
    client.post("/chat", json={"message": "Where is Paris located?", "conversation_id": conv})
    client.post("/chat", json={"message": "How do I bake bread?", "conversation_id": conv})
    # WHEN a message resembles the oldest turn
    client.post("/chat", json={"message": "What is my cat called?", "conversation_id": conv})
    # THEN that turn is recalled (before the recent one), the unrelated middle turn is not
    sent = history_sent(fake_llm)
    assert sent == [
        ("user", "My cat is called Whiskers."),
        ("assistant", "Your cat is called Whiskers."),
        ("user", "How do I bake bread?"),
        ("assistant", "Bread needs flour."),
        ("user", "What is my cat called?"),
    ]
    assert fake_llm.embed_requests()[-1]["model"] == "fake-embed"


@pytest.mark.parametrize("fault", ["http_500", "hang"])
def test_embedder_failure_does_not_fail_chat(fault: str, make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    # GIVEN an embedder that fails while chat works
    client, _ = make_client(embedding_model="fake-embed", memory_timeout_secs=0.5)
    client.post("/chat", json={"message": "First.", "conversation_id": f"embfail-{fault}"})
    fake_llm.fault, fake_llm.fault_embeddings, fake_llm.fault_chat = fault, True, False
    fake_llm.script("Second reply.")
    # WHEN the conversation continues
    response = client.post("/chat", json={"message": "Second.", "conversation_id": f"embfail-{fault}"})
    # THEN the reply comes, with the recent turns (recall by order still works)
    assert response.status_code == 200
    assert response.json()["reply"] == "Second reply."
    assert history_sent(fake_llm)[0] == ("user", "First.")


def test_retention_expires_old_turns(
    make_settings: SettingsFactory, make_client: AppFactory, fake_llm: FakeLlmServer
) -> None:
    # GIVEN a retention of about 0.3 s
    settings = make_settings(memory_retention_days=0.3 / 86400)
    client, service = make_client(settings=settings)
    client.post("/chat", json={"message": "Old news.", "conversation_id": "ret"})
    time.sleep(0.5)
    # WHEN the conversation continues after the turns expired
    client.post("/chat", json={"message": "Fresh.", "conversation_id": "ret"})
    # THEN the expired turn is neither sent nor listed
    assert history_sent(fake_llm) == [("user", "Fresh.")]
    listed = client.get("/conversations/ret").json()["messages"]
    assert [m["content"] for m in listed if m["role"] == "user"] == ["Fresh."]
    # AND the scheduled purge deletes it from the store itself
    assert asyncio.run(purge_expired(service.memory)) == {"purged": 2, "memory": "ok"}
    service.memory.close()
    store = QdrantClient(path=str(settings.qdrant_local_path))
    try:
        points, _ = store.scroll("conversations", limit=10)
        assert sorted(p.payload["text"] for p in points if p.payload) == sorted(["Fresh.", fake_llm.default_reply])
    finally:
        store.close()


def test_memory_disabled(make_client: AppFactory, fake_llm: FakeLlmServer) -> None:
    client, _ = make_client(memory_enabled=False)
    client.post("/chat", json={"message": "One.", "conversation_id": "off"})
    response = client.post("/chat", json={"message": "Two.", "conversation_id": "off"})
    assert response.json()["memory"] == "disabled"
    assert history_sent(fake_llm) == [("user", "Two.")]
