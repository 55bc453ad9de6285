// Canvas drawing: waveform with a playhead, mel spectrogram, stream timeline, small line charts.

function css(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

/** A waveform (min/max per pixel column) drawn once; `playhead(fraction)` redraws the cursor over it. */
export class Waveform {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.base = null;
    this.highlight = null;
  }

  draw(samples) {
    const { canvas, ctx } = this;
    const w = canvas.width;
    const h = canvas.height;
    ctx.fillStyle = css("--surface-2", "#f1f3f5");
    ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = css("--muted", "#8a94a0");
    ctx.beginPath();
    ctx.moveTo(0, h / 2);
    ctx.lineTo(w, h / 2);
    ctx.stroke();
    ctx.fillStyle = css("--accent", "#1f6feb");
    const per = samples.length / w;
    for (let x = 0; x < w; x++) {
      let lo = 1;
      let hi = -1;
      const start = Math.floor(x * per);
      const end = Math.max(start + 1, Math.floor((x + 1) * per));
      for (let i = start; i < end && i < samples.length; i++) {
        const s = samples[i];
        if (s < lo) lo = s;
        if (s > hi) hi = s;
      }
      if (hi < lo) continue;
      const y1 = ((1 - hi) / 2) * h;
      const y2 = ((1 - lo) / 2) * h;
      ctx.fillRect(x, y1, 1, Math.max(1, y2 - y1));
    }
    this.base = ctx.getImageData(0, 0, w, h);
  }

  /** Put the cursor at `fraction` (0..1) of the audio, and shade the span [from, to) when given. */
  playhead(fraction, span = null) {
    if (!this.base) return;
    const { ctx, canvas } = this;
    ctx.putImageData(this.base, 0, 0);
    if (span) {
      ctx.fillStyle = css("--highlight", "rgba(255, 200, 0, 0.35)");
      ctx.fillRect(span[0] * canvas.width, 0, Math.max(1, (span[1] - span[0]) * canvas.width), canvas.height);
    }
    ctx.fillStyle = css("--danger", "#d1242f");
    ctx.fillRect(Math.round(fraction * canvas.width), 0, 2, canvas.height);
  }
}

// A perceptual dark-to-bright ramp (magma-like), as (position, r, g, b).
const RAMP = [
  [0, 0, 0, 4],
  [0.25, 80, 18, 123],
  [0.5, 182, 54, 121],
  [0.75, 251, 136, 97],
  [1, 252, 253, 191],
];

function rampColor(t) {
  for (let i = 1; i < RAMP.length; i++) {
    if (t <= RAMP[i][0]) {
      const [p0, r0, g0, b0] = RAMP[i - 1];
      const [p1, r1, g1, b1] = RAMP[i];
      const f = (t - p0) / (p1 - p0);
      return [r0 + f * (r1 - r0), g0 + f * (g1 - g0), b0 + f * (b1 - b0)];
    }
  }
  return RAMP[RAMP.length - 1].slice(1);
}

