"""Each tab of the console in Debian's chromium against the running shim: speech that plays and downloads, a
stream whose first audio and chunks are shown, a chat with streamed tokens and speech over the loopback fake LLM,
live server charts, visible errors, keys kept in session storage with WebSocket tickets, phone width, keyboard.

Every test also asserts the page logged no error and asked for nothing outside the shim's origin."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.fakes.llm_server import FakeLlmServer
from tests.support.console import Console, console_page, shim_log
from tests.support.decode import assert_same_speech, decode
from tests.support.shim import Shim, running_shim

pytestmark = pytest.mark.browser

SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."
# Seconds of speech per word this voice may take at speed 1 (tests/support/audio.py uses the same bounds).
MIN_SECONDS_PER_WORD, MAX_SECONDS_PER_WORD = 0.15, 0.8
FORMATS = ("wav", "mp3", "opus", "aac", "flac", "pcm", "mulaw", "alaw")
SLOW = 60_000  # ms: a synthesis on two busy cores


def voices_loaded(page: Page) -> None:
    expect(page.locator("#speak-voice option")).not_to_have_count(0)


def test_speak_plays_draws_and_downloads_every_format(console: Console, tmp_path: Path) -> None:
    # GIVEN the console on the Speak tab
    page = console.open("speak")
    voices_loaded(page)
    expect(page.locator("#speak-voice optgroup")).to_have_attribute("label", re.compile(r"English.*en_US"))
    expect(page.locator("#speak-voice option").first).to_contain_text("medium")
    page.fill("#speak-text", SENTENCE)
    expect(page.locator("#speak-count")).to_have_text(f"{len(SENTENCE)} / 5000 characters")

    # WHEN Speak is pressed
    page.click("#speak-go")

    # THEN the <audio> element gets a playable WAV whose duration fits the text and matches the API's
    page.wait_for_function("() => document.getElementById('speak-audio').duration > 0", timeout=SLOW)
    audio = page.locator("#speak-audio")
    assert audio.evaluate("a => a.src").startswith("blob:")
    duration = audio.evaluate("a => a.duration")
    words = len(SENTENCE.split())
    assert words * MIN_SECONDS_PER_WORD <= duration <= words * MAX_SECONDS_PER_WORD + 0.8
    assert abs(duration - int(audio.get_attribute("data-duration-ms") or 0) / 1000) < 0.05
    # AND it really plays: the media clock moves
    audio.evaluate("a => { a.currentTime = 0; return a.play(); }")
    page.wait_for_function("() => document.getElementById('speak-audio').currentTime > 0.3", timeout=10_000)
    audio.evaluate("a => a.pause()")
    # AND the waveform and the API's mel spectrogram are drawn (many distinct colours, not a blank canvas)
    for canvas in ("#speak-wave", "#speak-spec"):
        colours = page.locator(canvas).evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; const s = new Set();
                      for (let i = 0; i < d.length; i += 4 * 97) s.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
                      return s.size; }"""
        )
        assert colours >= (2 if canvas == "#speak-wave" else 20), canvas
    expect(page.locator("#speak-meta")).to_contain_text("s of speech · 22050 Hz · en_US-joe-medium")
    console.screenshot("speak")

    # AND every format downloads as that speech (decoded independently)
    for fmt in FORMATS:
        page.select_option("#speak-format", fmt)
        with page.expect_download(timeout=SLOW) as info:
            page.click("#speak-download")
        download = info.value
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        rate = re.search(r"-(\d+)hz\.pcm$", saved.name)
        sample_rate = int(rate.group(1)) if rate else 8000 if fmt in ("mulaw", "alaw") else None
        assert_same_speech(decode(fmt, saved.read_bytes(), sample_rate), duration, tolerance=0.06)
    expect(page.locator("#speak-status")).to_contain_text("Downloaded alaw")
    console.assert_clean()


