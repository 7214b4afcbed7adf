// The pointer page: points on an SVG board (clicked, random or from a TSPLIB file) → POST /pointer/tsp,
// /convex-hull, /delaunay or /tsplib → the answer drawn over the points, the model's own answer beside the
// polished one, and the gap to the exact answer computed here (Held–Karp TSP for ≤ 12 points, the exact
// convex hull, the Delaunay triangulation by the empty-circle rule for ≤ 40 points).
"use strict";

(() => {
  const { el, svg, call, busy, showError, fmt } = Studio;
  const SIZE = 520, MARGIN = 24, EXACT_TSP_MAX = 12, EXACT_DELAUNAY_MAX = 40;
  const board = document.getElementById("board");
  const $ = (id) => document.getElementById(id);
  const state = { points: [], tsplib: null, answer: null };

  // ------------------------------------------------------------------ coordinates and drawing
  function transform() {
    if (!state.tsplib) {
      const s = SIZE - 2 * MARGIN;
      return { toPx: ([x, y]) => [MARGIN + x * s, MARGIN + y * s], toWorld: ([px, py]) => [(px - MARGIN) / s, (py - MARGIN) / s] };
    }
    const xs = state.points.map((p) => p[0]), ys = state.points.map((p) => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const scale = (SIZE - 2 * MARGIN) / Math.max(x1 - x0, y1 - y0, 1e-12);
    return { toPx: ([x, y]) => [MARGIN + (x - x0) * scale, SIZE - MARGIN - (y - y0) * scale], toWorld: null };
  }

  function polyline(indices, attrs, close) {
    const { toPx } = transform();
    const pts = indices.map((i) => toPx(state.points[i]).map((v) => v.toFixed(1)).join(","));
    if (close && indices.length) pts.push(pts[0]);
    return svg("polyline", { points: pts.join(" "), fill: "none", ...attrs });
  }

  function draw() {
    board.replaceChildren();
    const { toPx } = transform();
    const a = state.answer;
    const legend = [];
    if (a && a.kind === "tsp") {
      if (a.modelTour) {
        board.append(polyline(a.modelTour, { stroke: "#e8912d", "stroke-width": 2, "stroke-dasharray": "6 4", class: "model-tour" }, true));
        legend.push(["#e8912d", `model's tour (${fmt(a.modelLength, 3)})`]);
      }
      board.append(polyline(a.tour, { stroke: "#2f6fde", "stroke-width": 2.5, class: "tour" }, true));
      legend.push(["#2f6fde", `${a.modelTour ? "polished tour" : "tour"} (${fmt(a.length, 3)})`]);
      if (a.exactTour && a.exactLength < a.length - 1e-9) {
        board.append(polyline(a.exactTour, { stroke: "#1a7f37", "stroke-width": 1.5, "stroke-dasharray": "2 3", class: "exact-tour" }, true));
        legend.push(["#1a7f37", `optimal tour (${fmt(a.exactLength, 3)})`]);
      }
    } else if (a && a.kind === "convex-hull") {
      if (a.exactHull && !a.matches) {
        board.append(polyline(a.exactHull, { stroke: "#1a7f37", "stroke-width": 1.5, "stroke-dasharray": "2 3" }, true));
        legend.push(["#1a7f37", "exact hull"]);
      }
      board.append(polyline(a.hull, { stroke: "#2f6fde", "stroke-width": 2.5, fill: "rgba(47,111,222,0.08)", class: "hull" }, true));
      legend.push(["#2f6fde", "model's hull"]);
    } else if (a && a.kind === "delaunay") {
      const exact = new Set((a.exactTriangles || []).map(key));
      for (const t of a.exactTriangles || []) {
        if (!a.modelKeys.has(key(t))) board.append(polyline(t, { stroke: "#1a7f37", "stroke-width": 1.2, "stroke-dasharray": "2 3" }, true));
      }
      for (const t of a.triangles) {
        const wrong = a.exactTriangles && !exact.has(key(t));
        board.append(polyline(t, { stroke: wrong ? "#b42318" : "#2f6fde", "stroke-width": 1.6, class: "triangle" }, true));
      }
      legend.push(["#2f6fde", "model's triangles"]);
      if (a.exactTriangles) legend.push(["#b42318", "not Delaunay"], ["#1a7f37", "missed Delaunay triangle"]);
    }
    state.points.forEach((p, i) => {
      const [x, y] = toPx(p);
      board.append(svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 4.5, fill: "#1d232b", class: "point" }));
      if (state.points.length <= 60) {
        const label = svg("text", { x: (x + 6).toFixed(1), y: (y - 6).toFixed(1), "font-size": 10, fill: "#5c6773" });
        label.textContent = state.tsplib ? state.tsplib.ids[i] : i;
        board.append(label);
      }
    });
    $("legend").replaceChildren(...legend.map(([color, text]) => el("span", {}, el("i", { class: "swatch", style: `border-color:${color}` }), text)));
    $("board-hint").textContent = `${state.points.length} points` + (state.tsplib ? ` · ${state.tsplib.name} (TSPLIB)` : "");
  }

  board.addEventListener("click", (event) => {
    const rect = board.getBoundingClientRect();
    const px = ((event.clientX - rect.left) * SIZE) / rect.width, py = ((event.clientY - rect.top) * SIZE) / rect.height;
    if (state.tsplib) clearAll(); // clicking starts a new instance of your own
    const [x, y] = transform().toWorld([px, py]);
    if (event.shiftKey) {
      if (!state.points.length) return;
      let best = 0;
      state.points.forEach((p, i) => { if (dist(p, [x, y]) < dist(state.points[best], [x, y])) best = i; });
      state.points.splice(best, 1);
    } else {
      state.points.push([round(x), round(y)]);
    }
    state.answer = null;
    draw();
  });

  function clearAll() {
    state.points = [];
    state.tsplib = null;
    state.answer = null;
    $("tsplib").value = "";
    $("tsplib-name").textContent = "";
    $("stats").replaceChildren();
    showError("error", null);
  }

  $("clear").addEventListener("click", () => { clearAll(); draw(); });
  $("random").addEventListener("click", () => {
    clearAll();
    const n = Math.max(3, Math.min(200, parseInt($("random-n").value, 10) || 10));
    for (let i = 0; i < n; i++) state.points.push([round(Math.random()), round(Math.random())]);
    draw();
  });
  $("problem").addEventListener("change", () => {
    $("polish-label").style.display = $("problem").value === "tsp" ? "" : "none";
  });
  $("tsplib").addEventListener("change", async () => {
    const file = $("tsplib").files[0];
    if (!file) return;
    const text = await file.text();
    const parsed = parseTsplib(text);
    state.points = parsed.coords;
    state.tsplib = { ...parsed, file };
    state.answer = null;
    $("problem").value = "tsp";
    $("tsplib-name").textContent = `${file.name}: ${parsed.name || "unnamed"}, ${parsed.coords.length} nodes, ${parsed.type || "?"}`;
    $("stats").replaceChildren();
    showError("error", null);
    draw();
  });

  // ------------------------------------------------------------------ solving
  $("solve").addEventListener("click", () => solve().catch(() => {}));

  async function solve() {
    showError("error", null);
    const problem = $("problem").value;
    const options = {
      decode: $("decode").value,
      beam_width: parseInt($("beam-width").value, 10),
      samples: parseInt($("samples").value, 10),
    };
    await busy($("solve"), $("result"), async () => {
      try {
        if (state.tsplib && problem === "tsp") return await solveTsplib(options);
        const body = { points: state.points, ...options };
        if (problem === "tsp") body.polish = $("polish").checked;
        const response = await call("pointer", `/${problem}`, { json: body });
        state.answer = answerOf(problem, response);
        draw();
        stats(state.answer, response);
      } catch (e) {
        showError("error", e);
        throw e;
      }
    });
  }

  async function solveTsplib(options) {
    const form = new FormData();
    form.append("file", state.tsplib.file, state.tsplib.file.name);
    for (const [k, v] of Object.entries(options)) form.append(k, String(v));
    form.append("polish", String($("polish").checked));
    const response = await call("pointer", "/tsplib", { form });
    const index = new Map(state.tsplib.ids.map((id, i) => [id, i]));
    const tour = response.tour.map((id) => index.get(id));
    state.answer = { kind: "tsp", tour, length: response.length, modelTour: null, modelLength: response.model_length, count: tour.length };
    draw();
    stats(state.answer, response, true);
  }

  function answerOf(problem, r) {
    const n = state.points.length;
    if (problem === "tsp") {
      const a = { kind: "tsp", tour: r.tour, length: r.length, modelTour: r.model_tour, modelLength: r.model_length ?? r.length, count: r.tour.length };
      if (n <= EXACT_TSP_MAX) Object.assign(a, heldKarp(state.points));
      return a;
    }
    if (problem === "convex-hull") {
      const exactHull = convexHull(state.points);
      const same = exactHull.length === r.hull.length && exactHull.every((i) => r.hull.includes(i));
      return { kind: problem, hull: r.hull, area: r.area, exactHull, exactArea: area(exactHull), matches: same, count: r.hull.length };
    }
    const a = { kind: problem, triangles: r.triangles, modelKeys: new Set(r.triangles.map(key)), count: r.triangles.length };
    if (n <= EXACT_DELAUNAY_MAX) a.exactTriangles = delaunay(state.points);
    return a;
  }

  function stats(a, r, tsplibMode = false) {
    const rows = [["answer", `${a.count} ${a.kind === "delaunay" ? "triangles" : "points"}`, "answer-count"]];
    if (a.kind === "tsp") {
      rows.push(["length" + (tsplibMode ? " (instance metric)" : ""), fmt(a.length), "length"]);
      rows.push(["model's length (before polishing)", a.modelLength === null || a.modelLength === undefined ? "—" : fmt(a.modelLength), "model-length"]);
      if (a.exactLength !== undefined) {
        rows.push(["optimal length (Held–Karp, here)", fmt(a.exactLength), "exact-length"]);
        rows.push(["gap of the model's tour", gap(a.modelLength, a.exactLength), "model-gap"]);
        rows.push(["gap of the answer", gap(a.length, a.exactLength), "gap"]);
      } else {
        rows.push(["optimal length", `— (computed here for ≤ ${EXACT_TSP_MAX} points)`, "exact-length"]);
      }
    } else if (a.kind === "convex-hull") {
      rows.push(["area", fmt(r.area), "length"]);
      rows.push(["exact hull (here)", `${a.exactHull.length} vertices, area ${fmt(a.exactArea)}`, "exact-length"]);
      rows.push(["model's hull is exact", a.matches ? "yes" : "no", "gap"]);
      rows.push(["area ratio model / exact", a.exactArea > 0 ? fmt(r.area / a.exactArea) : "—", "model-gap"]);
    } else if (a.exactTriangles) {
      const exact = new Set(a.exactTriangles.map(key));
      const hit = a.triangles.filter((t) => exact.has(key(t))).length;
      rows.push(["Delaunay triangles (here)", String(a.exactTriangles.length), "exact-length"]);
      rows.push(["of them found by the model", `${hit} (${Studio.pct(hit / Math.max(1, a.exactTriangles.length))})`, "gap"]);
    }
    rows.push(["model", `${r.model.name} v${r.model.version}`, "model"]);
    rows.push(["time in the service", `${fmt(r.solve_ms, 1)} ms (batch of ${r.batch_size})`, "solve-ms"]);
    $("stats").replaceChildren(...rows.flatMap(([k, v, id]) => [el("dt", {}, k), el("dd", { id }, v)]));
  }

  function gap(value, best) {
    if (value === null || value === undefined || !(best > 0)) return "—";
    return `${((100 * (value - best)) / best).toFixed(2)}%`;
  }

  // ------------------------------------------------------------------ exact answers, computed here
  function dist(p, q) {
    return Math.hypot(p[0] - q[0], p[1] - q[1]);
  }

  function round(x) {
    return Math.round(x * 1e4) / 1e4;
  }

  function key(t) {
    return [...t].sort((a, b) => a - b).join(",");
  }

  /** The optimal closed tour by Held–Karp dynamic programming: O(2^n n²), instant for n ≤ 12. */
  function heldKarp(points) {
    const n = points.length, full = 1 << (n - 1);
    const d = points.map((p) => points.map((q) => dist(p, q)));
    const cost = new Float64Array(full * n).fill(Infinity), parent = new Int8Array(full * n).fill(-1);
    for (let j = 1; j < n; j++) cost[(1 << (j - 1)) * n + j] = d[0][j];
    for (let set = 1; set < full; set++) {
      for (let j = 1; j < n; j++) {
        const bit = 1 << (j - 1);
        if (!(set & bit) || cost[set * n + j] === Infinity) continue;
        for (let k = 1; k < n; k++) {
          const kb = 1 << (k - 1);
          if (set & kb) continue;
          const next = set | kb, c = cost[set * n + j] + d[j][k];
          if (c < cost[next * n + k]) { cost[next * n + k] = c; parent[next * n + k] = j; }
        }
      }
    }
    let best = Infinity, last = 1;
    for (let j = 1; j < n; j++) {
      const c = cost[(full - 1) * n + j] + d[j][0];
      if (c < best) { best = c; last = j; }
    }
    const tour = [];
    for (let set = full - 1, j = last; j > 0;) {
      tour.push(j);
      const p = parent[set * n + j];
      set &= ~(1 << (j - 1));
      j = p;
    }
    tour.push(0);
    return { exactLength: best, exactTour: tour.reverse() };
  }

  function cross(o, a, b) {
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  }

  /** Strict convex hull vertices (Andrew's monotone chain; points on an edge are not vertices). */
  function convexHull(points) {
    const idx = points.map((_, i) => i).sort((a, b) => points[a][0] - points[b][0] || points[a][1] - points[b][1]);
    const half = (order) => {
      const out = [];
      for (const i of order) {
        while (out.length >= 2 && cross(points[out[out.length - 2]], points[out[out.length - 1]], points[i]) <= 0) out.pop();
        out.push(i);
      }
      out.pop();
      return out;
    };
    return [...half(idx), ...half([...idx].reverse())];
  }

  function area(polygon) {
    let s = 0;
    polygon.forEach((i, k) => {
      const p = state.points[i], q = state.points[polygon[(k + 1) % polygon.length]];
      s += p[0] * q[1] - q[0] * p[1];
    });
    return Math.abs(s) / 2;
  }

  /** Delaunay triangles by definition: every triangle whose circumcircle holds no other point. */
  function delaunay(points) {
    const n = points.length, out = [];
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) for (let k = j + 1; k < n; k++) {
      let [a, b, c] = [points[i], points[j], points[k]];
      const orient = cross(a, b, c);
      if (Math.abs(orient) < 1e-12) continue;
      if (orient < 0) [b, c] = [c, b];
      let empty = true;
      for (let m = 0; m < n && empty; m++) {
        if (m === i || m === j || m === k) continue;
        if (inCircle(a, b, c, points[m]) > 1e-12) empty = false;
      }
      if (empty) out.push([i, j, k]);
    }
    return out;
  }

  function inCircle(a, b, c, d) {
    const [ax, ay, bx, by, cx, cy] = [a[0] - d[0], a[1] - d[1], b[0] - d[0], b[1] - d[1], c[0] - d[0], c[1] - d[1]];
    return (ax * ax + ay * ay) * (bx * cy - cx * by) - (bx * bx + by * by) * (ax * cy - cx * ay) + (cx * cx + cy * cy) * (ax * by - bx * ay);
  }

  // ------------------------------------------------------------------ TSPLIB, for drawing
  /** NAME, EDGE_WEIGHT_TYPE and NODE_COORD_SECTION of a .tsp file (the server parses it for solving). */
  function parseTsplib(text) {
    const out = { name: "", type: "", ids: [], coords: [] };
    let inCoords = false;
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.trim();
      if (!line) continue;
      const header = line.match(/^([A-Z_]+)\s*:\s*(.*)$/);
      if (header) {
        if (header[1] === "NAME") out.name = header[2];
        if (header[1] === "EDGE_WEIGHT_TYPE") out.type = header[2];
        inCoords = false;
        continue;
      }
      if (line === "NODE_COORD_SECTION") { inCoords = true; continue; }
      if (/^[A-Z_]+$/.test(line)) { inCoords = false; continue; }
      if (inCoords) {
        const [id, x, y] = line.split(/\s+/).map(Number);
        out.ids.push(id);
        out.coords.push(out.type === "GEO" ? [y, x] : [x, y]); // GEO: latitude, longitude → x = longitude
      }
    }
    return out;
  }

  Studio.pageHeader("pointer");
  draw();
  window.pointerPage = { state, heldKarp, convexHull, delaunay };
})();
