"use strict";
// framereel studio. Every prompt and parameter goes into the page as text or attributes, never as HTML.
const $ = (id) => document.getElementById(id);
let S = null;                 // the last state from the server
let boardDirty = false;       // a state arrived while an entry was being edited
const seenImages = new Set();

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
}
const fmt = (x, d = 2) => (x === null || x === undefined) ? "–" : (+x).toFixed(d).replace(/\.?0+$/, "");
function toast(msg, bad) {
  const t = $("toast"); t.textContent = msg; t.classList.toggle("bad", !!bad); t.classList.add("on");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => t.classList.remove("on"), bad ? 4000 : 1800);
}

async function api(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {})});
  const data = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) { toast(data.error || r.statusText, true); throw new Error(data.error); }
  return data;
}

// ---------------------------------------------------------------- controls (kept in this browser)
const CONTROLS = ["seed", "random", "advance", "steps", "guidance", "width", "height", "scheduler", "negative"];
function saveControls() {
  const c = {}; for (const id of CONTROLS) { const e = $(id); c[id] = e.type === "checkbox" ? e.checked : e.value; }
  localStorage.setItem("framereel.controls", JSON.stringify(c));
}
function initControls(d) {
  // the server's limits (the same for every interface: storyboards, flags, interactive mode)
  for (const id of ["width", "height"]) Object.assign($(id), {min: S.limits.side.min, max: S.limits.side.max, step: S.limits.side.step});
  $("fps").max = S.limits.fps; $("crossfade").max = S.limits.crossfade;
  // only the schedulers the loaded model takes
  $("scheduler").replaceChildren(...S.schedulers.map(s => el("option", {value: s, text: s})));
  $("transition").replaceChildren(...S.transitions.map(s => el("option", {value: s, text: s})));
  const saved = JSON.parse(localStorage.getItem("framereel.controls") || "null");
  const init = saved || {seed: d.seed ?? 0, random: d.seed === null, advance: true, steps: d.steps, guidance: d.guidance,
                         width: d.width, height: d.height, scheduler: d.scheduler, negative: d.negative_prompt || ""};
  for (const id of CONTROLS) { const e = $(id); if (e.type === "checkbox") e.checked = !!init[id]; else e.value = init[id]; }
  if (!S.schedulers.includes($("scheduler").value)) $("scheduler").value = d.scheduler;  // saved for another model
  syncOutputs();
}
function syncOutputs() {
  $("stepsout").textContent = $("steps").value; $("guidanceout").textContent = $("guidance").value;
  $("seed").disabled = $("random").checked;
}
for (const id of CONTROLS) $(id).addEventListener("input", () => { syncOutputs(); saveControls(); });

let submitted = Promise.resolve();
async function generate(ev) {
  ev && ev.preventDefault();
  const prompt = $("prompt").value.trim();
  $("formerror").textContent = "";
  if (!prompt) { $("formerror").textContent = "Type a prompt first."; return; }
  const body = {prompt, seed: $("random").checked ? "random" : +$("seed").value, steps: +$("steps").value,
                guidance: +$("guidance").value, width: +$("width").value, height: +$("height").value,
                scheduler: $("scheduler").value, negative_prompt: $("negative").value};
  // the next image gets the next seed at once, so prompts typed in quick succession differ in seed too
  if (!$("random").checked && $("advance").checked) { $("seed").value = (+$("seed").value + 1) % 4294967296; saveControls(); }
  // requests go one after another, so the queue keeps the order prompts were typed in
  submitted = submitted.then(() => api("/api/generate", body)).catch((e) => { $("formerror").textContent = e.message; });
  await submitted;
}
$("form").addEventListener("submit", generate);
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) generate(e); });

function useSettings(img) {
  $("prompt").value = img.prompt; $("seed").value = img.seed; $("random").checked = false; $("steps").value = img.steps;
  $("guidance").value = img.guidance; $("width").value = img.width; $("height").value = img.height;
  $("negative").value = img.negative_prompt || ""; syncOutputs(); saveControls(); $("prompt").focus();
}

// ---------------------------------------------------------------- drawing
function draw() {
  const d = S;
  $("chips").replaceChildren(...[["model", d.model], ["device", d.device], ["dtype", d.dtype], ["folder", d.out]]
    .map(([k, v]) => el("span", {class: "chip"}, k + " ", el("b", {text: String(v)}))));
  if (d.images.length) document.documentElement.style.setProperty("--ar", d.images[d.images.length - 1].width + " / " + d.images[d.images.length - 1].height);
  drawImages(d);
  if (document.activeElement && $("board").contains(document.activeElement)) boardDirty = true; else drawBoard(d);
  drawFilm(d);
}

function keptCount(img) {
  return S.storyboard.filter(e => e.prompt === img.prompt && e.seed === img.seed && e.steps === img.steps
    && +e.guidance === +img.guidance && e.width === img.width && e.height === img.height
    && (e.negative_prompt || "") === (img.negative_prompt || "")).length;
}

