// The genomics page: a sequence (pasted, or a FASTA record read here, gunzipped by the browser) →
// POST /genomics/classify (label, probabilities), POST /genomics/tag (runs of per-base labels, drawn as a
// track along the sequence) and POST /genomics/variant-effect over a window (all three alternatives at
// every position, 64 variants per request, every effect plotted).
"use strict";

(() => {
  const { el, svg, call, busy, showError, fmt, pct } = Studio;
  const $ = (id) => document.getElementById(id);
  const MAX_VARIANTS = 64, MAX_SCAN = 64;
  const ALT_COLORS = { A: "#1a7f37", C: "#2f6fde", G: "#e8912d", T: "#b42318" };
  const state = { records: [] };

  /** What the APIs are sent: the text without whitespace and digits (as pasted from GenBank or FASTA). */
  function sequence() {
    return $("sequence").value.replace(/[\s\d]+/g, "");
  }

  $("sequence").addEventListener("input", () => info());
  function info() {
    const s = sequence();
    $("sequence-info").textContent = `${s.length} bases`;
    $("scan-end").max = s.length;
    $("scan-start").max = Math.max(0, s.length - 1);
  }

  // ------------------------------------------------------------------ FASTA, read in the browser
  $("fasta").addEventListener("change", async () => {
    const file = $("fasta").files[0];
    if (!file) return;
    showError("error", null);
    try {
      state.records = parseFasta(await readText(file));
    } catch (e) {
      showError("error", e);
      return;
    }
    if (!state.records.length) {
      showError("error", new Error(`${file.name} has no FASTA record (a line starting with '>')`));
      return;
    }
    const select = $("record");
    select.replaceChildren(...state.records.map((r, i) => el("option", { value: i }, `${r.id} (${r.sequence.length} bases)`)));
    select.hidden = state.records.length < 2;
    pick(0);
  });
  $("record").addEventListener("change", () => pick(parseInt($("record").value, 10)));

  function pick(i) {
    $("sequence").value = state.records[i].sequence;
    info();
  }

  async function readText(file) {
    const head = new Uint8Array(await file.slice(0, 2).arrayBuffer());
    if (head[0] === 0x1f && head[1] === 0x8b) {
      const stream = file.stream().pipeThrough(new DecompressionStream("gzip"));
      return new Response(stream).text();
    }
    return file.text();
  }

  function parseFasta(text) {
    const records = [];
    for (const line of text.split(/\r?\n/)) {
      if (line.startsWith(">")) records.push({ id: line.slice(1).trim().split(/\s+/)[0] || `record ${records.length + 1}`, sequence: "" });
      else if (records.length && !line.startsWith(";")) records[records.length - 1].sequence += line.trim();
    }
    return records;
  }

  // ------------------------------------------------------------------ models
  async function loadModels() {
    let models;
    try {
      models = await call("genomics", "/models");
    } catch (e) {
      showError("error", e);
      return;
    }
    const tasks = (kind) => Object.keys(models).filter((k) => k.startsWith(`${kind}:`)).map((k) => k.slice(kind.length + 1));
    for (const [id, kind] of [["classify-task", "classify"], ["tag-task", "tag"]]) {
      const names = tasks(kind);
      $(id).replaceChildren(...(names.length ? names : [""]).map((t) => el("option", { value: t }, t || "(none served)")));
    }
    $("scan").disabled = !("lm" in models);
    if (!("lm" in models)) $("scan-info").textContent = "no language model is served: the scan needs one";
  }

  // ------------------------------------------------------------------ classification and the track
  $("analyse").addEventListener("click", () => analyse().catch(() => {}));

  async function analyse() {
    showError("error", null);
    const s = sequence();
    await busy($("analyse"), null, async () => {
      const jobs = [];
      if ($("classify-task").value) jobs.push(busy(null, $("result"), () => classify(s)).catch((e) => showError("error", e)));
      if ($("tag-task").value) jobs.push(busy(null, $("tag-result"), () => tag(s)).catch((e) => showError("error", e)));
      await Promise.all(jobs);
    });
  }

  async function classify(s) {
    const r = await call("genomics", "/classify", { json: { sequences: [s], task: $("classify-task").value } });
    const one = r.results[0];
    $("class-stats").replaceChildren(
      el("dt", {}, "label"), el("dd", { id: "class-label" }, one.label),
      el("dt", {}, "length"), el("dd", {}, `${one.length} bases, ${one.windows} window${one.windows > 1 ? "s" : ""}`),
      el("dt", {}, "model"), el("dd", {}, `${r.model.name} v${r.model.version}`));
    const rows = Object.entries(one.probabilities).sort((a, b) => b[1] - a[1]);
    $("probabilities").replaceChildren(
      el("tr", {}, el("th", {}, "class"), el("th", {}, "probability"), el("th", {}, "")),
      ...rows.map(([label, p]) => el("tr", { class: "class-row", "data-label": label }, el("td", { class: "mono" }, label), el("td", {}, pct(p)),
        el("td", { class: "bar-cell" }, el("span", { class: "bar", style: `width:${Math.max(1, 150 * p)}px` })))));
  }

  async function tag(s) {
    const r = await call("genomics", "/tag", { json: { sequence: s, task: $("tag-task").value } });
    drawTrack(r);
  }

  /** Each run of one label as a band along the sequence; its height is the run's mean probability. */
  function drawTrack(r) {
    const track = $("track"), W = 760, left = 70, right = 10, top = 12, lanes = {};
    const labels = [...new Set(r.runs.map((run) => run.label))].sort();
    const lane = 34;
    labels.forEach((label, i) => { lanes[label] = top + i * (lane + 6); });
    const height = top + labels.length * (lane + 6) + 24;
    track.setAttribute("height", height);
    track.setAttribute("viewBox", `0 0 ${W} ${height}`);
    track.dataset.length = r.length;
    track.dataset.runs = r.runs.length;
    const x = (pos) => left + ((W - left - right) * pos) / Math.max(1, r.length);
    const palette = ["#2f6fde", "#e8912d", "#1a7f37", "#b42318", "#7a4cc2"];
    const children = [];
    labels.forEach((label, i) => {
      const t = svg("text", { x: 4, y: lanes[label] + lane / 2 + 4, "font-size": 11, fill: "#5c6773" });
      t.textContent = label;
      children.push(t, svg("line", { x1: left, x2: W - right, y1: lanes[label] + lane, y2: lanes[label] + lane, stroke: "#d8dee4" }));
      r.runs.filter((run) => run.label === label).forEach((run) => {
        const h = Math.max(1, lane * run.mean_probability);
        const rect = svg("rect", { x: x(run.start), y: lanes[label] + lane - h, width: Math.max(0.5, x(run.end) - x(run.start)), height: h,
          fill: palette[i % palette.length], class: "run", "data-label": label });
        const tip = svg("title");
        tip.textContent = `${label} ${run.start}–${run.end} (mean p ${fmt(run.mean_probability, 3)})`;
        rect.append(tip);
        children.push(rect);
      });
    });
    const axisY = height - 16;
    children.push(svg("line", { x1: left, x2: W - right, y1: axisY, y2: axisY, stroke: "#5c6773" }));
    for (let k = 0; k <= 4; k++) {
      const pos = Math.round((r.length * k) / 4);
      const t = svg("text", { x: x(pos), y: axisY + 13, "font-size": 10, fill: "#5c6773", "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle" });
      t.textContent = pos;
      children.push(t);
    }
    track.replaceChildren(...children);
    const coding = r.runs.filter((run) => run.label === "coding").reduce((n, run) => n + run.end - run.start, 0);
    $("track-info").replaceChildren(
      el("span", { id: "track-length" }, `${r.length}`), ` bases tagged in ${r.runs.length} runs (${r.windows} window${r.windows > 1 ? "s" : ""})`,
      labels.includes("coding") ? `, ${pct(coding / Math.max(1, r.length))} coding` : "", ` · ${r.model.name} v${r.model.version}`);
  }

  // ------------------------------------------------------------------ the variant-effect scan
  $("scan").addEventListener("click", () => scan().catch(() => {}));

  async function scan() {
    showError("scan-error", null);
    const s = sequence().toUpperCase().replace(/U/g, "T");
    const start = parseInt($("scan-start").value, 10), end = Math.min(parseInt($("scan-end").value, 10), s.length);
    await busy($("scan"), $("scan-result"), async () => {
      try {
        if (!(end > start && start >= 0)) throw new Error(`the window [${start}, ${end}) is empty (the sequence has ${s.length} bases)`);
        if (end - start > MAX_SCAN) throw new Error(`the window has ${end - start} positions; the scan takes at most ${MAX_SCAN}`);
        const variants = [];
        for (let p = start; p < end; p++) for (const alt of "ACGT") if (alt !== s[p] && "ACGT".includes(s[p])) variants.push({ position: p, alt });
        const effects = [];
        let model = null;
        for (let i = 0; i < variants.length; i += MAX_VARIANTS) {
          const r = await call("genomics", "/variant-effect", { json: { sequence: sequence(), variants: variants.slice(i, i + MAX_VARIANTS) } });
          effects.push(...r.effects);
          model = r.model;
        }
        drawScan(effects, start, end, s);
        const worst = [...effects].sort((a, b) => a.delta_log_likelihood - b.delta_log_likelihood)[0];
        $("scan-info").replaceChildren(
          el("span", { id: "scan-count" }, String(effects.length)), ` effects over positions ${start}–${end - 1}`,
          worst ? `; most damaging ${worst.ref}${worst.position}${worst.alt} (Δ log-likelihood ${fmt(worst.delta_log_likelihood, 3)})` : "",
          model ? ` · ${model.name} v${model.version}` : "");
      } catch (e) {
        showError("scan-error", e);
        throw e;
      }
    });
  }

  /** Δ log-likelihood per substitution: a dot per alternative base, at its position; zero is the line. */
  function drawScan(effects, start, end, s) {
    const plot = $("scan-plot"), W = 1000, H = 220, left = 50, right = 10, top = 10, bottom = 34;
    const values = effects.map((e) => e.delta_log_likelihood);
    const lo = Math.min(0, ...values), hi = Math.max(0, ...values), span = Math.max(hi - lo, 1e-9);
    const x = (p) => left + ((W - left - right) * (p - start + 0.5)) / (end - start);
    const y = (v) => top + ((H - top - bottom) * (hi - v)) / span;
    const children = [svg("line", { x1: left, x2: W - right, y1: y(0), y2: y(0), stroke: "#5c6773" })];
    for (const v of [lo, hi]) {
      const t = svg("text", { x: left - 6, y: y(v) + 4, "font-size": 10, fill: "#5c6773", "text-anchor": "end" });
      t.textContent = fmt(v, 2);
      children.push(t);
    }
    const every = Math.ceil((end - start) / 32);
    for (let p = start; p < end; p++) {
      if ((p - start) % every) continue;
      const t = svg("text", { x: x(p), y: H - bottom + 14, "font-size": 10, fill: "#5c6773", "text-anchor": "middle", class: "mono" });
      t.textContent = s[p];
      const n = svg("text", { x: x(p), y: H - bottom + 27, "font-size": 9, fill: "#8b949e", "text-anchor": "middle" });
      n.textContent = p;
      children.push(t, n);
    }
    for (const e of effects) {
      const dot = svg("circle", { cx: x(e.position), cy: y(e.delta_log_likelihood), r: 3.5, fill: ALT_COLORS[e.alt], class: "effect" });
      const tip = svg("title");
      tip.textContent = `${e.ref}${e.position}${e.alt}: Δ log-likelihood ${fmt(e.delta_log_likelihood, 4)} (window ${e.window.join("–")})`;
      dot.append(tip);
      children.push(dot);
    }
    plot.dataset.effects = effects.length;
    plot.replaceChildren(...children);
    $("scan-legend").replaceChildren(...Object.entries(ALT_COLORS).map(([b, c]) => el("span", {}, el("i", { class: "swatch", style: `border-color:${c}` }), `alt ${b}`)));
  }

  info();
  Studio.pageHeader("genomics");
  loadModels();
  window.genomicsPage = { state, parseFasta };
})();
