// The recommendation page: a history of item ids (searched among the model's popular items, checked on
// /recommend/items/{id}/similar) → POST /recommend/next (items with scores) and, for a picked item,
// GET /recommend/items/{id}/similar.
"use strict";

(() => {
  const { el, call, busy, showError, fmt } = Studio;
  const $ = (id) => document.getElementById(id);
  const state = { history: [], catalogue: [], known: new Set() };

  // ------------------------------------------------------------------ the catalogue sample
  async function loadCatalogue() {
    try {
      const r = await call("recommend", "/next", { json: { history: [], k: 100 } });
      state.catalogue = r.items.map((i) => i.item);
      state.catalogue.forEach((id) => state.known.add(id));
    } catch (e) {
      showError("error", e);
      return;
    }
    $("catalogue").replaceChildren(...state.catalogue.map((id) => el("option", { value: id })));
    $("popular").replaceChildren(...state.catalogue.slice(0, 24).map((id) =>
      el("span", { class: "chip popular", "data-item": id, onclick: () => add(id) }, id)));
  }

  $("item-input").addEventListener("input", () => {
    const q = $("item-input").value.trim();
    const hits = q ? state.catalogue.filter((id) => id.includes(q)).slice(0, 12) : [];
    $("matches").replaceChildren(...hits.map((id) => el("span", { class: "chip match", onclick: () => { add(id); $("item-input").value = ""; $("matches").replaceChildren(); } }, id)));
  });
  $("item-input").addEventListener("keydown", (e) => { if (e.key === "Enter") $("add").click(); });
  $("add").addEventListener("click", async () => {
    const id = $("item-input").value.trim();
    if (!id) return;
    showError("error", null);
    try {
      if (!state.known.has(id)) {
        await call("recommend", `/items/${encodeURIComponent(id)}/similar?k=1`); // 404 with the API's message if unknown
        state.known.add(id);
      }
      add(id);
      $("item-input").value = "";
      $("matches").replaceChildren();
    } catch (e) {
      showError("error", e);
    }
  });
  $("clear").addEventListener("click", () => { state.history = []; renderHistory(); });

  function add(id) {
    state.history.push(id);
    renderHistory();
  }

  function renderHistory() {
    $("history").replaceChildren(...state.history.map((id, i) =>
      el("span", { class: "chip history", "data-item": id, title: "show similar items", onclick: () => similar(id) }, id,
        el("span", { class: "x", title: "remove", onclick: (e) => { e.stopPropagation(); state.history.splice(i, 1); renderHistory(); } }, "×"))));
    $("history-info").textContent = state.history.length ? `${state.history.length} items, oldest first; click one for its similar items` : "empty";
  }

  // ------------------------------------------------------------------ next items and similar items
  $("recommend").addEventListener("click", () => recommend().catch(() => {}));

  async function recommend() {
    showError("error", null);
    await busy($("recommend"), $("result"), async () => {
      try {
        const body = { history: state.history, k: parseInt($("k").value, 10), exclude_seen: $("exclude-seen").checked };
        const r = await call("recommend", "/next", { json: body });
        const notes = [`${r.items.length} items · ${r.model.name} v${r.model.version}`];
        if (r.fallback) notes.push(`no known item in the history: ${r.fallback} fallback`);
        if (r.unknown_items.length) notes.push(`ignored unknown ids ${r.unknown_items.join(", ")}`);
        $("next-info").textContent = notes.join(" · ");
        $("next").replaceChildren(scoreHeader(), ...r.items.map((it, i) => scoreRow(it, i + 1, "next-row", r.items)));
      } catch (e) {
        showError("error", e);
        throw e;
      }
    });
  }

  async function similar(id) {
    showError("error", null);
    for (const row of document.querySelectorAll("tr.selected")) row.classList.remove("selected");
    for (const row of document.querySelectorAll(`tr[data-item="${CSS.escape(id)}"]`)) row.classList.add("selected");
    await busy(null, $("similar-result"), async () => {
      try {
        const r = await call("recommend", `/items/${encodeURIComponent(id)}/similar?k=10`);
        $("similar-info").textContent = `nearest to item ${r.item} (cosine of the learned embeddings) · ${r.model.name} v${r.model.version}`;
        $("similar").replaceChildren(scoreHeader(), ...r.similar.map((it, i) => scoreRow(it, i + 1, "similar-row", r.similar)));
      } catch (e) {
        showError("error", e);
        throw e;
      }
    }).catch(() => {});
  }

  function scoreHeader() {
    return el("tr", {}, el("th", {}, "#"), el("th", {}, "item"), el("th", {}, "score"), el("th", {}, ""), el("th", {}, ""));
  }

  /** A ranked item; its bar is the score relative to the list's largest (scores are the model's logits or cosines). */
  function scoreRow(it, rank, cls, all) {
    const top = Math.max(...all.map((x) => Math.abs(x.score)), 1e-12);
    const width = Math.max(1, (110 * Math.abs(it.score)) / top);
    return el("tr", { class: `pick ${cls}`, "data-item": it.item, title: "show similar items", onclick: () => similar(it.item) },
      el("td", {}, rank), el("td", { class: "mono" }, it.item), el("td", {}, fmt(it.score, 4)),
      el("td", { class: "bar-cell" }, el("span", { class: "bar", style: `width:${width}px` })),
      el("td", {}, el("button", { class: "add-item", title: "add to the history", onclick: (e) => { e.stopPropagation(); add(it.item); } }, "+")));
  }

  renderHistory();
  Studio.pageHeader("recommend");
  loadCatalogue();
  window.recommendPage = { state };
})();
