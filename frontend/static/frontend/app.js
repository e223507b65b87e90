// Progressive enhancement for Perch Agile's pages: every action goes through the REST API.
"use strict";

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// A message for the person: beside the form it answers where one is given (where their
// eyes are: the page's status line may be a screen away), else in the page's status line.
function flash(message, kind = "ok", near = null) {
  if (near) {
    let note = near.nextElementSibling;
    if (!note || !note.classList.contains("form-message")) {
      note = document.createElement("p");
      note.setAttribute("role", kind === "error" ? "alert" : "status");
      near.after(note);
    }
    note.className = `form-message ${kind}`;
    note.textContent = message;
    note.scrollIntoView({ block: "nearest" }); // a long form's button may sit at the window's edge
    return;
  }
  // Else the status line, which floats at the foot of the window (app.css): labeling,
  // playback and undo answer wherever the person has scrolled to.
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.className = kind;
  clearTimeout(flash.fading);
  if (kind !== "error") flash.fading = setTimeout(() => { box.textContent = ""; }, 6000);
}

document.getElementById("flash")?.addEventListener("click", (event) => { event.target.textContent = ""; });

async function api(url, options = {}) {
  const headers = { "X-CSRFToken": csrfToken(), Accept: "application/json", ...(options.headers || {}) };
  const response = await fetch(url, { credentials: "same-origin", ...options, headers });
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `request failed (${response.status})`);
  return data;
}

function formJson(form) {
  const data = {};
  for (const element of form.elements) {
    if (!element.name) continue;
    if (element.type === "checkbox" && "list" in element.dataset) {
      // A group of checkboxes of one name: the checked ones' values, as numbers.
      data[element.name] = [...(data[element.name] || []), ...(element.checked ? [Number(element.value)] : [])];
    } else if (element.type === "checkbox") data[element.name] = element.checked;
    else if (element.value === "") continue;
    else if (element.multiple) data[element.name] = [...element.selectedOptions].map((o) => Number(o.value));
    else if (element.type === "number") data[element.name] = Number(element.value);
    else data[element.name] = element.value;
  }
  return data;
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (form.dataset.apiForm) {
    event.preventDefault();
    const method = form.dataset.method || "POST";
    let result = {};
    try {
      if (method === "DELETE") {
        await api(`${form.dataset.apiForm}?${new URLSearchParams(formJson(form))}`, { method });
      } else {
        result = await api(form.dataset.apiForm, {
          method,
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(formJson(form)),
        });
      }
      if (form.dataset.then === "invitation-link") return showInvitationLink(form, result);
      flash(result.message || "Saved.", "ok", form); // an answer with words of its own says them
      if (form.dataset.then === "reload") window.location.reload();
      else if (form.dataset.then === "reload-if-queued") {
        if (result.queued) setTimeout(() => window.location.reload(), 1500);
      }
      // "{id}" in the address to go on to: what the request created (a new classifier version).
      else if (form.dataset.then) window.location.href = form.dataset.then.replace("{id}", result.id);
    } catch (error) {
      flash(error.message, "error", form);
    }
  } else if (form.dataset.clipForm) {
    event.preventDefault();
    searchWithClip(form);
  } else if (form.dataset.multipartForm) {
    event.preventDefault();
    try {
      await api(form.dataset.multipartForm, { method: "POST", body: new FormData(form) });
      window.location.reload();
    } catch (error) {
      flash(error.message, "error", form);
    }
  } else if (form.dataset.importForm) {
    event.preventDefault();
    try {
      showImport(form, await api(form.dataset.importForm, { method: "POST", body: new FormData(form) }));
    } catch (error) {
      flash(error.message, "error", form);
    }
  }
});

// A new invitation link: shown once (the server keeps only its hash), ready to copy.
function showInvitationLink(form, link) {
  const box = form.querySelector("[data-invitation-link]");
  const input = box.querySelector("input");
  input.value = link.url;
  box.hidden = false;
  input.select();
  const until = new Date(link.expires_at).toISOString().slice(0, 16).replace("T", " ");
  const mail = link.mail_sent ? ` Mailed to ${link.email}.` : link.mail_error ? ` Not mailed: ${link.mail_error}.` : "";
  flash(`Copy this link and send it: it lets one person join as ${link.role}, until ${until} UTC. It is shown only now.${mail}`,
    link.mail_error ? "error" : "ok", box);
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-link]");
  if (!button) return;
  const input = button.parentElement.querySelector("input");
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Press Ctrl+C"; // no clipboard access (plain http): the text is selected
  }
});

// A label import: written, waiting for a keep-or-overwrite decision, or queued for a worker.
async function showImport(form, result) {
  const box = form.querySelector("[data-import-decision]");
  box.hidden = true;
  const url = form.dataset.importDetail.replace(/0\/$/, `${result.id}/`);
  const unmatched = result.unmatched_files.length ? ` Files not in this deployment: ${result.unmatched_files.join(", ")}.` : "";
  const others = result.disagreeing ? ` ${result.disagreeing} label(s) of ${result.disagreeing_annotators.join(", ")} differ; theirs stay.` : "";
  const counts = `${result.selections} selections: ${result.windows} window label(s), ${result.new} new, ${result.same} the same, ${result.changed} different from yours.`;
  if (result.status === "queued") {
    flash(`Importing ${result.file_name || "the table"} in the background…`, "ok", form);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return showImport(form, await api(url));
  }
  if (result.status === "failed") return flash(`Nothing was imported: ${result.error}`, "error", form);
  if (result.status === "planned") {
    box.querySelector("[data-import-summary]").textContent = `${counts}${others}${unmatched} Nothing is written until you choose.`;
    box.hidden = false;
    for (const button of box.querySelectorAll("[data-import-mode]")) {
      button.onclick = async () => {
        box.hidden = true;
        try {
          const decision = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ mode: button.dataset.importMode }) };
          showImport(form, await api(url, decision));
        } catch (error) {
          flash(error.message, "error", form);
        }
      };
    }
    return;
  }
  flash(`Imported: ${result.written} label(s) written. ${counts}${others}${unmatched}`, "ok", form);
}

document.addEventListener("click", async (event) => {
  const pick = event.target.closest("[data-pick-threshold]");
  const chart = pick && pick.closest("[data-threshold-url]");
  if (chart) {
    const body = JSON.stringify({ label: Number(chart.dataset.label), threshold: Number(pick.dataset.pickThreshold) });
    await api(chart.dataset.thresholdUrl, { method: "POST", headers: { "Content-Type": "application/json" }, body })
      .then(() => window.location.reload())
      .catch((e) => flash(e.message, "error", chart));
    return;
  }
  const ingest = event.target.closest("[data-ingest]");
  if (ingest) {
    const data = await api(ingest.form.dataset.ingestUrl, { method: "POST" })
      .catch((e) => flash(e.message, "error", ingest.form));
    if (data) { flash(`${data.queued} file(s) queued.`, "ok", ingest.form); pollProgress(); }
    return;
  }
});

async function searchWithClip(form) {
  try {
    const clip = await api(form.dataset.clipForm, { method: "POST", body: new FormData(form) });
    await searchWhenEmbedded(form.dataset.clipForm, clip, form.dataset.searchUrl);
  } catch (error) {
    flash(error.message, "error", form);
  }
}

