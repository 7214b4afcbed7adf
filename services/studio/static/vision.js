// The vision page: a drawing pad (or an uploaded image) → POST /vision/classify (multipart) for the top-k
// and POST /vision/explain for the Grad-CAM PNG, shown over the image with an opacity slider.
"use strict";

(() => {
  const { el, call, busy, showError, pct } = Studio;
  const $ = (id) => document.getElementById(id);
  const pad = $("pad"), ctx = pad.getContext("2d");
  const state = { upload: null, drawn: false, models: {} };

  function blank() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    state.upload = null;
    state.drawn = false;
    $("heatmap").hidden = true;
  }

  // ------------------------------------------------------------------ drawing
  let last = null;
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    if (state.upload) blank(); // drawing starts over on an uploaded image
    last = at(e);
    pad.setPointerCapture(e.pointerId);
    stroke(last, last);
  });
  pad.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = at(e);
    stroke(last, p);
    last = p;
  });
  const end = () => { last = null; };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);

  function stroke(a, b) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 22;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
    state.drawn = true;
    $("heatmap").hidden = true;
  }

  $("clear").addEventListener("click", () => { blank(); $("image").value = ""; });
  $("opacity").addEventListener("input", () => { $("heatmap").style.opacity = $("opacity").value / 100; });

  $("image").addEventListener("change", async () => {
    const file = $("image").files[0];
    if (!file) return;
    blank();
    state.upload = file;
    try {
      const bitmap = await createImageBitmap(file);
      const s = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
      const w = bitmap.width * s, h = bitmap.height * s;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    } catch (_) {
      // the browser cannot decode it: the API will say why when it is sent
      ctx.fillStyle = "#888";
      ctx.fillText(`${file.name} (no preview)`, 10, 20);
    }
  });

  /** What is sent: the uploaded file as it is, or the pad as a PNG. */
  function image() {
    if (state.upload) return Promise.resolve([state.upload, state.upload.name]);
    return new Promise((resolve) => pad.toBlob((blob) => resolve([blob, "digit.png"]), "image/png"));
  }

  // ------------------------------------------------------------------ models and classification
  async function loadModels() {
    try {
      state.models = await call("vision", "/models");
    } catch (e) {
      showError("error", e);
      return;
    }
    const select = $("model");
    select.replaceChildren(...Object.entries(state.models).map(([key, m]) =>
      el("option", { value: key, disabled: m.error ? true : null }, `${key} — ${m.arch || m.error || m.name}`)));
    describe();
  }

  function describe() {
    const m = state.models[$("model").value];
    $("model-info").textContent = !m ? "" : m.error ? m.error
      : `${m.name} v${m.version}: ${m.arch}, input ${m.input_size.join("×")}, ${m.labels.length} labels`;
  }
  $("model").addEventListener("change", describe);

  $("classify").addEventListener("click", () => classify().catch(() => {}));

  async function classify() {
    showError("error", null);
    await busy($("classify"), $("result"), async () => {
      try {
        const [blob, name] = await image();
        const form = (extra) => {
          const f = new FormData();
          f.append("file", blob, name);
          f.append("model", $("model").value);
          for (const [k, v] of Object.entries(extra)) f.append(k, v);
          return f;
        };
        const result = await call("vision", "/classify", { form: form({ top_k: $("top-k").value }) });
        renderLabels(result);
        const explained = await call("vision", "/explain", { form: form({}), as: "blob" });
        const src = URL.createObjectURL(explained.blob);
        for (const img of [$("heatmap"), $("explain-image")]) {
          img.src = src;
          img.hidden = false;
        }
        $("heatmap").style.opacity = $("opacity").value / 100;
        $("explain-info").textContent = `Grad-CAM of label ${explained.headers.get("X-Label")} (${explained.headers.get("X-Model")}), red = most attended`;
      } catch (e) {
        showError("error", e);
        throw e;
      }
    });
  }

  function renderLabels(r) {
    const top = r.labels[0];
    $("stats").replaceChildren(
      el("dt", {}, "top label"), el("dd", { id: "top-label" }, top ? top.label : "—"),
      el("dt", {}, "probability"), el("dd", { id: "top-probability" }, top ? pct(top.probability) : "—"),
      el("dt", {}, "model"), el("dd", { id: "answered-by" }, `${r.model.name} v${r.model.version}`),
      el("dt", {}, "input"), el("dd", {}, `${r.input_size.join("×")} (batch of ${r.batch_size})`));
    $("labels").replaceChildren(
      el("tr", {}, el("th", {}, "label"), el("th", {}, "probability"), el("th", {}, "")),
      ...r.labels.map((l) => el("tr", { class: "label-row", "data-label": l.label },
        el("td", { class: "mono" }, l.label), el("td", {}, pct(l.probability)),
        el("td", { class: "bar-cell" }, el("span", { class: "bar", style: `width:${Math.max(1, 150 * l.probability)}px` })))));
  }

  blank();
  Studio.pageHeader("vision");
  loadModels();
  window.visionPage = { state };
})();
