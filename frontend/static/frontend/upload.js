// Chunked, resumable uploads on the deployment page (API: annotations/api/uploads.py).
// Each file goes up in pieces, each at the offset the server confirmed, so an upload cut
// off by the network or a reload continues where it stopped once the same file is chosen
// again. Uses csrfToken, flash, api and pollProgress from app.js.
"use strict";

(() => {
  const form = document.querySelector("[data-chunked-upload]");
  if (!form) return;
  const CHUNK_BYTES = 8 * 1024 * 1024; // the server takes up to 16 MiB per request
  // Halved after each failed attempt: on a slow link a big chunk can outlast the server's
  // request timeout (gunicorn's 120 s) every time.
  const MIN_CHUNK_BYTES = 512 * 1024;
  const RETRIES = 5; // per request, after 1, 2, 4, 8 and 16 s: rides out a brief outage
  const STALLS = 5; // answers in a row that add no byte before giving up
  const listUrl = form.dataset.chunkedUpload;
  const overall = form.querySelector("[data-upload-progress]");
  const overallText = form.querySelector("[data-upload-overall]");
  const list = form.querySelector("[data-upload-files]");
  let busy = false;

  // The server refused the file (type, size, content): retrying cannot help.
  class Refused extends Error {}

  const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function call(url, method, body, contentType, extraHeaders = {}) {
    const headers = { "X-CSRFToken": csrfToken(), Accept: "application/json", "Content-Type": contentType, ...extraHeaders };
    const response = await fetch(url, { method, body, headers, credentials: "same-origin" });
    return { status: response.status, body: await response.json().catch(() => ({})) };
  }

  // Network failures and 5xx (a restarting server, a lost database connection) are retried.
  async function withRetries(send, row, onFailure = () => {}) {
    for (let attempt = 0; ; attempt++) {
      const result = await send().catch(() => ({ status: 0, body: { error: "the connection failed" } }));
      if (result.status > 0 && result.status < 500) return result;
      if (attempt === RETRIES) throw new Error(result.body.error || `the server answered ${result.status}`);
      onFailure();
      row.say(`${result.body.error || `error ${result.status}`}; retrying in ${2 ** attempt} s`);
      await sleep(1000 * 2 ** attempt);
    }
  }

  // Sends one file; resolves to its recording id. The server's received_bytes decides where
  // each chunk starts: after a 409 (a chunk sent twice, or an earlier tab) it says where to go on.
  async function uploadFile(file, row, onProgress) {
    const start = JSON.stringify({ filename: file.name, size_bytes: file.size });
    let { status, body: state } = await withRetries(() => call(listUrl, "POST", start, "application/json"), row);
    if (status >= 400) throw new Refused(state.error);
    if (state.received_bytes > 0) row.say(`continuing at ${megabytes(state.received_bytes)}`);
    onProgress(state.received_bytes);
    // Only the last chunk can tell a duplicate, by the fingerprint of the whole file.
    const keep = form.querySelector("[data-keep-duplicates]").checked ? "?keep_duplicate=1" : "";
    const url = `${listUrl}${state.id}/${keep}`;
    let stalls = 0;
    let chunkBytes = CHUNK_BYTES;
    const smaller = () => { chunkBytes = Math.max(MIN_CHUNK_BYTES, chunkBytes / 2); };
    while (state.recording === null) {
      const offset = state.received_bytes;
      const put = () => call(url, "PUT", file.slice(offset, offset + chunkBytes), "application/octet-stream", {
        "Upload-Offset": String(offset),
      });
      let body;
      ({ status, body } = await withRetries(put, row, smaller));
      if (status >= 400 && status !== 409) throw new Refused(body.error);
      if (typeof body.received_bytes !== "number") throw new Error("the server's answer had no received_bytes");
      state = body;
      stalls = state.received_bytes > offset ? 0 : stalls + 1;
      if (stalls === STALLS) throw new Error("the upload makes no progress");
      row.say(`${megabytes(state.received_bytes)} of ${megabytes(file.size)}`);
      onProgress(state.received_bytes);
    }
    return state.recording;
  }

  function fileRow(file) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    const bar = document.createElement("progress");
    const status = document.createElement("span");
    name.textContent = `${file.name} `;
    bar.max = file.size || 1;
    bar.value = 0;
    status.textContent = " waiting";
    item.append(name, bar, status);
    list.append(item);
    return {
      bar,
      say: (text, kind = "") => { status.textContent = ` ${text}`; status.className = kind; },
    };
  }

  async function uploadAll(files) {
    list.replaceChildren();
    const rows = files.map(fileRow);
    const total = files.reduce((sum, file) => sum + file.size, 0) || 1;
    const received = files.map(() => 0);
    const showOverall = () => {
      const sum = received.reduce((a, b) => a + b, 0);
      overall.value = sum / total;
      overallText.textContent = `${megabytes(sum)} of ${megabytes(total)}`;
    };
    overall.hidden = false;
    const stored = [];
    const refused = [];
    let interrupted = null;
    for (const [i, file] of files.entries()) {
      const row = rows[i];
      const onProgress = (bytes) => { received[i] = bytes; row.bar.value = bytes; showOverall(); };
      try {
        stored.push(await uploadFile(file, row, onProgress));
        row.say("stored ✓", "status-done");
      } catch (error) {
        if (!(error instanceof Refused)) { interrupted = error; row.say(`interrupted: ${error.message}`, "error"); break; }
        refused.push(error.message); // the server's reason names the file
        row.say(`✗ ${error.message}`, "error");
      }
    }
    if (stored.length) await api(form.dataset.ingestUrl, { method: "POST" }).catch((e) => flash(e.message, "error"));
    if (interrupted) {
      flash(`The upload was interrupted (${interrupted.message}). Choose the same files again: each continues where it stopped.`, "error");
    } else if (refused.length) {
      flash(`Not stored: ${refused.join("; ")}.${stored.length ? " The other files are being embedded." : ""}`, "error");
    } else {
      window.location.reload();
      return;
    }
    if (stored.length) pollProgress();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = [...form.querySelector("input[type=file]").files];
    if (!files.length) { flash("Choose one or more audio files first.", "error"); return; }
    if (busy) return;
    busy = true;
    form.querySelector("button.primary").disabled = true;
    try {
      await uploadAll(files);
    } finally {
      busy = false;
      form.querySelector("button.primary").disabled = false;
    }
  });

  // Leaving mid-upload loses no byte that arrived, but the browser should still ask.
  window.addEventListener("beforeunload", (event) => { if (busy) event.preventDefault(); });

  // Tell about uploads that stopped earlier (another visit, a reload).
  api(listUrl).then((unfinished) => {
    if (!unfinished.length) return;
    const box = form.querySelector("[data-unfinished]");
    const names = unfinished.map((u) => `${u.filename} (${Math.floor((100 * u.received_bytes) / u.size_bytes)}%)`);
    box.textContent = `Unfinished uploads: ${names.join(", ")}. Choose the same files again to continue where they stopped.`;
    box.hidden = false;
  }).catch(() => { /* the form works without the reminder */ });
})();
