// Server: liveness, readiness, LLM, the synthesis queue, voices, and live charts read from /metrics.

import { ApiError, apiBase, getJson, request, showError } from "./api.js";
import { drawChart } from "./draw.js";
import { between, parseMetrics, reading } from "./metrics.js";
import { allVoices, languageName, loadVoices } from "./voices.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const POINTS = 60;

function fmtMs(seconds) {
  return seconds == null ? "–" : `${Math.round(seconds * 1000)} ms`;
}

export function initServer() {
  const error = $("server-error");
  const history = { rate: [], mean: [], p95: [], rtf: [] };
  let previous = null;
  let timer = null;
  let ticks = 0;

  function push(name, value) {
    history[name].push(value);
    if (history[name].length > POINTS) history[name].shift();
  }

  function colors() {
    const style = getComputedStyle(document.documentElement);
    return { a: style.getPropertyValue("--accent").trim() || "#1f6feb", b: style.getPropertyValue("--danger").trim() || "#d1242f" };
  }

  function draw() {
    const c = colors();
    drawChart($("chart-rate"), [{ label: "req/s", color: c.a, points: history.rate }]);
    drawChart(
      $("chart-latency"),
      [
        { label: "mean", color: c.a, points: history.mean.map((v) => (v == null ? null : v * 1000)) },
        { label: "p95", color: c.b, points: history.p95.map((v) => (v == null ? null : v * 1000)) },
      ],
      { unit: "" },
    );
    drawChart($("chart-rtf"), [{ label: "RTF", color: c.a, points: history.rtf }]);
  }

  async function metrics() {
    const text = await (await request("/metrics", { accept: "text/plain" })).text();
    const now = reading(parseMetrics(text));
    // This very request is in flight while the server counts: the others are what the queue holds.
    const others = Math.max(0, now.inFlight - 1);
    $("server-queue").textContent = `${now.admitted} of ${now.capacity} synthesis slots in use · ${others} other HTTP request${others === 1 ? "" : "s"} in flight · ${now.voicesLoaded} voice${now.voicesLoaded === 1 ? "" : "s"} loaded`;
    if (previous) {
      const d = between(previous, now);
      push("rate", d.rate);
      push("mean", d.mean);
      push("p95", d.p95);
      push("rtf", d.rtf);
      $("server-rate").textContent = `${d.rate.toFixed(2)} req/s`;
      $("server-rate").dataset.value = String(d.rate);
      $("server-latency").textContent = `mean ${fmtMs(d.mean)} · p95 ${fmtMs(d.p95)}`;
      const lastRtf = history.rtf.filter((v) => v != null).pop();
      const overall = now.rtfCount ? now.rtfSum / now.rtfCount : null;
      const out = $("server-rtf");
      if (lastRtf != null) out.textContent = `latest ${lastRtf.toFixed(3)}`;
      else out.textContent = overall == null ? "no synthesis yet" : `${overall.toFixed(3)} since start`;
      out.dataset.value = String(lastRtf ?? overall ?? "");
      draw();
    }
    previous = now;
  }

  async function health() {
    const live = $("server-health");
    try {
      await getJson("/health");
      live.textContent = "ok: the process answers";
      live.dataset.status = "ok";
    } catch (err) {
      live.textContent = `down: ${err.message}`;
      live.dataset.status = "down";
    }
    const ready = $("server-ready");
    try {
      const r = await getJson("/healthz");
      ready.textContent = `ready · default voice ${r.default_voice} · loaded: ${r.voices_loaded.join(", ") || "none"}`;
      ready.dataset.status = "ready";
    } catch (err) {
      ready.textContent = err instanceof ApiError && err.status === 503 ? `not ready: ${err.message}` : `unknown: ${err.message}`;
      ready.dataset.status = "not-ready";
    }
  }

  async function llm() {
    const el = $("server-llm");
    try {
      const p = await getJson("/llm/provider");
      el.textContent = `${p.provider} · ${p.model} · ${p.configured ? (p.available ? "available" : "not answering") : "not configured"} · memory ${p.memory.enabled ? p.memory.mode : "off"}`;
    } catch (err) {
      el.textContent = err instanceof ApiError && err.status === 404 ? "no chat routes on this server" : `unknown: ${err.message}`;
    }
  }

  function voicesTable() {
    const body = $("server-voices").querySelector("tbody");
    body.replaceChildren();
    for (const v of allVoices()) {
      const row = document.createElement("tr");
      const cells = [
        `${v.display_name || v.id}${v.default ? " (default)" : ""}`,
        languageName(v.language),
        v.quality || "–",
        String(v.num_speakers ?? "–"),
        v.sample_rate ? `${v.sample_rate} Hz` : "–",
        v.loaded ? "yes" : "no",
        v.available ? "yes" : `no${v.problem ? `: ${v.problem}` : ""}`,
      ];
      cells.forEach((text, i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        cell.textContent = text;
        if (i === 0) cell.title = v.id;
        row.append(cell);
      });
      body.append(row);
    }
  }

  async function poll() {
    try {
      const jobs = [health(), metrics()];
      if (ticks % 5 === 0) jobs.push(loadVoices().then(voicesTable), llm());
      ticks += 1;
      await Promise.all(jobs);
      showError(error, null);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        // No polling without a key: the page asks for one and reopens this tab's polling once it has it.
        clearInterval(timer);
        timer = null;
      }
      if (err instanceof ApiError && err.status === 404) {
        showError(error, new ApiError(404, "no_metrics", `${apiBase} has no /metrics (Lambda deployments scale instead of being scraped)`));
      } else showError(error, err);
    }
  }

  return {
    shown() {
      if (timer) return;
      previous = null;
      ticks = 0;
      draw();
      poll();
      timer = setInterval(poll, POLL_MS);
    },
    hidden() {
      clearInterval(timer);
      timer = null;
    },
  };
}