// Wait for a worker to embed an example clip (or region), then search with it.
async function searchWhenEmbedded(clipListUrl, clip, searchUrl) {
  flash("Embedding the example…");
  for (;;) {
    const state = await api(`${clipListUrl}${clip.id}/`);
    if (state.status === "done") break;
    if (state.status === "failed") throw new Error(`${state.filename}: ${state.error}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  window.location.href = `${searchUrl}?clip=${clip.id}`;
}

// A time in a file: "12.5 s" below a minute, "4:05" below an hour, "1:04:05" beyond.
function fileTime(seconds) {
  if (seconds < 60) return `${Number(seconds.toFixed(seconds < 10 ? 3 : 1))} s`;
  const whole = Math.round(seconds);
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor(whole / 60) % 60, whole % 60];
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

function formatDuration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// Deployment progress: poll while anything is queued or embedding.
async function pollProgress() {
  const rows = [...document.querySelectorAll("[data-progress-url]")];
  let busy = false;
  for (const row of rows) {
    const data = await api(row.dataset.progressUrl).catch(() => null);
    if (!data) continue;
    const p = data.progress;
    busy = busy || p.files_queued + p.files_embedding > 0;
    row.querySelector("progress").value = p.fraction_done;
    const set = (field, text) => { const el = row.querySelector(`[data-field=${field}]`); if (el) el.textContent = text; };
    set("percent", `${Math.round(p.fraction_done * 100)}%`);
    set("files", `${p.files_done} done, ${p.files_failed} failed of ${p.files_total}`);
    set("hours", p.audio_hours_done.toFixed(2));
    set("windows", p.windows);
    const pace = p.windows_per_s ? `· ${p.windows_per_s.toFixed(1)} windows/s` : "";
    const left = p.eta_s && busy ? `, about ${formatDuration(p.eta_s)} left` : "";
    set("pace", pace + left);
    busy = showSearchIndexes(data.search_indexes || []) || busy;
  }
  const files = document.querySelector("[data-recordings-url]");
  if (files) await showRecordings(files);
  if (busy) setTimeout(pollProgress, 2000);
}

const capitalised = (text) => text.charAt(0).toUpperCase() + text.slice(1);

// A deployment's file table, row by row, as deployment.html words it.
async function showRecordings(table) {
  const recordings = await api(table.dataset.recordingsUrl).catch(() => []);
  for (const r of recordings) {
    const row = table.querySelector(`tr[data-recording="${r.id}"]`);
    if (!row) continue;
    const cell = (field) => row.querySelector(`[data-field=${field}]`);
    cell("status").className = `status-${r.status}`;
    cell("status").textContent = capitalised(r.status);
    const windows = { done: `${r.windows_done}`, embedding: `${r.windows_done} / ${r.windows_expected ?? "?"}` };
    cell("windows").textContent = windows[r.status] || "";
    if (r.status === "done" && !cell("file").querySelector("a")) {
      const link = document.createElement("a");
      link.href = table.dataset.recordingPage.replace(/0\/$/, `${r.id}/`);
      link.textContent = r.filename;
      cell("file").replaceChildren(link);
    }
    const notes = [[r.error, "error"], [r.warning, "warning"]].filter(([text]) => text).map(([text, kind]) => {
      const span = document.createElement("span");
      span.className = kind;
      span.textContent = text;
      return span;
    });
    cell("notes").replaceChildren(...notes);
  }
}

// Classifiers being trained, on the project page: their status and quality as they come.
async function pollClassifiers() {
  for (const row of document.querySelectorAll("[data-classifier-url]")) {
    const c = await api(row.dataset.classifierUrl).catch(() => null);
    if (!c) continue;
    const status = row.querySelector("[data-field=status]");
    status.className = `status-${c.status}`;
    status.textContent = capitalised(c.status) + (c.error ? `: ${c.error}` : "");
    if (c.status === "done" || c.status === "failed") {
      delete row.dataset.classifierUrl;
      for (const field of ["roc_auc", "average_precision"]) {
        const value = (o) => (o[field] === null ? "n/a" : o[field].toFixed(3));
        const named = (o) => (c.outputs.length > 1 ? `${o.label_name}: ${value(o)}` : value(o));
        row.querySelector(`[data-field=${field}]`).textContent = c.outputs.map(named).join(", ");
      }
    }
  }
  if (document.querySelector("[data-classifier-url]")) setTimeout(pollClassifiers, 2000);
}
if (document.querySelector("[data-classifier-url]")) pollClassifiers();

// The project's search index cards (as _search_index.html words them); true while a build is queued or runs.
function showSearchIndexes(indexes) {
  let building = false;
  for (const card of document.querySelectorAll("[data-search-index]")) {
    const index = indexes[Number(card.dataset.searchIndex)];
    if (!index) continue;
    building = building || index.status === "queued" || index.status === "running";
    const bar = card.querySelector("progress");
    bar.hidden = index.status !== "running";
    bar.value = index.progress || 0;
    let state = { running: "building", queued: "queued", failed: "the last build failed", done: "ready" }[index.status] || "none yet";
    let percent = index.status === "running" && index.progress !== null ? `, ${Math.round(index.progress * 100)}%` : "";
    if (index.status === "running" && index.graphs_planned) {
      state = "ready; graphs of each deployment and time of day being built";
      percent = `, ${index.graphs_built} of ${index.graphs_planned}`;
    }
    const newer = index.windows_not_indexed ? `, ${index.windows_not_indexed} newer ones searched exactly until the next build` : "";
    card.querySelector("[data-field=index-status]").textContent = `${state}${percent} · ${index.windows_indexed} windows indexed${newer}`;
  }
  return building;
}
if (document.querySelector("[data-progress-url]")) pollProgress();

// Labeling at keyboard speed on lists of hits (search results, review queues, detections).
// The keys here are annotations.vocabulary.PAGE_KEYS; labels' own shortcut keys pick the active label.
const hits = () => [...document.querySelectorAll(".hit")];
let current = 0;
const undoStack = [];
let savesInFlight = 0; // label requests not yet answered: leaving the page asks first
const playback = { rate: 1, context: false };
// Slowed calls drop in pitch, as on a tape: fast trills become audible; 2× skims a quiet stretch.
const RATES = [1, 0.5, 0.25, 2];

function activeLabel() {
  const select = document.getElementById("active-label");
  return select && select.value ? { id: Number(select.value), name: select.selectedOptions[0].dataset.name } : null;
}

function focusHit(index, scroll = true) {
  const list = hits();
  if (!list.length) return;
  current = Math.max(0, Math.min(index, list.length - 1));
  list.forEach((hit, i) => hit.classList.toggle("current", i === current));
  list[current].focus({ preventScroll: true });
  if (scroll) list[current].scrollIntoView({ block: "nearest" });
  document.dispatchEvent(new CustomEvent("hit-focus", { detail: list[current] }));
  if (current >= list.length - 3) loadNextPage();
}

function chipFor(hit, labelId, annotator) {
  return hit.querySelector(`.chip[data-label-id="${labelId}"][data-annotator="${CSS.escape(annotator)}"]`);
}

// A label given to a box keeps its band, [low, high] Hz; null for the whole window.
const bandOf = (chip) => (chip && chip.dataset.lowHz ? [Number(chip.dataset.lowHz), Number(chip.dataset.highHz)] : null);
const bandFields = (band) => (band ? { low_hz: band[0], high_hz: band[1] } : {});

// Show one annotator's value (and band) for a label on a hit (a null value removes it);
// returns the previous {value, band}.
function showLabel(hit, label, annotator, value, band = null) {
  const chips = hit.querySelector("[data-labels]");
  let chip = chipFor(hit, label.id, annotator);
  const previous = { value: chip ? chip.dataset.value : null, band: bandOf(chip) };
  if (value === null) {
    if (chip) chip.remove();
  } else {
    if (!chip) {
      chip = document.createElement("span");
      chip.className = "chip";
      chip.dataset.labelId = label.id;
      chip.dataset.annotator = annotator;
      chips.append(chip);
    }
    chip.dataset.value = value;
    chip.textContent = `${label.name}: ${value} (${annotator})`;
    delete chip.dataset.lowHz;
    delete chip.dataset.highHz;
    if (band) {
      [chip.dataset.lowHz, chip.dataset.highHz] = band;
      chip.append(" ", Object.assign(document.createElement("small"), {
        textContent: `box ${(band[0] / 1000).toFixed(1)}–${(band[1] / 1000).toFixed(1)} kHz`,
      }));
    }
  }
  refreshHit(hit);
  return previous;
}

// A hit's colour shows my value for the active label; a red edge, annotators who disagree.
function refreshHit(hit) {
  const me = document.body.dataset.user;
  const chips = [...hit.querySelectorAll(".chip")];
  chips.forEach((chip) => chip.classList.toggle("other", chip.dataset.annotator !== me));
  const others = chips.filter((chip) => chip.dataset.annotator !== me).length;
  const labels = hit.querySelector("[data-labels]");
  if (labels) labels.dataset.others = others;
  const label = activeLabel();
  if (!label) return;
  const mine = chipFor(hit, label.id, document.body.dataset.user);
  if (mine) hit.dataset.labeled = mine.dataset.value; else delete hit.dataset.labeled;
  const values = new Set([...hit.querySelectorAll(`.chip[data-label-id="${label.id}"]`)].map((c) => c.dataset.value));
  hit.classList.toggle("conflict", values.has("positive") && values.has("negative"));
  showReviewProgress();
}

// A review queue's progress: how many of its windows I have labeled for the active label.
function showReviewProgress() {
  const counter = document.querySelector("[data-review-progress]");
  if (!counter) return;
  const all = hits();
  const done = all.filter((hit) => hit.dataset.labeled).length;
  counter.querySelector("progress").max = all.length;
  counter.querySelector("progress").value = done;
  counter.querySelector("span").textContent = `${done} of ${all.length} labeled`;
}

function annotationUrl(hit) {
  return hit.closest("[data-annotation-url]").dataset.annotationUrl;
}

async function labelHit(hit, value, band = null) {
  const label = activeLabel();
  if (!label) { flash("Add a label to the project first.", "error"); return false; }
  const me = document.body.dataset.user;
  const window_ = Number(hit.dataset.window);
  savesInFlight += 1;
  try {
    await api(annotationUrl(hit), {
      method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ window: window_, label: label.id, value, ...bandFields(band) }),
    });
  } catch (error) {
    flash(error.message, "error");
    return false;
  } finally {
    savesInFlight -= 1;
  }
  const previous = showLabel(hit, label, me, value, band);
  undoStack.push([{ hit, label, previous }]);
  flash(`${label.name}: ${value}${band ? " (the box's band)" : ""} ✓ saved`);
  return true;
}

// "Mark all unlabeled on this page negative": hits nobody has labeled for the active label.
async function markPageNegative() {
  const label = activeLabel();
  if (!label) return;
  const unlabeled = hits().filter((hit) => !hit.querySelector(`.chip[data-label-id="${label.id}"]`));
  if (!unlabeled.length) { flash("Every hit here is labeled for this label."); return; }
  const url = `${annotationUrl(unlabeled[0])}bulk/`;
  savesInFlight += 1;
  try {
    await api(url, {
      method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ windows: unlabeled.map((hit) => Number(hit.dataset.window)), label: label.id, value: "negative" }),
    });
  } catch (error) {
    flash(error.message, "error");
    return;
  } finally {
    savesInFlight -= 1;
  }
  const me = document.body.dataset.user;
  undoStack.push(unlabeled.map((hit) => ({ hit, label, previous: showLabel(hit, label, me, "negative") })));
  flash(`${unlabeled.length} unlabeled hits marked ${label.name}: negative (u undoes).`);
}

// Undo puts every label of the last action back in one request and one transaction.
// keepalive lets it finish if the page is left at once; leaving while it runs asks first.
async function undo() {
  const changes = undoStack.pop();
  if (!changes) { flash("Nothing to undo."); return; }
  const me = document.body.dataset.user;
  const { label } = changes[0];
  savesInFlight += 1;
  try {
    await api(`${annotationUrl(changes[0].hit)}restore/`, {
      method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        label: label.id,
        changes: changes.map(({ hit, previous }) => ({ window: Number(hit.dataset.window), value: previous.value, ...bandFields(previous.band) })),
      }),
    });
  } catch (error) {
    undoStack.push(changes);
    flash(error.message, "error");
    return;
  } finally {
    savesInFlight -= 1;
  }
  for (const { hit, previous } of changes) showLabel(hit, label, me, previous.value, previous.band);
  focusHit(hits().indexOf(changes[0].hit));
  flash(changes.length > 1 ? `Undone (${changes.length} labels).` : "Undone.");
}

window.addEventListener("beforeunload", (event) => {
  if (savesInFlight > 0) event.preventDefault();
});

function audioOf(hit) {
  const audio = hit.querySelector("audio");
  if (audio && audio.dataset.src) {
    const context = playback.context ? "?context=2" : "";
    const wanted = new URL(audio.dataset.src + context, window.location.href).href;
    if (audio.src !== wanted) audio.src = wanted;
  }
  return audio;
}

function togglePlay(hit) {
  const audio = audioOf(hit);
  if (!audio) return;
  if (audio.paused) {
    audio.playbackRate = playback.rate;
    audio.preservesPitch = false;
    audio.play().catch((error) => flash(`Cannot play: ${error.message}`, "error"));
  } else {
    audio.pause();
  }
}

function toggleContext() {
  setContext(!playback.context);
  flash(playback.context ? "Playing and showing 2 s of context either side." : "Playing the window alone.");
}

function setContext(on) {
  playback.context = on;
  document.querySelectorAll("[data-playback=context]").forEach((box) => { box.checked = on; });
  applySpectrogramStyle();
}

function setRate(rate) {
  playback.rate = rate;
  document.querySelectorAll("[data-playback=rate]").forEach((select) => { select.value = String(rate); });
  document.querySelectorAll(".hit audio").forEach((audio) => { audio.playbackRate = rate; });
  document.dispatchEvent(new CustomEvent("playback-rate"));
  flash(rate === 1 ? "Playing at normal speed." : `Playing at ${rate}× speed.`);
}

// Focus follows the playing hit, and only one hit plays at a time.
document.addEventListener("play", (event) => {
  const hit = event.target.closest && event.target.closest(".hit");
  if (!hit) return;
  document.querySelectorAll(".hit audio").forEach((audio) => { if (audio !== event.target) audio.pause(); });
  const index = hits().indexOf(hit);
  if (index !== current) focusHit(index);
}, true);

document.addEventListener("change", (event) => {
  const control = event.target.closest("[data-playback]");
  if (control && control.dataset.playback === "context") setContext(control.checked);
  if (control && control.dataset.playback === "rate") setRate(Number(control.value));
  if (event.target.id === "active-label") hits().forEach(refreshHit);
});

// More results as the list's end comes into view: appended in place, so the scroll position stays.
let loadingPage = null;
function loadNextPage() {
  const marker = document.querySelector("[data-next-page]");
  if (!marker || !marker.dataset.nextPage || loadingPage) return loadingPage;
  loadingPage = (async () => {
    try {
      const response = await fetch(`${marker.dataset.nextPage}&partial=1`, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`more results failed (${response.status})`);
      const fragment = document.createElement("template");
      fragment.innerHTML = await response.text();
      const next = fragment.content.querySelector("[data-next-page-value]");
      marker.dataset.nextPage = next ? next.dataset.nextPageValue : "";
      if (next) next.remove();
      const added = [...fragment.content.querySelectorAll(".hit")];
      document.querySelector("ol.hits").append(fragment.content);
      added.forEach(refreshHit);
      added.forEach((hit) => applySpectrogramStyle(hit));
      if (!marker.dataset.nextPage) marker.textContent = "End of the results.";
      hits().forEach((hit, i) => hit.classList.toggle("current", i === current));
    } catch (error) {
      flash(error.message, "error");
    } finally {
      loadingPage = null;
    }
  })();
  return loadingPage;
}
const nextPageMarker = document.querySelector("[data-next-page]");
if (nextPageMarker && "IntersectionObserver" in window) {
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadNextPage(); }).observe(nextPageMarker);
}

function go(hit, key) {
  const url = hit.dataset[key];
  if (url) window.location.href = url;
}

const help = document.getElementById("keys-help");
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-show-help]") && help) help.showModal();
});

// Past the last hit with no more to load: say so, rather than silently staying put.
function next() {
  const marker = document.querySelector("[data-next-page]");
  const more = marker && marker.dataset.nextPage;
  const atEnd = current >= hits().length - 1 && !more;
  const end = document.querySelector(".end-of-queue");
  if (end) end.hidden = !atEnd;
  if (atEnd) flash(`End of the list: all ${hits().length} hits seen.`);
  else focusHit(current + 1);
  return !atEnd;
}

// A checkbox whose choice this browser remembers under `key`: `apply(on)` runs at once
// and after every change. Returns a function that reads the choice.
function rememberedOption(selector, key, apply = () => {}) {
  const on = () => localStorage.getItem(key) === "1";
  const show = () => {
    document.querySelectorAll(selector).forEach((box) => { box.checked = on(); });
    apply(on());
  };
  document.addEventListener("change", (event) => {
    if (!event.target.matches(selector)) return;
    localStorage.setItem(key, event.target.checked ? "1" : "0");
    show();
  });
  show();
  return on;
}

// After a label, the next hit plays by itself when the annotator asked for that.
const autoPlay = rememberedOption("[data-auto-play]", "autoPlay");
function labelThenNext(hit, value) {
  return labelHit(hit, value).then((ok) => {
    if (ok && next() && autoPlay()) togglePlay(hits()[current]);
  });
}

// Hits per row as laid out now: 1 in the list, as many as fit the screen in the grid.
function columns() {
  const list = hits();
  const row = list.findIndex((hit) => hit.offsetTop !== list[0].offsetTop);
  return row === -1 ? list.length : row;
}

// Down past the loaded tiles waits for the next page, so focus lands on the tile below.
async function down() {
  const step = columns();
  if (current + step >= hits().length) await loadNextPage();
  focusHit(current + step);
}

const pageKeys = {
  j: () => next(),
  k: () => focusHit(current - 1),
  ArrowRight: () => next(),
  ArrowLeft: () => focusHit(current - 1),
  ArrowDown: () => down(),
  ArrowUp: () => focusHit(Math.max(0, current - columns())),
  " ": (hit) => togglePlay(hit),
  1: (hit) => labelThenNext(hit, "positive"),
  2: (hit) => labelThenNext(hit, "negative"),
  3: (hit) => labelThenNext(hit, "unsure"),
  u: () => undo(),
  n: () => markPageNegative(),
  s: () => setRate(RATES[(RATES.indexOf(playback.rate) + 1) % RATES.length]),
  c: () => toggleContext(),
  "=": () => stepGain(1),
  "+": () => stepGain(1),
  "-": () => stepGain(-1),
  m: (hit) => go(hit, "moreUrl"),
  a: (hit) => go(hit, "addUrl"),
  x: (hit) => go(hit, "negativeUrl"),
};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, select, textarea, dialog") && event.key !== "Escape") return;
  if (event.key === "?" && help) { event.preventDefault(); help.open ? help.close() : help.showModal(); return; }
  if (!hits().length) return;
  if (event.key === " " && event.shiftKey) return; // the recording view's: the whole file
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const labelOption = document.querySelector(`#active-label option[data-shortcut="${CSS.escape(key)}"]`);
  if (labelOption) {
    event.preventDefault();
    labelOption.selected = true;
    hits().forEach(refreshHit);
    flash(`Active label: ${labelOption.dataset.name}`);
    return;
  }
  if (pageKeys[key]) { event.preventDefault(); pageKeys[key](hits()[current]); }
});

document.addEventListener("click", (event) => {
  const button = event.target.closest(".label-buttons button[data-value]");
  if (!button) return;
  const hit = button.closest(".hit");
  focusHit(hits().indexOf(hit));
  labelHit(hit, button.dataset.value);
});

hits().forEach(refreshHit);
// The sticky labeling toolbar must not cover the hit scrolled to (.hit's scroll-margin-top).
function measureToolbar() {
  const toolbar = document.querySelector(".toolbar");
  if (toolbar) document.documentElement.style.setProperty("--toolbar-height", `${toolbar.offsetHeight}px`);
}
measureToolbar();
window.addEventListener("resize", measureToolbar);
// The first hit is current, and the page opens at its top, header and filters in view.
if (hits().length) focusHit(0, false);

// A recording's spectrogram, zoomed from 5 s to the whole file ([ and ] or the buttons):
// drag a region to search with it; click to play the window there or open that part of
// the file; a playhead runs while a window plays.
const regionView = document.querySelector("[data-region-view]");
if (regionView) {
  const img = regionView.querySelector("img");
  const box = regionView.querySelector(".region");
  const outline = regionView.querySelector(".current-window");
  const playhead = regionView.querySelector(".playhead");
  const actions = document.querySelector("[data-region-actions]");
  const d = regionView.dataset;
  const duration = Number(d.duration);
  // A time-expanded recording (bats) is drawn and played as the model hears it: a second
  // heard is `speed` seconds of the file, whose own seconds and Hz the page shows.
  const speed = Number(d.speed || 1);
  // [seconds shown, the tile's pixels per second heard]: every tile is about 1,000-1,500 px
  // wide. The last level is the whole file, from its overview picture.
  const levels = [[5, 200], [10, 100], [30, 50], [60, 25]].map(([length, px]) => [length * speed, px])
    .filter(([length]) => length < duration);
  levels.push([duration, 0]);
  let zoom = Math.min(levels.length - 1, Number(localStorage.getItem("recordingZoom") || 2));
  let view = { start: Number(d.spanStart), end: Number(d.spanEnd) };
  const showView = (centre) => {
    const [length, pxPerS] = levels[zoom];
    const url = new URL(pxPerS ? d.tileUrl : d.overviewUrl, window.location.href);
    if (pxPerS) {
      // A tile of `length` starts on a multiple of half its length: the one centred nearest `centre`.
      const half = length / 2;
      const start = Math.max(0, half * Math.round((centre - half) / half));
      view = { start, end: Math.min(start + length, duration) };
      url.searchParams.set("start", view.start);
      url.searchParams.set("end", view.end);
      url.searchParams.set("px_per_s", pxPerS);
    } else {
      view = { start: 0, end: duration };
    }
    img.src = url.href;
    applySpectrogramStyle(regionView);
    const digits = speed < 1 ? 2 : 1;
    document.querySelector("[data-zoom-label]").textContent = pxPerS
      ? `${view.start.toFixed(digits)}–${view.end.toFixed(digits)} s` : `the whole file (${formatDuration(duration)})`;
    box.hidden = true;
    actions.hidden = true;
    drawTimeAxis();
    if (hits().length) markWindow(hits()[current], false);
  };
  // The picture is drawn to the page's width; its frequency axis scales with it.
  const axis = () => Number(d.axisPx) * img.clientWidth / (img.naturalWidth || img.clientWidth);
  const pxPerSecond = () => (img.clientWidth - axis()) / (view.end - view.start);
  const secondsAt = (clientX) => {
    const x = clientX - img.getBoundingClientRect().left - axis();
    return Math.max(view.start, Math.min(view.end, view.start + x / pxPerSecond()));
  };
  const xOf = (seconds) => axis() + (seconds - view.start) * pxPerSecond();
  // Ticks under the picture: seconds in the file and, where the start is known, the clock
  // time in the deployment's zone (daylight saving included), every "nice" step that
  // leaves about 90 px between labels.
  const timeAxis = document.querySelector("[data-time-axis]");
  const clock = d.startedAt ? new Intl.DateTimeFormat(undefined, {
    timeZone: d.timezone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  }) : null;
  const drawTimeAxis = () => {
    const length = view.end - view.start;
    const steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
    const step = steps.find((s) => pxPerSecond() * s >= 90) || steps[steps.length - 1];
    timeAxis.replaceChildren();
    for (let t = Math.ceil(view.start / step - 1e-9) * step; t <= view.start + length + 1e-9; t += step) {
      if (xOf(t) > img.clientWidth - 28) break; // a label at the very edge would be cut in half
      const tick = document.createElement("span");
      tick.className = "tick";
      tick.style.left = `${xOf(t)}px`;
      tick.textContent = fileTime(t) + (clock ? `\n${clock.format(new Date(Date.parse(d.startedAt) + t * 1000))}` : "");
      timeAxis.append(tick);
    }
  };
  const place = (element, from, to) => {
    element.hidden = to <= view.start || from >= view.end;
    element.style.left = `${xOf(Math.max(from, view.start))}px`;
    element.style.width = `${Math.max(2, (Math.min(to, view.end) - Math.max(from, view.start)) * pxPerSecond())}px`;
  };
  const zoomBy = (step) => {
    const next = Math.max(0, Math.min(levels.length - 1, zoom - step));
    if (next === zoom) return;
    const hit = hits()[current];
    const centre = hit && Number(hit.dataset.start) < view.end && Number(hit.dataset.end) > view.start
      ? (Number(hit.dataset.start) + Number(hit.dataset.end)) / 2 : (view.start + view.end) / 2;
    zoom = next;
    localStorage.setItem("recordingZoom", String(zoom));
    showView(centre);
  };
  // A drag draws a box in time and frequency. Its frequencies read the picture's own axis
  // (annotations.spectrograms.band_edges: mel from 50 Hz, or linear from 0, to the lesser of
  // 16 kHz and the Nyquist of the audio as heard), in the file's Hz; a box of nearly the
  // picture's height is time alone.
  const topHz = Math.min(16000, Number(d.sampleRate || 32000) * speed / 2);
  const mel = (hz) => 2595 * Math.log10(1 + hz / 700);
  const hzAt = (clientY) => {
    const rect = img.getBoundingClientRect();
    const fraction = Math.max(0, Math.min(1, 1 - (clientY - rect.top) / rect.height)); // 0 at the bottom
    if (localStorage.getItem("spectrogramScale") === "linear") return fraction * topHz / speed;
    return 700 * (10 ** ((mel(50) + fraction * (mel(topHz) - mel(50))) / 2595) - 1) / speed;
  };
  const FULL_HEIGHT = 0.92;
  let anchor = null;
  let region = null;
  const draw = (a, b, y0, y1) => {
    region = { start: Math.min(a, b), end: Math.max(a, b), band: null };
    place(box, region.start, region.end);
    const rect = img.getBoundingClientRect();
    const [top, bottom] = [Math.min(y0, y1), Math.max(y0, y1)].map((y) => Math.max(0, Math.min(rect.height, y - rect.top)));
    const boxed = bottom - top < FULL_HEIGHT * rect.height;
    box.style.top = boxed ? `${top}px` : "0px";
    box.style.height = boxed ? `${bottom - top}px` : `${rect.height}px`;
    if (boxed) region.band = [Math.round(hzAt(rect.top + bottom)), Math.round(hzAt(rect.top + top))];
    actions.hidden = region.end - region.start < 0.1 * speed;
    const band = region.band ? ` · ${(region.band[0] / 1000).toFixed(1)}–${(region.band[1] / 1000).toFixed(1)} kHz` : "";
    actions.querySelector("[data-region-label]").textContent = `${region.start.toFixed(2)}–${region.end.toFixed(2)} s${band}`;
  };
  regionView.addEventListener("pointerdown", (e) => {
    anchor = { seconds: secondsAt(e.clientX), y: e.clientY };
    regionView.setPointerCapture(e.pointerId);
    draw(anchor.seconds, anchor.seconds, e.clientY, e.clientY);
  });
  regionView.addEventListener("pointermove", (e) => { if (anchor !== null) draw(anchor.seconds, secondsAt(e.clientX), anchor.y, e.clientY); });
  regionView.addEventListener("pointerup", (e) => {
    if (anchor === null) return;
    const seconds = secondsAt(e.clientX);
    if (Math.abs(seconds - anchor.seconds) * pxPerSecond() < 3) { // a click, not a drag
      box.hidden = true;
      actions.hidden = true;
      const hit = hits().find((h) => Number(h.dataset.start) <= seconds && seconds < Number(h.dataset.end));
      if (hit) { focusHit(hits().indexOf(hit)); togglePlay(hit); }
      else window.location.href = `?start=${Math.floor(seconds)}`; // the windows of that part of the file
    } else {
      draw(anchor.seconds, seconds, anchor.y, e.clientY);
    }
    anchor = null;
  });
  // The focused window, outlined; a zoomed view follows it.
  const markWindow = (hit, follow = true) => {
    const start = Number(hit.dataset.start);
    const end = Number(hit.dataset.end);
    if (Number.isNaN(start)) { outline.hidden = true; return; }
    if (follow && ((start + end) / 2 < view.start || (start + end) / 2 > view.end)) showView((start + end) / 2);
    else place(outline, start, end);
  };
  document.addEventListener("hit-focus", (event) => markWindow(event.detail));
  // While the file plays the view follows the playhead, not the focused window.
  img.addEventListener("load", () => { drawTimeAxis(); if (hits().length) markWindow(hits()[current], !file.active); });
  window.addEventListener("resize", () => { drawTimeAxis(); if (hits().length) markWindow(hits()[current]); });
  // While a window plays, the playhead shows where in the file its sound is.
  document.addEventListener("play", (event) => {
    const hit = event.target.closest && event.target.closest(".hit");
    if (!hit) return;
    const audio = event.target;
    const offset = Math.max(0, Number(hit.dataset.start) - (playback.context ? 2 * speed : 0));
    const tick = () => {
      if (audio.paused || audio.ended) { playhead.hidden = true; return; }
      const at = offset + audio.currentTime * speed;
      playhead.hidden = at < view.start || at > view.end;
      playhead.style.left = `${xOf(at)}px`;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }, true);
  // The whole file, through the Web Audio API: a chain of stretches, each fetched while
  // the one before plays and started where it ends, so that nothing is heard twice and no
  // gap falls between them. At the page's speed, pitch with it, as on a tape. The playhead
  // follows the sound, the view turns to the next stretch of spectrogram at its edge, and
  // the window under the playhead takes the focus.
  const STRETCH_S = 20;
  // active: from the request to play until stopped; from: where it was asked to start.
  const file = { context: null, session: 0, active: false, from: 0, pieces: [], pausedAt: null, pausedOn: null };
  const fileButton = document.querySelector("[data-play-file]");
  const labelFileButton = (playing) => fileButton.replaceChildren(
    playing ? "❚❚ Pause the file " : "▶ Play the file ", Object.assign(document.createElement("kbd"), { textContent: "⇧ space" }));
  const filePosition = () => {
    if (!file.pieces.length) return file.from; // its first stretch is on its way
    const now = file.context.currentTime;
    const piece = file.pieces.findLast((p) => p.startsAt <= now) || file.pieces[0];
    return Math.min(piece.from + Math.max(0, now - piece.startsAt) * piece.rate * speed, piece.to);
  };
  const stopFile = () => {
    file.session += 1;
    file.active = false;
    file.pieces.forEach((piece) => piece.source.stop());
    file.pieces = [];
    delete d.playing;
    playhead.hidden = true;
    labelFileButton(false);
  };
  const stretchOfFile = async (start) => {
    const from = Math.round(start * 1000) / 1000; // the server takes at most 9 decimals
    const to = Math.min(from + STRETCH_S * speed, duration);
    const response = await fetch(`${d.audioUrl}?start=${from}&end=${to}`, { credentials: "same-origin" });
    if (!response.ok) {
      throw new Error((await response.json().catch(() => ({}))).error || `the audio could not be read (${response.status})`);
    }
    return { from, to, buffer: await file.context.decodeAudioData(await response.arrayBuffer()) };
  };
  const followPlayhead = () => {
    if (!file.pieces.length) return;
    const at = filePosition();
    d.playing = at.toFixed(2);
    if (at >= view.end && view.end < duration) showView(at + (view.end - view.start) / 2);
    playhead.hidden = at < view.start || at > view.end;
    playhead.style.left = `${xOf(at)}px`;
    const under = hits().findLast((hit) => Number(hit.dataset.start) <= at && at < Number(hit.dataset.end));
    if (under && under !== hits()[current]) focusHit(hits().indexOf(under));
    requestAnimationFrame(followPlayhead);
  };
  const playFile = async (from) => {
    stopFile();
    const session = file.session;
    Object.assign(file, { active: true, from });
    document.querySelectorAll(".hit audio").forEach((audio) => audio.pause());
    file.context ||= new AudioContext();
    await file.context.resume();
    const rate = playback.rate;
    labelFileButton(true);
    let when = file.context.currentTime + 0.05;
    let coming = stretchOfFile(from);
    while (coming && session === file.session) {
      const { from: start, to, buffer } = await coming;
      if (session !== file.session) return;
      coming = to < duration ? stretchOfFile(to) : null; // fetched while this one plays
      const source = file.context.createBufferSource();
      source.buffer = buffer;
      source.playbackRate.value = rate;
      source.connect(file.context.destination);
      when = Math.max(when, file.context.currentTime); // a stretch late off the network starts now
      source.start(when);
      if (!coming) source.addEventListener("ended", () => { if (session === file.session) { file.pausedAt = null; stopFile(); } });
      file.pieces.push({ source, from: start, to, startsAt: when, rate });
      if (file.pieces.length === 1) requestAnimationFrame(followPlayhead);
      const startsAt = when;
      when += (to - start) / speed / rate;
      // The next is scheduled once this one sounds: two stretches in memory at most.
      while (session === file.session && file.context.currentTime < startsAt) await new Promise((r) => setTimeout(r, 100));
    }
  };
  // Play, or pause where the playhead is; play again goes on from there, unless another
  // window took the focus meanwhile (then from that window).
  const toggleFile = () => {
    if (file.active) {
      file.pausedAt = filePosition();
      file.pausedOn = hits()[current];
      stopFile();
      return;
    }
    const hit = hits()[current];
    const resume = file.pausedAt !== null && (!hit || hit === file.pausedOn);
    const from = resume ? file.pausedAt : hit ? Number(hit.dataset.start) : view.start;
    playFile(from >= duration ? 0 : from).catch((error) => { stopFile(); flash(`Cannot play the file: ${error.message}`, "error"); });
  };
  // A window played alone stops the file; a new speed goes on from the playhead at that speed.
  document.addEventListener("play", (event) => { if (event.target.closest && event.target.closest(".hit")) stopFile(); }, true);
  document.addEventListener("playback-rate", () => {
    if (file.active) playFile(filePosition()).catch((error) => flash(error.message, "error"));
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-zoom]");
    if (button) zoomBy(Number(button.dataset.zoom));
    if (event.target.closest("[data-play-file]")) toggleFile();
  });
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input, select, textarea, dialog")) return;
    if (event.key === "[" || event.key === "]") { event.preventDefault(); zoomBy(event.key === "]" ? 1 : -1); }
    if (event.key === " " && event.shiftKey) { event.preventDefault(); toggleFile(); }
  });
  showView((view.start + view.end) / 2);
  // A label for the box: on the listed window it overlaps most, with the box's band.
  actions.addEventListener("click", (event) => {
    const button = event.target.closest("[data-box-label]");
    if (!button || !region) return;
    const overlap = (hit) => Math.min(region.end, Number(hit.dataset.end)) - Math.max(region.start, Number(hit.dataset.start));
    const hit = hits().filter((h) => overlap(h) > 0).sort((a, b) => overlap(b) - overlap(a))[0];
    if (!hit) { flash("None of the windows listed below lies under the box: open that part of the file first.", "error"); return; }
    focusHit(hits().indexOf(hit));
    labelHit(hit, button.dataset.boxLabel, region.band);
  });
  actions.querySelector("[data-region-search]").addEventListener("click", async () => {
    try {
      const clip = await api(d.regionUrl, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          recording_id: Number(d.recording), start_s: region.start, end_s: region.end,
          ...(region.band ? { low_hz: region.band[0], high_hz: region.band[1] } : {}),
        }),
      });
      await searchWhenEmbedded(d.clipUrl, clip, d.searchUrl);
    } catch (error) {
      flash(error.message, "error");
    }
  });
}

