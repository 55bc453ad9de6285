"""The types of chat's fixtures (tests/chat/conftest.py): settings pointing at the fake LLM, an app built on them."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tts_service.chat import ChatService
from tts_service.config import Settings

SettingsFactory = Callable[..., Settings]
"""`make_settings(provider="openai", **overrides)` -> settings for a provider talking to the fake LLM."""

AppFactory = Callable[..., tuple[TestClient, ChatService]]
"""`make_client(provider="openai", settings=None, api_keys=None, **overrides)` -> (client, its chat service)."""
