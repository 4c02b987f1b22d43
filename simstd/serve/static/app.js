// simstd search page: plain JS, no build step. Talks to POST /search, POST /search/image, GET /info.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = {
  info: null,
  raw: false,          // ranking mode shown
  last: null,          // the last query, re-run when the mode is toggled
  shares: {},          // {"standardized": {...}, "raw": {...}} for the last query
  requestSeq: 0,       // answers to superseded requests are dropped
};
window.simstd = state; // for tests and the curious

const TEXT_FIELDS = ["text", "caption", "title"];
const modalityClass = (m) => (m === "text" || m === "image" ? `m-${m}` : "m-other");
const fmt = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setState(name, message) {
  const results = $("#results");
  results.dataset.state = name;
  results.replaceChildren();
  if (name === "loading") {
    results.append(el("div", { class: "state state-loading" }, el("span", { class: "spinner" }), message || "Searching…"));
  } else if (name === "error") {
    results.append(el("div", { class: "state state-error", role: "alert" }, message));
  } else if (name === "empty") {
    results.append(el("div", { class: "state state-empty" }, message));
  }
}

async function loadInfo() {
  try {
    const r = await fetch("/info");
    const info = await r.json();
    if (!r.ok) throw new Error(info.detail || r.statusText);
    state.info = info;
    $("#index-name").textContent = info.name;
    const counts = Object.entries(info.counts).map(([m, n]) => `${n.toLocaleString()} ${m}`).join(" · ");
    $("#index-facts").textContent = `${counts} · ${info.dim}-d · ${info.factory} · version ${info.version}` +
      (info.standardized ? "" : " · not fitted: raw scores only");
    if (!info.standardized) {
      state.raw = true;
      $("#mode-std").disabled = true;
      syncToggle();
    }
    // Cite what is fitted: the paper's method, or the hubness-corrected one (GET /info's method).
    const zMethod = $("#z-method");
    zMethod.dataset.method = info.method ? info.method.method : "";
    zMethod.textContent = info.method ? `standardized, ${info.method.summary} (${info.method.citation})`
                                      : "not fitted: raw cosine only";
    if (!info.encoder) {
      $("#query").placeholder = "Search by item: #123 (this server has no text/image encoder)";
      $(".upload").style.display = "none";
      if ($("#results").dataset.state === "empty") setState("empty", noEncoderHint(info));
    }
    return true;
  } catch (err) {
    setState("error", `Cannot reach the server: ${err.message}`);
    return false;
  }
}

function noEncoderHint(info) {
  // Say what this server can do: it cannot embed a typed text or an image.
  return `Type #123 (an item id, 0 to ${info.ntotal - 1}) to see the texts and images nearest that item in ` +
    `one ranking. This server has no text/image encoder, so it cannot search by typed text or by image` +
    `${info.encoder_note ? ` (${info.encoder_note})` : ""}.`;
}

// ------------------------------------------------ a search in the URL: /?q=..., /?id=123, &raw=1, &k=50
function queryFromUrl() {
  const params = new URLSearchParams(window.location.search);
  if (params.has("raw") && state.info.standardized) state.raw = ["1", "true", "yes"].includes(params.get("raw"));
  syncToggle();
  const k = params.get("k");
  if (k && /^\d+$/.test(k) && Number(k) > 0) {
    if (![...$("#k").options].some((o) => o.value === k)) $("#k").append(el("option", {}, k));
    $("#k").value = k;
  }
  if (params.has("id") && /^\d+$/.test(params.get("id"))) {
    const id = Number(params.get("id"));
    $("#query").value = `#${id}`;
    return { kind: "id", id, label: `#${id}` };
  }
  if (params.get("q")) {
    $("#query").value = params.get("q");
    return queryFromInput();
  }
  return null;
}

function syncUrl(query) {
  // The shown search as a link (bookmark, share, a headless browser); an uploaded image cannot be one.
  const params = new URLSearchParams();
  if (query.kind === "id") params.set("id", String(query.id));
  else if (query.kind === "text") params.set("q", query.text);
  else {
    history.replaceState(null, "", window.location.pathname);
    return;
  }
  if (state.raw) params.set("raw", "1");
  if ($("#k").value !== "20") params.set("k", $("#k").value);
  history.replaceState(null, "", `${window.location.pathname}?${params}`);
}

function syncToggle() {
  $("#mode-std").classList.toggle("active", !state.raw);
  $("#mode-raw").classList.toggle("active", state.raw);
}

function queryFromInput() {
  const text = $("#query").value.trim();
  if (!text) return null;
  const id = /^#(\d+)$/.exec(text);
  return id ? { kind: "id", id: Number(id[1]), label: text } : { kind: "text", text, label: `“${text}”` };
}

async function search(query) {
  if (!query) {
    setState("empty", "Type something to search for.");
    return;
  }
  state.last = query;
  syncUrl(query);
  const seq = ++state.requestSeq;
  const k = Number($("#k").value);
  setState("loading");
  let response;
  try {
    if (query.kind === "image") {
      const form = new FormData();
      form.append("image", query.file);
      form.append("k", String(k));
      form.append("raw", String(state.raw));
      response = await fetch("/search/image", { method: "POST", body: form });
    } else {
      const body = { k, raw: state.raw };
      if (query.kind === "id") body.id = query.id; else body.text = query.text;
      response = await fetch("/search", { method: "POST", headers: { "Content-Type": "application/json" },
                                          body: JSON.stringify(body) });
    }
    const data = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
    if (seq !== state.requestSeq) return; // a newer search was started meanwhile
    if (!response.ok) {
      setState("error", data.detail || `HTTP ${response.status}`);
      return;
    }
    render(query, data);
  } catch (err) {
    if (seq === state.requestSeq) setState("error", `The request failed: ${err.message}`);
  }
}

