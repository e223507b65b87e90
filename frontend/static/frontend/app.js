// Progressive enhancement for Perch Agile's pages: every action goes through the REST API.
"use strict";

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function flash(message, kind = "ok") {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.className = kind;
}

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
    if (!element.name || element.value === "") continue;
    if (element.multiple) data[element.name] = [...element.selectedOptions].map((o) => Number(o.value));
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
    try {
      if (method === "DELETE") {
        await api(`${form.dataset.apiForm}?${new URLSearchParams(formJson(form))}`, { method });
      } else {
        await api(form.dataset.apiForm, {
          method,
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(formJson(form)),
        });
      }
      flash("Saved.");
      if (form.dataset.then === "reload") window.location.reload();
      else if (form.dataset.then) window.location.href = form.dataset.then;
    } catch (error) {
      flash(error.message, "error");
    }
  } else if (form.dataset.uploadForm) {
    event.preventDefault();
    uploadFiles(form);
  } else if (form.dataset.clipForm) {
    event.preventDefault();
    searchWithClip(form);
  } else if (form.dataset.importForm) {
    event.preventDefault();
    try {
      const result = await api(form.dataset.importForm, { method: "POST", body: new FormData(form) });
      const unmatched = result.unmatched_files.length ? ` Files not in this deployment: ${result.unmatched_files.join(", ")}.` : "";
      flash(`${result.selections} selections labeled ${result.windows_labeled} windows.${unmatched}`);
    } catch (error) {
      flash(error.message, "error");
    }
  }
});

function uploadFiles(form) {
  // XMLHttpRequest rather than fetch: it reports upload progress.
  const bar = form.querySelector("[data-upload-progress]");
  const request = new XMLHttpRequest();
  request.open("POST", form.dataset.uploadForm);
  request.setRequestHeader("X-CSRFToken", csrfToken());
  bar.hidden = false;
  request.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  request.onload = async () => {
    if (request.status >= 300) {
      let message = `upload failed (${request.status})`;
      try { message = JSON.parse(request.responseText).error || message; } catch (_) { /* not JSON */ }
      flash(message, "error");
      return;
    }
    await api(form.dataset.ingestUrl, { method: "POST" });
    const rejected = JSON.parse(request.responseText).rejected || [];
    if (rejected.length) {
      flash(`Not stored: ${rejected.map((r) => `${r.filename} (${r.reason})`).join("; ")}. The other files are being embedded.`, "error");
      pollProgress();
    } else {
      window.location.reload();
    }
  };
  request.onerror = () => flash("The upload was interrupted; nothing was stored. Try again.", "error");
  request.send(new FormData(form));
}

document.addEventListener("click", async (event) => {
  const ingest = event.target.closest("[data-ingest]");
  if (ingest) {
    const data = await api(ingest.form.dataset.ingestUrl, { method: "POST" }).catch((e) => flash(e.message, "error"));
    if (data) { flash(`${data.queued} file(s) queued.`); pollProgress(); }
    return;
  }
  const button = event.target.closest(".label-buttons button[data-value]");
  if (button) labelHit(button.closest(".hit"), button.dataset.value);
});

async function searchWithClip(form) {
  try {
    const body = new FormData(form);
    const clip = await api(form.dataset.clipForm, { method: "POST", body });
    flash("Embedding the clip…");
    for (;;) {
      const state = await api(`${form.dataset.clipForm}${clip.id}/`);
      if (state.status === "done") break;
      if (state.status === "failed") throw new Error(`${state.filename}: ${state.error}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    window.location.href = `${form.dataset.searchUrl}?clip=${clip.id}`;
  } catch (error) {
    flash(error.message, "error");
  }
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
    const pace = p.windows_per_s ? `${p.windows_per_s.toFixed(1)} windows/s` : "";
    const left = p.eta_s && busy ? `, about ${formatDuration(p.eta_s)} left` : "";
    set("pace", pace + left);
  }
  if (busy) setTimeout(pollProgress, 2000);
}
if (document.querySelector("[data-progress-url]")) pollProgress();

// Labeling at keyboard speed on lists of hits.
const hits = () => [...document.querySelectorAll(".hit")];
let current = 0;
const undoStack = [];

function focusHit(index) {
  const list = hits();
  if (!list.length) return;
  current = Math.max(0, Math.min(index, list.length - 1));
  list.forEach((hit, i) => hit.classList.toggle("current", i === current));
  list[current].focus({ preventScroll: true });
  list[current].scrollIntoView({ block: "nearest" });
}

async function labelHit(hit, value) {
  const box = hit.querySelector(".label-buttons");
  const select = box.querySelector("[data-label-select]");
  if (!select || !select.value) { flash("Add a label to the project first.", "error"); return; }
  const url = hit.closest("[data-annotation-url]").dataset.annotationUrl;
  const body = { window: Number(box.dataset.window), label: Number(select.value), value };
  try {
    await api(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    undoStack.push({ url, body, hit });
    box.querySelector("[data-saved]").textContent = `${select.selectedOptions[0].text}: ${value} ✓ saved`;
    hit.dataset.labeled = value;
  } catch (error) {
    flash(error.message, "error");
  }
}

async function undo() {
  const last = undoStack.pop();
  if (!last) return;
  const query = new URLSearchParams({ window: last.body.window, label: last.body.label });
  await api(`${last.url}?${query}`, { method: "DELETE" }).catch((e) => flash(e.message, "error"));
  last.hit.querySelector("[data-saved]").textContent = "label removed";
  delete last.hit.dataset.labeled;
  focusHit(hits().indexOf(last.hit));
  flash("Undone.");
}

document.addEventListener("keydown", (event) => {
  if (!hits().length || event.target.closest("input, select, textarea")) return;
  const hit = hits()[current];
  const keys = {
    j: () => focusHit(current + 1),
    k: () => focusHit(current - 1),
    " ": () => { const audio = hit.querySelector("audio"); audio.paused ? audio.play() : audio.pause(); },
    1: () => labelHit(hit, "positive").then(() => focusHit(current + 1)),
    2: () => labelHit(hit, "negative").then(() => focusHit(current + 1)),
    3: () => labelHit(hit, "unsure").then(() => focusHit(current + 1)),
    u: () => undo(),
  };
  if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
});
if (hits().length) focusHit(0);
