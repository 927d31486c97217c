// The switch drawn as in the article vswitch is built from (issue 14, item 2): a box with its ports,
// the host vNIC above, the VMs' NICs below, the uplink out to the physical NIC and the physical
// network; per-port counters and state kept live; the switch's decisions as they happen (floods
// fanning out to every port: "acting as a hub"; known unicast to one port), from the sampled
// decision stream; the MAC table beside it, filterable and virtualised (thousands of rows, a
// screenful in the DOM).
"use strict";

const VsPicture = (() => {
  const {api, h, every, stream, notice, isAdmin} = Vs;
  const enc = encodeURIComponent;
  const NS = "svg:";
  const COLS = 8;
  const CARD_W = 104;
  const CARD_H = 70;
  const GAP = 14;
  const LOG_ITEMS = 30;
  const ROW_H = 22;
  const FLASH_MS = 700;
  let anchors = {};     // port name → {x, y} where hops are drawn
  let cards = {};       // port name → {g, counters, macs, state}
  let svg = null;
  let fdb = [];
  let fdbView = null;

  function text(x, y, s, cls, anchor) {
    return h(NS + "text", {x, y, class: cls || "", "text-anchor": anchor || "middle"}, s);
  }

  function card(p, x, y, title, subtitle) {
    const counters = text(x + CARD_W / 2, y + 44, "rx 0 · tx 0", "counters");
    const macs = text(x + CARD_W / 2, y + 58, "", "macs");
    const state = text(x + CARD_W / 2, y + 30, subtitle, "sub");
    const g = h(NS + "g", {class: "port", "data-port": p.name, "data-up": p.up ? "up" : "down", "data-role": p.role},
      h(NS + "rect", {x, y, width: CARD_W, height: CARD_H, rx: 6, class: "card"}),
      text(x + CARD_W / 2, y + 16, title, "title"), state, counters, macs);
    cards[p.name] = {g, counters, macs, state, port: p};
    return g;
  }

  function downText(p) {
    return p.up ? `${p.kind}${p.vlan_mode !== "access 1" ? " · " + p.vlan_mode : ""}`
      : `down: ${(p.details && p.details.down_reason) || "?"}`;
  }

  // the layout: the host above, the switch, the VMs in rows of COLS below, the uplink to the right
  function draw(sw, ports) {
    anchors = {};
    cards = {};
    const host = ports.find((p) => p.role === "host-vnic");
    const uplink = ports.find((p) => p.role === "uplink");
    const vms = ports.filter((p) => p.role === "vm");
    const cols = Math.max(1, Math.min(COLS, vms.length));
    const left = 30;
    const boxW = Math.max(cols * (CARD_W + GAP) + GAP, 420);
    const width = left + boxW + (uplink ? 240 : 40);
    const boxY = host ? 120 : 30;
    const boxH = 80;
    const rows = Math.ceil(vms.length / cols);
    // room for the VMs' rows, and for the uplink's NIC and the physical network beside the switch
    const height = Math.max(boxY + boxH + 60 + rows * (CARD_H + 40),
      uplink ? boxY + boxH / 2 + CARD_H / 2 + 100 : 0);
    const parts = [];
    parts.push(h(NS + "rect", {x: left, y: boxY, width: boxW, height: boxH, rx: 10, class: "switch-box",
      id: "switch-box"}));
    parts.push(text(left + boxW / 2, boxY + 32, `Switch ${sw.name} (${sw.type})`, "switch-title"));
    parts.push(text(left + boxW / 2, boxY + 54, `datapath: ${sw.datapath.split(":")[0]}`, "sub"));
    // the switch's own hops (learn, decide) inside its box, left of its centred title
    anchors["@switch"] = {x: left + 30, y: boxY + 40};
    if (host) {
      const hx = left + boxW / 2 - CARD_W / 2;
      const addresses = (host.details && host.details.addresses) || [];
      parts.push(h(NS + "line", {x1: hx + CARD_W / 2, y1: 20 + CARD_H, x2: hx + CARD_W / 2, y2: boxY,
        class: "link", "data-link": host.name}));
      const g = card(host, hx, 20, "Host vNIC", addresses.join(" ") || host.target || host.name);
      parts.push(g, text(hx + CARD_W + 10, 40, "management OS", "sub", "start"));
      anchors[host.name] = {x: hx + CARD_W / 2, y: boxY};
    }
    vms.forEach((p, i) => {
      const r = Math.floor(i / cols);
      const c = i % cols;
      const x = left + GAP + c * (CARD_W + GAP);
      const y = boxY + boxH + 40 + r * (CARD_H + 40);
      const lx = r === 0 ? x + CARD_W / 2 : x + 8 + r * 4;
      parts.push(h(NS + "line", {x1: lx, y1: boxY + boxH, x2: lx, y2: y, class: "link", "data-link": p.name}));
      parts.push(h(NS + "rect", {x: lx - 5, y: boxY + boxH - 5, width: 10, height: 10, class: "port-square"}));
      parts.push(card(p, x, y, p.name, downText(p)));
      anchors[p.name] = {x: lx, y: boxY + boxH};
    });
    if (uplink) {
      const ux = left + boxW;
      const uy = boxY + boxH / 2;
      const nx = ux + 60;
      parts.push(h(NS + "line", {x1: ux, y1: uy, x2: nx, y2: uy, class: "link", "data-link": uplink.name}));
      parts.push(h(NS + "rect", {x: ux - 5, y: uy - 5, width: 10, height: 10, class: "port-square"}));
      parts.push(card(uplink, nx, uy - CARD_H / 2, `Uplink → ${sw.nic || "NIC"}`,
        uplink.up ? "physical NIC" : downText(uplink)));
      parts.push(h(NS + "line", {x1: nx + CARD_W / 2, y1: uy + CARD_H / 2, x2: nx + CARD_W / 2, y2: uy + CARD_H / 2 + 50,
        class: "wire"}));
      parts.push(h(NS + "rect", {x: nx - 10, y: uy + CARD_H / 2 + 50, width: CARD_W + 20, height: 34, rx: 17,
        class: "network"}), text(nx + CARD_W / 2, uy + CARD_H / 2 + 72, "physical network", "sub"));
      anchors[uplink.name] = {x: ux, y: uy};
    }
    parts.push(h(NS + "g", {id: "trace-overlay"}));
    svg = h(NS + "svg", {id: "picture", viewBox: `0 0 ${width} ${height}`, width, height,
      role: "img", "aria-label": `switch ${sw.name} and its ports`}, parts);
    return svg;
  }

  function section(sw, ports) {
    const mode = h("p", {id: "mode", "data-mode": "idle"}, "no frames seen yet");
    return h("section", {class: "panel", id: "picture-panel"},
      h("div", {class: "picture-wrap"}, draw(sw, ports)),
      h("div", {class: "decisions"}, h("h3", {}, "Decisions, live"), mode,
        h("p", {id: "decision-summary", class: "sub"}, "waiting for the decision stream…"),
        h("ul", {id: "decisions"})));
  }

  function flash(name, kind) {
    const c = cards[name];
    const link = svg && svg.querySelector(`line[data-link="${CSS.escape(name)}"]`);
    for (const el of [c && c.g, link]) {
      if (!el) continue;
      el.classList.add("lit", `lit-${kind}`);
      clearTimeout(el.vsTimer);
      el.vsTimer = setTimeout(() => el.classList.remove("lit", "lit-flood", "lit-unicast", "lit-drop"), FLASH_MS);
    }
  }

  function onDecision(d) {
    const kind = d.kind;
    flash(d.in_port, kind);
    for (const out of d.out_ports || []) flash(out, kind);
    const box = document.getElementById("switch-box");
    if (box && kind === "flood") {
      box.classList.add("hub");
      clearTimeout(box.vsTimer);
      box.vsTimer = setTimeout(() => box.classList.remove("hub"), FLASH_MS);
    }
    const mode = document.getElementById("mode");
    if (mode) {
      mode.dataset.mode = kind === "flood" ? "hub" : kind === "unicast" ? "switch" : "drop";
      mode.textContent = kind === "flood"
        ? `acting as a hub: ${d.dst} is ${d.reason === "FLOOD_UNKNOWN" ? "not learned yet" : "for everyone"}, `
          + `flooded from ${d.in_port} to ${(d.out_ports || []).length} port(s)`
        : kind === "unicast" ? `switching: ${d.dst} is learned behind ${(d.out_ports || [])[0]}, one port only`
          : `dropped on ${d.in_port}: ${d.reason}`;
    }
    const log = document.getElementById("decisions");
    if (!log) return;
    const when = new Date(d.t * 1000).toLocaleTimeString();
    const where = (d.out_ports || []).length ? ` → ${d.out_ports.join(", ")}` : "";
    log.prepend(h("li", {"data-kind": kind, "data-reason": d.reason, "data-in-port": d.in_port},
      h("span", {class: "when"}, when), ` ${d.in_port}: ${d.src} → ${d.dst} vlan ${d.vlan}`,
      h("strong", {}, ` ${d.reason}`), where, d.path === "kernel" ? h("span", {class: "sub"}, " (kernel)") : null));
    while (log.children.length > LOG_ITEMS) log.lastChild.remove();
  }

  function onSummary(s) {
    const el = document.getElementById("decision-summary");
    if (!el) return;
    const k = s.by_kind || {};
    el.dataset.frames = s.frames;
    el.textContent = `last ${s.interval_s} s: ${s.frames} frame(s) — ${k.flood || 0} flooded, ${k.unicast || 0} `
      + `known unicast, ${k.drop || 0} dropped (${s.sampled} shown${s.dropped_for_you ? `, ${s.dropped_for_you} `
      + "not drawn: this page was behind" : ""})`;
  }

  function updateStats(stats) {
    for (const s of stats) {
      const c = cards[s.port];
      if (!c) continue;
      const drops = Object.values(s.drops || {}).reduce((a, b) => a + b, 0);
      c.counters.textContent = `rx ${s.rx_frames} · tx ${s.tx_frames}${drops ? ` · drop ${drops}` : ""}`;
      c.g.dataset.rx = s.rx_frames;
      c.g.dataset.tx = s.tx_frames;
    }
  }

  function updatePorts(ports) {
    for (const p of ports) {
      const c = cards[p.name];
      if (!c || p.role === "host-vnic") continue;
      c.g.dataset.up = p.up ? "up" : "down";
      if (p.role === "vm") c.state.textContent = downText(p);
    }
  }

  function updateMacs() {
    const by = {};
    for (const e of fdb) (by[e.port] = by[e.port] || []).push(e.mac);
    for (const [name, c] of Object.entries(cards)) {
      const macs = by[name] || [];
      c.macs.textContent = macs.length ? macs[0] + (macs.length > 1 ? ` +${macs.length - 1}` : "") : "";
      c.g.dataset.macs = macs.length;
    }
  }

  // ---- the MAC table, virtualised -----------------------------------------------------------
  function fdbSection(sw, ports) {
    const filter = h("input", {id: "fdb-filter", type: "search", placeholder: "filter: MAC, port or VLAN",
      oninput: () => renderFdb()});
    const list = h("div", {id: "fdb-list", onscroll: () => requestAnimationFrame(renderFdb)},
      h("div", {class: "spacer"}));
    fdbView = {sw, filter, list, rows: []};
    const add = isAdmin() ? Vs.form("add-static", [
      {name: "mac", label: "MAC", placeholder: "02:00:00:00:00:01"},
      {name: "port", label: "Port", type: "select", options: ports.map((p) => p.name)},
      {name: "vlan", label: "VLAN (default: the port's)", type: "number"}], "Add static entry", async (v) => {
      const e = await api(`/switches/${enc(sw.name)}/fdb`, {method: "POST", body: v});
      notice(`static entry ${e.mac} → ${e.port} (VLAN ${e.vlan})`, "ok");
      await refreshFdb();
    }) : null;
    return h("section", {class: "panel", id: "fdb-panel"}, h("h2", {}, "MAC table"),
      h("p", {}, filter, " ", h("span", {id: "fdb-count"}, "")),
      h("div", {class: "fdb-head fdb-row"}, ["MAC", "VLAN", "port", "age", ""].map((t) => h("span", {}, t))),
      list, add ? h("details", {}, h("summary", {}, "Static MAC entries"), add) : null);
  }

  function matches() {
    const q = fdbView.filter.value.trim().toLowerCase();
    if (!q) return fdb;
    return fdb.filter((e) => e.mac.includes(q) || e.port.toLowerCase().includes(q) || String(e.vlan) === q);
  }

  function renderFdb() {
    if (!fdbView) return;
    const shown = matches();
    const {list} = fdbView;
    list.firstChild.style.height = `${shown.length * ROW_H}px`;
    const first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - 5);
    const last = Math.min(shown.length, first + Math.ceil((list.clientHeight || 360) / ROW_H) + 10);
    const rows = [];
    for (let i = first; i < last; i++) {
      const e = shown[i];
      rows.push(h("div", {class: "fdb-row", "data-mac": e.mac, "data-vlan": e.vlan, "data-port": e.port,
        style: {top: `${i * ROW_H}px`}},
      h("span", {}, e.mac), h("span", {}, e.vlan), h("span", {}, e.port),
      h("span", {}, e.static ? "static" : `${Math.round(e.age_s)} s`),
      h("span", {}, e.static && isAdmin() ? h("button", {type: "button", class: "del-static", onclick: async () => {
        await api(`/switches/${enc(fdbView.sw.name)}/fdb/${enc(e.mac)}?vlan=${e.vlan}`, {method: "DELETE"})
          .catch((err) => notice(err.message));
        await refreshFdb();
      }}, "delete") : "")));
    }
    list.replaceChildren(list.firstChild, ...rows);
    const count = document.getElementById("fdb-count");
    count.dataset.total = fdb.length;
    count.dataset.shown = shown.length;
    count.textContent = shown.length === fdb.length ? `${fdb.length} entries`
      : `${shown.length} of ${fdb.length} entries`;
  }

  async function refreshFdb() {
    fdb = await api(`/switches/${enc(fdbView.sw.name)}/fdb`);
    renderFdb();
    updateMacs();
  }

  function start(sw) {
    const path = `/switches/${enc(sw.name)}`;
    every(1000, async () => updateStats(await api(path + "/stats")));
    every(5000, async () => updatePorts(await api(path + "/ports")));
    if (fdbView) every(3000, refreshFdb);
    stream(path + "/decisions", (name, data) => {
      if (name === "decision") onDecision(data);
      else if (name === "summary") onSummary(data);
      else if (name === "end") {
        const el = document.getElementById("decision-summary");
        if (el) el.textContent = `the decision stream ended: ${data.reason}`;
      }
    }, (why) => {
      const el = document.getElementById("decision-summary");
      if (el) el.textContent = `no live decisions: ${why || "the stream ended"}`;
    });
  }

  function overlay() { return svg && svg.querySelector("#trace-overlay"); }

  return {section, fdbSection, start, overlay, anchor: (name) => anchors[name], onDecision,
    get fdb() { return fdb; }};
})();