// An example clip: chosen from a file or recorded from the microphone, previewed in the
// page, and trimmed by setting start and end at the playhead.
for (const form of document.querySelectorAll("[data-clip-form]")) {
  const clipFile = form.querySelector("[data-clip-file]");
  const preview = form.querySelector("[data-clip-preview]");
  const showPreview = () => {
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.hidden = !clipFile.files.length;
    if (clipFile.files.length) preview.src = URL.createObjectURL(clipFile.files[0]);
  };
  clipFile.addEventListener("change", showPreview);
  form.querySelectorAll("[data-trim-here]").forEach((button) => button.addEventListener("click", () => {
    form.querySelector(`[data-trim=${button.dataset.trimHere}]`).value = preview.currentTime.toFixed(2);
  }));
  const record = form.querySelector("[data-record]");
  let recorder = null;
  record.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    try {
      recorder = await startRecording(async (wav) => {
        recorder = null;
        record.textContent = "● Record";
        const files = new DataTransfer();
        files.items.add(new File([wav], `microphone-${new Date().toISOString().slice(0, 19)}.wav`, { type: "audio/wav" }));
        clipFile.files = files.files;
        showPreview();
        flash("Recorded: play it, trim it to the call, and search.", "ok", form);
      });
      record.textContent = "■ Stop";
      flash("Recording from the microphone… press Stop when the call is over.", "ok", form);
    } catch (error) {
      recorder = null;
      flash(`The microphone cannot be used: ${error.message}`, "error", form);
    }
  });
}

