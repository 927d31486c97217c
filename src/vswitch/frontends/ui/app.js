// The Virtual Switch Manager (issue 14): a page of vswitchd's REST API, no framework, no build step.
// This file is the page's core: the token, REST calls, a DOM builder, forms, the router. The views
// are in manager.js (switches, ports, settings), picture.js (the live picture, the MAC table) and
// trace.js (a trace drawn on the picture); each registers its routes with Vs.route().
"use strict";

const Vs = (() => {
  const TOKEN_KEY = "vswitch.token";
  let role = "";
  let lab = false;
  const routes = [];
  // what the current view started (timers, streams): stopped when the view changes
  let leaving = [];

  // A token given in the URL's fragment (a link …/ui/#token=T) is kept for this tab
  // and removed from the address bar, so it is neither bookmarked nor shown over a shoulder.
  function takeTokenFromUrl() {
    const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (!m) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    const rest = location.hash.replace(/(?:^#|&)token=[^&]+/, "").replace(/^&/, "");
    history.replaceState(null, "", location.pathname + (rest ? "#" + rest.replace(/^#?/, "") : "#/"));
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token()) h["Authorization"] = "Bearer " + token();
    return h;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function refusal(r, what) {
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    return new ApiError(r.status, (data && data.error) || `${what}: HTTP ${r.status}`);
  }

  // One call of the REST API: JSON in and out; a refusal throws ApiError with the server's message.
  async function api(path, {method = "GET", body, signal} = {}) {
    const opts = {method, signal, headers: headers(body === undefined ? {} : {"Content-Type": "application/json"})};
    if (body !== undefined) opts.body = JSON.stringify(body);
    const r = await fetch(path, opts);
    if (!r.ok) throw await refusal(r, `${method} ${path}`);
    const text = await r.text();
    return text ? JSON.parse(text) : null;
  }

  // A file from the API (a capture, the configuration) saved by the browser: fetched with the token
  // (a plain link could not carry it), then handed over as a blob.
  async function download(path, filename) {
    const r = await fetch(path, {headers: headers()});
    if (!r.ok) throw await refusal(r, `GET ${path}`);
    const given = (r.headers.get("Content-Disposition") || "").match(/filename="?([^";]+)"?/);
    const url = URL.createObjectURL(await r.blob());
    const a = h("a", {href: url, download: given ? given[1] : filename, hidden: true});
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // A server-sent-event stream read with fetch (EventSource cannot send the bearer token): calls
  // onEvent(name, data) per event until the view changes or the server ends it.
  function stream(path, onEvent, onEnd) {
    const ctl = new AbortController();
    leaving.push(() => ctl.abort());
    (async () => {
      let why = "";
      try {
        const r = await fetch(path, {headers: headers({Accept: "text/event-stream"}), signal: ctl.signal});
        if (!r.ok) throw await refusal(r, `GET ${path}`);
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buf += decoder.decode(value, {stream: true});
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let name = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
            }
            if (data.length) onEvent(name, JSON.parse(data.join("\n")));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        why = e.message;
      }
      if (onEnd && !ctl.signal.aborted) onEnd(why);
    })();
    return ctl;
  }

  // fn() now and every `ms` while the view lasts and the tab is visible; a failure is shown.
  // Stopping it resolves once a call in flight is done, so `leave()` can wait for it.
  function every(ms, fn) {
    let stopped = false;
    let timer = null;
    let running = Promise.resolve();
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden) {
        running = Promise.resolve(fn()).catch((e) => { if (!stopped) notice(e.message); });
        await running;
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    leaving.push(() => { stopped = true; clearTimeout(timer); return running; });
    return tick();
  }

  // Stop what the current view started (its polls and streams) and wait for its calls in flight:
  // before a change that ends the view's object (a rename, a delete), so no poll asks for what is gone.
  async function leave() {
    await Promise.all(leaving.splice(0).map((stop) => stop()));
  }

  function onLeave(fn) { leaving.push(fn); }

  function notice(message, kind) {
    const el = document.getElementById("notice");
    el.textContent = message || "";
    el.className = kind || "";
    el.hidden = !message;
  }

  // A little DOM builder: h("td", {class: "x", onclick: f}, "text", child…)
  function h(tag, attrs, ...children) {
    const svg = tag.startsWith("svg:");
    const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      // through the CSSOM: the page's CSP refuses style="" attributes
      else if (k === "style") Object.assign(el.style, v);
      else if (k === "value" && !svg) el.value = v;
      else if (k === "checked" && !svg) el.checked = !!v;
      else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function isAdmin() { return role === "admin"; }

  // A form from field descriptions: [{name, label, type: text|number|checkbox|select, options, value,
  // placeholder, help}]. onSubmit(values, form) receives only what the user filled in (empty text
  // fields left out; numbers as numbers); its refusal is shown inside the form, which stays as typed.
  function form(id, fields, submitLabel, onSubmit) {
    const inputs = {};
    const message = h("p", {class: "form-error", role: "alert", hidden: true});
    const rows = fields.map((f) => {
      let input;
      const common = {name: f.name, id: `${id}-${f.name}`};
      if (f.type === "select") {
        input = h("select", common, (f.options || []).map((o) => {
          const [value, label] = Array.isArray(o) ? o : [o, o];
          return h("option", {value, selected: String(value) === String(f.value ?? "")}, label);
        }));
      } else if (f.type === "checkbox") {
        input = h("input", Object.assign({type: "checkbox", checked: !!f.value}, common));
      } else {
        input = h("input", Object.assign({type: f.type === "number" ? "number" : "text", value: f.value ?? "",
          placeholder: f.placeholder || "", autocomplete: "off"}, common, f.type === "number" ? {step: "any"} : {}));
      }
      if (f.onchange) input.addEventListener("change", () => f.onchange(input.value, inputs));
      inputs[f.name] = input;
      return h("label", {class: "field", "data-field": f.name, hidden: !!f.hidden},
        h("span", {}, f.label), input, f.help ? h("small", {}, f.help) : null);
    });
    const submit = h("button", {type: "submit"}, submitLabel);
    const el = h("form", {id, class: "vs-form", onsubmit: async (e) => {
      e.preventDefault();
      const values = {};
      for (const f of fields) {
        const input = inputs[f.name];
        if (input.closest("label").hidden) continue;
        if (f.type === "checkbox") values[f.name] = input.checked;
        else if (input.value.trim() === "") continue;
        else if (f.type === "number") values[f.name] = Number(input.value);
        else values[f.name] = input.value.trim();
      }
      message.hidden = true;
      submit.disabled = true;
      try {
        await onSubmit(values, el);
      } catch (err) {
        message.textContent = err.message;
        message.hidden = false;
      } finally {
        submit.disabled = false;
      }
    }}, rows, message, submit);
    el.inputs = inputs;
    el.show = (name, shown) => { inputs[name].closest("label").hidden = !shown; };
    return el;
  }

  // A button that asks again before doing something that cannot be undone (no window.confirm: a
  // second click on the same place, with the consequence said, is enough and testable)
  function dangerButton(label, question, action, attrs) {
    const btn = h("button", Object.assign({type: "button", class: "danger"}, attrs || {}), label);
    let armed = false;
    btn.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        btn.textContent = question;
        btn.classList.add("armed");
        setTimeout(() => { armed = false; btn.textContent = label; btn.classList.remove("armed"); }, 5000);
        return;
      }
      btn.disabled = true;
      try { await action(); } catch (e) { notice(e.message); } finally { btn.disabled = false; }
    });
    return btn;
  }

  function loginView(view, message) {
    const input = h("input", {type: "password", id: "token", autocomplete: "off", placeholder: "bearer token"});
    view.replaceChildren(h("form", {id: "login", onsubmit: (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      render();
    }}, h("p", {}, message || "vswitchd asks for a token (admin or reader, from its --token-file)."),
    input, " ", h("button", {type: "submit"}, "Sign in")));
    input.focus();
  }

  function route(pattern, view) { routes.push([pattern, view]); }

  // one render at a time, in the order asked: a render still fetching must never draw over a later
  // one (an old list of ports over the one a change just made)
  let rendering = Promise.resolve();
  function render() {
    rendering = rendering.then(draw, draw);
    return rendering;
  }

  async function draw() {
    await leave();
    takeTokenFromUrl();
    const view = document.getElementById("view");
    notice("");
    // vswitchd's TCP listener always has tokens (only its unix socket has none, and a browser does
    // not reach that): without one, ask, rather than be refused
    if (!token()) { loginView(view); return; }
    try {
      ({role, lab} = await api("/whoami"));
    } catch (e) {
      if (e.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        loginView(view, "That token was refused.");
        return;
      }
      notice(e.message);
      return;
    }
    const who = document.getElementById("whoami");
    who.textContent = `signed in as ${role}`;
    who.dataset.role = role;
    document.body.dataset.role = role;
    document.getElementById("logout").hidden = !token();
    document.getElementById("lab-link").hidden = !lab;  // a lab's daemon: its page draws the lab
    const path = location.hash.replace(/^#/, "") || "/";
    for (const [pattern, show] of routes) {
      const m = path.match(pattern);
      if (!m) continue;
      try {
        await show(view, ...m.slice(1).map(decodeURIComponent));
      } catch (e) {
        notice(e.message);
      }
      // a count of finished renders: what changed is on the page once it moves (tests wait for it)
      view.dataset.renders = String(Number(view.dataset.renders || 0) + 1);
      return;
    }
    notice(`no page at ${path}`);
  }

  function start() {
    document.getElementById("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      render();
    });
    window.addEventListener("hashchange", render);
    render();
  }

  // every view module is loaded (scripts at the end of the body) before this fires
  document.addEventListener("DOMContentLoaded", start);

  return {api, h, form, dangerButton, download, stream, every, onLeave, leave, notice, route, render, isAdmin,
    ApiError, get role() { return role; }};
})();