def test_stream_reports_first_audio_and_chunks_then_cancels(console: Console) -> None:
    # GIVEN the Stream tab with its three-sentence default text
    page = console.open("stream")
    voices_loaded(page)
    # WHEN it streams
    page.click("#stream-go")
    # THEN first audio is reported, chunks arrive, and the stream ends with as many chunks as were counted
    expect(page.locator("#stream-state")).to_have_text(re.compile(r"^done: \d+ chunks"), timeout=SLOW)
    ttfa = int(page.locator("#stream-ttfa").get_attribute("data-ms") or -1)
    chunks = int(page.locator("#stream-chunks").inner_text())
    assert chunks >= 3
    expect(page.locator("#stream-state")).to_have_text(re.compile(rf"^done: {chunks} chunks, [0-9.]+ s"))
    state = page.locator("#stream-state").inner_text()
    total = float(re.findall(r"chunks, ([0-9.]+) s", state)[0])
    assert 0 < ttfa < total * 1000
    assert float(page.locator("#stream-seconds").inner_text().split()[0]) == pytest.approx(total, abs=0.06)
    # AND every chunk was handed to Web Audio, back to back: as much audio scheduled as received
    scheduled = float(page.locator("#stream-seconds").get_attribute("data-scheduled") or 0)
    assert scheduled == pytest.approx(total, abs=0.06)
    assert re.search(r", (played without a gap|\d+ gaps?)$", state)
    console.screenshot("stream")

    # AND a second stream, cancelled as soon as its first chunk shows, ends early and says so. The click comes from
    # the page itself: two workers synthesize speech ~15x faster than real time, so Playwright's polling alone could
    # let the whole text arrive before the cancel does.
    sentences = 40
    page.fill("#stream-text", " ".join(f"Sentence number {i} is here to make this long." for i in range(sentences)))
    page.evaluate(
        """() => {
          const chunks = document.getElementById("stream-chunks");
          const observer = new MutationObserver(() => {
            if (chunks.textContent !== "0") { observer.disconnect(); document.getElementById("stream-cancel").click(); }
          });
          observer.observe(chunks, { childList: true, characterData: true, subtree: true });
        }"""
    )
    page.click("#stream-go")
    expect(page.locator("#stream-state")).to_have_text("cancelled", timeout=SLOW)
    # each sentence speaks for about two seconds: a cancelled stream delivers well under half of them
    assert 0 < float(page.locator("#stream-seconds").inner_text().split()[0]) < sentences * 2.0 / 2
    expect(page.locator("#stream-go")).to_be_enabled()
    console.assert_clean()


def test_chat_streams_tokens_and_speech_barges_in_and_deletes(console: Console, fake_llm: FakeLlmServer) -> None:
    # GIVEN the Chat tab and an LLM that writes token by token
    fake_llm.token_delay = 0.02
    fake_llm.script("Sure thing. Apples come in red, green and yellow.")
    page = console.open("chat")
    expect(page.locator("#chat-provider")).to_contain_text("openai · fake-model · available")

    # WHEN a message is sent with Enter
    page.fill("#chat-input", "Tell me about apples.")
    page.press("#chat-input", "Enter")

    # THEN the reply arrives token by token and is spoken
    reply = page.locator("#chat-log .msg.assistant").last
    expect(reply).to_have_attribute("data-done", "complete", timeout=SLOW)
    expect(reply.locator(".body")).to_have_text("Sure thing. Apples come in red, green and yellow.")
    assert int(reply.get_attribute("data-tokens") or 0) >= 8
    assert int(reply.get_attribute("data-audio-chunks") or 0) >= 2
    assert reply.get_attribute("data-memory") == "ok"
    # AND the conversation is listed under its first message
    listed = page.locator("#chat-convs li")
    expect(listed).to_have_count(1)
    expect(listed.locator(".conv-open")).to_have_text("Tell me about apples.")
    conversation_id = listed.get_attribute("data-id")

    # WHEN the next reply is interrupted by typing (barge-in)
    fake_llm.token_delay = 0.25
    fake_llm.script("This reply is long and slow, so it will be interrupted well before it is finished speaking.")
    page.fill("#chat-input", "And pears?")
    page.press("#chat-input", "Enter")
    second = page.locator("#chat-log .msg.assistant").nth(1)
    expect(second).to_have_attribute("data-tokens", re.compile(r"^[1-9]"), timeout=SLOW)
    page.locator("#chat-input").press_sequentially("W")
    # THEN it stops, marked interrupted, before the LLM finished writing
    expect(second).to_have_attribute("data-done", "cancelled", timeout=SLOW)
    assert "finished speaking" not in second.locator(".body").inner_text()
    console.screenshot("chat")

    # WHEN the conversation is deleted from the list
    page.click("#chat-convs li .conv-delete")
    # THEN it leaves the list and the server has it no more
    expect(listed).to_have_count(0)
    expect(page.locator("#chat-convs-empty")).to_be_visible()
    gone = httpx.get(f"{console.origin}/conversations/{conversation_id}")
    assert gone.status_code == 404
    console.assert_clean()


