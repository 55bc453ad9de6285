// Chat: WS /ws/chat with streamed tokens and spoken replies, barge-in, and the caller's stored conversations.

import { ApiError, getJson, openSocket, request, showError, socketError } from "./api.js";
import { PcmPlayer } from "./audio.js";

const $ = (id) => document.getElementById(id);

export function initChat() {
  const form = $("chat-form");
  const input = $("chat-input");
  const log = $("chat-log");
  const error = $("chat-error");
  const stop = $("chat-stop");
  const send = $("chat-send");
  const list = $("chat-convs");
  const player = new PcmPlayer();
  let ws = null;
  let conversationId = null;
  let turn = null; // {bubble, text, chunks, seconds, done: Promise, resolve}
  let rate = 22050;

  function bubble(role, text) {
    const li = document.createElement("li");
    li.className = `msg ${role}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    const body = document.createElement("p");
    body.className = "body";
    body.textContent = text;
    const meta = document.createElement("span");
    meta.className = "meta";
    li.append(who, body, meta);
    log.append(li);
    log.scrollTop = log.scrollHeight;
    return li;
  }

  function busy() {
    return turn !== null || player.playing;
  }

  function updateButtons() {
    stop.disabled = !busy();
  }

  /** Barge-in: stop the reply being written and spoken, now. */
  function interrupt() {
    player.stop();
    if (turn && ws && ws.readyState === WebSocket.OPEN && !turn.cancelSent) {
      ws.send(JSON.stringify({ type: "cancel" }));
      turn.cancelSent = true;
    }
    updateButtons();
  }

  function endTurn() {
    if (!turn) return;
    const finished = turn;
    turn = null;
    finished.bubble.removeAttribute("aria-busy");
    finished.resolve();
    updateButtons();
  }

  function onMessage(message) {
    if (message.data instanceof ArrayBuffer) {
      if (!turn || turn.cancelSent) return;
      player.push(message.data);
      turn.chunks += 1;
      turn.seconds += message.data.byteLength / 2 / rate;
      turn.bubble.dataset.audioChunks = String(turn.chunks);
      turn.bubble.querySelector(".meta").textContent = `spoken: ${turn.seconds.toFixed(1)} s in ${turn.chunks} chunks`;
      updateButtons();
      return;
    }
    const msg = JSON.parse(message.data);
    if (msg.type === "start") {
      rate = msg.sample_rate || rate;
      player.rate = rate;
      if (msg.conversation_id) conversationId = msg.conversation_id;
      if (turn) turn.bubble.dataset.memory = msg.memory;
    } else if (msg.type === "token" && turn) {
      turn.text += msg.token;
      turn.bubble.querySelector(".body").textContent = turn.text;
      turn.bubble.dataset.tokens = String(Number(turn.bubble.dataset.tokens || 0) + 1);
      log.scrollTop = log.scrollHeight;
    } else if (msg.type === "done") {
      if (turn) {
        turn.bubble.querySelector(".body").textContent = msg.reply || turn.text;
        turn.bubble.dataset.done = msg.cancelled ? "cancelled" : "complete";
        if (msg.cancelled) turn.bubble.classList.add("cancelled");
      }
      conversationId = msg.conversation_id || conversationId;
      endTurn();
      if (msg.stored) refreshConversations();
    } else if (msg.type === "error") {
      showError(error, socketError(msg));
      if (turn) {
        turn.bubble.classList.add("failed");
        turn.bubble.dataset.done = "failed";
        turn.bubble.querySelector(".meta").textContent = msg.code;
      }
      endTurn();
    }
  }

  async function socket() {
    if (ws && ws.readyState === WebSocket.OPEN) return ws;
    ws = await openSocket("/ws/chat");
    ws.addEventListener("message", onMessage);
    ws.addEventListener("close", () => {
      ws = null;
      if (turn) {
        showError(error, new ApiError(0, "closed", "the connection closed during the reply"));
        endTurn();
      }
    });
    return ws;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = input.value.trim();
    if (!message) return;
    showError(error, null);
    if (turn) {
      interrupt();
      await turn.done; // the server takes one turn at a time: wait for the cancelled one's `done`
    }
    send.disabled = true;
    try {
      await player.begin(rate);
      const conn = await socket();
      input.value = "";
      bubble("user", message);
      let resolve;
      const done = new Promise((r) => {
        resolve = r;
      });
      turn = { bubble: bubble("assistant", ""), text: "", chunks: 0, seconds: 0, done, resolve, cancelSent: false };
      // Screen readers announce the reply once, when it is complete, not token by token.
      turn.bubble.setAttribute("aria-busy", "true");
      const frame = { type: "chat", message, speak: $("chat-speak").checked, encoding: "binary" };
      if ($("chat-voice").value) frame.voice = $("chat-voice").value;
      if (conversationId) frame.conversation_id = conversationId;
      conn.send(JSON.stringify(frame));
      updateButtons();
    } catch (err) {
      showError(error, err);
    } finally {
      send.disabled = false;
      input.focus();
    }
  });

  input.addEventListener("input", () => {
    if (busy() && input.value.trim()) interrupt();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", interrupt);
  setInterval(updateButtons, 500); // the Stop button follows playback, which ends on its own

  $("chat-new").addEventListener("click", () => {
    interrupt();
    conversationId = null;
    log.replaceChildren();
    input.focus();
  });
  $("chat-refresh").addEventListener("click", () => refreshConversations());

  async function openConversation(id) {
    showError(error, null);
    interrupt();
    try {
      const conv = await getJson(`/conversations/${encodeURIComponent(id)}`);
      conversationId = id;
      log.replaceChildren();
      for (const m of conv.messages) bubble(m.role === "user" ? "user" : "assistant", m.content);
    } catch (err) {
      showError(error, err);
    }
  }

  async function deleteConversation(id, title) {
    showError(error, null);
    try {
      await request(`/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
      if (conversationId === id) {
        conversationId = null;
        log.replaceChildren();
      }
      $("chat-status-live").textContent = `Deleted “${title}”.`;
    } catch (err) {
      showError(error, err);
    }
    await refreshConversations();
  }

  async function refreshConversations() {
    try {
      const { conversations } = await getJson("/conversations");
      list.replaceChildren();
      $("chat-convs-empty").hidden = conversations.length > 0;
      for (const c of conversations) {
        const li = document.createElement("li");
        li.dataset.id = c.conversation_id;
        const open = document.createElement("button");
        open.type = "button";
        open.className = "conv-open";
        open.textContent = c.title;
        const when = new Date(c.updated);
        open.title = `${c.turns} turn${c.turns === 1 ? "" : "s"}, last ${when.toLocaleString()}`;
        open.addEventListener("click", () => openConversation(c.conversation_id));
        const meta = document.createElement("span");
        meta.className = "meta";
        meta.textContent = `${c.turns} turn${c.turns === 1 ? "" : "s"} · ${when.toLocaleTimeString()}`;
        const del = document.createElement("button");
        del.type = "button";
        del.className = "conv-delete";
        del.textContent = "Delete";
        del.setAttribute("aria-label", `Delete conversation “${c.title}”`);
        del.addEventListener("click", () => deleteConversation(c.conversation_id, c.title));
        li.append(open, meta, del);
        list.append(li);
      }
    } catch (err) {
      showError(error, err);
    }
  }

  async function showProvider() {
    const line = $("chat-provider");
    try {
      const p = await getJson("/llm/provider");
      line.textContent = `LLM: ${p.provider} · ${p.model} · ${p.available ? "available" : "not answering"} · memory ${p.memory.enabled ? p.memory.mode : "off"}`;
      if (!p.configured) {
        showError(error, new ApiError(503, "llm_not_configured", p.error || `${p.provider} needs its API key on the server`));
      } else if (!p.available) {
        showError(error, new ApiError(502, "llm_unavailable", p.error || "the provider did not answer the probe"));
      }
    } catch (err) {
      showError(error, err);
    }
  }

  return {
    async shown() {
      await Promise.all([showProvider(), refreshConversations()]);
    },
  };
}