// Record the microphone with MediaRecorder until stopped, then hand ``done`` a WAV of it:
// the browser's own format (WebM/Opus in Chromium) is decoded here, so that the server
// reads what it reads from any upload.
async function startRecording(done) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
  recorder.addEventListener("stop", async () => {
    stream.getTracks().forEach((track) => track.stop());
    const encoded = await new Blob(chunks, { type: recorder.mimeType }).arrayBuffer();
    const audio = await new OfflineAudioContext(1, 1, 48000).decodeAudioData(encoded);
    done(wavFile(audio));
  });
  recorder.start();
  return recorder;
}

// A mono 16-bit PCM WAV of an AudioBuffer (its channels mixed).
function wavFile(audio) {
  const samples = new Float32Array(audio.length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    audio.getChannelData(c).forEach((value, i) => { samples[i] += value / audio.numberOfChannels; });
  }
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (offset, value) => [...value].forEach((char, i) => view.setUint8(offset + i, char.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, audio.sampleRate, true); view.setUint32(28, audio.sampleRate * 2, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, samples.length * 2, true);
  samples.forEach((value, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, value)) * 0x7fff, true));
  return new Blob([view], { type: "audio/wav" });
}

// Settle annotators' disagreement on a window (admins, on a label's review page).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-resolve]");
  if (!button) return;
  const hit = button.closest(".hit");
  const label = activeLabel();
  try {
    const result = await api(button.closest("[data-resolve-url]").dataset.resolveUrl, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ window: Number(hit.dataset.window), label: label.id, value: button.dataset.resolve }),
    });
    flash(`Settled as ${button.dataset.resolve}; ${result.removed} differing label(s) removed.`);
    window.location.reload();
  } catch (error) {
    flash(error.message, "error");
  }
});

