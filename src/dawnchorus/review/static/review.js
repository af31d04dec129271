// dawnchorus review page: list, filter and sort candidates; mark them TP / FP / skip.
// Plain browser JavaScript, no libraries: the page must work offline and without a build step.
"use strict";

const PAGE_SIZE = 200; // rows drawn at once; long candidate lists stay responsive
const state = { all: [], view: [], current: -1, busy: false, pan: 0 };
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (ignored) { /* not JSON: keep the status text */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response.json();
}

function showMessage(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function readFilters() {
  const number = (id) => { const v = $(id).value.trim(); return v === "" ? null : Number(v); };
  return {
    species: $("filter-species").value,
    recording: $("filter-recording").value.trim().toLowerCase(),
    decision: $("filter-decision").value,
    minScore: number("filter-min-score"),
    maxScore: number("filter-max-score"),
    sort: $("sort").value,
  };
}

function matches(c, f) {
  if (f.species !== "" && String(c.species_id) !== f.species) return false;
  if (f.recording && !c.recording_id.toLowerCase().includes(f.recording)) return false;
  if (f.decision === "undecided" && c.decision !== null) return false;
  if (f.decision && f.decision !== "undecided" && c.decision !== f.decision) return false;
  if (f.minScore !== null && !(c.score !== null && c.score >= f.minScore)) return false;
  if (f.maxScore !== null && !(c.score !== null && c.score <= f.maxScore)) return false;
  return true;
}

const byScore = (c) => (c.score === null ? -Infinity : c.score);
const COMPARATORS = {
  input: (a, b) => a.position - b.position,
  "score-desc": (a, b) => byScore(b) - byScore(a) || a.position - b.position,
  "score-asc": (a, b) => byScore(a) - byScore(b) || a.position - b.position,
  recording: (a, b) => a.recording_id.localeCompare(b.recording_id) || a.t_min - b.t_min || a.species_id - b.species_id,
  species: (a, b) => a.species_id - b.species_id || byScore(b) - byScore(a),
  learnt: (a, b) => a.queue - b.queue, // the server's order: the active-learning queue
};

const speciesName = (c) => (c.species ? `${c.species} (${c.species_id})` : String(c.species_id));
const fmtShare = (value) => (value === null || value === undefined ? "–" : value.toFixed(2));

// Rebuild the filtered, sorted view. Keeps the current candidate when it is still shown,
// otherwise goes to the first undecided one (which is also where a reloaded page resumes).
function applyView() {
  const keepId = state.current >= 0 ? state.view[state.current].id : null;
  const f = readFilters();
  state.view = state.all.filter((c) => matches(c, f)).sort(COMPARATORS[f.sort] || COMPARATORS.input);
  let index = keepId === null ? -1 : state.view.findIndex((c) => c.id === keepId);
  if (index < 0) index = state.view.findIndex((c) => c.decision === null);
  if (index < 0 && state.view.length) index = 0;
  $("shown").textContent = `${state.view.length} of ${state.all.length} shown`;
  select(index);
}

function select(index) {
  state.current = index;
  renderList();
  renderDetail();
}

function move(step) {
  const next = Math.min(Math.max(0, state.current + step), state.view.length - 1);
  if (next >= 0 && next !== state.current) select(next);
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

const fmtTime = (c) => `${c.t_min.toFixed(2)}–${c.t_max.toFixed(2)}`;
const fmtBand = (c) => `${Math.round(c.f_min)}–${Math.round(c.f_max)}`;
const fmtScore = (c) => (c.score === null ? "–" : c.score.toFixed(3));

function renderList() {
  const body = $("rows");
  body.replaceChildren();
  const page = Math.max(0, Math.floor(state.current / PAGE_SIZE));
  const first = page * PAGE_SIZE;
  const last = Math.min(state.view.length, first + PAGE_SIZE);
  for (let i = first; i < last; i++) {
    const c = state.view[i];
    const row = document.createElement("tr");
    row.dataset.id = c.id;
    row.dataset.decision = c.decision || "";
    if (i === state.current) row.className = "current";
    cell(row, c.id);
    cell(row, c.recording_id);
    cell(row, speciesName(c));
    cell(row, fmtTime(c));
    cell(row, fmtBand(c));
    cell(row, fmtScore(c));
    cell(row, c.p_tp === null || c.p_tp === undefined ? "–" : c.p_tp.toFixed(2));
    cell(row, c.template_id);
    cell(row, c.decision ? c.decision.toUpperCase() : "", c.decision ? `decision-${c.decision}` : "");
    row.addEventListener("click", () => select(i));
    body.appendChild(row);
  }
  $("page-info").textContent = state.view.length ? `rows ${first + 1}–${last} of ${state.view.length}` : "no rows";
  const current = body.querySelector("tr.current");
  if (current) current.scrollIntoView({ block: "nearest" });
  renderProgress();
}

function renderProgress() {
  const counts = { tp: 0, fp: 0, skip: 0 };
  for (const c of state.all) if (c.decision) counts[c.decision] += 1;
  const decided = counts.tp + counts.fp + counts.skip;
  $("progress").textContent = `${decided} of ${state.all.length} decided (TP ${counts.tp}, FP ${counts.fp}, skipped ${counts.skip})`;
}

async function renderDetail() {
  const c = state.view[state.current];
  const image = $("spectrogram");
  const clip = $("clip");
  $("history").replaceChildren();
  if (!c) {
    $("current-title").textContent = state.all.length ? "no candidate matches the filters" : "no candidates";
    image.removeAttribute("src");
    clip.removeAttribute("src");
    return;
  }
  const decided = c.decision ? ` — ${c.decision.toUpperCase()} by ${c.reviewer}` : " — undecided";
  $("current-title").textContent =
    `#${c.id} ${c.recording_id}, ${speciesName(c)} (song type ${c.songtype_id}), ${fmtTime(c)} s, ${fmtBand(c)} Hz, score ${fmtScore(c)}${decided}`;
  const base = `/api/candidates/${c.id}`;
  if (image.dataset.id !== String(c.id)) state.pan = 0; // a new candidate opens on its box
  const zoom = `context_s=${$("zoom").value}`;
  const view = state.pan ? `${zoom}&pan=${state.pan}` : zoom;
  $("pan-label").textContent = state.pan ? `moved ${state.pan > 0 ? "+" : ""}${state.pan}` : "";
  if (image.dataset.id !== String(c.id) || image.dataset.zoom !== view) {
    image.dataset.zoom = view;
    if (image.dataset.id !== String(c.id)) clip.src = `${base}/audio.wav`;
    image.dataset.id = c.id;
    image.src = `${base}/spectrogram.png?${view}`;
  }
  const next = state.view[state.current + 1];
  if (next) new Image().src = `/api/candidates/${next.id}/spectrogram.png?${zoom}`; // warm the cache for the next one
  if (c.decision) {
    try {
      const history = await api(`${base}/history`);
      if (state.view[state.current] !== c) return;
      for (const d of history) {
        const item = document.createElement("li");
        item.textContent = `${d.decision.toUpperCase()} by ${d.reviewer} at ${d.decided_at}`;
        $("history").appendChild(item);
      }
    } catch (error) {
      showMessage(`could not load the history: ${error.message}`, true);
    }
  }
}

async function decide(decision) {
  const c = state.view[state.current];
  if (!c || state.busy) return;
  state.busy = true;
  try {
    const reviewer = $("reviewer").value.trim();
    const saved = await api(`/api/candidates/${c.id}/decision`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(reviewer ? { decision, reviewer } : { decision }),
    });
    Object.assign(c, { decision: saved.decision, reviewer: saved.reviewer, decided_at: saved.decided_at });
    showMessage(`#${c.id} marked ${decision.toUpperCase()}`);
    if (saved.reordered) {
      await reload(); // the head was retrained: the undecided candidates are in a new order
      showMessage(`#${c.id} marked ${decision.toUpperCase()}; the queue was re-ranked`);
    } else if (state.current < state.view.length - 1) select(state.current + 1);
    else select(state.current);
    if (state.learning) await renderLearning();
  } catch (error) {
    showMessage(`not saved: ${error.message}`, true);
  } finally {
    state.busy = false;
  }
}

function play() {
  const clip = $("clip");
  if (clip.src) clip.play().catch((error) => showMessage(`cannot play: ${error.message}`, true));
}

function zoom(step) {
  const select = $("zoom");
  const index = Math.min(Math.max(0, select.selectedIndex + step), select.options.length - 1);
  if (index !== select.selectedIndex) {
    select.selectedIndex = index;
    renderDetail();
  }
}

const MAX_PAN = 20; // as the server's review.media.MAX_PAN

function pan(step) {
  const moved = step === 0 ? 0 : Math.min(Math.max(-MAX_PAN, (state.pan || 0) + step), MAX_PAN);
  if (moved !== (state.pan || 0)) {
    state.pan = moved;
    renderDetail();
  }
}

const KEY_ACTIONS = {
  z: () => zoom(-1),
  x: () => zoom(1),
  ",": () => pan(-1),
  ".": () => pan(1),
  c: () => pan(0),
  t: () => decide("tp"),
  f: () => decide("fp"),
  " ": () => decide("skip"),
  p: play,
  ArrowLeft: () => move(-1),
  ArrowUp: () => move(-1),
  ArrowRight: () => move(1),
  ArrowDown: () => move(1),
};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const tag = event.target.tagName;
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { // typing a name or a filter
    if (event.key === "Enter" || event.key === "Escape") event.target.blur(); // back to the review keys
    return;
  }
  const action = KEY_ACTIONS[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!action) return;
  event.preventDefault(); // no page scroll on space/arrows, no second "click" on a focused button
  action();
});

