"""The router registry: each HTTP Lambda serves its share, the local shim all of them."""

from __future__ import annotations

import pytest

from tts_service.api import chat, health, openai_compat, stream, tts, voices
from tts_service.routes import FUNCTIONS, ROUTERS, routers


def test_every_entry_names_a_router() -> None:
    assert len(routers()) == len(ROUTERS) == len({id(router) for router in routers()})


def test_each_function_serves_its_routers_and_health() -> None:
    assert routers("tts") == (health.router, tts.router, openai_compat.router)
    assert voices.router in routers("voices")
    assert chat.router in routers("chat")
    for function in FUNCTIONS:
        assert health.router in routers(function)


def test_the_shim_serves_the_union_and_what_lambda_cannot() -> None:
    served = {id(router) for function in FUNCTIONS for router in routers(function)}
    shim = routers()
    assert served < {id(router) for router in shim}
    assert stream.router in shim
    assert chat.ws_router in shim
    assert all(stream.router not in routers(function) for function in FUNCTIONS)


def test_an_unknown_function_is_refused() -> None:
    with pytest.raises(ValueError, match="stream"):
        routers("stream")
