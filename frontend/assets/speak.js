// Speak: POST /tts with the spectrogram, played in an <audio controls>, drawn, downloadable in every format.

import { getJson, request, showError, ApiError } from "./api.js";
import { base64ToBytes, wavSamples } from "./audio.js";
import { Waveform, drawSpectrogram } from "./draw.js";
import { fillSpeakers, loadVoices } from "./voices.js";

const $ = (id) => document.getElementById(id);

const EXTENSIONS = { wav: "wav", mp3: "mp3", opus: "ogg", aac: "aac", flac: "flac", pcm: "pcm", mulaw: "ulaw", alaw: "alaw" };

let wordTimings = null; // null: not known yet; true/false once the API's schema was read

/**
 * Word timings are newer than the rest of the API: ask for them only when the server's OpenAPI schema has the
 * `timestamps` field on POST /tts (an older server would refuse an unknown field).
 */
async function supportsWordTimings() {
  if (wordTimings !== null) return wordTimings;
  try {
    const spec = await getJson("/openapi.json");
    const ref = spec.paths["/tts"].post.requestBody.content["application/json"].schema.$ref;
    const schema = spec.components.schemas[ref.split("/").pop()];
    wordTimings = Boolean(schema && schema.properties && schema.properties.timestamps);
  } catch {
    wordTimings = false;
  }
  return wordTimings;
}

export function initSpeak() {
  const form = $("speak-form");
  const text = $("speak-text");
  const count = $("speak-count");
  const voice = $("speak-voice");
  const speaker = $("speak-speaker");
  const speed = $("speak-speed");
  const noise = $("speak-noise");
  const noiseW = $("speak-noisew");
  const audio = $("speak-audio");
  const error = $("speak-error");
  const status = $("speak-status");
  const go = $("speak-go");
  const waveform = new Waveform($("speak-wave"));
  let objectUrl = null;
  let words = [];
  let lastBody = null;
  let frame = 0;

  const updateCount = () => {
    count.textContent = `${text.value.length} / ${text.maxLength} characters`;
  };
  text.addEventListener("input", updateCount);
  updateCount();

  speed.addEventListener("input", () => {
    $("speak-speed-out").textContent = `${Number(speed.value).toFixed(2)}×`;
  });
  // The noise scales are the voice's own until moved: only then are they sent.
  for (const [input, out] of [
    [noise, "speak-noise-out"],
    [noiseW, "speak-noisew-out"],
  ]) {
    input.addEventListener("input", () => {
      input.dataset.changed = "1";
      $(out).textContent = Number(input.value).toFixed(2);
    });
  }
  $("speak-reset").addEventListener("click", () => {
    noise.value = "0.667";
    noiseW.value = "0.8";
    for (const [input, out] of [
      [noise, "speak-noise-out"],
      [noiseW, "speak-noisew-out"],
    ]) {
      delete input.dataset.changed;
      $(out).textContent = "voice default";
    }
  });
  voice.addEventListener("change", () => fillSpeakers(speaker, document.querySelector("#panel-speak .speaker-row"), voice.value));

  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  function body() {
    const b = { text: text.value, voice: voice.value, speed: Number(speed.value) };
    if (speaker.options.length) b.speaker = Number(speaker.value);
    if (noise.dataset.changed) b.noise_scale = Number(noise.value);
    if (noiseW.dataset.changed) b.noise_w = Number(noiseW.value);
    return b;
  }

  async function failed(err) {
    showError(error, err);
    status.textContent = "";
    if (err instanceof ApiError && err.code === "voice_not_found") {
      // The server's voices changed since the list was loaded: show the current ones.
      try {
        await loadVoices();
      } catch {
        // the error above already says what went wrong
      }
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    go.disabled = true;
    status.textContent = "Synthesizing…";
    const started = performance.now();
    try {
      const request_ = { ...body(), include_spectrogram: true };
      if (await supportsWordTimings()) request_.timestamps = "word";
      const response = await request("/tts", { method: "POST", json: request_ });
      const answer = await response.json();
      lastBody = body();
      const bytes = base64ToBytes(answer.audio_base64);
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = URL.createObjectURL(new Blob([bytes], { type: "audio/wav" }));
      audio.src = objectUrl;
      audio.dataset.durationMs = String(answer.duration_ms);
      const { samples } = wavSamples(bytes);
      $("speak-result").hidden = false;
      waveform.draw(samples);
      waveform.playhead(0);
      if (answer.spectrogram) drawSpectrogram($("speak-spec"), answer.spectrogram);
      showWords(answer.words);
      const took = (performance.now() - started) / 1000;
      $("speak-meta").textContent = `${(answer.duration_ms / 1000).toFixed(2)} s of speech · ${answer.sample_rate} Hz · ${answer.voice}`;
      status.textContent = `Made in ${took.toFixed(2)} s.`;
      audio.play().catch(() => {
        // Autoplay may be refused; the controls are there to press.
      });
    } catch (err) {
      await failed(err);
    } finally {
      go.disabled = false;
    }
  });

  function showWords(list) {
    const box = $("speak-words");
    words = Array.isArray(list) ? list : [];
    box.replaceChildren();
    box.hidden = words.length === 0;
    words.forEach((w, i) => {
      const span = document.createElement("span");
      span.textContent = w.word;
      span.dataset.index = String(i);
      box.append(span, " ");
    });
  }

  function tick() {
    const duration = audio.duration || Number(audio.dataset.durationMs) / 1000 || 1;
    const t = audio.currentTime;
    const ms = t * 1000;
    let span = null;
    const box = $("speak-words");
    words.forEach((w, i) => {
      const on = ms >= w.start_ms && ms < w.end_ms;
      const el = box.children[i];
      if (!el) return;
      el.classList.toggle("spoken", on);
      if (on) {
        el.setAttribute("aria-current", "true");
        span = [w.start_ms / 1000 / duration, w.end_ms / 1000 / duration];
      } else el.removeAttribute("aria-current");
    });
    waveform.playhead(t / duration, span);
    if (!audio.paused && !audio.ended) frame = requestAnimationFrame(tick);
  }
  for (const name of ["play", "seeked", "timeupdate", "ended", "pause"]) {
    audio.addEventListener(name, () => {
      cancelAnimationFrame(frame);
      tick();
    });
  }
  $("speak-wave").addEventListener("click", (event) => {
    if (!audio.duration) return;
    const rect = event.currentTarget.getBoundingClientRect();
    audio.currentTime = ((event.clientX - rect.left) / rect.width) * audio.duration;
  });

  $("speak-download").addEventListener("click", async () => {
    showError(error, null);
    const fmt = $("speak-format").value;
    const button = $("speak-download");
    button.disabled = true;
    status.textContent = `Making ${fmt}…`;
    try {
      const b = lastBody && lastBody.text === text.value ? lastBody : body();
      const response = await request(`/tts?format=${encodeURIComponent(fmt)}`, { method: "POST", json: b });
      const blob = await response.blob();
      const rate = response.headers.get("X-Sample-Rate");
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `speech-${b.voice}${fmt === "pcm" && rate ? `-${rate}hz` : ""}.${EXTENSIONS[fmt]}`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      status.textContent = `Downloaded ${fmt} (${(blob.size / 1024).toFixed(1)} KiB).`;
    } catch (err) {
      await failed(err);
    } finally {
      button.disabled = false;
    }
  });
}