def test_server_tab_shows_health_voices_and_live_charts(console: Console) -> None:
    # GIVEN some traffic: a synthesis, so there is a real-time factor to chart
    httpx.post(f"{console.origin}/tts", json={"text": "Numbers for the charts."}, timeout=60)
    page = console.open("server")
    # THEN liveness, readiness, the LLM and the voices are shown
    expect(page.locator("#server-health")).to_have_attribute("data-status", "ok")
    expect(page.locator("#server-ready")).to_contain_text("ready · default voice en_US-joe-medium")
    expect(page.locator("#server-llm")).to_contain_text("openai · fake-model")
    expect(page.locator("#server-voices tbody tr")).to_have_count(1)
    expect(page.locator("#server-voices tbody tr")).to_contain_text("medium")
    # AND the charts move with requests made meanwhile
    for _ in range(3):
        httpx.get(f"{console.origin}/voices", timeout=10)
    page.wait_for_function("() => Number(document.getElementById('server-rate').dataset.value) > 0", timeout=20_000)
    # AND a synthesis made while the tab is open shows as the latest real-time factor
    httpx.post(f"{console.origin}/tts", json={"text": "A fresh sentence while the charts run."}, timeout=60)
    expect(page.locator("#server-rtf")).to_have_text(re.compile(r"^latest \d+\.\d{3}$"), timeout=20_000)
    assert 0 < float(page.locator("#server-rtf").get_attribute("data-value") or 0) < 10
    expect(page.locator("#server-latency")).to_contain_text(re.compile(r"mean \d+ ms"))
    expect(page.locator("#server-queue")).to_contain_text("synthesis slots in use")
    console.screenshot("server")
    console.assert_clean()


