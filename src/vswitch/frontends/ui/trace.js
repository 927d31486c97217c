// A trace on the picture (issue 14, item 3): the form asks the switch's one decision function
// (GET …/trace: it sends, learns and counts nothing) what it would do with such a frame, and draws
// its steps as numbered hops — where the frame arrives, what the switch decides, each port it leaves by.
"use strict";

const VsTrace = (() => {
  const {api, h} = Vs;
  const enc = encodeURIComponent;
  const NS = "svg:";

  // where on the picture a step happened: the ingress port, the switch, or the egress port
  function placeOf(step, trace) {
    if (step.stage === "parse" || step.stage === "ingress") return VsPicture.anchor(trace.in_port);
    if (step.stage === "egress" && step.detail && step.detail.port) return VsPicture.anchor(step.detail.port);
    return VsPicture.anchor("@switch");
  }

  function draw(trace) {
    const layer = VsPicture.overlay();
    if (!layer) return;
    layer.replaceChildren();
    const used = {};
    trace.steps.forEach((step, i) => {
      const at = placeOf(step, trace);
      if (!at) return;
      // hops at one place are spread out so each number stays readable
      const key = `${at.x},${at.y}`;
      const k = used[key] = (used[key] || 0) + 1;
      const x = at.x + (k - 1) * 24 - 12;
      const y = at.y - 16;
      layer.append(h(NS + "g", {class: `hop ${step.reason && step.reason.startsWith("DROP_") ? "hop-drop" : ""}`,
        "data-hop": i + 1, "data-stage": step.stage},
      h(NS + "circle", {cx: x, cy: y, r: 11}),
      h(NS + "text", {x, y: y + 4, "text-anchor": "middle"}, String(i + 1)),
      h(NS + "title", {}, `${i + 1}. ${step.stage}: ${step.result}`)));
    });
  }

  function section(sw, ports) {
    const result = h("div", {id: "trace-result"});
    const names = ports.map((p) => p.name);
    const f = Vs.form("trace-form", [
      {name: "in_port", label: "In port", type: "select", options: names},
      {name: "src", label: "Source MAC", placeholder: "02:00:00:00:00:01"},
      {name: "dst", label: "Destination MAC", placeholder: "ff:ff:ff:ff:ff:ff"},
      {name: "vlan", label: "Tag (empty: untagged)", type: "number"}], "Trace", async (v) => {
      if (!v.src || !v.dst) throw new Error("a trace needs a source and a destination MAC");
      const q = new URLSearchParams(Object.entries(v).map(([k, x]) => [k, String(x)]));
      const t = await api(`/switches/${enc(sw.name)}/trace?${q}`);
      draw(t);
      result.replaceChildren(
        h("p", {id: "trace-verdict", "data-reason": t.reason},
          h("strong", {}, t.reason), ` — ${t.explanation}`,
          t.out_ports.length ? ` → ${t.out_ports.join(", ")}` : ""),
        h("ol", {id: "trace-hops"}, t.steps.map((s, i) => h("li", {"data-hop": i + 1, "data-stage": s.stage,
          "data-reason": s.reason || ""}, h("strong", {}, s.stage), `: ${s.result}`))));
    });
    return h("details", {class: "panel", id: "trace-panel"}, h("summary", {}, "Trace a frame"),
      h("p", {class: "sub"}, "What the switch would do now with such a frame (nothing is sent, learned or counted); "
        + "the numbered hops are drawn on the picture."), f, result);
  }

  return {section, draw};
})();