function render(query, data) {
  state.lastResponse = data;
  const mode = data.query.standardized ? "standardized" : "raw";
  state.shares[mode] = data.modality_share;
  renderShare(data, mode);
  const results = $("#results");
  if (!data.hits.length) {
    setState("empty", "No results.");
    return;
  }
  results.dataset.state = "results";
  results.replaceChildren(...data.hits.map(card));
}

function renderShare(data, mode) {
  const share = $("#share");
  share.dataset.mode = mode;
  share.dataset.share = JSON.stringify(data.modality_share);
  share.replaceChildren(...Object.entries(data.modality_share).filter(([, s]) => s > 0).map(([m, s]) =>
    el("div", { class: `seg ${modalityClass(m)}`, style: `width:${(s * 100).toFixed(1)}%`,
                title: `${m}: ${(s * 100).toFixed(0)}% of the top ${data.hits.length}` },
       `${m} ${(s * 100).toFixed(0)}%`)));
  const other = mode === "raw" ? "standardized" : "raw";
  const describe = (s) => Object.entries(s).map(([m, v]) => `${m} ${(v * 100).toFixed(0)}%`).join(", ");
  const compare = state.shares[other] && state.last ? ` — ${other}: ${describe(state.shares[other])}` : "";
  $("#query-echo").textContent = `${state.last ? state.last.label : ""} · top ${data.hits.length}, ` +
    `${mode === "raw" ? "raw cosine" : "standardized"}: ${describe(data.modality_share)}${compare} · ` +
    `${data.took_ms.toFixed(0)} ms`;
}

function card(hit) {
  const meta = hit.metadata || {};
  const badge = el("span", { class: `badge ${modalityClass(hit.modality)}` }, hit.modality);
  const scores = el("div", { class: "scores" },
    el("span", { title: "standardized score" }, "z ", el("b", {}, data_z(hit))),
    el("span", { title: "raw cosine" }, "cos ", el("b", {}, fmt(hit.raw_score, 3))),
    hit.confidence === null || hit.confidence === undefined ? null
      : el("span", { title: "label-free confidence" }, "conf ", el("b", {}, fmt(hit.confidence, 2))),
    hit.p_match === null || hit.p_match === undefined ? null
      : el("span", { title: `match probability (${(state.info && state.info.probabilities) || "see /info"})` }, "p ",
           el("b", {}, fmt(hit.p_match, 2))));
  const top = el("div", { class: "top" }, el("span", { class: "rank" }, `#${hit.rank}`),
                 el("span", { class: "id" }, `id ${hit.id}`));
  const node = el("article", { class: "card", dataset: { modality: hit.modality, id: String(hit.id) },
                               title: "Click: more like this" });
  if (hit.thumbnail_url) {
    const img = el("img", { src: hit.thumbnail_url, alt: meta.path ? meta.path.split("/").pop() : `image ${hit.id}`,
                            loading: "lazy" });
    img.addEventListener("error", () => img.replaceWith(el("div", { class: "noimg" }, "image unavailable")));
    node.append(el("div", { class: "media" }, img, badge), el("div", { class: "body" }, top, scores));
  } else {
    // The item's caption or title; else the name of its file or address; never raw JSON.
    const field = TEXT_FIELDS.find((f) => typeof meta[f] === "string" && meta[f]);
    const where = ["path", "image_path", "url", "image_url", "coco_url"].find((f) => typeof meta[f] === "string" && meta[f]);
    const label = field ? meta[field] : where ? meta[where].split(/[?#]/)[0].split("/").filter(Boolean).pop() || meta[where]
      : `${hit.modality} item ${hit.id}`;
    node.classList.add(hit.modality === "image" ? "image-card" : "text-card");
    node.append(el("div", { class: "body" }, el("div", { class: "top" }, badge, top), el("div", { class: "text" }, label), scores));
  }
  node.addEventListener("click", () => {
    $("#query").value = `#${hit.id}`;
    search({ kind: "id", id: hit.id, label: `#${hit.id}` });
  });
  return node;
}

function data_z(hit) {
  // In raw mode the server's score is the cosine: no standardized score to show.
  return state.lastResponse && !state.lastResponse.query.standardized ? "–" : fmt(hit.score, 2);
}

function searchImage(file) {
  if (!file) return;
  if (state.info && !state.info.encoder) {
    setState("error", `This server cannot search by image: ${state.info.encoder_note || "it has no encoder"}. ` +
             "Type #123 to search by an indexed item.");
    return;
  }
  if (!file.type.startsWith("image/")) {
    setState("error", `${file.name} is not an image.`);
    return;
  }
  $("#query").value = "";
  state.shares = {};
  search({ kind: "image", file, label: `image ${file.name}` });
}

$("#search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.shares = {};
  search(queryFromInput());
});
$("#image-input").addEventListener("change", (e) => searchImage(e.target.files[0]));
$("#k").addEventListener("change", () => { state.shares = {}; if (state.last) search(state.last); });
for (const button of document.querySelectorAll(".toggle button")) {
  button.addEventListener("click", () => {
    const raw = button.dataset.raw === "true";
    if (raw === state.raw) return;
    state.raw = raw;
    syncToggle();
    if (state.last) search(state.last);
  });
}
const results = $("#results");
results.addEventListener("dragover", (e) => { e.preventDefault(); results.classList.add("dragging"); });
results.addEventListener("dragleave", () => results.classList.remove("dragging"));
results.addEventListener("drop", (e) => {
  e.preventDefault();
  results.classList.remove("dragging");
  searchImage(e.dataTransfer.files[0]);
});

loadInfo().then((ok) => {
  const query = ok ? queryFromUrl() : null;
  if (query) search(query);
});