def test_api_errors_are_visible_and_specific(console: Console, fake_llm: FakeLlmServer) -> None:
    # GIVEN a voice list that went stale (the voice was removed from the server after the page loaded it)
    page = console.open("speak")
    voices_loaded(page)
    page.locator("#speak-voice option").first.evaluate("o => { o.value = 'en_US-removed-medium'; }")
    page.locator("#speak-voice").evaluate("s => { s.selectedIndex = 0; }")
    # WHEN Speak is pressed, THEN the refusal is shown by name, and the list is reloaded
    page.click("#speak-go")
    error = page.locator("#speak-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-code", "voice_not_found")
    expect(error).to_contain_text("Voice not found")
    expect(page.locator("#speak-voice")).to_have_value("en_US-joe-medium")
    console.screenshot("error-voice")
    # AND an LLM failing mid-chat is shown as such
    fake_llm.fault = "http_500"
    page.click("#tab-chat")
    page.fill("#chat-input", "Hello?")
    page.press("#chat-input", "Enter")
    chat_error = page.locator("#chat-error")
    expect(chat_error).to_have_attribute("data-code", "llm_unavailable", timeout=SLOW)
    expect(chat_error).to_contain_text("The LLM did not answer")
    console.screenshot("error-llm")
    # The browser's own report of the refused request is the only error the page logged.
    assert console.watch.errors == [
        "console: Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]
    console.watch.errors.clear()
    console.assert_clean()


KEY = "k-console-browser-7a51"


@pytest.fixture(scope="module")
def keyed_shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    """A shim that needs keys, allows 20 requests a minute, admits one synthesis at a time, and has no LLM key."""
    env = {
        "API_KEYS": KEY,
        "RATE_LIMIT_PER_MINUTE": "20",
        "SYNTH_WORKERS": "1",
        "SYNTH_QUEUE_SIZE": "0",
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "",
        "DATA_DIR": str(tmp_path_factory.mktemp("keyed-data")),
    }
    with running_shim(env, log_path=shim_log("keyed-shim")) as running:
        yield running


def test_keys_stay_in_session_storage_and_websockets_use_tickets(browser: Browser, keyed_shim: Shim) -> None:
    with console_page(browser, keyed_shim.base) as console:
        # GIVEN a server that needs a key: the page asks for one
        page = console.open("speak")
        expect(page.locator("#key-form")).to_be_visible()
        expect(page.locator("#key-reason")).to_have_text("This server requires an API key.")
        console.screenshot("key-prompt")
        # WHEN it is entered
        page.fill("#key-input", KEY)
        page.press("#key-input", "Enter")
        # THEN the voices load, the key is in this tab's session storage only
        voices_loaded(page)
        expect(page.locator("#key-form")).to_be_hidden()
        assert page.evaluate("() => sessionStorage.getItem('tts-console-api-key')") == KEY
        assert page.evaluate("() => localStorage.length") == 0
        assert page.context.cookies() == []
        # AND a stream authenticates with a ticket, never with the key in a URL
        page.click("#tab-stream")
        page.fill("#stream-text", "Tickets open the socket.")
        page.click("#stream-go")
        expect(page.locator("#stream-state")).to_have_text(re.compile(r"^done: "), timeout=SLOW)
        assert any(u.startswith(keyed_shim.base.replace("http", "ws") + "/ws/tts") for u in console.watch.urls)
        assert not [u for u in console.watch.urls if KEY in u]
        # AND chat says plainly that no LLM is configured
        page.click("#tab-chat")
        expect(page.locator("#chat-error")).to_have_attribute("data-code", "llm_not_configured")
        expect(page.locator("#chat-error")).to_contain_text("no LLM is configured on the server")
        # AND while a long stream holds the only synthesis slot, Speak is told the server is busy
        page.click("#tab-stream")
        page.fill("#stream-text", " ".join(f"Sentence number {i} keeps the only worker busy." for i in range(12)))
        page.click("#stream-go")
        expect(page.locator("#stream-chunks")).not_to_have_text("0", timeout=SLOW)
        page.click("#tab-speak")
        page.fill("#speak-text", "Is anyone free?")
        page.click("#speak-go")
        error = page.locator("#speak-error")
        expect(error).to_have_attribute("data-code", "busy", timeout=SLOW)
        expect(error).to_contain_text(re.compile(r"The server is busy: .* Try again in \d+ seconds?\."))
        console.screenshot("error-busy")
        page.click("#tab-stream")
        page.click("#stream-cancel")
        expect(page.locator("#stream-state")).to_have_text("cancelled", timeout=SLOW)
        # AND past the rate limit, the message says when to try again
        page.click("#tab-speak")
        page.fill("#speak-text", "Again.")
        for _ in range(20):
            page.click("#speak-go")
            expect(page.locator("#speak-go")).to_be_enabled(timeout=SLOW)
            # (the cancelled stream's last sentence may still hold the worker for a moment: busy, then free)
            if error.is_visible() and error.get_attribute("data-code") == "rate_limited":
                break
        expect(error).to_have_attribute("data-code", "rate_limited")
        expect(error).to_contain_text(re.compile(r"Rate limited: .* Try again in \d+ seconds?\."))
        console.screenshot("error-rate-limited")
        # The refusals (401 before the key, 503 busy, 429 at the end) are the browser's reports of failed requests.
        reports = {re.sub(r"status of (\d+) .*", r"\1", e) for e in console.watch.errors}
        assert reports == {
            f"console: Failed to load resource: the server responded with a {status}" for status in (401, 503, 429)
        }, console.watch.errors
        console.watch.errors.clear()
        console.assert_clean()


def test_phone_width_and_keyboard(browser: Browser, shim: Shim) -> None:
    with console_page(browser, shim.base, viewport={"width": 390, "height": 844}) as console:
        page = console.open("speak")
        voices_loaded(page)
        # Every control has a name a screen reader can say
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')].filter(el => {
                 const label = el.labels && el.labels.length ? el.labels[0].textContent : '';
                 return !(label.trim() || el.getAttribute('aria-label') || el.textContent.trim());
               }).map(el => el.id || el.outerHTML.slice(0, 60))"""
        )
        assert unnamed == []
        # Tabs by keyboard: arrows move the selection and the focus; Ctrl+Enter speaks from the text box
        page.focus("#tab-speak")
        for key, tab in (("ArrowRight", "stream"), ("ArrowRight", "chat"), ("End", "server"), ("Home", "speak")):
            page.keyboard.press(key)
            expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", "true")
            expect(page.locator(f"#tab-{tab}")).to_be_focused()
            expect(page.locator(f"#panel-{tab}")).to_be_visible()
        page.focus("#speak-text")
        page.keyboard.press("Control+Enter")
        page.wait_for_function("() => document.getElementById('speak-audio').duration > 0", timeout=SLOW)
        # Nothing is wider than the phone, on any tab
        for tab in ("speak", "stream", "chat", "server"):
            page.click(f"#tab-{tab}")
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 390, f"{tab}: the page is {width} px wide"
            console.screenshot(f"phone-{tab}")
        console.assert_clean()


def test_words_highlight_as_spoken_once_the_api_offers_timings(console: Console) -> None:
    # GIVEN a server whose schema offers `timestamps` on POST /tts and whose answer carries `words`, in the shape
    # documented for it ({word, start_ms, end_ms}); until the API has them, the page's requests are answered by the
    # real server and the timings added here, spread evenly over the real duration
    page = console.open("speak")
    asked: list[dict[str, object]] = []

    def schema(route: Route) -> None:
        spec = route.fetch().json()
        spec["components"]["schemas"]["TtsRequest"]["properties"]["timestamps"] = {"enum": ["word"]}
        route.fulfill(json=spec)

    def tts(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        asked.append(body)
        answer = route.fetch(post_data=json.dumps({k: v for k, v in body.items() if k != "timestamps"})).json()
        words = str(body["text"]).split()
        step = answer["duration_ms"] / len(words)
        answer["words"] = [
            {"word": w, "start_ms": round(i * step), "end_ms": round((i + 1) * step)} for i, w in enumerate(words)
        ]
        route.fulfill(json=answer)

    page.route("**/openapi.json", schema)
    page.route("**/tts", tts)
    voices_loaded(page)
    page.fill("#speak-text", SENTENCE)
    # WHEN it speaks
    page.click("#speak-go")
    page.wait_for_function("() => document.getElementById('speak-audio').duration > 0", timeout=SLOW)
    # THEN it asked for word timings, shows the words, and highlights the one under the playhead
    assert asked[-1]["timestamps"] == "word"
    words = page.locator("#speak-words span")
    expect(words).to_have_count(len(SENTENCE.split()))
    audio = page.locator("#speak-audio")
    audio.evaluate("a => a.pause()")
    duration = audio.evaluate("a => a.duration")
    for index in (2, 7):
        middle = (index + 0.5) * duration / len(SENTENCE.split())
        audio.evaluate("(a, t) => { a.currentTime = t; }", middle)
        expect(words.nth(index)).to_have_class("spoken")
        expect(words.nth(index)).to_have_attribute("aria-current", "true")
        expect(page.locator("#speak-words span.spoken")).to_have_count(1)
    console.screenshot("speak-words")
    console.assert_clean()
