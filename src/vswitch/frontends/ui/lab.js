// A lab's page (issue 14, item 3): the lab's topology drawn as in the article — the host with its stack,
// its switches and its physical NICs, the VMs beside their switch, the physical switch and the server
// below — and the observed path of a `lab trace` (GET /lab: the lab writes its last traces there)
// drawn across it: the request's and the reply's hops numbered in time order at the link or switch
// where each was observed, and a flood's copies nobody asked for marked where they arrived.
// Nothing is inferred from the topology: a hop is drawn only where the trace observed it.
"use strict";

const VsLab = (() => {
  const {api, h, every} = Vs;
  const NS = "svg:";
  const CARD_W = 120;
  const CARD_H = 46;
  const SW_W = 200;
  const SW_H = 56;
  const HOP_R = 10;
  let shown = {trace: -1, seq: null, stamp: ""};

  function text(x, y, s, cls, anchor) {
    return h(NS + "text", {x, y, class: cls || "", "text-anchor": anchor || "middle"}, s);
  }

  function box(x, y, w, hgt, title, sub, attrs, cls) {
    return h(NS + "g", attrs,
      h(NS + "rect", {x, y, width: w, height: hgt, rx: 6, class: cls || "card"}),
      text(x + w / 2, y + 18, title, "title"), sub ? text(x + w / 2, y + 34, sub, "sub") : null);
  }

  function addrs(node) {
    return Object.values(node.interfaces || {}).flatMap((i) => i.address ? [i.address] : (i.addresses || []));
  }

  // The layout: one column per host (its stack above its switches, its NICs on its bottom edge, its
  // VMs to the right of the switch they are attached to), then a row of physical switches, then a row
  // of servers. Returns the SVG and `places`: "node:ifname" → where that link's hops go, "switch:NAME"
  // and "node:NAME" → where a switch's or a node's own hops go.
  function layout(view) {
    const topo = view.topology;
    const nodes = topo.nodes;
    const places = {};
    const parts = [];
    const wires = [];
    const ofKind = (k) => Object.keys(nodes).filter((n) => nodes[n].kind === k);
    const attached = {};
    for (const a of topo.attachments || []) (attached[a.switch] = attached[a.switch] || []).push(a);
    let x = 20;
    let bottom = 0;
    const nicAt = {};
    for (const host of ofKind("host")) {
      const sws = view.switches.filter((s) => s.node === host);
      const vmCols = Math.max(0, ...sws.map((s) => (attached[s.name] || []).length ? 1 : 0));
      const hostW = SW_W + 80 + vmCols * (CARD_W + 60);
      let y = 20;
      const stackY = y + 24;
      const hostParts = [];
      const stackX = x + 40;
      hostParts.push(box(stackX, stackY, SW_W, CARD_H, `${host} stack`,
        [...addrs(nodes[host]), ...topo.switches ? Object.values(topo.switches)
          .filter((s) => s.host === host && s.address).map((s) => s.address) : []].join(" ") || "host protocols",
        {class: "lab-stack", "data-node": host}));
      places[`node:${host}`] = {x: stackX + SW_W / 2, y: stackY + CARD_H};
      y = stackY + CARD_H + 50;
      for (const s of sws) {
        const sx = stackX;
        const vms = attached[s.name] || [];
        const swH = Math.max(SW_H, vms.length * (CARD_H + 12) - 12);
        if (s.vnic) {
          wires.push([stackX + SW_W / 2, stackY + CARD_H, sx + SW_W / 2, y, s.vnic]);
          places[`${host}:${s.vnic}`] = {x: sx + SW_W / 2, y: y - 25};
        }
        hostParts.push(box(sx, y, SW_W, swH, `switch ${s.name}`, s.type, {class: "lab-switch", "data-switch": s.name},
          "switch-box"));
        places[`switch:${s.name}`] = {x: sx + SW_W / 2, y: y + swH - 12};
        vms.forEach((a, i) => {
          const vx = sx + SW_W + 80;
          const vy = y + i * (CARD_H + 12);
          const ifname = a.ifname || "eth0";
          parts.push(box(vx, vy, CARD_W, CARD_H, a.vm, addrs(nodes[a.vm] || {}).join(" "),
            {class: "lab-node", "data-node": a.vm, "data-kind": "vm"}));
          wires.push([sx + SW_W, vy + CARD_H / 2, vx, vy + CARD_H / 2, ifname]);
          places[`${a.vm}:${ifname}`] = {x: vx - 26, y: vy + CARD_H / 2};
          places[`node:${a.vm}`] = {x: vx + CARD_W / 2, y: vy + CARD_H};
        });
        if (s.nic) nicAt[`${host}:${s.nic}`] = {switch: s.name, x: sx + SW_W / 2, y: y + swH};
        y += swH + 50;
      }
      const nics = view.links.filter((l) => l.node === host && (l.kind === "host-nic" || l.kind === "physical-nic"));
      const hostH = y - 20 + (nics.length ? 10 : 0);
      nics.forEach((l, i) => {
        const key = `${host}:${l.ifname}`;
        const up = nicAt[key];
        const nx = up ? up.x : stackX + SW_W + 30 + i * 40;
        const ny = 20 + hostH;
        if (up) wires.push([up.x, up.y, nx, ny - 6, "uplink"]);
        else wires.push([stackX + SW_W / 2, stackY + CARD_H, nx, ny - 6, ""]);
        hostParts.push(h(NS + "rect", {x: nx - 7, y: ny - 7, width: 14, height: 14, class: "port-square"}),
          text(nx + 12, ny - 10, l.ifname + (up ? " (physical NIC)" : ""), "sub", "start"));
        places[key] = {x: nx, y: ny + 22};
      });
      parts.unshift(h(NS + "rect", {x, y: 20, width: hostW, height: hostH, rx: 10, class: "lab-host"}),
        text(x + 10, 36, host === "host" ? "host" : `host ${host}`, "title", "start"));
      parts.push(...hostParts);
      x += hostW + 40;
      bottom = Math.max(bottom, 20 + hostH);
    }
    // physical switches, then servers, each in a row across
    let rowY = bottom + 70;
    for (const kind of ["physical-switch", "server"]) {
      const names = ofKind(kind);
      names.forEach((n, i) => {
        const bx = 60 + i * (SW_W + 60);
        const attrs = {class: "lab-node", "data-node": n, "data-kind": kind};
        if (kind === "server") {
          parts.push(box(bx, rowY, SW_W, CARD_H, n, addrs(nodes[n]).join(" "), attrs));
        } else {  // its name on the left: its own hops (in port → out ports) go in the middle
          parts.push(h(NS + "g", attrs, h(NS + "rect", {x: bx, y: rowY, width: SW_W, height: CARD_H, rx: 6,
            class: "network"}), text(bx + 10, rowY + 18, `physical switch ${n}`, "title", "start"),
          text(bx + 10, rowY + 34, "a Linux bridge", "sub", "start")));
        }
        places[`node:${n}`] = {x: bx + SW_W / 2 + (kind === "server" ? 0 : 50), y: rowY + CARD_H / 2};
        places[`top:${n}`] = {x: bx + SW_W / 2, y: rowY};
      });
      if (names.length) rowY += CARD_H + 70;
    }
    // cables: each end at its NIC (a host's), its port on the physical switch, or the server's top
    const cableIdx = {};
    for (const [a, b] of topo.links || []) {
      const ends = [a, b].map((ep) => {
        const [node, ifname] = ep.split(":");
        const kind = nodes[node] && nodes[node].kind;
        if (kind === "host") return places[`${node}:${ifname}`] && {x: places[`${node}:${ifname}`].x,
          y: places[`${node}:${ifname}`].y - 22, node, ifname};
        const top = places[`top:${node}`];
        if (!top) return null;
        const k = cableIdx[node] = (cableIdx[node] || 0) + 1;
        const at = {x: top.x + (kind === "physical-switch" ? (k - 1.5) * 60 : 0), y: top.y, node, ifname};
        places[`${node}:${ifname}`] = {x: at.x, y: at.y - 22};
        return at;
      });
      if (ends[0] && ends[1]) wires.push([ends[0].x, ends[0].y, ends[1].x, ends[1].y, "cable"]);
    }
    const lines = wires.map(([x1, y1, x2, y2, label]) => h(NS + "g", {class: "lab-wire"},
      h(NS + "line", {x1, y1, x2, y2, class: label === "cable" ? "wire" : "link"}),
      label && label !== "cable" ? text((x1 + x2) / 2 + 6, (y1 + y2) / 2 - 4, label, "sub", "start") : null));
    const width = Math.max(x, 60 + Math.max(ofKind("physical-switch").length, ofKind("server").length) * (SW_W + 60));
    const svg = h(NS + "svg", {id: "lab-picture", viewBox: `0 0 ${width} ${rowY}`, width, height: rowY, role: "img",
      "aria-label": `lab ${view.name}`}, lines, parts, h(NS + "g", {id: "lab-path"}), h(NS + "g", {id: "lab-overlay"}));
    return {svg, places};
  }

  // a hop's place on the picture: the link it was captured on, the switch that decided, the node
  function placeOf(hop, places) {
    if (hop.source === "switch") return places[`switch:${hop.switch}`];
    if (hop.kind === "physical-switch-port" && hop.in_ports) return places[`node:${hop.node}`];
    return places[`${hop.node}:${hop.link}`] || places[`node:${hop.node}`];
  }

  // a frame delivered where nobody asked for it: a flooded copy at a NIC that is not its destination
  function isCopy(hop) { return hop.pkttype === "otherhost"; }

  function drawHops(svg, places, hops) {
    const overlay = svg.querySelector("#lab-overlay");
    const path = svg.querySelector("#lab-path");
    overlay.replaceChildren();
    path.replaceChildren();
    const used = {};
    const at = {};
    for (const hop of hops) {
      const p = placeOf(hop, places);
      if (!p) continue;
      const key = `${p.x},${p.y}`;
      const k = used[key] = (used[key] || 0) + 1;
      at[hop.n] = {x: p.x + (k - 1) * (2 * HOP_R + 4), y: p.y};
    }
    for (const message of ["request", "reply"]) {
      const pts = hops.filter((x) => x.message === message && !isCopy(x) && at[x.n]).map((x) => at[x.n]);
      if (pts.length > 1) {
        path.append(h(NS + "polyline", {points: pts.map((q) => `${q.x},${q.y}`).join(" "),
          class: `lab-path-${message}`, "data-message": message}));
      }
    }
    for (const hop of hops) {
      const q = at[hop.n];
      if (!q) continue;
      const cls = ["hop", `hop-${hop.message}`, isCopy(hop) ? "hop-copy" : "",
        hop.flooded ? "hop-flood" : ""].join(" ");
      overlay.append(h(NS + "g", {class: cls, "data-n": hop.n, "data-message": hop.message,
        "data-copy": isCopy(hop) ? "unasked" : false},
      h(NS + "circle", {cx: q.x, cy: q.y, r: HOP_R}),
      h(NS + "text", {x: q.x, y: q.y + 4, "text-anchor": "middle"}, String(hop.n)),
      isCopy(hop) ? text(q.x, q.y - HOP_R - 6, "a copy nobody asked for", "copy-label") : null,
      h(NS + "title", {}, `${hop.n}. ${hop.message}: ${hop.text}`)));
    }
  }

  function hopList(hops) {
    return h("ol", {id: "lab-hops"}, hops.map((hop) => h("li", {"data-n": hop.n, "data-message": hop.message,
      "data-source": hop.source, "data-copy": isCopy(hop) ? "unasked" : false, "data-flooded": hop.flooded ? "yes" : false,
      value: hop.n},
    h("span", {class: `msg msg-${hop.message}`}, hop.message), ` +${hop.dt_ms.toFixed(3)} ms `,
    hop.text, isCopy(hop) ? h("strong", {class: "copy-note"}, " — a copy nobody asked for") : null)));
  }

  function traceTitle(t) {
    return `ping ${t.from} → ${t.to} (${t.dst_ip}), ${t.received}/${t.sent} replies`;
  }

  // the echo shown first: the one the story is about — a flood, if there was one — else the first observed
  function firstEcho(t) {
    const observed = t.echoes.filter((e) => e.hops.length);
    return (observed.find((e) => e.hops.some((x) => x.flooded)) || observed[0] || t.echoes[0] || {}).seq;
  }

  async function labView(view) {
    const data = await api("/lab");
    const {svg, places} = layout(data);
    const traces = data.traces || [];
    const detail = h("div", {id: "lab-trace"});
    const pick = h("div", {class: "lab-pick"});
    const show = (ti, seq) => {
      shown = {trace: ti, seq, stamp: shown.stamp};
      const t = traces[ti];
      const echo = t.echoes.find((e) => e.seq === seq) || {hops: []};
      drawHops(svg, places, echo.hops);
      const same = echo.same_path_as !== null && echo.same_path_as !== undefined
        ? h("p", {class: "sub"}, `same observed path as echo ${echo.same_path_as}`) : null;
      detail.replaceChildren(...[
        h("p", {id: "lab-trace-title", "data-from": t.from, "data-to": t.to, "data-seq": seq}, h("strong", {},
          traceTitle(t)), ` — echo ${seq}, ${echo.hops.length} hops`),
        ...(t.errors || []).map((e) => h("p", {class: "sub"}, `not observed: ${e}`)), same, hopList(echo.hops),
        echo.not_seen_at && echo.not_seen_at.length ? h("p", {class: "sub"}, "not observed at: "
          + echo.not_seen_at.map((p) => `${p.node} ${p.link}`).join(", ")) : null].filter(Boolean));
      pick.replaceChildren(...[
        traces.length > 1 ? h("label", {}, "Trace ", h("select", {id: "lab-trace-pick", onchange: (e) => {
          const i = Number(e.target.value);
          show(i, firstEcho(traces[i]));
        }}, traces.map((x, i) => h("option", {value: i, selected: i === ti}, traceTitle(x))))) : null,
        " ", h("span", {}, "Echo "), ...t.echoes.map((e) => h("button", {type: "button", class: "echo-pick",
          "data-seq": e.seq, disabled: e.seq === seq, onclick: () => show(ti, e.seq)}, String(e.seq)))].filter(Boolean));
    };
    view.replaceChildren(h("h1", {}, `Lab ${data.name} `, h("small", {}, data.topology.name)),
      h("p", {class: "sub"}, data.topology.description || ""),
      h("section", {class: "panel", id: "lab-panel"}, h("div", {class: "picture-wrap"}, svg),
        h("div", {class: "lab-side"}, h("h3", {}, "Observed path"), pick, detail)));
    if (traces.length) {
      const ti = traces.length - 1;
      show(ti, firstEcho(traces[ti]));
    } else {
      detail.replaceChildren(h("p", {id: "lab-no-trace"}, "No trace yet. Run one: ",
        h("code", {}, `sudo vswitch lab trace ${data.name} --from host --to server`),
        " — its observed path appears here."));
    }
    // a trace run later (in a terminal) appears without a reload
    shown.stamp = String(traces.length) + (traces.length ? traces[traces.length - 1].icmp_id : "");
    let first = true;
    every(2000, async () => {
      if (first) { first = false; return; }
      const now = await api("/lab");
      const n = (now.traces || []).length;
      const stamp = String(n) + (n ? now.traces[n - 1].icmp_id : "");
      // not awaited: the render stops this poll, and waits for the call in flight (this one)
      if (stamp !== shown.stamp) Vs.render();
    });
  }

  Vs.route(/^\/lab$/, labView);
  return {layout, placeOf};
})();
