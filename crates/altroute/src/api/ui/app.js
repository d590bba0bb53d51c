// altroute's web page: polls the API and draws it. No framework, no build step.
"use strict";

const HISTORY_S = 60;
const history = new Map(); // gateway -> [{t, out, in}] (byte counters)
let busy = false;

function token() { return sessionStorage.getItem("altroute-token"); }

// One API call; on 401 asks for the token once and retries.
async function api(method, path, body) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = {};
    if (token()) headers["Authorization"] = "Bearer " + token();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 && attempt === 0) {
      const t = window.prompt("This router asks for its API token:");
      if (!t) throw new Error("no token");
      sessionStorage.setItem("altroute-token", t.trim());
      continue;
    }
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  }
  throw new Error("unauthorized");
}

function say(text) { document.getElementById("message").textContent = text; }

async function act(method, path, body) {
  busy = true;
  try {
    const r = await api(method, path, body);
    say(r.message || "");
  } catch (e) {
    say(e.message);
  } finally {
    busy = false;
    refresh();
  }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function bytes(n) {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}

function bits(n) {
  const u = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}

function card(g) {
  let c = document.getElementById("gw-" + g.name);
  if (!c) {
    c = el("div", { id: "gw-" + g.name, class: "card" },
      el("h3", {}, g.name, el("span", { class: "state" })),
      el("div", { class: "why" }),
      el("dl", {}),
      el("canvas", { width: "320", height: "80" }),
      el("div", { class: "legend" }, el("span", { class: "out" }, "▬ out "), el("span", { class: "in" }, "▬ in"), " (bit/s, last minute)"),
      el("div", { class: "buttons" }));
    document.getElementById("gateways").append(c);
  }
  c.className = "card " + g.state;
  c.querySelector(".state").textContent = g.state + (g.forced ? " · forced" : "");
  c.querySelector(".why").textContent = g.reason;
  const rows = [
    ["RTT", g.rtt_ms == null ? "–" : g.rtt_ms.toFixed(1) + " ms"],
    ["loss", g.loss_pct.toFixed(0) + " %"],
    ["flows", g.flows],
    ["opened / failed (" + g.window_s + " s)", g.opened + " / " + g.failed],
    ["out", bytes(g.out_bytes)],
    ["in", bytes(g.in_bytes)],
    ["weight / tier", g.weight + " / " + g.tier],
  ];
  const dl = c.querySelector("dl");
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  const b = c.querySelector(".buttons");
  const path = "/api/gateways/" + encodeURIComponent(g.name) + "/";
  b.replaceChildren(
    g.forced
      ? el("button", { id: "release-" + g.name, onclick: () => act("POST", path + "release") }, "release " + g.name)
      : el("button", { id: "force-" + g.name, onclick: () => act("POST", path + "force") }, "force " + g.name),
    " ",
    g.enabled
      ? el("button", { id: "disable-" + g.name, onclick: () => act("POST", path + "disable") }, "disable")
      : el("button", { id: "enable-" + g.name, onclick: () => act("POST", path + "enable") }, "enable"));
  plot(c.querySelector("canvas"), g.name);
}

// The traffic plot: bit rates between successive polls, out and in.
function plot(canvas, name) {
  const h = history.get(name) || [];
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  const rates = [];
  for (let i = 1; i < h.length; i++) {
    const dt = (h[i].t - h[i - 1].t) / 1000;
    if (dt <= 0) continue;
    rates.push({ t: h[i].t, out: 8 * (h[i].out - h[i - 1].out) / dt, in: 8 * (h[i].in - h[i - 1].in) / dt });
  }
  const max = Math.max(1, ...rates.map(r => Math.max(r.out, r.in)));
  const now = Date.now();
  const x = t => W - (now - t) / (HISTORY_S * 1000) * W;
  for (const [key, color] of [["out", "#26d"], ["in", "#2a2"]]) {
    ctx.strokeStyle = color;
    ctx.beginPath();
    rates.forEach((r, i) => {
      const y = H - 4 - (r[key] / max) * (H - 16);
      if (i === 0) ctx.moveTo(x(r.t), y); else ctx.lineTo(x(r.t), y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#666";
  ctx.font = "10px sans-serif";
  ctx.fillText("max " + bits(max), 4, 10);
}

async function pollGateways() {
  const gws = await api("GET", "/api/gateways");
  const t = Date.now();
  for (const g of gws) {
    const h = history.get(g.name) || [];
    h.push({ t, out: g.out_bytes, in: g.in_bytes });
    while (h.length && t - h[0].t > HISTORY_S * 1000) h.shift();
    history.set(g.name, h);
    card(g);
  }
  return gws;
}

async function pollStatus() {
  const s = await api("GET", "/api/status");
  document.getElementById("summary").textContent =
    s.flows + " flows · " + s.workers + " worker(s) · up " + Math.round(s.uptime_s) + " s" +
    (s.forced ? " · forced: " + s.forced : "");
  const m = document.getElementById("mode");
  if (document.activeElement !== m) m.value = s.mode;
}

async function pollClients() {
  const tbody = document.querySelector("#clients tbody");
  if (tbody.contains(document.activeElement)) return;
  const c = await api("GET", "/api/clients");
  tbody.replaceChildren(...c.clients.map(cl => {
    const sel = el("select", { "aria-label": "gateway of " + cl.ip, id: "pin-" + cl.ip },
      el("option", { value: "" }, "policy"),
      ...c.gateways.map(g => el("option", { value: g }, g)));
    sel.value = cl.pinned || "";
    sel.addEventListener("change", () => {
      const path = "/api/clients/" + encodeURIComponent(cl.ip);
      if (sel.value) act("PUT", path, { gateway: sel.value }); else act("DELETE", path);
    });
    const by = Object.entries(cl.gateways).map(([g, n]) => g + ": " + n).join(", ");
    return el("tr", {}, el("td", {}, cl.ip), el("td", {}, String(cl.flows)), el("td", {}, by), el("td", {}, sel));
  }));
}

let tick = 0;
async function refresh() {
  if (busy) return;
  try {
    await pollGateways();
    if (tick % 2 === 0) await pollStatus();
    if (tick % 3 === 0) await pollClients();
    tick++;
  } catch (e) {
    say(e.message);
  }
}

document.getElementById("mode").addEventListener("change", e => act("POST", "/api/mode", { mode: e.target.value }));
refresh();
setInterval(refresh, 1000);
