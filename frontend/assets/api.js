// The API client of the console: base URL, the API key (session storage only), JSON errors, WebSocket tickets.

const KEY_STORAGE = "tts-console-api-key";

function configuredBase() {
  const meta = document.querySelector('meta[name="tts-api-base"]');
  const value = (meta && meta.content.trim()) || "";
  // Empty: this page's own origin (the shim serves both). Otherwise the deployment's PUBLIC_BASE_URL.
  return (value || window.location.origin).replace(/\/+$/, "");
}

export const apiBase = configuredBase();
export const wsBase = apiBase.replace(/^http/, "ws");

/** An answer of the API that is not a success, or a failure to reach it at all. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// --- the API key: kept for this tab's session only, sent in a header, never in a URL ---

const keyListeners = [];
const keyNeeded = [];

export function apiKey() {
  return window.sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
  else window.sessionStorage.removeItem(KEY_STORAGE);
  keyListeners.forEach((fn) => fn(key));
}

/** `fn(key)` runs when the key is set or forgotten. */
export function onKeyChange(fn) {
  keyListeners.push(fn);
}

/** `fn(reason)` runs whenever the server refuses the key (or its absence): the page asks for one. */
export function onKeyNeeded(fn) {
  keyNeeded.push(fn);
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h["X-API-Key"] = key;
  return h;
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const err = body && body.error;
  const retry = Number(response.headers.get("Retry-After")) || (err && err.retry_after) || null;
  const details = { ...(err || {}), retryAfter: retry };
  const code = (err && err.code) || `http_${response.status}`;
  const message = (err && err.message) || response.statusText || `HTTP ${response.status}`;
  const error = new ApiError(response.status, code, message, details);
  if (response.status === 401) keyNeeded.forEach((fn) => fn(apiKey() ? "The server refused this API key." : "This server requires an API key."));
  return error;
}

/** fetch() against the API with the key header; resolves to the Response, rejects with an ApiError. */
export async function request(path, { method = "GET", json, accept, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  if (accept) init.headers.Accept = accept;
  let response;
  try {
    response = await fetch(apiBase + path, init);
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "unreachable", `cannot reach the API at ${apiBase}`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

export async function postJson(path, json, options = {}) {
  return (await request(path, { ...options, method: "POST", json })).json();
}

/**
 * A WebSocket to `path`, authenticated without the key in the URL: with a key, a single-use ticket from
 * POST /ws-ticket goes in the Sec-WebSocket-Protocol header (`ticket.<t>`), which browsers let a page set.
 */
export async function openSocket(path) {
  const protocols = [];
  if (apiKey()) {
    const { subprotocol } = await postJson("/ws-ticket", undefined);
    protocols.push(subprotocol);
  }
  let ws;
  try {
    ws = new WebSocket(wsBase + path, protocols);
  } catch (exc) {
    throw new ApiError(0, "ws_refused", `the browser refused to open ${wsBase}${path}: ${exc.message}`);
  }
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true });
    ws.addEventListener("error", () => reject(new ApiError(0, "ws_refused", `the WebSocket to ${wsBase}${path} failed to open`)), { once: true });
    ws.addEventListener(
      "close",
      (event) => {
        // A refused handshake (bad or missing key, rate limit) closes before opening; browsers hide the status.
        reject(new ApiError(0, "ws_refused", `the server refused the WebSocket (${event.code || "no code"}${event.reason ? ": " + event.reason : ""})`));
      },
      { once: true },
    );
  });
  return ws;
}

function seconds(n) {
  return n === 1 ? "1 second" : `${n} seconds`;
}

/** What to tell a person about an error: specific, with what to do next. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err && err.message ? err.message : err}`;
  const retry = err.details && err.details.retryAfter;
  const later = retry ? ` Try again in ${seconds(retry)}.` : " Try again shortly.";
  switch (err.code) {
    case "rate_limited":
      return `Rate limited: this client has sent too many requests.${later}`;
    case "busy":
      return `The server is busy: every synthesis worker is taken and its queue is full.${later}`;
    case "voice_not_found":
      return `Voice not found: ${err.message}. Pick another voice (the list was reloaded).`;
    case "voice_unavailable":
      return `That voice cannot be loaded on the server: ${err.message}`;
    case "llm_not_configured":
      return `Chat is not available: no LLM is configured on the server (${err.message}).`;
    case "llm_unavailable":
      return `The LLM did not answer: ${err.message}`;
    case "llm_timeout":
      return `The LLM took too long to answer: ${err.message}`;
    case "unauthorized":
      return apiKey() ? "The server refused this API key: enter a valid one." : "This server requires an API key: enter it above.";
    case "validation_error":
      return `The server refused the request: ${err.message}`;
    case "memory_unavailable":
      return `Conversation memory is unavailable: ${err.message}`;
    case "unreachable":
      return `Cannot reach the API at ${apiBase}: is the server running?`;
    default:
      return `${err.message} (${err.code}${err.status ? `, HTTP ${err.status}` : ""})`;
  }
}

/** An `{"type": "error", "code", "message"}` event of the WebSocket protocols as an ApiError. */
export function socketError(event) {
  return new ApiError(0, event.code || "error", event.message || "the stream failed", event);
}

/** Show `err` (or hide the message with null) in the `role="alert"` element `el`. */
export function showError(el, err) {
  if (!err) {
    el.hidden = true;
    el.textContent = "";
    delete el.dataset.code;
    return;
  }
  el.textContent = describeError(err);
  el.dataset.code = err.code || "error";
  el.hidden = false;
}
