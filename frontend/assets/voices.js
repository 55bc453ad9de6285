// The voice pickers: every `select.voice-select`, grouped by language, with quality and speakers.

import { getJson } from "./api.js";

let voices = [];

const languageNames = (() => {
  try {
    return new Intl.DisplayNames(["en"], { type: "language" });
  } catch {
    return null;
  }
})();

export function languageName(code) {
  const tag = code.replace("_", "-");
  try {
    const name = languageNames && languageNames.of(tag);
    return name && name !== tag ? `${name} (${code})` : code;
  } catch {
    return code;
  }
}

function speakerCount(voice) {
  const n = voice.num_speakers || 1;
  return n === 1 ? "1 speaker" : `${n} speakers`;
}

export function voiceLabel(voice) {
  const parts = [voice.display_name || voice.id, voice.quality, speakerCount(voice)];
  if (voice.default) parts.push("default");
  if (voice.available === false) parts.push("unavailable");
  return parts.filter(Boolean).join(" · ");
}

export function voiceById(id) {
  return voices.find((v) => v.id === id);
}

export function allVoices() {
  return voices;
}

/** Fetch /voices/detail and fill every voice picker, keeping each one's selection when it still exists. */
export async function loadVoices() {
  voices = await getJson("/voices/detail");
  const byLanguage = new Map();
  for (const voice of voices) {
    if (!byLanguage.has(voice.language)) byLanguage.set(voice.language, []);
    byLanguage.get(voice.language).push(voice);
  }
  const languages = [...byLanguage.keys()].sort((a, b) => languageName(a).localeCompare(languageName(b)));
  for (const select of document.querySelectorAll("select.voice-select")) {
    const previous = select.value;
    select.replaceChildren();
    for (const language of languages) {
      const group = document.createElement("optgroup");
      group.label = languageName(language);
      const list = byLanguage.get(language).sort((a, b) => Number(b.default) - Number(a.default) || a.id.localeCompare(b.id));
      for (const voice of list) {
        const option = new Option(voiceLabel(voice), voice.id);
        option.disabled = voice.available === false;
        group.append(option);
      }
      select.append(group);
    }
    const fallback = voices.find((v) => v.default) || voices[0];
    select.value = voiceById(previous) ? previous : fallback ? fallback.id : "";
    select.dispatchEvent(new Event("change"));
  }
  return voices;
}

/** Fill `select` with the speakers of `voiceId`; hides `row` for single-speaker voices. */
export function fillSpeakers(select, row, voiceId) {
  const voice = voiceById(voiceId);
  const speakers = voice && voice.speakers ? Object.entries(voice.speakers) : [];
  select.replaceChildren();
  if (speakers.length < 2) {
    row.hidden = true;
    return;
  }
  speakers.sort((a, b) => a[1] - b[1]);
  for (const [name, id] of speakers) select.append(new Option(`${name} (${id})`, String(id)));
  row.hidden = false;
}
