// The console's entry point: tabs, the API key prompt, and each tab's module.

import { apiBase, apiKey, onKeyNeeded, setApiKey, showError } from "./api.js";
import { initChat } from "./chat.js";
import { initServer } from "./server.js";
import { initSpeak } from "./speak.js";
import { initStream } from "./stream.js";
import { loadVoices } from "./voices.js";

const $ = (id) => document.getElementById(id);

const TABS = ["speak", "stream", "chat", "server"];
const modules = {};

function selectTab(name, { focus = false } = {}) {
  for (const tab of TABS) {
    const button = $(`tab-${tab}`);
    const panel = $(`panel-${tab}`);
    const on = tab === name;
    button.setAttribute("aria-selected", String(on));
    button.tabIndex = on ? 0 : -1;
    const was = !panel.hidden;
    panel.hidden = !on;
    if (on && focus) button.focus();
    if (on && !was && modules[tab] && modules[tab].shown) modules[tab].shown();
    if (!on && was && modules[tab] && modules[tab].hidden) modules[tab].hidden();
  }
  if (window.location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

function initTabs() {
  const list = document.querySelector('[role="tablist"]');
  list.addEventListener("click", (event) => {
    const tab = event.target.closest('[role="tab"]');
    if (tab) selectTab(tab.id.replace("tab-", ""));
  });
  // Arrow keys move between tabs, Home/End jump (the WAI-ARIA tabs pattern).
  list.addEventListener("keydown", (event) => {
    const current = TABS.indexOf(document.activeElement.id.replace("tab-", ""));
    if (current < 0) return;
    const moves = { ArrowRight: current + 1, ArrowLeft: current - 1, Home: 0, End: TABS.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    selectTab(TABS[(moves[event.key] + TABS.length) % TABS.length], { focus: true });
  });
  window.addEventListener("hashchange", () => {
    const name = window.location.hash.slice(1);
    if (TABS.includes(name)) selectTab(name);
  });
}

function showKeyState() {
  const has = Boolean(apiKey());
  $("key-state").textContent = has ? "· API key set for this tab" : "";
  $("key-forget").hidden = !has;
}

async function loadAll() {
  try {
    await loadVoices();
    showError($("speak-error"), null);
  } catch (err) {
    showError($("speak-error"), err);
  }
}

function initKey() {
  const form = $("key-form");
  onKeyNeeded((reason) => {
    $("key-reason").textContent = reason;
    if (form.hidden) {
      form.hidden = false;
      $("key-input").focus();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setApiKey($("key-input").value.trim());
    $("key-input").value = "";
    form.hidden = true;
    showKeyState();
    await loadAll();
    const open = TABS.find((t) => !$(`panel-${t}`).hidden);
    if (modules[open] && modules[open].hidden) modules[open].hidden();
    if (modules[open] && modules[open].shown) modules[open].shown();
  });
  $("key-forget").addEventListener("click", () => {
    setApiKey("");
    showKeyState();
    loadAll();
  });
  showKeyState();
}

function main() {
  $("api-base").textContent = apiBase;
  initTabs();
  initKey();
  initSpeak();
  initStream();
  modules.chat = initChat();
  modules.server = initServer();
  const first = window.location.hash.slice(1);
  selectTab(TABS.includes(first) ? first : "speak");
  loadAll();
}

main();