// Spectrograms on a mel (default) or linear frequency axis, brightened for faint calls
// or not: one choice for every picture, remembered in this browser.
const GAINS = [0, 10, 20, 30, 40];
function applySpectrogramStyle(root = document) {
  const linear = localStorage.getItem("spectrogramScale") === "linear";
  const gain = Number(localStorage.getItem("spectrogramGain") || 0);
  root.querySelectorAll("img.spectrogram").forEach((img) => {
    const url = new URL(img.getAttribute("src"), window.location.href);
    if (linear) url.searchParams.set("scale", "linear"); else url.searchParams.delete("scale");
    if (gain) url.searchParams.set("gain", gain); else url.searchParams.delete("gain");
    // With context on, a hit's picture shows it too, the window between two white lines.
    if (img.closest(".hit") && !("keepContext" in img.dataset)) {
      if (playback.context) url.searchParams.set("context", 2); else url.searchParams.delete("context");
    }
    if (url.href !== img.src) img.src = url.href;
  });
  document.querySelectorAll("[data-spectrogram-linear]").forEach((box) => { box.checked = linear; });
  document.querySelectorAll("[data-spectrogram-gain]").forEach((select) => { select.value = String(gain); });
}
function setGain(gain) {
  localStorage.setItem("spectrogramGain", String(gain));
  applySpectrogramStyle();
  flash(gain ? `Spectrograms brightened by ${gain} dB.` : "Spectrograms at their plain level.");
}
function stepGain(step) {
  const index = GAINS.indexOf(Number(localStorage.getItem("spectrogramGain") || 0));
  setGain(GAINS[Math.max(0, Math.min(GAINS.length - 1, index + step))]);
}
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-spectrogram-linear]")) {
    localStorage.setItem("spectrogramScale", event.target.checked ? "linear" : "mel");
    applySpectrogramStyle();
  } else if (event.target.matches("[data-spectrogram-gain]")) {
    setGain(Number(event.target.value));
  }
});
applySpectrogramStyle();