function bindButton(id, action) {
  $(id).addEventListener("click", (event) => {
    event.currentTarget.blur(); // a focused button would also react to the space key
    action();
  });
}

function fillSpeciesFilter() {
  const seen = new Map();
  for (const c of state.all) if (!seen.has(c.species_id)) seen.set(c.species_id, speciesName(c));
  for (const [id, name] of [...seen.entries()].sort((a, b) => a[0] - b[0])) {
    const option = document.createElement("option");
    option.value = String(id);
    option.textContent = name;
    $("filter-species").appendChild(option);
  }
}

// The candidates in the server's order (the learning queue when the page learns); the place
// in the queue is kept as "queue", and the next undecided candidate is selected.
async function reload() {
  const candidates = await api("/api/candidates");
  state.all = candidates.map((c, queue) => ({ ...c, queue, position: c.input_rank }));
  state.current = -1;
  applyView();
}

async function renderLearning() {
  const learning = await api("/api/learning");
  const body = $("learning-rows");
  body.replaceChildren();
  for (const s of learning.species) {
    const row = document.createElement("tr");
    cell(row, s.species ? `${s.species} (${s.species_id})` : String(s.species_id));
    for (const value of [s.tp, s.fp, s.skip]) cell(row, String(value));
    cell(row, fmtShare(s.held_out_precision));
    cell(row, fmtShare(s.held_out_recall));
    cell(row, s.random_tp + s.random_fp
      ? `${fmtShare(s.random_precision)} (${fmtShare(s.random_low)}–${fmtShare(s.random_high)}, n=${s.random_tp + s.random_fp})` : "–");
    body.appendChild(row);
  }
  $("learning-caption").textContent =
    `active learning: head retrained ${learning.fits} time(s); next in ${learning.until_fit} decision(s)`;
  $("learning").hidden = false;
}

