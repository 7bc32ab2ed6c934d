// framereel live: send the request as it is typed, show each frame as it arrives.
"use strict";
const $ = (id) => document.getElementById(id);
let timer = null;

async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
  $("error").textContent = r.ok ? "" : (data.error || `HTTP ${r.status}`);
  return r.ok ? data : null;
}

function request() {
  const seed = Number($("seed").value);
  return {prompt: $("prompt").value, prompt_b: $("promptb").value, t: Number($("t").value),
          vary: $("vary").checked, ...(Number.isInteger(seed) && $("seed").value !== "" ? {seed} : {})};
}

function send() {
  clearTimeout(timer);
  timer = setTimeout(() => post("/api/request", request()), 120);
}

function chip(label, value) {
  const span = document.createElement("span");
  span.className = "chip";
  span.append(label + " ");
  const b = document.createElement("b");
  b.textContent = value;
  span.append(b);
  return span;
}

function showState(s) {
  $("chips").replaceChildren(chip("model", s.model), chip("device", s.device), chip("size", `${s.width}×${s.height}`),
    chip("steps", s.steps), chip("guidance", s.guidance));
  if (document.activeElement !== $("seed")) $("seed").value = s.seed;
  $("kept").textContent = s.kept ? `${s.kept} entries kept in storyboard.json` : "";
}

function showFrame(f) {
  $("frame").src = f.image;
  $("frame").dataset.n = f.n;
  $("fps").textContent = f.fps ? `${f.fps.toFixed(1)} frames/s` : "– frames/s";
  $("count").textContent = `${f.n} frames`;
  $("shown").textContent = f.prompt_b ? `${f.prompt} → ${f.prompt_b} at ${f.t.toFixed(2)}, seed ${f.seed}`
                                      : `${f.prompt}, seed ${f.seed}`;
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { $("conn").classList.add("on"); $("conntext").textContent = "live"; });
  events.addEventListener("error", () => { $("conn").classList.remove("on"); $("conntext").textContent = "reconnecting…"; });
  events.addEventListener("state", (e) => { showState(JSON.parse(e.data)); document.body.dataset.ready = "1"; });
  events.addEventListener("frame", (e) => showFrame(JSON.parse(e.data)));
  events.addEventListener("problem", (e) => { $("error").textContent = JSON.parse(e.data).error; });
}

for (const id of ["prompt", "promptb", "seed"]) $(id).addEventListener("input", send);
$("vary").addEventListener("change", send);
$("t").addEventListener("input", () => { $("tout").textContent = Number($("t").value).toFixed(2); send(); });
$("keep").addEventListener("click", async () => {
  const r = await post("/api/keep", {what: "frame"});
  if (r) $("kept").textContent = `${r.kept} entries kept in storyboard.json`;
});
$("stretch").addEventListener("click", async () => {
  const r = await post("/api/keep", {what: "stretch", morph: Number($("morphn").value)});
  if (r) $("kept").textContent = `${r.kept} entries kept in storyboard.json`;
});
connect();