/** The API's log-mel spectrogram (`frames[t][band]`, low bands first), low frequencies at the bottom. */
export function drawSpectrogram(canvas, spectrogram) {
  const frames = spectrogram.frames;
  const ctx = canvas.getContext("2d");
  if (!frames.length) return;
  const bands = frames[0].length;
  let lo = Infinity;
  let hi = -Infinity;
  for (const frame of frames) {
    for (const v of frame) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  const span = hi - lo || 1;
  const image = new ImageData(frames.length, bands);
  for (let t = 0; t < frames.length; t++) {
    for (let m = 0; m < bands; m++) {
      const [r, g, b] = rampColor((frames[t][m] - lo) / span);
      const i = ((bands - 1 - m) * frames.length + t) * 4;
      image.data[i] = r;
      image.data[i + 1] = g;
      image.data[i + 2] = b;
      image.data[i + 3] = 255;
    }
  }
  const tmp = document.createElement("canvas");
  tmp.width = frames.length;
  tmp.height = bands;
  tmp.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}

/**
 * Stream chunks: above, when each arrived (ms since the request); below, when its audio plays (from the first
 * audio on, back to back). Arrivals ahead of their playback mean no gap.
 */
export function drawTimeline(canvas, chunks, firstAudioMs) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.fillStyle = css("--surface-2", "#f1f3f5");
  ctx.fillRect(0, 0, w, h);
  const last = chunks.length ? chunks[chunks.length - 1] : null;
  const offset = firstAudioMs ?? 0;
  const endMs = Math.max(1000, last ? Math.max(last.atMs, offset + last.audioStartMs + last.audioMs) : 0) * 1.05;
  const x = (ms) => (ms / endMs) * (w - 20) + 10;
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = css("--muted", "#6b7280");
  ctx.fillText("arrival", 10, 14);
  ctx.fillText("when its audio plays", 10, h / 2 + 14);
  chunks.forEach((chunk, i) => {
    ctx.fillStyle = css("--accent", "#1f6feb");
    ctx.fillRect(x(chunk.atMs) - 1, 20, 2, h / 2 - 26);
    ctx.fillStyle = i % 2 ? css("--accent-2", "#58a6ff") : css("--accent", "#1f6feb");
    const start = offset + chunk.audioStartMs;
    ctx.fillRect(x(start), h / 2 + 20, Math.max(1, x(start + chunk.audioMs) - x(start)), h / 2 - 28);
  });
  if (firstAudioMs != null) {
    ctx.strokeStyle = css("--danger", "#d1242f");
    ctx.beginPath();
    ctx.moveTo(x(firstAudioMs), 0);
    ctx.lineTo(x(firstAudioMs), h);
    ctx.stroke();
    ctx.fillStyle = css("--danger", "#d1242f");
    ctx.fillText(`first audio ${Math.round(firstAudioMs)} ms`, Math.min(x(firstAudioMs) + 4, w - 180), h - 4);
  }
  ctx.fillStyle = css("--muted", "#6b7280");
  ctx.fillText(`${(endMs / 1000).toFixed(1)} s`, w - 40, h - 4);
}

/** A line chart of `series` ([{label, color, points: [number|null]}]) over the same x steps. */
export function drawChart(canvas, series, { unit = "", min = 0 } = {}) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  const pad = { l: 44, r: 8, t: 8, b: 18 };
  ctx.fillStyle = css("--surface-2", "#f1f3f5");
  ctx.fillRect(0, 0, w, h);
  const values = series.flatMap((s) => s.points.filter((v) => v != null && Number.isFinite(v)));
  const max = Math.max(min + 1e-9, ...values) * 1.15;
  const n = Math.max(2, ...series.map((s) => s.points.length));
  const x = (i) => pad.l + (i / (n - 1)) * (w - pad.l - pad.r);
  const y = (v) => h - pad.b - ((v - min) / (max - min)) * (h - pad.t - pad.b);
  ctx.strokeStyle = css("--border", "#d0d7de");
  ctx.fillStyle = css("--muted", "#6b7280");
  ctx.font = "11px system-ui, sans-serif";
  for (let k = 0; k <= 3; k++) {
    const v = min + ((max - min) * k) / 3;
    ctx.beginPath();
    ctx.moveTo(pad.l, y(v));
    ctx.lineTo(w - pad.r, y(v));
    ctx.stroke();
    ctx.fillText(`${v < 10 ? v.toFixed(2) : Math.round(v)}${unit}`, 2, y(v) + 4);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let pen = false;
    s.points.forEach((v, i) => {
      if (v == null || !Number.isFinite(v)) {
        pen = false;
        return;
      }
      if (pen) ctx.lineTo(x(i), y(v));
      else ctx.moveTo(x(i), y(v));
      pen = true;
    });
    ctx.stroke();
    ctx.lineWidth = 1;
    // A lone reading has no line yet: show it as a dot.
    s.points.forEach((v, i) => {
      const alone = v != null && Number.isFinite(v) && (i === 0 || s.points[i - 1] == null) && (i === s.points.length - 1 || s.points[i + 1] == null);
      if (!alone) return;
      ctx.fillStyle = s.color;
      ctx.beginPath();
      ctx.arc(x(i), y(v), 3, 0, 2 * Math.PI);
      ctx.fill();
    });
  }
  let lx = pad.l + 4;
  for (const s of series) {
    ctx.fillStyle = s.color;
    ctx.fillText(s.label, lx, h - 4);
    lx += ctx.measureText(s.label).width + 14;
  }
}
