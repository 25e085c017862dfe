// percep-rag visual search: plain browser JavaScript, no build step, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { collection: "", query: null, keyNeeded: false, textQueries: "none", textWhy: "", searches: 0 };
const KEY_STORAGE = "percep-rag-api-key";

function apiKey() {
  return $("api-key").value.trim();
}

function headers() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  } catch (error) {
    throw new Error("The service cannot be reached: is `percep-rag serve` still running?");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    if (response.status === 401) {
      state.keyNeeded = true;
      $("key-box").open = true;
      $("api-key").focus();
    }
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${detail} (HTTP ${response.status})`);
  }
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

// Thumbnails load lazily: the browser's own lazy loading, or, when a key must travel in a header,
// a fetch as the image scrolls into view.
const lazyImages = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) {
          lazyImages.unobserve(entry.target);
          loadWithKey(entry.target);
        }
      }
    }, { rootMargin: "200px" })
  : null;

async function loadWithKey(img) {
  try {
    const response = await fetch(img.dataset.src, { headers: headers() });
    if (!response.ok) throw new Error(String(response.status));
    img.src = URL.createObjectURL(await response.blob());
  } catch (error) {
    showPlaceholder(img);
  }
}

// A thumbnail the service no longer has (its point was deleted, its file withdrawn: 404) or
// cannot send: a drawn placeholder in its place, never a broken image.
const PLACEHOLDER = "static/placeholder.svg";  // shipped with the page: needs no key

function showPlaceholder(img) {
  img.onerror = null;
  img.classList.add("gone");
  img.alt = "image no longer available";
  img.src = PLACEHOLDER;
}

function setImage(img, url) {
  img.loading = "lazy";
  img.decoding = "async";
  img.onerror = () => showPlaceholder(img);
  if (!apiKey()) {
    img.src = url;
  } else if (lazyImages) {
    img.dataset.src = url;
    lazyImages.observe(img);
  } else {
    img.dataset.src = url;
    loadWithKey(img);
  }
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

async function loadCollections() {
  const select = $("collection");
  try {
    const listed = await api("collections");
    select.replaceChildren();
    if (!listed.collections.length) {
      select.append(option("", "no collections"));
      showError("This service serves no collection: index images first, then restart it.");
      return;
    }
    for (const row of listed.collections) {
      const points = row.points === null ? "unavailable" : `${row.points} points`;
      select.append(option(row.name, `${row.name} (${points})`));
    }
    const remembered = new URLSearchParams(location.hash.slice(1)).get("collection");
    if (remembered && listed.collections.some((row) => row.name === remembered)) select.value = remembered;
    showError("");
    if (state.keyNeeded) $("key-box").open = false;  // the key works: fold the field away
    await chooseCollection();
  } catch (error) {
    select.replaceChildren(option("", "—"));
    showError(error.message);
  }
}

function fillFacet(select, values) {
  const previous = select.value;
  select.replaceChildren(option("", "any"));
  for (const value of values || []) select.append(option(String(value), String(value)));
  select.value = (values || []).map(String).includes(previous) ? previous : "";
  select.disabled = !(values && values.length);
}

async function chooseCollection() {
  state.collection = $("collection").value;
  history.replaceState(null, "", `#collection=${encodeURIComponent(state.collection)}`);
  if (!state.collection) return;
  try {
    const info = await api(`collections/${encodeURIComponent(state.collection)}`);
    const fp = info.fingerprint;
    $("collection-meta").textContent = `${fp.backbone}, ${fp.alignment} alignment, ${info.points} points`;
    $("random-note").hidden = !fp.random_weights;
    setTextQueries(fp.text_queries || "none", info.text_queries || "");
    fillFacet($("label-filter"), info.facets.label);
    fillFacet($("split-filter"), info.facets.split);
    showError("");
    if (state.query) await search();
  } catch (error) {
    $("collection-meta").textContent = "";
    showError(error.message);
  }
}

// What a text query of this collection searches (its fingerprint's text_queries): none, base, base+aligned.
function setTextQueries(queries, why) {
  state.textQueries = queries;
  state.textWhy = why;
  const off = queries === "none";
  $("text-query").disabled = off;
  $("text-go").disabled = off;
  $("text-help").textContent = off ? `No text search here: ${why.replace(/^none \((.*)\)$/, "$1")}` : "";
  if (off && state.query && state.query.text) state.query = null;
}

function queryForm() {
  const form = new FormData();
  if (state.query.file) form.append("image", state.query.file, state.query.file.name || "query");
  else if (state.query.text) form.append("text", state.query.text);
  else form.append("point", state.query.point);
  form.append("k", $("k").value);
  // A text searches base, and aligned too where the collection's alignment maps the text space.
  form.append("space", state.query.text && state.textQueries !== "base+aligned" ? "base" : "both");
  if ($("label-filter").value) form.append("filter", `label=${$("label-filter").value}`);
  if ($("split-filter").value) form.append("filter", `split=${$("split-filter").value}`);
  return form;
}

async function search() {
  if (!state.query || !state.collection) return;
  // A query chosen while another is in flight: only the latest answer is shown, whatever order
  // the answers come back in (an older one would put the previous query's grids back).
  const searchNumber = ++state.searches;
  const latest = () => searchNumber === state.searches;
  const results = document.querySelector(".results");
  results.setAttribute("aria-busy", "true");  // the grids' dimming in style.css keys on it too
  setStatus("Searching…");
  showError("");
  try {
    const found = await api(`collections/${encodeURIComponent(state.collection)}/search`, {
      method: "POST",
      body: queryForm(),
    });
    if (!latest()) return;
    render(found);
    refreshCounts();
    const count = (found.results.base || found.results.aligned).length;
    setStatus(count ? `${count} neighbours per space in ${state.collection}` : "No stored image passes these filters.");
  } catch (error) {
    if (!latest()) return;
    setStatus("");
    $("columns").hidden = true;  // the grids below would be the previous query's
    $("empty").hidden = true;
    showError(error.message);
  } finally {
    if (latest()) results.setAttribute("aria-busy", "false");
  }
}

