// natlab explore: the page. No framework, no build step.
// Reads /api/topology once, then the state pushed on /api/events (SSE) after every change.
// Every request carries the token: GETs and the event stream in the query, POSTs in the header.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const SVGNS = "http://www.w3.org/2000/svg";
const ui = { topo: null, state: null, gw: null, byName: {}, version: -1 };

// -- small helpers -------------------------------------------------------------------------
function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...kids) {
  const svg = ["svg", "g", "line", "rect", "circle", "text", "path", "polyline", "title"].includes(tag);
  const node = svg ? document.createElementNS(SVGNS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid !== null && kid !== undefined) node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function notice(message) {
  const box = $("notice");
  box.textContent = message;
  box.hidden = !message;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

async function getJSON(path) {
  const r = await fetch(`${path}?token=${encodeURIComponent(TOKEN)}`, { headers: { "X-Natlab-Token": TOKEN } });
  if (!r.ok) throw new Error((await r.json()).error || r.statusText);
  return path === "/api/scenario" ? r.text() : r.json();
}

// POST an action; on error show it and return null (the server changed nothing).
async function act(name, body) {
  let r;
  try {
    r = await fetch(`/api/${name}`, {
      method: "POST", headers: { "X-Natlab-Token": TOKEN, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) { showError(`${name}: ${err}`); return null; }
  const data = await r.json();
  if (!r.ok) { showError(data.error || `${name} failed (${r.status})`); return null; }
  showError("");
  if (data.summary) notice(data.summary);
  return data;
}

// -- topology --------------------------------------------------------------------------
function drawTopology() {
  const t = ui.topo, svg = clear($("topology"));
  svg.setAttribute("viewBox", `0 0 ${t.width} ${t.height}`);
  const nets = {};
  for (const n of t.networks) nets[n.name] = n;
  const links = el("g", {}), netLayer = el("g", {}), nodeLayer = el("g", {});
  for (const n of t.networks) {
    netLayer.append(el("g", { class: "net", "data-net": n.name },
      el("line", { x1: n.x0, y1: n.y, x2: n.x1, y2: n.y }),
      el("text", { x: n.x0 + 4, y: n.y - 8, text: `${n.name}  ${n.subnet}` })));
  }
  for (const node of t.nodes) {
    ui.byName[node.name] = node;
    for (const net of node.networks) {
      links.append(el("line", { class: "link", x1: node.x, y1: node.y, x2: node.x, y2: nets[net].y }));
    }
    const lines = [node.name];
    const g = el("g", { class: `node ${node.kind}`, id: `node-${node.name}`, transform: `translate(${node.x},${node.y})` });
    const h = node.kind === "gateway" ? 84 : 48;
    const shown = node.addresses.length > 1 ? `${node.addresses[0]} +${node.addresses.length - 1}` : node.addresses.join("");
    g.append(el("rect", { x: -105, y: -h / 2, width: 210, height: h }));
    g.append(el("text", { y: node.kind === "gateway" ? -20 : -4, text: node.name }));
    if (node.kind === "gateway") {
      g.append(el("text", { class: "sub", y: -1, "data-role": "behaviour", text: node.behaviour || "" }));
      g.append(el("text", { class: "cls", y: 18, "data-role": "class", text: node.nat_class || "" }));
      g.append(el("text", { class: "sub", y: 35, "data-role": "pool", text: shown }));
      g.addEventListener("click", () => selectGateway(node.name));
      g.style.cursor = "pointer";
    } else {
      g.append(el("text", { class: "sub", y: 15, text: shown }));
    }
    g.append(el("title", { text: lines.concat(node.addresses).join("\n") }));
    nodeLayer.append(g);
  }
  svg.append(links, netLayer, nodeLayer, el("g", { id: "packets" }));
}

function updateGatewayBoxes() {
  for (const [name, gw] of Object.entries(ui.state.gateways)) {
    const g = $(`node-${name}`);
    if (!g) continue;
    g.querySelector('[data-role="behaviour"]').textContent =
      gw.behaviour + (Object.keys(gw.changed).length ? " *" : "");
    g.querySelector('[data-role="class"]').textContent = gw.nat_class;
    const a = gw.addresses;
    g.querySelector('[data-role="pool"]').textContent = a.length > 1 ? `${a[0]} +${a.length - 1}` : a.join("");
    g.classList.toggle("hot", name === ui.gw);
  }
}

// Points from node a to node b: through a network they share, else a breadth-first route.
function route(a, b) {
  const A = ui.byName[a], B = ui.byName[b];
  if (!A || !B) return [];
  const nets = {};
  for (const n of ui.topo.networks) nets[n.name] = n;
  const prev = { [a]: null }, queue = [a];
  while (queue.length) {
    const cur = queue.shift();
    if (cur === b) break;
    const nexts = cur.startsWith("net:") ? ui.topo.nodes.filter(n => n.networks.includes(cur.slice(4))).map(n => n.name)
      : ui.byName[cur].networks.map(n => `net:${n}`);
    for (const nx of nexts) if (!(nx in prev)) { prev[nx] = cur; queue.push(nx); }
  }
  const chain = [];
  for (let cur = b; cur !== null && cur !== undefined; cur = prev[cur]) chain.unshift(cur);
  const pts = [];
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i];
    if (!c.startsWith("net:")) { pts.push([ui.byName[c].x, ui.byName[c].y]); continue; }
    const y = nets[c.slice(4)].y;
    pts.push([ui.byName[chain[i - 1]].x, y], [ui.byName[chain[i + 1]].x, y]);
  }
  return pts;
}

function pathOf(pkt) {
  const stops = [pkt.from, ...pkt.hops.map(h => h.node)];
  if (pkt.outcome === "delivered" && pkt.end) stops.push(pkt.end);
  const names = stops.filter((n, i) => n in ui.byName && n !== stops[i - 1]);
  let pts = [];
  for (let i = 1; i < names.length; i++) pts = pts.concat(route(names[i - 1], names[i]));
  if (!pts.length && names.length) pts = [[ui.byName[names[0]].x, ui.byName[names[0]].y]];
  return pts;
}

// Animate packets one after the other along their paths; a drop ends in a red cross and the reason.
async function animate(packets) {
  const layer = $("packets");
  clear(layer);
  for (const pkt of packets.slice(0, 40)) {
    const pts = pathOf(pkt);
    if (!pts.length) continue;
    const dot = el("circle", { class: `packet ${pkt.outcome}`, r: 9, cx: pts[0][0], cy: pts[0][1] });
    layer.append(dot);
    await along(dot, pts, 90);
    const [x, y] = pts[pts.length - 1];
    if (pkt.outcome === "dropped") {
      layer.append(el("g", {},
        el("line", { class: "dropmark", x1: x - 12, y1: y - 12, x2: x + 12, y2: y + 12 }),
        el("line", { class: "dropmark", x1: x - 12, y1: y + 12, x2: x + 12, y2: y - 12 }),
        el("text", { class: "dropmark-text", x: x + 110, y: y + 6, text: pkt.reason || "dropped" })));
    }
    dot.remove();
  }
}

function along(dot, pts, speed) {
  const segs = [];
  let total = 0;
  for (let i = 1; i < pts.length; i++) {
    const d = Math.hypot(pts[i][0] - pts[i - 1][0], pts[i][1] - pts[i - 1][1]);
    segs.push(d); total += d;
  }
  const ms = Math.min(1400, Math.max(250, total / speed * 100));
  return new Promise(done => {
    const t0 = performance.now();
    function frame(now) {
      let dist = Math.min(1, (now - t0) / ms) * total, i = 0;
      while (i < segs.length - 1 && dist > segs[i]) { dist -= segs[i]; i++; }
      const f = segs[i] ? Math.min(1, dist / segs[i]) : 1, a = pts[i], b = pts[i + 1] || pts[i];
      dot.setAttribute("cx", a[0] + (b[0] - a[0]) * f);
      dot.setAttribute("cy", a[1] + (b[1] - a[1]) * f);
      if (now - t0 < ms) requestAnimationFrame(frame); else done();
    }
    requestAnimationFrame(frame);
  });
}

// -- gateway panel ---------------------------------------------------------------------
function selectGateway(name) {
  ui.gw = name;
  renderGateway();
  updateGatewayBoxes();
}

function renderGateway() {
  const tabs = clear($("gw-tabs"));
  for (const name of Object.keys(ui.state.gateways)) {
    tabs.append(el("button", { class: `tab small${name === ui.gw ? " active" : ""}`, "data-gw": name,
      text: name, onclick: () => selectGateway(name) }));
  }
  const gw = ui.state.gateways[ui.gw];
  if (!gw) return;
  const changed = Object.entries(gw.changed).map(([k, v]) => `${k}=${v}`).join(" ");
  clear($("gw-head")).append(el("div", {},
    el("strong", { text: ui.gw }), ` ${gw.behaviour} `, el("span", { class: "mono", text: gw.nat_class }),
    ` · pool ${gw.addresses.join(", ")} · clock +${gw.clock.toFixed(1)} s`,
    changed ? el("span", { class: "mono", text: ` · set: ${changed}` }) : null));
  const pool = $("gw-pool");
  if (pool.dataset.gw !== ui.gw || pool.dataset.pool !== gw.addresses.join(", ")) {
    pool.value = gw.addresses.join(", ");
    pool.dataset.gw = ui.gw; pool.dataset.pool = pool.value;
  }
  const preset = $("gw-preset");
  if (preset.dataset.gw !== ui.gw || preset.dataset.behaviour !== gw.behaviour) {
    clear(preset).append(...ui.topo.presets.map(p => el("option", { value: p, text: p, selected: p === gw.behaviour })));
    preset.dataset.gw = ui.gw; preset.dataset.behaviour = gw.behaviour;
  }
  renderKnobs(gw);
  renderMappings(gw.mappings);
  renderCounters(gw.counters);
  renderEvents(gw.events);
}

function renderKnobs(gw) {
  const key = ui.gw + JSON.stringify(gw.knobs);
  const table = $("knobs");
  if (table.dataset.key === key && table.contains(document.activeElement)) return;  // keep what is being typed
  table.dataset.key = key;
  clear(table);
  table.append(el("tr", {}, ...["knob", "value", "RFC requirement · allowed", "RFC default"].map(h => el("th", { text: h }))));
  for (const row of gw.knobs) {
    let input;
    if (row.choices) {
      input = el("select", { "data-knob": row.knob, "aria-label": row.knob },
        ...row.choices.map(c => el("option", { value: c, text: c, selected: c === row.value })));
      input.addEventListener("change", () => setKnob(row.knob, input.value));
    } else {
      input = el("input", { "data-knob": row.knob, value: row.value, size: 10, "aria-label": row.knob });
      input.addEventListener("keydown", e => { if (e.key === "Enter") setKnob(row.knob, input.value); });
    }
    const button = row.choices ? null : el("button", { class: "small", "data-set": row.knob, text: "set",
      onclick: () => setKnob(row.knob, input.value) });
    table.append(el("tr", { class: row.value !== row.default ? "changed" : null, "data-row": row.knob },
      el("td", { class: "mono", text: row.knob }), el("td", {}, input, button),
      el("td", { class: "req" }, row.requirement || "—",
        el("span", { class: "allowed", text: row.choices ? row.choices.join(" | ") : row.text })),
      el("td", { class: "mono", text: row.default })));
  }
}

async function setKnob(knob, value) {
  const done = await act("knob", { gateway: ui.gw, knob, value });
  if (!done) { $("knobs").dataset.key = ""; renderGateway(); }  // put the old value back
}

async function setPool() {
  const pool = $("gw-pool");
  const done = await act("pool", { gateway: ui.gw, addresses: pool.value });
  if (!done) { pool.dataset.pool = ""; renderGateway(); }  // the error stays shown; the field shows the pool again
}

function renderMappings(rows) {
  const table = clear($("mappings"));
  table.append(el("tr", {}, ...["proto", "internal", "external", "remote", "kind", "expires in", "in/out"].map(h => el("th", { text: h }))));
  if (!rows.length) table.append(el("tr", {}, el("td", { colspan: 7, class: "req", text: "no mappings" })));
  for (const m of rows) {
    table.append(el("tr", { "data-mapping": m.external },
      el("td", { text: m.protocol }), el("td", { class: "mono", text: m.internal }),
      el("td", { class: "mono", text: m.external }), el("td", { class: "mono", text: m.remote }),
      el("td", { text: m.kind || "dynamic" }),
      el("td", { class: "mono", text: m.expires_in === null ? "never" : `${m.expires_in} s` }),
      el("td", { class: "mono", text: `${m.packets_in ?? ""}/${m.packets_out ?? ""}` })));
  }
}

function renderCounters(c) {
  const dl = clear($("counters"));
  const flat = [];
  (function walk(obj, prefix) {  // real gateways nest deeper (gateway.queue.in.queue_dropped ...)
    for (const [k, v] of Object.entries(obj)) {
      if (v && typeof v === "object") walk(v, `${prefix}${k}.`); else flat.push([`${prefix}${k}`, v]);
    }
  })(c, "");
  for (const [k, v] of flat) {
    if (!v && !["mappings_active", "dropped"].includes(k)) continue;
    const cls = k.startsWith("drops.") || k === "dropped" ? "drop" : null;
    dl.append(el("dt", { text: k }), el("dd", { class: cls, "data-counter": k, text: v }));
  }
}

function describeEvent(e) {
  const parts = [e.kind];
  for (const key of ["protocol", "internal", "external", "remote", "reason", "packet", "detail"]) {
    if (e[key] !== undefined && e[key] !== null && e[key] !== "") parts.push(key === "reason" ? `(${e[key]})` : e[key]);
  }
  return parts.join(" ");
}

function renderEvents(events) {
  const ol = clear($("events"));
  for (const e of events.slice().reverse()) {
    const at = Number.isInteger(e.at) ? e.at : Number(e.at).toFixed(1);
    ol.append(el("li", { class: `ev-${e.kind}`, text: `#${e.seq} t=${at} ${describeEvent(e)}` }));
  }
}

// -- probe panel -------------------------------------------------------------------------
async function sendProbe(ev) {
  ev.preventDefault();
  const data = await act("probe", {
    proto: $("probe-proto").value, from: $("probe-from").value, to: $("probe-to").value.trim(),
    sport: $("probe-sport").value.trim() || 0, at: $("probe-at").value.trim(), reply: $("probe-reply").checked,
  });
  if (!data) return;
  const r = data.result, box = clear($("probe-outcome"));
  const what = r.delivered ? `delivered to ${r.receiver}, seen from ${r.seen}` : "not delivered";
  box.append(el("span", { class: r.delivered ? "ok" : "bad", id: "probe-verdict", text: `${r.proto} ${r.src}:${r.sport} → ${r.dst}${r.dport ? ":" + r.dport : ""}: ${what}` }));
  if (r.replied !== null) box.append(el("span", { class: r.replied ? "ok" : "bad", text: r.replied ? " · answer came back" : " · answer lost" }));
  if (r.detail) box.append(el("span", { class: "bad", id: "probe-reason", text: ` · ${r.detail}` }));
  const first = data.packets[0];  // on real labs the sender only knows nothing came; the gateway knows why
  if (first && first.outcome === "dropped" && !(r.detail || "").includes(first.reason)) {
    box.append(el("span", { class: "bad", id: "probe-drop", text: ` · dropped at ${first.end}: ${first.reason}` }));
  }
  renderWalk(data.packets, data.observed);
  animate(data.packets);
}

const VERDICT = { forward: "translated", hairpin: "hairpinned", drop: "dropped", unseen: "not observed",
  unobserved: "not observed" };

// One row per packet sent, one per NAT it crossed (before and after), and how it ended.
// On real labs the walk is told from the gateways' records: each hop says what it rests on,
// and a NAT that left no record of the packet says so instead of a guess.
function renderWalk(packets, observed) {
  const table = clear($("walk")), note = $("walk-note");
  note.textContent = observed === "gateway records"
    ? "Walk told from the gateways' records (events, mapping tables, counters): one row per direction; " +
      "where a NAT recorded nothing about the packet, the hop says so."
    : "";
  note.hidden = !note.textContent;
  table.append(el("tr", {}, ...["#", "at", "what", "packet", "after"].map(h => el("th", { text: h }))));
  packets.forEach((p, i) => {
    table.append(el("tr", { "data-packet": i }, el("td", { text: i + 1 }), el("td", { text: p.from }),
      el("td", { text: p.answer ? "answers" : "sends" }), el("td", { class: "mono", text: p.sent }), el("td", {})));
    for (const h of p.hops) {
      const blind = h.verdict === "unseen" || h.verdict === "unobserved";
      const cls = h.verdict === "drop" ? "bad" : blind ? "warn" : null;
      const extra = (h.events || []).filter(e => e !== h.reason);
      let what = h.verdict === "drop" ? `dropped: ${h.reason}` : `${VERDICT[h.verdict] || h.verdict} (${h.side})`;
      if (extra.length) what += `; ${extra.join(", ")}`;
      table.append(el("tr", { class: cls, "data-hop": h.node, "data-verdict": h.verdict },
        el("td", {}), el("td", { text: h.node }),
        el("td", { class: cls }, what, h.how ? el("span", { class: "how", text: h.how }) : null),
        el("td", { class: "mono", text: h.in }), el("td", { class: "mono", text: h.out || "—" })));
    }
    if (p.outcome === "delivered") {
      table.append(el("tr", {}, el("td", {}), el("td", { text: p.end }), el("td", { class: "ok", text: "receives" }),
        el("td", { class: "mono", text: p.received || "" }), el("td", {})));
    } else if (p.outcome !== "delivered" && !p.hops.some(h => h.verdict === "drop")) {
      table.append(el("tr", {}, el("td", {}), el("td", { text: p.end || "?" }),
        el("td", { class: "bad", text: `${p.outcome}: ${p.reason}` }), el("td", {}), el("td", {})));
    }
  });
}

// -- time, record, save -------------------------------------------------------------------
function renderRecord() {
  const ol = clear($("record"));
  for (const { step, observed } of ui.state.record) {
    const action = Object.keys(step).find(k => !["name", "expect", "save"].includes(k));
    ol.append(el("li", {}, el("span", { class: "act", text: action }), ` ${observed}`));
  }
}

async function save() {
  const data = await act("save", { path: $("save-path").value.trim() });
  if (!data) return;
  const box = clear($("save-outcome"));
  box.append(el("span", { class: data.verified === "passed" ? "ok" : "bad", id: "save-verdict",
    text: `saved ${data.steps} steps to ${data.path}; replayed on ${ui.topo.backend}: ${data.verified}` }));
  if (data.reason) box.append(el("div", { id: "save-reason", class: "bad", text: data.reason }));
}

async function preview() {
  const pre = $("preview");
  pre.textContent = await getJSON("/api/scenario");
  pre.hidden = false;
}

// -- wiring -------------------------------------------------------------------------------
function fillSelect(id, names, chosen) {
  clear($(id)).append(...names.map(n => el("option", { value: n, text: n, selected: n === chosen })));
}

function onState(state) {
  ui.state = state;
  if (!ui.gw || !(ui.gw in state.gateways)) ui.gw = Object.keys(state.gateways)[0];
  renderGateway();
  updateGatewayBoxes();
  renderRecord();
  document.body.dataset.version = state.version;
}

function listen() {
  const es = new EventSource(`/api/events?token=${encodeURIComponent(TOKEN)}`);
  es.addEventListener("state", e => onState(JSON.parse(e.data)));
  es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn on"; };
  es.onerror = () => { $("conn").textContent = "reconnecting"; $("conn").className = "conn off"; };
}

async function main() {
  try {
    ui.topo = await getJSON("/api/topology");
  } catch (err) { showError(`cannot load the lab: ${err.message}`); return; }
  const t = ui.topo;
  $("lab-name").textContent = `${t.name} · ${t.backend} backend${t.attached ? " (attached: stays up)" : ""} · seed ${t.seed}`;
  document.title = `natlab explore: ${t.name}`;
  drawTopology();
  const hosts = t.nodes.filter(n => n.kind === "host").map(n => n.name);
  const behind = hosts.filter(h => t.chains[h].length), open = hosts.filter(h => !t.chains[h].length);
  fillSelect("probe-from", hosts, behind[0] || hosts[0]);
  if (open.length) $("probe-to").value = `${open[0]}:3478`;
  fillSelect("punch-a", hosts, behind[0]); fillSelect("punch-b", hosts, behind[1] || hosts[1]);
  fillSelect("punch-server", hosts, open[0]);
  const gws = t.nodes.filter(n => n.kind === "gateway").map(n => n.name);
  $("adv-gw").append(...gws.map(g => el("option", { value: g, text: g })));
  $("save-path").value = `explored-${t.name}.yaml`;
  $("probe-form").addEventListener("submit", sendProbe);
  $("punch-form").addEventListener("submit", runPunch);
  $("gw-configure").addEventListener("click", () => act("configure", { gateway: ui.gw, behaviour: $("gw-preset").value }));
  $("gw-reboot").addEventListener("click", () => act("reboot", { gateway: ui.gw }));
  $("gw-pool-set").addEventListener("click", setPool);
  $("gw-pool").addEventListener("keydown", e => { if (e.key === "Enter") setPool(); });
  $("gw-check").addEventListener("click", () => act("check", { gateway: ui.gw }));
  $("adv-go").addEventListener("click", () => act("advance", { gateway: $("adv-gw").value || null, seconds: $("adv-seconds").value }));
  for (const b of document.querySelectorAll(".adv-quick")) {
    b.addEventListener("click", () => act("advance", { gateway: $("adv-gw").value || null, seconds: b.dataset.s }));
  }
  $("save-go").addEventListener("click", save);
  $("preview-go").addEventListener("click", preview);
  onState(await getJSON("/api/state"));
  listen();
  document.body.dataset.ready = "1";
}

main();