// The grid of tiles beside the list, and one size for every tile: remembered in this browser.
// A change keeps the focused hit in view; the page's first layout scrolls nowhere.
function applyHitLayout(keepInView = true) {
  const layout = localStorage.getItem("hitLayout") || "list";
  const size = localStorage.getItem("tileSize") || "m";
  document.querySelectorAll("ol.hits").forEach((list) => {
    list.classList.toggle("grid", layout === "grid");
    list.classList.toggle("rows", layout === "rows");
    list.dataset.tileSize = size;
  });
  document.querySelectorAll("[data-hit-layout]").forEach((select) => { select.value = layout; });
  document.querySelectorAll("[data-tile-size]").forEach((select) => { select.value = size; });
  if (keepInView && hits().length) focusHit(current);
}
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-hit-layout]")) localStorage.setItem("hitLayout", event.target.value);
  else if (event.target.matches("[data-tile-size]")) localStorage.setItem("tileSize", event.target.value);
  else return;
  event.target.blur(); // back to the keys: arrows move between tiles, not through the choices
  applyHitLayout();
});
applyHitLayout(false);

// A click on a hit's picture focuses and plays it; the playing hit is marked.
document.addEventListener("click", (event) => {
  const picture = event.target.closest(".hit img.spectrogram");
  if (!picture) return;
  const hit = picture.closest(".hit");
  focusHit(hits().indexOf(hit));
  togglePlay(hit);
});
for (const type of ["play", "pause", "ended"]) {
  document.addEventListener(type, (event) => {
    const hit = event.target.closest && event.target.closest(".hit");
    if (hit) hit.classList.toggle("playing", type === "play");
  }, true);
}

