// The studio's shared helpers: the page's configuration, calls to the domain apps' REST APIs (same
// origin, the API's own error shape surfaced as is), the served models' versions with MLflow links, and
// small DOM/SVG builders. Every page script uses `Studio`; nothing here fetches from outside the origin.
"use strict";

const Studio = (() => {
  const config = JSON.parse(document.getElementById("studio-config").textContent);

  /** A refused request: the app's {"error": {code, message, field}} and the HTTP status. */
  class ApiError extends Error {
    constructor(status, error) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "http_error";
      this.field = error.field ?? null;
    }
  }

  function url(domain, path) {
    return config.apps[domain] + path;
  }

  /** Call `path` on `domain`'s app; JSON in (json) or a FormData (form); JSON or a blob out (as). */
  async function call(domain, path, { json, form, as = "json", method } = {}) {
    const init = { method: method || (json !== undefined || form ? "POST" : "GET"), headers: {} };
    if (json !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form) {
      init.body = form;
    }
    let response;
    try {
      response = await fetch(url(domain, path), init);
    } catch (e) {
      throw new ApiError(0, { code: "unreachable", message: `the ${domain} app did not answer (${e.message})` });
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        /* not JSON: fall back to the status line */
      }
      const error = body && body.error ? body.error : { code: "http_error", message: `${response.status} ${response.statusText}` };
      throw new ApiError(response.status, error);
    }
    if (as === "blob") return { blob: await response.blob(), headers: response.headers };
    return response.json();
  }

  /** Element builder: el("td", {class: "x"}, "text", child, ...). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  /** The API's refusal, verbatim: status and code, its message, the field it names. */
  function showError(target, err) {
    const box = typeof target === "string" ? document.getElementById(target) : target;
    box.replaceChildren();
    if (!err) return;
    const api = err instanceof ApiError;
    box.append(
      el("div", { class: "error", role: "alert", "data-status": api ? err.status : "", "data-code": api ? err.code : "script" },
        el("span", { class: "code" }, api ? `${err.status || ""} ${err.code}`.trim() : "error"),
        el("span", { class: "message" }, err.message),
        api && err.field ? el("span", { class: "field" }, `field: ${err.field}`) : null),
    );
  }

  /** Run `work` with `button` disabled and `state` (an element) marked running → done | error. */
  async function busy(button, state, work) {
    if (button) button.disabled = true;
    if (state) state.dataset.state = "running";
    try {
      const out = await work();
      if (state) state.dataset.state = "done";
      return out;
    } catch (e) {
      if (state) state.dataset.state = "error";
      throw e;
    } finally {
      if (button) button.disabled = false;
    }
  }

  function mlflowRun(runId) {
    return `${config.mlflow_ui}/#/runs/${encodeURIComponent(runId)}`;
  }

  function mlflowVersion(name, version) {
    return `${config.mlflow_ui}/#/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
  }

  /** The served models of `domain` (GET /version): name, version and run, linked to the MLflow UI. */
  async function versions(domain, target, { compact = false } = {}) {
    const box = typeof target === "string" ? document.getElementById(target) : target;
    box.dataset.state = "running";
    try {
      const served = await call(domain, "/version");
      if (compact) {
        box.replaceChildren(el("ul", { class: "compact" }, Object.entries(served).map(([key, m]) =>
          el("li", { "data-key": key }, el("span", { class: "mono" }, key), " ", m.name || "", " ",
            m.error ? el("span", { class: "small" }, m.error)
              : [el("a", { href: mlflowVersion(m.name, m.version), target: "_blank", rel: "noopener" }, `v${m.version}`), " · run ",
                m.run_id ? el("a", { href: mlflowRun(m.run_id), target: "_blank", rel: "noopener", class: "mono" }, m.run_id.slice(0, 8)) : "—"]))));
        box.dataset.state = "done";
        return served;
      }
      const rows = Object.entries(served).map(([key, m]) =>
        el("tr", { "data-key": key },
          el("td", { class: "mono" }, key),
          el("td", {}, m.name || ""),
          el("td", {}, m.error ? el("span", { class: "small" }, m.error)
            : el("a", { href: mlflowVersion(m.name, m.version), target: "_blank", rel: "noopener" }, `v${m.version}`)),
          el("td", { class: "mono" }, m.run_id ? el("a", { href: mlflowRun(m.run_id), target: "_blank", rel: "noopener" }, m.run_id.slice(0, 8)) : "—"),
          el("td", {}, m.alias ? `@${m.alias}` : "")));
      box.replaceChildren(el("table", {},
        el("tr", {}, el("th", {}, "endpoint"), el("th", {}, "model"), el("th", {}, "version"), el("th", {}, "MLflow run"), el("th", {}, "")),
        rows));
      box.dataset.state = "done";
      return served;
    } catch (e) {
      showError(box, e);
      box.dataset.state = "error";
      return null;
    }
  }

  /** The header every domain page has: its models (versions) and links to the API docs and MLflow. */
  function pageHeader(domain) {
    const links = document.getElementById("links");
    if (links) {
      links.replaceChildren(
        el("a", { href: url(domain, "/docs"), target: "_blank", rel: "noopener" }, "API docs"), " · ",
        el("a", { href: config.mlflow_ui, target: "_blank", rel: "noopener" }, "MLflow UI"));
    }
    return versions(domain, "versions");
  }

  function fmt(x, digits = 4) {
    if (x === null || x === undefined || Number.isNaN(x)) return "—";
    return Number(x).toFixed(digits);
  }

  function pct(x, digits = 1) {
    return `${(100 * x).toFixed(digits)}%`;
  }

  if (config.page === "index") {
    for (const box of document.querySelectorAll("[data-versions]")) versions(box.dataset.versions, box, { compact: true });
  }

  return { config, ApiError, call, url, el, svg, showError, busy, versions, pageHeader, fmt, pct, mlflowRun };
})();
