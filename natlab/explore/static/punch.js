// natlab explore: the hole-punch panel. Loaded before app.js, whose helpers ($, el, clear, act,
// animate) it uses when called; app.js wires the form to runPunch.
"use strict";

async function runPunch(ev) {
  ev.preventDefault();
  const box = clear($("punch-outcome"));
  box.append(el("span", { class: "note", text: "punching ..." }));
  const data = await act("punch", { a: $("punch-a").value, b: $("punch-b").value,
    server: $("punch-server").value, timeout: $("punch-timeout").value });
  clear(box);
  if (!data) return;
  const how = data.how === "program" ? "the built-in peer" : "the peer's core on the twin (simulation)";
  box.append(el("span", { id: "punch-verdict", class: data.ok ? "ok" : "bad",
    text: data.ok ? `punched: both got through in ${data.seconds.toFixed(2)} s (${how})`
                  : `failed: no way through within ${data.seconds.toFixed(2)} s (${how})` }));
  box.append(el("p", { id: "punch-note", class: "note", "data-how": data.how, text: data.note }));
  box.append(sidesTable(data));
  drawSequence(data);
  animate(data.messages.filter(m => !m.fold).slice(0, 12));
}

// Each peer's own account: its reflexive endpoint, the candidates it punched, what it heard.
function sidesTable(data) {
  const table = el("table", { id: "punch-sides", class: "grid" });
  table.append(el("tr", {}, ...["peer", "outcome", "reflexive", "candidates", "heard from", "rounds"].map(h => el("th", { text: h }))));
  for (const [name, side] of Object.entries(data.sides)) {
    const r = side.report || {};
    const outcome = side.returncode === null ? "still running at its deadline (ended)" : (r.event || `exit ${side.returncode}`);
    table.append(el("tr", { "data-peer": name },
      el("td", { text: name }), el("td", { class: side.punched ? "ok" : "bad", text: outcome }),
      el("td", { class: "mono", text: r.reflexive || "—" }),
      el("td", { class: "mono", text: (r.candidates || []).join(", ") || "—" }),
      el("td", { class: "mono", text: (r.heard_from || []).join(", ") || "nobody" }),
      el("td", { text: r.rounds ?? "" })));
  }
  return table;
}

// One lane per host and NAT on the way; one row per datagram (repeats folded into a count).
// A hop dot where a NAT translated it, a purple note where it opened the NAT, a cross at the NAT
// that filtered it.
function drawSequence(data) {
  const svg = clear($("sequence")), lanes = data.lanes, W = 1000, lx = {}, ROW = 40;
  lanes.forEach((l, i) => { lx[l] = 80 + i * ((W - 160) / Math.max(1, lanes.length - 1)); });
  const rows = data.messages, H = 50 + rows.length * ROW;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  for (const l of lanes) {
    svg.append(el("g", { class: "lane" }, el("text", { x: lx[l], y: 18, text: l }),
      el("line", { x1: lx[l], y1: 26, x2: lx[l], y2: H - 4 })));
  }
  rows.forEach((m, i) => {
    const y = 56 + i * ROW;
    if (m.fold) { svg.append(foldRow(m, y, lx, W)); return; }
    const last = m.hops.length ? m.hops[m.hops.length - 1].node : m.from;
    const x1 = lx[m.from], x2 = lx[m.end in lx ? m.end : last];
    if (x1 === undefined || x2 === undefined) return;
    const g = el("g", { class: `msg ${m.outcome} ${m.kind || ""}`, "data-row": i, "data-from": m.from,
      "data-end": m.end || "", "data-outcome": m.outcome });
    g.append(el("line", { x1, y1: y, x2, y2: y }));
    const dir = x2 >= x1 ? 1 : -1;
    if (m.outcome === "delivered") g.append(el("path", { class: "head", d: `M${x2},${y} l${-8 * dir},-4 l0,8 z` }));
    else {
      // a NAT's drop names the NAT; a datagram nobody recorded dropping is just lost (the reason is in its title)
      const at = m.hops.some(h => h.verdict === "drop") ? `${m.reason} at ${m.end}` : m.outcome;
      g.append(el("text", { class: "why", "data-node": m.end || "", x: x2 + 6 * dir, y: y + 4,
        "text-anchor": dir > 0 ? "start" : "end", text: `✕ ${at}` }));
    }
    const notes = [];
    for (const h of m.hops) {
      if (!(h.node in lx) || h.verdict === "drop") continue;
      g.append(el("circle", { class: h.verdict === "forward" || h.verdict === "hairpin" ? "hop" : "hop blind",
        cx: lx[h.node], cy: y, r: 3.5 }, el("title", { text: `${h.node}: ${h.in}\n→ ${h.out || "?"}${h.how ? "\n" + h.how : ""}` })));
      const right = lx[h.node] > W * 0.6;
      if (h.opens) notes.push(el("text", { class: "opens", "data-node": h.node, x: lx[h.node] + (right ? -5 : 5), y: y + 13,
        "text-anchor": right ? "end" : "start", text: h.opens }));
    }
    const t = m.t !== undefined && m.t !== null ? `t=${m.t.toFixed(2)}s  ` : "";
    const leftward = Math.min(x1, x2) > W / 2;  // a row on the right half: its label grows to the left
    g.append(el("text", { class: "label", x: leftward ? Math.max(x1, x2) - 4 : Math.min(x1, x2) + 4, y: y - 5,
      "text-anchor": leftward ? "end" : "start", text: `${t}${m.label}` }));
    g.append(...notes);
    g.append(el("title", { text: [m.sent, ...m.hops.map(h => `${h.node} ${h.verdict}: ${h.out || h.reason || ""}`),
      m.outcome === "delivered" ? "" : `${m.outcome}: ${m.reason}`, m.note || ""].filter(Boolean).join("\n") }));
    svg.append(g);
  });
}

function foldRow(m, y, lx, W) {
  const g = el("g", { class: `msg fold ${m.outcome}`, "data-count": m.count });
  const x1 = lx[m.from], x2 = lx[m.end in lx ? m.end : (m.hops.length ? m.hops[m.hops.length - 1].node : m.from)];
  if (x1 !== undefined && x2 !== undefined) g.append(el("line", { x1, y1: y, x2, y2: y }));
  const dropped = m.hops.some(h => h.verdict === "drop");
  const fate = m.outcome === "more" ? "" : dropped ? `${m.reason} at ${m.end}` : m.outcome;
  const span = m.t !== undefined && m.t !== null && m.last_t !== m.t ? ` (t=${m.t.toFixed(2)}–${m.last_t.toFixed(2)}s)` : "";
  g.append(el("text", { class: "label", x: 80, y: y - 5,
    text: m.outcome === "more" ? `⋮ ${m.label}` : `⋮ ×${m.count} more like: ${m.label}${fate ? " — " + fate : ""}${span}` }));
  return g;
}
