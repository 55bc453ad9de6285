// Prometheus text exposition (GET /metrics) into samples, and rates between two readings.

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** [{name, labels, value}] of every sample line. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, key, value] of (m[3] || "").matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return samples;
}

// Traffic of the console itself and of probes, left out of the request rate and latency.
const OWN_ROUTES = new Set(["/metrics", "/health", "/healthz", "/", "/assets/{name:path}"]);

function counted(labels) {
  const route = (labels.route || "").replace(/^\/api(?=\/)/, "");
  return !OWN_ROUTES.has(route);
}

function sum(samples, name, filter = () => true) {
  return samples.filter((s) => s.name === name && filter(s.labels)).reduce((a, s) => a + s.value, 0);
}

/** The cumulative histogram buckets of `name` summed over label sets: [[le, count]] sorted by le. */
function buckets(samples, name, filter) {
  const byLe = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !filter(s.labels)) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    byLe.set(le, (byLe.get(le) || 0) + s.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]);
}

/** The q-quantile of the observations between two bucket readings (linear within a bucket, as Prometheus). */
export function quantile(q, before, after) {
  const prev = new Map(before);
  const delta = after.map(([le, c]) => [le, c - (prev.get(le) || 0)]);
  const total = delta.length ? delta[delta.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, c] of delta) {
    if (c >= rank) {
      if (le === Infinity) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(1e-12, c - below);
    }
    lower = le;
    below = c;
  }
  return lower;
}

/** One reading of the numbers the Server tab charts. */
export function reading(samples, at = performance.now()) {
  return {
    at,
    requests: sum(samples, "http_requests_total", counted),
    latencySum: sum(samples, "http_request_duration_seconds_sum", counted),
    latencyCount: sum(samples, "http_request_duration_seconds_count", counted),
    latencyBuckets: buckets(samples, "http_request_duration_seconds", counted),
    rtfSum: sum(samples, "tts_real_time_factor_sum"),
    rtfCount: sum(samples, "tts_real_time_factor_count"),
    admitted: sum(samples, "tts_synthesis_admitted"),
    capacity: sum(samples, "tts_synthesis_capacity"),
    inFlight: sum(samples, "requests_in_flight"),
    voicesLoaded: sum(samples, "tts_voices_loaded"),
  };
}

/** Rates between two readings: requests/s, mean and p95 latency (s), mean real-time factor (null: none). */
export function between(before, after) {
  const dt = (after.at - before.at) / 1000;
  const n = after.latencyCount - before.latencyCount;
  const r = after.rtfCount - before.rtfCount;
  return {
    rate: dt > 0 ? Math.max(0, after.requests - before.requests) / dt : 0,
    mean: n > 0 ? (after.latencySum - before.latencySum) / n : null,
    p95: quantile(0.95, before.latencyBuckets, after.latencyBuckets),
    rtf: r > 0 ? (after.rtfSum - before.rtfSum) / r : null,
  };
}