async function start() {
  bindButton("btn-tp", () => decide("tp"));
  bindButton("btn-fp", () => decide("fp"));
  bindButton("btn-skip", () => decide("skip"));
  bindButton("btn-prev", () => move(-1));
  bindButton("btn-next", () => move(1));
  bindButton("btn-play", play);
  bindButton("pan-left", () => pan(-1));
  bindButton("pan-right", () => pan(1));
  bindButton("page-prev", () => move(-PAGE_SIZE));
  bindButton("page-next", () => move(PAGE_SIZE));
  for (const id of ["filter-species", "filter-decision", "sort"]) {
    $(id).addEventListener("change", (event) => {
      event.target.blur(); // otherwise "t" or "f" would pick an option in the focused list instead of deciding
      applyView();
    });
  }
  for (const id of ["filter-recording", "filter-min-score", "filter-max-score"]) $(id).addEventListener("input", applyView);
  $("zoom").addEventListener("change", (event) => {
    event.target.blur();
    renderDetail();
  });
  $("speed").addEventListener("change", (event) => {
    event.target.blur();
    $("clip").playbackRate = Number($("speed").value);
  });
  $("clip").addEventListener("loadedmetadata", () => { $("clip").playbackRate = Number($("speed").value); });
  $("mode").addEventListener("change", async (event) => {
    event.target.blur();
    try {
      await api("/api/learning", { method: "POST", headers: { "Content-Type": "application/json" },
                                   body: JSON.stringify({ mode: $("mode").value }) });
      await reload();
      await renderLearning();
      showMessage(`next: ${$("mode").selectedOptions[0].textContent}`);
    } catch (error) {
      showMessage(`could not change the queue: ${error.message}`, true);
    }
  });
  $("reviewer").addEventListener("change", () => localStorage.setItem("dawnchorus-reviewer", $("reviewer").value.trim()));
  $("spectrogram").addEventListener("error", () => {
    if ($("spectrogram").getAttribute("src")) showMessage("the spectrogram could not be drawn (is the audio file readable?)", true);
  });
  try {
    const [session, candidates, learning] = await Promise.all([api("/api/session"), api("/api/candidates"),
                                                               api("/api/learning")]);
    $("reviewer").value = localStorage.getItem("dawnchorus-reviewer") || session.reviewer;
    state.all = candidates.map((c, queue) => ({ ...c, position: c.input_rank, queue }));
    state.learning = learning.active;
    if (learning.active) { // the learning queue is the order to follow
      $("mode-box").hidden = false;
      $("mode").value = learning.mode;
      $("sort").value = "learnt";
      await renderLearning();
    }
    fillSpeciesFilter();
    applyView();
    document.body.dataset.ready = "true"; // for automated tests: the list is on screen
  } catch (error) {
    showMessage(`could not load the candidates: ${error.message}`, true);
  }
}

start();