function jobCard(j) {
  const bar = el("div", {class: "bar"}, el("i", {}));
  const label = j.state === "failed" ? "failed: " + j.message : j.state === "queued" ? "queued" : "rendering…";
  const remove = j.state === "queued" || j.state === "failed"
    ? el("button", {class: "cancel", type: "button", text: "×", title: j.state === "queued" ? "cancel" : "dismiss",
                    onclick: () => api("/api/cancel", {id: j.id})}) : null;
  const card = el("article", {class: "icard job " + j.state, id: "job-" + j.id, "data-state": j.state},
    el("div", {class: "pic"}, el("span", {class: "tag", text: label}), remove),
    el("div", {class: "ibody"}, el("p", {text: j.prompt || ""}), j.state === "running" ? bar : null));
  if (j.progress && j.progress.steps) bar.firstChild.style.width = (100 * j.progress.step / j.progress.steps) + "%";
  return card;
}

function imageCard(img) {
  const kept = keptCount(img);
  const fresh = !seenImages.has(img.name) && seenImages.size > 0;
  seenImages.add(img.name);
  return el("article", {class: "icard" + (fresh ? " fresh" : ""), "data-name": img.name},
    el("div", {class: "pic"}, el("img", {src: img.url, alt: img.prompt}), el("span", {class: "num", text: img.name.slice(0, 4)}),
       kept ? el("span", {class: "kept", text: kept > 1 ? "kept ×" + kept : "kept"}) : null),
    el("div", {class: "ibody"}, el("p", {text: img.prompt}),
      el("div", {class: "meta", text: "seed " + img.seed + " · " + img.steps + " steps · guidance " + fmt(img.guidance) + " · " + img.width + "×" + img.height}),
      el("div", {class: "acts"},
        el("button", {class: (kept ? "" : "primary ") + "keep", type: "button", text: "Keep", title: "add to the storyboard",
                      onclick: () => api("/api/keep", {image: img.name}).then(() => toast("kept: “" + img.prompt + "” is now in the storyboard"))}),
        el("button", {type: "button", text: "Reuse", title: "put this image's prompt and settings in the controls", onclick: () => useSettings(img)}))));
}

function drawImages(d) {
  const jobs = d.jobs.filter(j => j.kind === "image" && j.state !== "done" && j.state !== "cancelled");
  const cards = [...jobs.slice().reverse().map(jobCard), ...d.images.slice().reverse().map(imageCard)];
  $("images").replaceChildren(...cards);
  $("noimages").hidden = cards.length > 0;
  const waiting = d.jobs.filter(j => j.state === "queued").length;
  $("imagecount").textContent = d.images.length + " image" + (d.images.length === 1 ? "" : "s") + (waiting ? " · " + waiting + " queued" : "");
}

let dragFrom = null;
function drawBoard(d) {
  boardDirty = false;
  const n = d.storyboard.length;
  const items = d.storyboard.map((e, i) => {
    const save = (fields) => api("/api/storyboard/update", {index: i, fields});
    const num = (key, attrs) => el("input", {type: "number", value: e[key] ?? "", ...attrs, "aria-label": key,
      onchange: (ev) => save({[key]: ev.target.value === "" ? null : +ev.target.value})});
    const li = el("li", {class: "entry", draggable: "true", "data-index": i},
      el("span", {class: "handle", title: "drag to reorder", text: "⋮⋮"}),
      e.thumb ? el("img", {class: "thumb" + (e.edited ? " edited" : ""), src: e.thumb, alt: e.prompt,
                           title: e.edited ? "the image it was kept from: the film renders the edited entry anew" : null})
              : el("div", {class: "thumb", title: "not rendered yet: the film renders it"}),
      el("div", {class: "fields"},
        (() => { const t = el("textarea", {rows: "2", "aria-label": "prompt"}); t.value = e.prompt;
                 t.addEventListener("change", () => save({prompt: t.value})); return t; })(),
        el("div", {class: "small"}, el("span", {class: "idx", text: "#" + i}), "seed " + e.seed,
          el("label", {title: "seconds on screen (empty: 1 / fps)"}, num("duration", {min: "0.05", step: "0.25", placeholder: fmt(1 / S.film.fps), class: "duration"}), "s"),
          el("label", {title: "latent in-between frames from this entry to the next"}, "morph",
             num("morph", {min: "0", max: "240", step: "1", placeholder: "0", class: "morph"})))),
      el("div", {class: "side"},
        el("button", {type: "button", text: "↑", title: "move up", disabled: i === 0 ? "" : null,
                      onclick: () => api("/api/storyboard/move", {from: i, to: i - 1})}),
        el("button", {type: "button", text: "↓", title: "move down", disabled: i === n - 1 ? "" : null,
                      onclick: () => api("/api/storyboard/move", {from: i, to: i + 1})}),
        el("button", {type: "button", class: "del", text: "×", title: "delete this entry",
                      onclick: () => api("/api/storyboard/delete", {index: i})})));
    li.addEventListener("dragstart", (ev) => { dragFrom = i; li.classList.add("dragging"); ev.dataTransfer.effectAllowed = "move";
                                               ev.dataTransfer.setData("text/plain", String(i)); });
    li.addEventListener("dragend", () => li.classList.remove("dragging"));
    li.addEventListener("dragover", (ev) => { ev.preventDefault(); li.classList.add("over"); });
    li.addEventListener("dragleave", () => li.classList.remove("over"));
    li.addEventListener("drop", (ev) => {
      ev.preventDefault(); li.classList.remove("over");
      const from = dragFrom !== null ? dragFrom : +ev.dataTransfer.getData("text/plain");
      dragFrom = null;
      if (from !== i) api("/api/storyboard/move", {from, to: i});
    });
    return li;
  });
  $("board").replaceChildren(...items);
  $("noboard").hidden = n > 0;
  // the film's length as stitching times it (time on screen, in-betweens, crossfades), from the server
  const secs = d.film_seconds === null ? "" : " · " + fmt(d.film_seconds) + " s";
  $("boardinfo").textContent = n ? n + " entr" + (n === 1 ? "y" : "ies") + secs : "";
}
$("board").addEventListener("focusout", () => setTimeout(() => { if (boardDirty && !$("board").contains(document.activeElement)) drawBoard(S); }, 0));

