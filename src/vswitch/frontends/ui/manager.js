// The Virtual Switch Manager's forms (issue 14, item 1): switches (create External/Internal/Private,
// confirm, change type, rename, delete, settings, configuration export) and ports (add, remove,
// VLAN mode and port features). Every change is one REST call; the server's refusal is shown as
// it comes. A reader is given no control that changes anything (the API would refuse it with 403).
"use strict";

const VsManager = (() => {
  const {api, h, form, dangerButton, download, notice, isAdmin} = Vs;
  const enc = encodeURIComponent;
  const PORT_KINDS = [["tap", "tap — a TAP device vswitch creates (a VM's NIC)"],
    ["link", "link — an existing link (a veth end, a TAP QEMU opened)"],
    ["qemu-stream", "qemu-stream — QEMU -netdev stream (unix socket)"],
    ["qemu-dgram", "qemu-dgram — QEMU -netdev dgram (unix socket)"],
    ["vxlan", "vxlan — a VXLAN tunnel to remote VTEPs (UDP 4789)"]];
  const TARGET_LABEL = {tap: "TAP device name", link: "link name", "qemu-stream": "socket path",
    "qemu-dgram": "socket path", vxlan: "remote VTEP addresses (IP,IP…)"};

  function nicLabel(n) {
    const facts = [n.kind, n.up ? "up" : "down", ...(n.addresses || [])];
    if (n.default_route) facts.push("default route");
    return `${n.name} (${facts.join(", ")})`;
  }

  // the connection fields shared by "create" and "change type": type, NIC (from GET /nics), the
  // host's vNIC, the confirm timeout; shown or hidden by the chosen type
  function connectionFields(nics, current) {
    const external = (current && current.type) === "external";
    return [
      {name: "type", label: "Connection type", type: "select", value: current ? current.type : "external",
        options: [["external", "External — bound to a physical NIC"], ["internal", "Internal — host and VMs"],
          ["private", "Private — VMs only"]],
        onchange: (v, inputs) => showConnection(inputs, v)},
      {name: "nic", label: "Physical NIC", type: "select", hidden: current ? !external : false,
        options: nics.length ? nics.map((n) => [n.name, nicLabel(n)]) : [["", "no free NIC (nic list is empty)"]],
        help: "the NIC then carries only the switch"},
      {name: "allow_management_os", label: "Allow management OS to share this NIC", type: "checkbox",
        value: current ? current.allow_management_os : true, hidden: current ? !external : false,
        help: "the host gets a vNIC on the switch that takes the NIC's addresses and routes"},
      {name: "confirm_timeout_s", label: "Revert unless confirmed within (s)", type: "number", value: 60,
        hidden: current ? !external : false,
        help: "leave empty to keep the change without confirming"},
    ];
  }

  function showConnection(inputs, type) {
    const external = type === "external";
    for (const name of ["nic", "allow_management_os", "confirm_timeout_s"]) {
      inputs[name].closest("label").hidden = !external;
    }
  }

  // values of a connection form as the API wants them (no NIC off External)
  function connectionBody(values) {
    const body = {type: values.type};
    if (values.type === "external") {
      if (!values.nic) throw new Error("choose the physical NIC the external switch takes over");
      body.nic = values.nic;
      body.allow_management_os = values.allow_management_os;
      if (values.confirm_timeout_s !== undefined && values.confirm_timeout_s > 0) {
        body.confirm_timeout_s = values.confirm_timeout_s;
      }
    }
    return body;
  }

  // "awaiting-confirm": the seconds left, counting down, and the Confirm button
  function confirmBanner(sw, onDone) {
    const deadline = Date.now() + (sw.confirm_deadline_s || 0) * 1000;
    const left = h("strong", {class: "countdown"}, "");
    const tick = () => {
      const s = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      left.textContent = `${s} s`;
      left.dataset.seconds = s;
      if (s === 0) { clearInterval(timer); setTimeout(onDone, 1500); }
    };
    const timer = setInterval(tick, 250);
    Vs.onLeave(() => clearInterval(timer));
    tick();
    return h("div", {class: "confirm", "data-confirm": sw.name},
      `Switch ${sw.name}'s new connection is on trial: it goes back to the previous one in `, left,
      " unless you confirm that the host can still be reached. ",
      isAdmin() ? h("button", {type: "button", class: "confirm-button", onclick: async () => {
        clearInterval(timer);
        await api(`/switches/${enc(sw.name)}/confirm`, {method: "POST"});
        notice(`switch ${sw.name}: connection confirmed`, "ok");
        onDone();
      }}, "Confirm") : null);
  }

  async function switchesView(view) {
    const switches = await api("/switches");
    const rows = switches.map((s) => h("tr", {"data-switch": s.name, "data-state": s.state},
      h("td", {}, h("a", {href: "#/switch/" + enc(s.name)}, s.name)),
      h("td", {}, s.type), h("td", {}, s.nic || ""), h("td", {}, s.ports.length),
      h("td", {}, s.datapath), h("td", {}, s.state)));
    const banners = switches.filter((s) => s.state === "awaiting-confirm").map((s) => confirmBanner(s, Vs.render));
    view.replaceChildren(h("h1", {}, "Virtual switches"), banners,
      h("table", {id: "switches"},
        h("tr", {}, ["name", "type", "NIC", "ports", "datapath", "state"].map((t) => h("th", {}, t))), rows),
      h("p", {class: "actions"}, h("button", {type: "button", id: "export", onclick: () =>
        download("/config", "vswitch-config.json").catch((e) => notice(e.message))}, "Export configuration")),
      isAdmin() ? await createSection() : null);
  }

  async function createSection() {
    const nics = await api("/nics");
    const f = form("create-switch", [
      {name: "name", label: "Name", placeholder: "e.g. ext0"},
      ...connectionFields(nics, null)], "Create virtual switch", async (values) => {
      if (!values.name) throw new Error("give the switch a name");
      const body = Object.assign({name: values.name}, connectionBody(values));
      const sw = await api("/switches", {method: "POST", body});
      notice(`created switch ${sw.name} (${sw.type})`, "ok");
      location.hash = "#/switch/" + enc(sw.name);
    });
    return h("section", {class: "panel", id: "new-switch"}, h("h2", {}, "New virtual switch"), f);
  }

  // the switch's own settings, each a PATCH of its own (the API takes rename, connection and
  // datapath in separate calls)
  async function settingsSection(sw) {
    const path = `/switches/${enc(sw.name)}`;
    const nics = await api("/nics");
    if (sw.nic && !nics.some((n) => n.name === sw.nic)) nics.unshift({name: sw.nic, kind: "its NIC now", up: true});
    const patch = async (body) => {
      const info = await api(path, {method: "PATCH", body});
      notice(`switch ${info.name}: changed`, "ok");
      if (info.name !== sw.name) location.hash = "#/switch/" + enc(info.name);
      else Vs.render();
    };
    const rename = form("rename-switch", [{name: "name", label: "New name", value: sw.name}], "Rename",
      async (v) => {
        await Vs.leave();  // the page's polls ask for the old name: stop them first
        await patch({name: v.name});
      });
    const connection = form("switch-connection", connectionFields(nics, sw), "Change connection type",
      (v) => patch(connectionBody(v)));
    const table = form("switch-table", [
      {name: "ageing_s", label: "MAC ageing (s)", type: "number", value: sw.ageing_s},
      {name: "max_entries", label: "MAC table capacity", type: "number", value: sw.max_entries},
      ...(sw.type === "external" ? [{name: "uplink_bandwidth", label: "Uplink capacity for weights (bit/s)",
        type: "number", value: sw.uplink_bandwidth}] : [])], "Apply", (v) => patch(v));
    const datapath = form("switch-datapath", [{name: "datapath", label: "Datapath", type: "select", value: "auto",
      options: [["auto", "auto — the kernel fast path where it can"], ["kernel", "kernel (tc-bpf)"],
        ["python", "python"]]}], "Move", (v) => patch(v));
    const del = dangerButton("Delete switch", `Really delete ${sw.name}? (click again)`, async () => {
      await Vs.leave();
      await api(path, {method: "DELETE"});
      notice(`deleted switch ${sw.name}`, "ok");
      location.hash = "#/";
    }, {id: "delete-switch"});
    return h("details", {class: "panel", id: "switch-settings"}, h("summary", {}, "Switch settings"),
      h("div", {class: "forms"}, rename, connection, table, datapath), h("p", {}, del));
  }

  // ---- ports ----------------------------------------------------------------------------------
  function vlanModeOf(p) {
    if (p.pvlan) return {mode: "private"};
    const trunk = p.vlan_mode.match(/^trunk (\S+)(?: native (\d+))?/);
    if (trunk) return {mode: "trunk", trunk: trunk[1], native: trunk[2] || ""};
    const access = p.vlan_mode.match(/^access (\d+)/);
    return {mode: "access", vlan: access ? Number(access[1]) : 1};
  }

  const FEATURES = [
    ["admin_up", "Enabled (admin up)", "checkbox"], ["learning", "Learn source MACs", "checkbox"],
    ["flooding", "Receive floods", "checkbox"], ["dhcp_guard", "DHCP guard", "checkbox"],
    ["router_guard", "Router guard", "checkbox"], ["mac_spoofing", "MAC address spoofing", "checkbox"],
    ["isolated", "Isolated", "checkbox"], ["mac_limit", "MAC limit (0: none)", "number"],
    ["storm_limit", "Storm limit (floods/s, 0: none)", "number"],
    ["max_bandwidth", "Maximum bandwidth in (bit/s, 0: none)", "number"],
    ["bandwidth_burst", "Its burst (bytes, 0: default)", "number"],
    ["max_bandwidth_in", "Maximum bandwidth out to it (bit/s, links only)", "number"],
    ["min_bandwidth_weight", "Minimum bandwidth weight (0-100)", "number"]];

  function portForm(sw, p) {
    const vm = vlanModeOf(p);
    const fields = [
      {name: "vlan_mode", label: "VLAN mode", type: "select", value: vm.mode,
        options: [["access", "access"], ["trunk", "trunk"], ["private", "private VLAN"]],
        onchange: (v) => showMode(v)},
      {name: "vlan", label: "Access VLAN", type: "number", value: vm.vlan ?? 1},
      {name: "trunk", label: "Allowed VLANs", value: vm.trunk ?? "", placeholder: "10,20-30"},
      {name: "native", label: "Native (untagged) VLAN", type: "number", value: vm.native ?? ""},
      {name: "pvlan", label: "Private VLAN mode", type: "select", value: p.pvlan || "isolated",
        options: ["isolated", "community", "promiscuous"]},
      {name: "primary", label: "Primary VLAN", type: "number", value: p.primary ?? ""},
      {name: "secondary", label: "Secondary VLAN(s)", value: (p.secondary || []).join(","),
        placeholder: "promiscuous: 201,202"},
      {name: "port_mirroring", label: "Port mirroring", type: "select", value: p.port_mirroring,
        options: ["none", "source", "destination"]},
      ...(p.kind === "tap" ? [{name: "mac", label: "MAC of its TAP device", value: p.mac || ""}] : []),
      ...FEATURES.map(([name, label, type]) => ({name, label, type, value: p[name]})),
    ];
    const f = form(`port-form-${p.name}`, fields, "Apply", async (v) => {
      const body = {};
      const mode = v.vlan_mode;
      if (mode === "access" && (vm.mode !== "access" || v.vlan !== vm.vlan)) {
        body.vlan = v.vlan;
        if (vm.mode === "private") body.pvlan = "none";
      } else if (mode === "trunk" && (vm.mode !== "trunk" || v.trunk !== vm.trunk || String(v.native ?? "") !== vm.native)) {
        if (!v.trunk) throw new Error("trunk: give the VLANs the trunk carries (10,20-30)");
        body.trunk = v.trunk;
        if (v.native !== undefined) body.native = v.native;
        if (vm.mode === "private") body.pvlan = "none";
      } else if (mode === "private") {
        const secondary = String(v.secondary ?? "");
        const was = (p.secondary || []).join(",");
        if (vm.mode !== "private" || v.pvlan !== p.pvlan || v.primary !== p.primary || secondary !== was) {
          body.pvlan = v.pvlan;
          body.primary = v.primary;
          if (v.pvlan === "promiscuous") body.secondary_list = secondary;
          else if (secondary) body.secondary = Number(secondary);
        }
      }
      if (v.port_mirroring !== p.port_mirroring) body.port_mirroring = v.port_mirroring;
      if (p.kind === "tap" && (v.mac || "") !== (p.mac || "") && v.mac) body.mac = v.mac;
      for (const [name] of FEATURES) {
        if (v[name] !== undefined && v[name] !== p[name]) body[name] = v[name];
      }
      if (!Object.keys(body).length) { notice(`port ${p.name}: nothing changed`); return; }
      await api(`/switches/${enc(sw.name)}/ports/${enc(p.name)}`, {method: "PATCH", body});
      notice(`port ${p.name}: ${Object.keys(body).join(", ")} changed`, "ok");
      Vs.render();
    });
    const showMode = (mode) => {
      f.show("vlan", mode === "access");
      for (const n of ["trunk", "native"]) f.show(n, mode === "trunk");
      for (const n of ["pvlan", "primary", "secondary"]) f.show(n, mode === "private");
    };
    showMode(vm.mode);
    return f;
  }

  function captureForm(sw, p) {
    return form(`capture-${p.name}`, [
      {name: "direction", label: "Direction", type: "select", value: "both", options: ["both", "in", "out"]},
      {name: "count", label: "Frames at most", type: "number", value: 1000},
      {name: "seconds", label: "Seconds at most", type: "number", value: 10},
      {name: "filter", label: "Filter (tcpdump syntax)", placeholder: "icmp or arp"}], "Download pcapng",
    async (v) => {
      const q = new URLSearchParams(Object.entries(v).map(([k, x]) => [k, String(x)]));
      notice(`capturing on ${p.name} (at most ${v.count ?? 1000} frames or ${v.seconds ?? 10} s)…`, "ok");
      await download(`/switches/${enc(sw.name)}/ports/${enc(p.name)}/capture?${q}`, `${sw.name}-${p.name}.pcapng`);
      notice(`capture of ${p.name} saved`, "ok");
    });
  }

  function portRow(sw, p) {
    const down = p.details && p.details.down_reason;
    const own = p.role === "vm";
    return h("tr", {"data-port": p.name, "data-role": p.role, "data-up": p.up ? "up" : "down"},
      h("td", {}, p.name), h("td", {}, p.role), h("td", {}, p.kind), h("td", {}, p.target ?? ""),
      h("td", {}, p.vlan_mode), h("td", {}, p.datapath),
      h("td", {class: p.up ? "up" : "down"}, p.up ? "up" : `down${down ? ": " + down : ""}`),
      h("td", {class: "port-actions"},
        h("details", {}, h("summary", {}, "Capture"), captureForm(sw, p)),
        isAdmin() && own ? h("details", {}, h("summary", {}, "Settings"), portForm(sw, p)) : null,
        isAdmin() && own ? dangerButton("Remove", `Remove ${p.name}? (click again)`, async () => {
          await api(`/switches/${enc(sw.name)}/ports/${enc(p.name)}`, {method: "DELETE"});
          notice(`removed port ${p.name}`, "ok");
          Vs.render();
        }, {class: "danger remove-port"}) : null));
  }

  function addPortSection(sw) {
    const f = form("add-port", [
      {name: "name", label: "Port name", placeholder: "vm1"},
      {name: "kind", label: "Kind", type: "select", value: "tap", options: PORT_KINDS,
        onchange: (v, inputs) => {
          inputs.target.closest("label").querySelector("span").textContent = TARGET_LABEL[v];
          inputs.vni.closest("label").hidden = v !== "vxlan";
        }},
      {name: "target", label: TARGET_LABEL.tap, placeholder: "vm1-tap or /run/vswitch/ports/vm1.sock"},
      {name: "vni", label: "VXLAN network identifier (VNI)", type: "number", hidden: true},
      {name: "vlan", label: "Access VLAN (default 1)", type: "number"},
      {name: "trunk", label: "or trunk VLANs", placeholder: "10,20-30"},
    ], "Add port", async (v) => {
      if (!v.name || !v.target) throw new Error("a port needs a name and a target");
      const p = await api(`/switches/${enc(sw.name)}/ports`, {method: "POST", body: v});
      notice(`added port ${p.name} (${p.kind} ${p.target})`, "ok");
      Vs.render();
    });
    return h("details", {class: "panel", id: "add-port-panel"}, h("summary", {}, "Add a port"), f);
  }

  async function switchView(view, name) {
    const path = `/switches/${enc(name)}`;
    const [sw, ports] = await Promise.all([api(path), api(path + "/ports")]);
    const facts = [sw.type, sw.nic ? `NIC ${sw.nic}` : null, sw.host_vnic ? `host vNIC ${sw.host_vnic}` : null,
      `datapath ${sw.datapath}`, `ageing ${sw.ageing_s} s`, `capacity ${sw.max_entries}`].filter(Boolean);
    const parts = [
      h("h1", {}, `Switch ${sw.name}`, " ", h("small", {id: "switch-type"}, `(${sw.type})`)),
      h("p", {class: "facts"}, facts.join(" · ")),
      sw.state === "awaiting-confirm" ? confirmBanner(sw, Vs.render) : null,
    ];
    if (typeof VsPicture !== "undefined") parts.push(VsPicture.section(sw, ports));
    if (typeof VsTrace !== "undefined") parts.push(VsTrace.section(sw, ports));
    parts.push(h("h2", {}, "Ports"),
      h("table", {id: "ports"},
        h("tr", {}, ["port", "role", "kind", "target", "VLAN", "datapath", "state", ""].map((t) => h("th", {}, t))),
        ports.map((p) => portRow(sw, p))));
    if (isAdmin()) parts.push(addPortSection(sw), await settingsSection(sw));
    if (typeof VsPicture !== "undefined") parts.push(VsPicture.fdbSection(sw, ports));
    view.replaceChildren(...parts.filter(Boolean));
    if (typeof VsPicture !== "undefined") VsPicture.start(sw, ports);
  }

  Vs.route(/^\/$/, switchesView);
  Vs.route(/^\/switch\/([^/]+)$/, switchView);
  return {vlanModeOf};
})();