function renderColumn(list, hits) {
  list.replaceChildren();
  if (!hits.length) {
    const none = document.createElement("li");
    none.className = "none";
    none.textContent = "No neighbours: loosen the filters.";
    list.append(none);
    return;
  }
  for (const hit of hits) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "hit";
    const label = hit.label ?? "unlabelled";
    button.title = hit.uri || hit.id;
    const img = document.createElement("img");
    img.alt = "";  // the caption names the image: the button's name is what it shows
    img.width = 160;
    img.height = 160;
    setImage(img, hit.image);
    const caption = document.createElement("span");
    caption.className = "cap";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = `#${hit.rank} ${label}`;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    caption.append(name, score);
    button.append(img, caption);
    // One row of badges over the image, so a copy badge and a file count never overlap.
    const badges = document.createElement("span");
    badges.className = "badges";
    if (hit.copy_of_query) {
      // Another file of the query's image (the same pixels), or a near copy by the collection's
      // calibrated threshold: what a catalog search is there to find. Never a bare "similar".
      const exact = hit.copy_of_query === "exact";
      const copy = document.createElement("span");
      copy.className = exact ? "copy" : "copy near";
      copy.textContent = exact ? "copy" : `near copy, cos ${hit.score.toFixed(3)}`;
      copy.title = exact
        ? "the same pixels as the query"
        : "at or above the near-copy threshold calibrated for this collection";
      badges.append(copy);
    }
    if (hit.files > 1) {
      // Byte-identical files are one image here: say how many the hit stands for.
      const files = document.createElement("span");
      files.className = "files";
      files.textContent = `${hit.files} files`;
      files.title = "byte-identical files of this image in the collection";
      badges.append(files);
    }
    if (badges.childElementCount) button.append(badges);
    // The button's name is what it shows, then what it does (axe: label-content-name-mismatch).
    const action = document.createElement("span");
    action.className = "visually-hidden";
    action.textContent = "— search with this image";
    button.append(action);
    button.addEventListener("click", () => queryWithPoint(hit));
    item.append(button);
    list.append(item);
  }
}

function render(found) {
  $("empty").hidden = true;
  $("columns").hidden = false;
  renderColumn($("base"), found.results.base || []);
  if (found.results.aligned) {
    renderColumn($("aligned"), found.results.aligned);
  } else {
    const none = document.createElement("li");
    none.className = "none";
    none.textContent = `Text searches base only here: ${state.textWhy}`;
    $("aligned").replaceChildren(none);
  }
}

function showQuery(src, name) {
  const preview = $("query-preview");
  preview.hidden = false;
  preview.onerror = () => {
    preview.hidden = true;  // a file the browser cannot show either: the drop zone's text comes back
  };
  preview.alt = `query: ${name}`;
  if (src) preview.src = src;
  $("query-name").textContent = name;
}

function queryWithFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name} is not an image (${file.type}).`);
    return;
  }
  state.query = { file };
  showQuery(URL.createObjectURL(file), file.name);
  search();
}

function queryWithText(event) {
  event.preventDefault();
  const text = $("text-query").value.trim();
  if (!text) {
    showError("Type a text to search for.");
    return;
  }
  state.query = { text };
  const preview = $("query-preview");
  preview.hidden = true;
  preview.removeAttribute("src");
  $("query-name").textContent = `text: “${text}”`;
  search();
}

function queryWithPoint(hit) {
  state.query = { point: hit.id };
  const preview = $("query-preview");
  preview.removeAttribute("src");
  setImage(preview, hit.image);
  showQuery(null, `${hit.label ?? "stored image"} · ${hit.uri ? hit.uri.split("/").pop() : hit.id}`);
  search();
  $("drop").focus();
}

function wireDropZone() {
  const drop = $("drop");
  const input = $("file");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => queryWithFile(input.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    queryWithFile(event.dataTransfer.files[0]);
  });
  // Pasting an image (Ctrl+V) queries with it too.
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) queryWithFile(file);
  });
}

function init() {
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) $("api-key").value = stored;
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, apiKey());
    loadCollections();
  });
  $("collection").addEventListener("change", chooseCollection);
  for (const id of ["k", "label-filter", "split-filter"]) $(id).addEventListener("change", search);
  $("options").addEventListener("submit", (event) => event.preventDefault());
  $("text-form").addEventListener("submit", queryWithText);
  wireDropZone();
  loadCollections();
  followCounts();
}

// The catalog changes while it is served (images added, deleted, synced): the point counts
// follow it, every few seconds while the page is visible, and after each search.
const COUNT_EVERY_MS = 5000;

async function refreshCounts() {
  if (!state.collection || document.hidden) return;
  try {
    const listed = await api("collections");
    for (const row of listed.collections) {
      const points = row.points === null ? "unavailable" : `${row.points} points`;
      const choice = [...$("collection").options].find((o) => o.value === row.name);
      if (choice) choice.textContent = `${row.name} (${points})`;
      if (row.name === state.collection && row.points !== null) {
        $("collection-meta").textContent = $("collection-meta").textContent.replace(/\d+ points$/, points);
      }
    }
  } catch (error) {
    // A service that went away says so on the next search; a count is not worth an error box.
  }
}

function followCounts() {
  setInterval(refreshCounts, COUNT_EVERY_MS);
  document.addEventListener("visibilitychange", refreshCounts);
}

document.addEventListener("DOMContentLoaded", init);