function drawFilm(d) {
  for (const k of ["fps", "transition", "crossfade"]) if (document.activeElement !== $(k)) $(k).value = d.film[k];
  $("xfadebox").hidden = d.film.transition !== "crossfade";
  const film = d.jobs.filter(j => j.kind === "film").slice(-1)[0];
  const busy = film && (film.state === "queued" || film.state === "running");
  $("render").disabled = !d.storyboard.length || busy;
  $("render").textContent = busy ? (film.state === "queued" ? "Film queued…" : "Rendering film…") : "Render film";
  const prog = $("filmprog");
  if (film && busy) {
    prog.replaceChildren(el("span", {id: "filmtext", text: film.state}), el("div", {class: "bar"}, el("i", {id: "filmbar"})));
    if (film.progress.phase) filmProgress(film.progress);
  } else if (film && film.state === "failed") prog.replaceChildren(el("span", {class: "error", text: "film failed: " + film.message}));
  else if (film && film.state === "done") prog.replaceChildren(el("span", {text: "film: " + film.message + " · " + fmt(film.seconds, 1) + " s"}));
  else prog.replaceChildren();
  const player = $("player"), cur = player.querySelector("video");
  if (d.video && (!cur || cur.getAttribute("src") !== d.video))
    player.replaceChildren(el("video", {id: "video", src: d.video, controls: "", loop: "", autoplay: busy ? null : "", muted: "", playsinline: ""}));
  if (!d.video) player.replaceChildren();
  const g = $("gallerylink");
  if (d.gallery) { g.href = d.gallery; g.textContent = "open the film's gallery page ↗"; } else g.textContent = "";
}
function filmProgress(p) {
  const t = $("filmtext"), b = $("filmbar"); if (!t || !b) return;
  if (p.phase === "encoding") { t.textContent = "encoding the video " + p.done + "/" + p.total; b.style.width = (100 * p.done / Math.max(1, p.total)) + "%"; return; }
  const frac = p.total ? (p.done + (p.steps ? p.step / p.steps : 0)) / p.total : 1;
  t.textContent = p.total ? "frames " + p.done + "/" + p.total + (p.steps ? " · step " + p.step + "/" + p.steps : "") : "all frames reused";
  b.style.width = (100 * frac) + "%";
}

for (const k of ["fps", "transition", "crossfade"])
  $(k).addEventListener("change", () => api("/api/film", {[k]: k === "transition" ? $(k).value : +$(k).value}));
$("render").addEventListener("click", () => api("/api/render", {}));

// ---------------------------------------------------------------- live connection
function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { $("conn").classList.add("on"); $("conntext").textContent = "live"; });
  es.addEventListener("error", () => { $("conn").classList.remove("on"); $("conntext").textContent = "reconnecting…"; });
  es.addEventListener("state", (ev) => {
    const first = !S; S = JSON.parse(ev.data);
    if (first) { initControls(S.defaults); S.images.forEach(i => seenImages.add(i.name)); }
    draw();
    document.body.dataset.ready = "1";
  });
  es.addEventListener("progress", (ev) => {
    const p = JSON.parse(ev.data);
    const job = S && S.jobs.find(j => j.id === p.id); if (!job) return;
    job.progress = p;
    if (job.kind === "film") return filmProgress(p);
    const bar = document.querySelector("#job-" + p.id + " .bar i");
    if (bar && p.steps) bar.style.width = (100 * p.step / p.steps) + "%";
    const tag = document.querySelector("#job-" + p.id + " .tag");
    if (tag && p.steps) tag.textContent = "step " + p.step + " / " + p.steps;
  });
}
connect();
