// Stream: WS /ws/tts, audio played as it arrives (gapless Web Audio), first audio and chunks shown, cancel.

import { openSocket, showError, socketError } from "./api.js";
import { PcmPlayer } from "./audio.js";
import { drawTimeline } from "./draw.js";

const $ = (id) => document.getElementById(id);

export function initStream() {
  const form = $("stream-form");
  const go = $("stream-go");
  const cancel = $("stream-cancel");
  const error = $("stream-error");
  const state = $("stream-state");
  const ttfa = $("stream-ttfa");
  const count = $("stream-chunks");
  const received = $("stream-seconds");
  const timeline = $("stream-timeline");
  const speed = $("stream-speed");
  const player = new PcmPlayer();
  let ws = null;
  let chunks = [];
  let firstMs = null;

  speed.addEventListener("input", () => {
    $("stream-speed-out").textContent = `${Number(speed.value).toFixed(2)}×`;
  });
  drawTimeline(timeline, [], null);

  function setState(text) {
    state.textContent = text;
    state.dataset.state = text.split(/[ :]/)[0];
  }

  function finish(text) {
    setState(text);
    go.disabled = false;
    cancel.disabled = true;
    if (ws) {
      ws.close();
      ws = null;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    go.disabled = true;
    chunks = [];
    firstMs = null;
    ttfa.textContent = "–";
    delete ttfa.dataset.ms;
    count.textContent = "0";
    received.textContent = "0.0 s";
    drawTimeline(timeline, chunks, null);
    setState("connecting");
    let rate = 22050;
    let sentAt = 0;
    let audioMs = 0;
    try {
      await player.begin(rate); // within the click: browsers allow audio to start here
      ws = await openSocket("/ws/tts");
    } catch (err) {
      showError(error, err);
      finish("failed");
      return;
    }
    const socket = ws;
    socket.addEventListener("message", (message) => {
      if (message.data instanceof ArrayBuffer) {
        const now = performance.now() - sentAt;
        if (firstMs === null) {
          firstMs = now;
          ttfa.textContent = `${Math.round(now)} ms`;
          ttfa.dataset.ms = String(Math.round(now));
        }
        const ms = (message.data.byteLength / 2 / rate) * 1000;
        chunks.push({ atMs: now, audioStartMs: audioMs, audioMs: ms });
        audioMs += ms;
        player.push(message.data);
        received.dataset.scheduled = player.scheduled.toFixed(3);
        count.textContent = String(chunks.length);
        received.textContent = `${(audioMs / 1000).toFixed(1)} s`;
        drawTimeline(timeline, chunks, firstMs);
        return;
      }
      const msg = JSON.parse(message.data);
      if (msg.type === "start") {
        rate = msg.sample_rate;
        player.rate = rate;
        setState(`streaming at ${rate} Hz`);
      } else if (msg.type === "end") {
        // A gap: a chunk that came after the audio before it had finished playing (the network or server lagged).
        const gaps = player.underruns === 0 ? "played without a gap" : `${player.underruns} gap${player.underruns === 1 ? "" : "s"}`;
        finish(msg.cancelled ? "cancelled" : `done: ${msg.chunks} chunks, ${(msg.duration_ms / 1000).toFixed(2)} s, ${gaps}`);
      } else if (msg.type === "error") {
        showError(error, socketError(msg));
        if (msg.ends_stream) finish("failed");
      }
    });
    socket.addEventListener("close", (event) => {
      if (ws === socket) {
        showError(error, socketError({ code: "closed", message: `the connection closed (${event.code}) before the stream ended` }));
        finish("failed");
      }
    });
    sentAt = performance.now();
    const request = { type: "speak", text: $("stream-text").value, voice: $("stream-voice").value, speed: Number(speed.value), encoding: "binary" };
    socket.send(JSON.stringify(request));
    cancel.disabled = false;
    setState("waiting for first audio");
  });

  cancel.addEventListener("click", () => {
    player.stop();
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "cancel" }));
      setState("cancelling");
    }
    cancel.disabled = true;
  });
}
