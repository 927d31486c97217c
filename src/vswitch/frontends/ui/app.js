// The Virtual Switch Manager (issue 14): a page of vswitchd's REST API, no framework, no build step.
// Today it reads (switches, a switch's ports); the forms that change them and the picture are to come.
"use strict";

const Vs = (() => {
  const TOKEN_KEY = "vswitch.token";
  let role = "";

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

  // One call of the REST API: JSON in and out; a refusal throws ApiError with the server's message.
  async function api(path, {method = "GET", body} = {}) {
    const opts = {method, headers: headers(body === undefined ? {} : {"Content-Type": "application/json"})};
    if (body !== undefined) opts.body = JSON.stringify(body);
    const r = await fetch(path, opts);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!r.ok) throw new ApiError(r.status, (data && data.error) || `${method} ${path}: HTTP ${r.status}`);
    return data;
  }

  function notice(message) {
    const el = document.getElementById("notice");
    el.textContent = message || "";
    el.hidden = !message;
  }

  // A little DOM builder: h("td", {class: "x", onclick: f}, "text", child…)
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function loginView(view, message) {
    const input = h("input", {type: "password", id: "token", autocomplete: "off", placeholder: "bearer token"});
    view.replaceChildren(h("form", {id: "login", onsubmit: (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      route();
    }}, h("p", {}, message || "vswitchd asks for a token (admin or reader, from its --token-file)."),
    input, " ", h("button", {type: "submit"}, "Sign in")));
    input.focus();
  }

  async function switchesView(view) {
    const switches = await api("/switches");
    view.replaceChildren(h("h1", {}, "Virtual switches"),
      h("table", {id: "switches"},
        h("tr", {}, h("th", {}, "name"), h("th", {}, "type"), h("th", {}, "ports")),
        switches.map((s) => h("tr", {"data-switch": s.name},
          h("td", {}, h("a", {href: "#/switch/" + encodeURIComponent(s.name)}, s.name)),
          h("td", {}, s.type), h("td", {}, Array.isArray(s.ports) ? s.ports.length : (s.ports ?? ""))))));
  }

  async function switchView(view, name) {
    const path = "/switches/" + encodeURIComponent(name);
    const [sw, ports] = await Promise.all([api(path), api(path + "/ports")]);
    view.replaceChildren(h("h1", {}, `Switch ${sw.name} (${sw.type})`),
      h("table", {id: "ports"},
        h("tr", {}, h("th", {}, "port"), h("th", {}, "kind"), h("th", {}, "target"), h("th", {}, "state")),
        ports.map((p) => h("tr", {"data-port": p.name},
          h("td", {}, p.name), h("td", {}, p.kind), h("td", {}, p.target ?? ""),
          h("td", {}, p.up ? "up" : `down${p.details ? ": " + p.details : ""}`)))));
  }

  async function route() {
    takeTokenFromUrl();
    const view = document.getElementById("view");
    notice("");
    // vswitchd's TCP listener always has tokens (only its unix socket has none, and a browser does
    // not reach that): without one, ask, rather than be refused
    if (!token()) { loginView(view); return; }
    try {
      role = (await api("/whoami")).role;
    } catch (e) {
      if (e.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        loginView(view, "That token was refused.");
        return;
      }
      throw e;
    }
    const who = document.getElementById("whoami");
    who.textContent = `signed in as ${role}`;
    who.dataset.role = role;
    document.body.dataset.role = role;
    document.getElementById("logout").hidden = !token();
    const m = location.hash.match(/^#\/switch\/([^/]+)$/);
    try {
      if (m) await switchView(view, decodeURIComponent(m[1]));
      else await switchesView(view);
    } catch (e) {
      notice(e.message);
    }
  }

  function start() {
    document.getElementById("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      route();
    });
    window.addEventListener("hashchange", route);
    route();
  }

  return {api, h, notice, route, start, ApiError, get role() { return role; }};
})();

Vs.start();