// Blind review: others' labels are hidden (only how many there are shows), so that a
// second annotator's judgement is their own.
rememberedOption("[data-blind-review]", "blindReview", (on) => document.body.classList.toggle("blind", on));

// Charts download as the SVG the server drew, or as a PNG rendered from it on a canvas
// at twice its size (the page's img-src allows blob: for this).
function saveBlob(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-chart-download]");
  const svg = button && button.closest(".chart-figure").querySelector("svg");
  if (!svg) return;
  const name = `${button.dataset.chartName || "chart"}.${button.dataset.chartDownload}`;
  const svgBlob = new Blob([new XMLSerializer().serializeToString(svg)], { type: "image/svg+xml" });
  if (button.dataset.chartDownload === "svg") { saveBlob(svgBlob, name); return; }
  const image = new Image();
  image.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = svg.viewBox.baseVal.width * 2;
    canvas.height = svg.viewBox.baseVal.height * 2;
    const context = canvas.getContext("2d");
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    URL.revokeObjectURL(image.src);
    canvas.toBlob((png) => saveBlob(png, name), "image/png");
  };
  image.onerror = () => flash("The chart could not be drawn as a PNG.", "error");
  image.src = URL.createObjectURL(svgBlob);
});

// The map of the embedding space: the worker's points on a canvas, coloured by label,
// site or hour; hover shows a window's spectrogram, a click plays it, a loop drawn around
// dots selects them for a search (the 20 nearest their centre) or for labeling.
const mapView = document.querySelector("[data-map]");
if (mapView) {
  const canvas = mapView.querySelector("[data-map-canvas]");
  const tooltip = mapView.querySelector("[data-map-tooltip]");
  const colourChoice = mapView.querySelector("[data-map-colour]");
  const labelChoice = mapView.querySelector("[data-map-label]");
  const selectionBar = mapView.querySelector("[data-map-selection]");
  const d = mapView.dataset;
  const PAD = 12; // px around the dots, so that none sits on the edge
  const SITE_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const LABEL_COLOURS = ["#c8c8c8", "#2f8f57", "#c0392b", "#d49a1a", "#8e44ad"];
  let points = null;
  let selected = [];
  let lasso = null;
  const urlFor = (pattern, id) => pattern.replace(/\/0\//, `/${id}/`);
  const colourOf = (category) => {
    const by = colourChoice.value;
    if (by === "label") return LABEL_COLOURS[category];
    if (by === "hour") return category === 24 ? "#c8c8c8" : `hsl(${category * 15}, 70%, 45%)`; // a circle of hours
    if (by === "score") return category === 10 ? "#c8c8c8" : `hsl(${230 - category * 23}, 75%, ${35 + category * 2}%)`; // blue (low) to red (high)
    return SITE_COLOURS[category % SITE_COLOURS.length];
  };
  const screenOf = (i) => {
    const width = canvas.clientWidth - 2 * PAD;
    const height = canvas.clientHeight - 2 * PAD;
    return [PAD + (points.x[i] + 1) / 2 * width, PAD + (1 - points.y[i]) / 2 * height];
  };
  const draw = () => {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = canvas.clientWidth * ratio;
    canvas.height = canvas.clientHeight * ratio;
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
    if (!points) return;
    // Unlabeled and the commonest categories first, so that rarer colours lie on top.
    const order = [...points.category.keys()].sort((a, b) => points.category[a] - points.category[b]);
    context.globalAlpha = 0.75;
    for (const i of order) {
      const [x, y] = screenOf(i);
      context.fillStyle = colourOf(points.category[i]);
      context.fillRect(x - 2, y - 2, 4, 4);
    }
    context.globalAlpha = 1;
    context.strokeStyle = "#111";
    for (const i of selected) {
      const [x, y] = screenOf(i);
      context.strokeRect(x - 3, y - 3, 6, 6);
    }
    if (lasso && lasso.length > 1) {
      context.beginPath();
      context.moveTo(...lasso[0]);
      lasso.forEach((corner) => context.lineTo(...corner));
      context.setLineDash([4, 3]);
      context.stroke();
      context.setLineDash([]);
    }
  };
  const showLegend = () => {
    const counts = new Map();
    points.category.forEach((c) => counts.set(c, (counts.get(c) || 0) + 1));
    const items = [...counts.keys()].sort((a, b) => a - b).map((c) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(c);
      item.append(swatch, `${points.categories[c]} (${counts.get(c)})`);
      return item;
    });
    mapView.querySelector("[data-map-legend]").replaceChildren(...items);
  };
  const load = async () => {
    const byLabel = colourChoice.value === "label" || colourChoice.value === "score";
    mapView.querySelector("[data-map-label-choice]").hidden = !byLabel;
    const query = new URLSearchParams({ colour_by: colourChoice.value });
    if (byLabel) {
      if (!labelChoice.value) { flash("Add a label to the project to colour the map by it.", "error"); return; }
      query.set("label", labelChoice.value);
    }
    try {
      points = await api(`${d.pointsUrl}?${query}`);
    } catch (error) {
      flash(error.message, "error");
      return;
    }
    canvas.dataset.points = points.window_ids.length;
    mapView.querySelector("[data-map-source]").textContent = points.source ? `(${points.source})` : "";
    selected = [];
    selectionBar.hidden = true;
    draw();
    showLegend();
  };
  const nearest = (event) => {
    const box = canvas.getBoundingClientRect();
    const [px, py] = [event.clientX - box.left, event.clientY - box.top];
    let best = -1;
    let bestDistance = 64; // within 8 px
    points.x.forEach((_, i) => {
      const [x, y] = screenOf(i);
      const distance = (x - px) ** 2 + (y - py) ** 2;
      if (distance < bestDistance) { best = i; bestDistance = distance; }
    });
    return best;
  };
  const inside = ([x, y], polygon) => { // the even-odd rule
    let odd = false;
    for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
      const [xi, yi] = polygon[i];
      const [xj, yj] = polygon[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) odd = !odd;
    }
    return odd;
  };
  const select = (indices) => {
    selected = indices;
    selectionBar.hidden = !selected.length;
    if (!selected.length) return draw();
    // Nearest the group's centre first: the search takes the 20 most typical of it.
    const [cx, cy] = ["x", "y"].map((axis) => selected.reduce((sum, i) => sum + points[axis][i], 0) / selected.length);
    selected.sort((a, b) => ((points.x[a] - cx) ** 2 + (points.y[a] - cy) ** 2) - ((points.x[b] - cx) ** 2 + (points.y[b] - cy) ** 2));
    const ids = selected.map((i) => points.window_ids[i]);
    mapView.querySelector("[data-map-count]").textContent = `${ids.length} window${ids.length === 1 ? "" : "s"} selected`;
    mapView.querySelector("[data-map-search]").href = `${d.searchUrl}?${ids.slice(0, 20).map((id) => `window=${id}`).join("&")}`;
    mapView.querySelector("[data-map-label-them]").href = `${d.selectionUrl}?ids=${ids.slice(0, 500).join(",")}`;
    draw();
  };
  canvas.addEventListener("pointerdown", (event) => {
    if (!points) return;
    lasso = [[event.offsetX, event.offsetY]];
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!points) return;
    if (lasso) {
      lasso.push([event.offsetX, event.offsetY]);
      tooltip.hidden = true;
      draw();
      return;
    }
    const i = nearest(event);
    tooltip.hidden = i < 0;
    if (i < 0) return;
    const [x, y] = screenOf(i);
    tooltip.querySelector("img").src = urlFor(d.spectrogramUrl, points.window_ids[i]);
    tooltip.querySelector("span").textContent = points.categories[points.category[i]];
    tooltip.style.left = `${canvas.offsetLeft + Math.min(x + 12, canvas.clientWidth - 190)}px`;
    // Below the dot in the plot's upper half, above it in the lower half: never off the plot.
    const below = y < canvas.clientHeight / 2;
    tooltip.style.top = below ? `${canvas.offsetTop + y + 12}px` : "";
    tooltip.style.bottom = below ? "" : `${tooltip.parentElement.clientHeight - canvas.offsetTop - y + 12}px`;
  });
  canvas.addEventListener("pointerleave", () => { tooltip.hidden = true; });
  canvas.addEventListener("pointerup", (event) => {
    if (!lasso) return;
    const polygon = lasso;
    lasso = null;
    const [x0, y0] = polygon[0];
    if (polygon.every(([x, y]) => (x - x0) ** 2 + (y - y0) ** 2 < 16)) { // a click: hear the window
      draw();
      const i = nearest(event);
      if (i < 0) return;
      const id = points.window_ids[i];
      new Audio(urlFor(d.audioUrl, id)).play().catch((error) => flash(`Cannot play: ${error.message}`, "error"));
      const info = mapView.querySelector("[data-map-info]");
      const link = Object.assign(document.createElement("a"), { href: urlFor(d.windowUrl, id), textContent: `Open window ${id}` });
      info.replaceChildren(`Playing ${points.categories[points.category[i]]} · `, link);
      return;
    }
    select([...points.x.keys()].filter((i) => inside(screenOf(i), polygon)));
  });
  mapView.querySelector("[data-map-clear]").addEventListener("click", () => select([]));
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && selected.length) select([]); });
  colourChoice.addEventListener("change", load);
  labelChoice.addEventListener("change", load);
  window.addEventListener("resize", draw);
  load();
}

// A map being drawn: its progress, then the page again once it is done.
const mapState = document.querySelector("[data-map-state][data-map-url]");
if (mapState && ["queued", "running"].includes(mapState.dataset.mapStatus)) {
  const poll = async () => {
    const state = await api(mapState.dataset.mapUrl).catch(() => null);
    if (state && (state.status === "done" || state.status === "failed")) { window.location.reload(); return; }
    const bar = mapState.querySelector("[data-map-progress]");
    if (state && bar) bar.value = state.progress;
    setTimeout(poll, 1500);
  };
  poll();
}
