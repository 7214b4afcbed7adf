"""Long context on CPU: forward time and peak memory of HyenaDNA against lightning blocks (decayed linear
attention) and a softmax and a sigmoid transformer of the same width and depth, from 1k to 1M tokens, with
fitted growth exponents; and the whole phage lambda genome (48.5 kb) embedded in one pass.

    python -m benchmarks.genomics_long [--write] [--lengths 1024 8192 ...] [--budget-s 300]

Method: every (model, length) runs in a fresh subprocess (so peak memory is its own): build the model
(random weights; speed and memory do not depend on them) with ``l_max`` = length + 2, warm up at
min(1k, length), then run forward passes at the length under ``torch.no_grad`` (batch 1, float32, all
cores), timed as the median of up to 3; peak memory = the process's peak resident set (``VmHWM``) minus
its resident set just before the timed forward. A run is skipped when the previous length's time, grown by
the exponent fitted so far, predicts more than ``--budget-s``, or when it runs out of memory (reported).
The softmax transformer uses PyTorch's CPU scaled-dot-product attention (causal, flash-style, so its memory
grows linearly and its time quadratically); the sigmoid one the core's row-blocked sigmoid attention (memory
bounded by the block, time quadratic); lightning the core's chunked causal form (time and memory linear).
Exponents: least squares of log(time) and log(memory) on log(length) over the lengths from 8k up.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time

import numpy as np

log = logging.getLogger("benchmarks.genomics_long")

LENGTHS = [1024, 8192, 32768, 131072, 1048576]
# name -> the GenomicsConfig fields that make the model (the rest is shared: width, depth, heads, l_max)
MODELS = {
    "HyenaDNA": {"arch": "hyena"},
    "lightning": {"arch": "lightning"},
    "transformer": {"arch": "transformer"},
    "sigmoid transformer": {"arch": "transformer", "attention": "sigmoid"},
}


def _child(model: dict, length: int, width: int, layers: int, repeats: int) -> dict:
    """Runs in the subprocess."""
    import torch

    from services.genomics.models import GenomicsConfig, GenomicsModel

    cfg = GenomicsConfig(d_model=width, n_layer=layers, num_heads=4, l_max=length + 2, embed_dropout=0.0, **model)
    model = GenomicsModel(cfg).eval()
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        warm = torch.randint(7, 11, (1, min(1024, length)), generator=rng)
        model.hidden(warm)
        ids = torch.randint(7, 11, (1, length), generator=rng)
        before = _rss_kb("VmRSS")
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.hidden(ids)
            times.append(time.perf_counter() - start)
            if times[-1] > 60:  # long runs: one is enough
                break
    return {"seconds": float(np.median(times)), "peak_mib": (_rss_kb("VmHWM") - before) / 1024}


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_one(model: dict, length: int, width: int, layers: int, timeout_s: float) -> dict:
    code = (
        "import json, sys; from benchmarks.genomics_long import _child; "
        f"print('RESULT', json.dumps(_child({model!r}, {length}, {width}, {layers}, 3)))"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": f"over {timeout_s:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return {"status": "ok", **json.loads(line[7:])}
    tail = (done.stderr or "").strip().splitlines()[-1:] or ["killed"]
    oom = done.returncode in (-9, 137) or "memory" in tail[0].lower()
    return {"status": "out of memory" if oom else f"failed: {tail[0][:80]}"}


def exponent(lengths: list[int], values: list[float]) -> float:
    if len(lengths) < 2:
        return float("nan")
    return float(np.polyfit(np.log(lengths), np.log(values), 1)[0])


def sweep(lengths: list[int], width: int, layers: int, budget_s: float) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    for name, model in MODELS.items():
        rows: list[dict] = []
        for length in lengths:
            ok = [r for r in rows if r["status"] == "ok"]
            if ok and ok[-1]["length"] != rows[-1]["length"]:
                why = "skipped" if rows[-1]["status"].startswith("skipped") else "failed"
                rows.append({"length": length, "status": f"skipped (a shorter length {why})"})
                continue
            if len(ok) >= 2:
                k = exponent([r["length"] for r in ok[-2:]], [r["seconds"] for r in ok[-2:]])
                predicted = ok[-1]["seconds"] * (length / ok[-1]["length"]) ** k
                if predicted * 2 > budget_s:  # warm-up + one timed pass
                    rows.append({"length": length, "status": f"skipped (predicted {predicted:.0f} s)"})
                    continue
            log.info("%s at %d tokens", name, length)
            rows.append({"length": length, **run_one(model, length, width, layers, timeout_s=budget_s * 2 + 60)})
            log.info("  %s", rows[-1])
        results[name] = rows
    return results


def lambda_one_pass(width: int, layers: int) -> dict:
    """Embed the whole lambda genome in one forward (HyenaDNA, l_max = genome + 2)."""
    from pipelines.genomics.data import LAMBDA
    from services.genomics.sequences import read_fasta

    genome = read_fasta(LAMBDA)[0].sequence
    code = (
        "import json, time, torch; from services.genomics.models import GenomicsConfig, GenomicsModel; "
        "from services.genomics.sequences import read_fasta; from pipelines.genomics.data import LAMBDA; "
        "g = read_fasta(LAMBDA)[0].sequence; "
        f"m = GenomicsModel(GenomicsConfig(d_model={width}, n_layer={layers}, l_max=len(g) + 2, "
        "embed_dropout=0.0)).eval(); ids, mask = m.tokenizer.batch([g], add_special=False); "
        "torch.set_grad_enabled(False); t = time.perf_counter(); vec = m.pooled(ids, mask); "
        "print('RESULT', json.dumps({'seconds': time.perf_counter() - t, 'dim': vec.shape[-1]}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return {"bases": len(genome), **json.loads(line[7:])}
    return {"bases": len(genome), "error": (done.stderr or "").strip().splitlines()[-1:]}


def report(results: dict[str, list[dict]], one_pass: dict, width: int, layers: int) -> str:
    from benchmarks.common import provenance

    lengths = sorted({r["length"] for rows in results.values() for r in rows})
    lines = [
        "## Genomics: long context on CPU (HyenaDNA vs lightning vs softmax and sigmoid transformers)",
        "",
        provenance(),
        f"Every model {layers} layers × {width} wide (HyenaDNA tiny's shape), batch 1, float32, forward only. "
        "Rerun: `python -m benchmarks.genomics_long --write`. Method in the module docstring.",
        "",
        "| tokens | " + " | ".join(f"{n} s | {n} peak MiB" for n in results) + " |",
        "|---:|" + "---:|---:|" * len(results),
    ]
    for length in lengths:
        cells = []
        for rows in results.values():
            r = next(r for r in rows if r["length"] == length)
            if r["status"] == "ok":
                cells += [f"{r['seconds']:.3f}", f"{r['peak_mib']:.0f}"]
            else:
                cells += [r["status"], ""]
        lines.append(f"| {length:,} | " + " | ".join(cells) + " |")
    lines += ["", "Fitted growth exponents (lengths ≥ 8k): time ∝ Lᵏ, memory ∝ Lᵐ", ""]
    for name, rows in results.items():
        ok = [r for r in rows if r["status"] == "ok" and r["length"] >= 8192]
        lens = [r["length"] for r in ok]
        k = exponent(lens, [r["seconds"] for r in ok])
        m = exponent(lens, [max(r["peak_mib"], 1e-3) for r in ok])
        lines.append(f"- {name}: k = {k:.2f}, m = {m:.2f} (over {len(ok)} lengths)")
    hyena = {r["length"]: r for r in results["HyenaDNA"] if r["status"] == "ok"}
    for name, rows in results.items():
        both = [r for r in rows if r["status"] == "ok" and r["length"] in hyena and name != "HyenaDNA"]
        if both:
            r = both[-1]
            ratio = r["seconds"] / hyena[r["length"]]["seconds"]
            lines.append(f"- at {r['length']:,} tokens {name} takes {ratio:.2f}× HyenaDNA's time")
    if "seconds" in one_pass:
        lines += ["", f"Whole phage lambda genome ({one_pass['bases']:,} bases) embedded in one HyenaDNA pass "
                      f"(l_max {one_pass['bases'] + 2:,}): {one_pass['seconds']:.2f} s, a {one_pass['dim']}-wide "
                      "vector."]  # fmt: skip
    else:
        lines += ["", f"Whole lambda genome in one pass failed: {one_pass.get('error')}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=300.0, help="skip a run predicted to take longer")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    started = time.time()
    results = sweep(args.lengths, args.width, args.layers, args.budget_s)
    one_pass = lambda_one_pass(args.width, args.layers)
    text = report(results, one_pass, args.width, args.layers)
    print(text)
    log.info("done in %.0f s", time.time() - started)
    if args.write:
        from benchmarks.common import write_section

        write_section("genomics_long", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
