"""Model forward speed on the CPU against an earlier commit's code: same weights, same inputs, same run.

    python -m benchmarks.model_speed [--baseline REV] [--reps 7] [--cases van_b0-1,...] [--write]

Each case (a model and an input size, inference mode, one torch thread) is timed in a fresh Python
process per code tree: this checkout and the case's baseline (``--baseline REV`` for every case, else the
case's own, below), exported with ``git archive`` into a temp dir. The
weights are this tree's seeded initialisation, saved once and loaded strictly into both, and the trees
alternate process by process, so a load that drifts during the run hits both. The figure is the ratio
ours / baseline of the median forward time (below 1: this code is faster). ``--write`` replaces the
``model_speed`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

from pipelines.common.tracking import markdown_table

from .common import ROOT, provenance, write_section


class Case(NamedTuple):
    """A model and input to time: expressions run inside the measured tree with torch imported."""

    build: str
    make_input: str
    baseline: str  # the commit compared with by default
    issue_ratio: float | None  # the kernels issue's ours/official forward time, measured at ISSUE_COMMIT
    own_weights: bool = False  # each tree times its own seeded initialisation (architectures differ): no output check


ISSUE_COMMIT = "8faecdf"
# Each case's baseline is ISSUE_COMMIT, the code the issue measured against the official implementations.
# BiFormer's architecture changed after it (the fidelity fix), so ISSUE_COMMIT cannot load today's weights: its
# same-weights cases compare with c55940d, the first commit with today's BiFormer, and its "-issue" cases time
# ISSUE_COMMIT's model on its own weights, timing only, which still chains with the issue's ratio to the official
# code (ours/official = ours/ISSUE_COMMIT x ISSUE_COMMIT/official, all at the same input).
CASES = {
    "van_b0-1": Case("vision('van_b0')", "torch.randn(1, 3, 224, 224)", ISSUE_COMMIT, 0.95),
    "van_b0-8": Case("vision('van_b0')", "torch.randn(8, 3, 224, 224)", ISSUE_COMMIT, 0.88),
    "biformer_tiny-1": Case("vision('biformer_tiny')", "torch.randn(1, 3, 224, 224)", "c55940d", None),
    "biformer_tiny-8": Case("vision('biformer_tiny')", "torch.randn(8, 3, 224, 224)", "c55940d", None),
    "biformer_tiny-1-issue": Case("vision('biformer_tiny')", "torch.randn(1, 3, 224, 224)", ISSUE_COMMIT, 1.09, True),
    "biformer_tiny-8-issue": Case("vision('biformer_tiny')", "torch.randn(8, 3, 224, 224)", ISSUE_COMMIT, 1.13, True),
    "hyena_tiny-4k": Case("hyena(4096)", "tokens(4096)", ISSUE_COMMIT, 1.04),
    "hyena_tiny-32k": Case("hyena(32768)", "tokens(32768)", ISSUE_COMMIT, 1.10),
}

# Runs in the measured tree (its own services/ on sys.path); prints one JSON line.
WORKER = """
import json, statistics, sys, time
import torch
torch.set_num_threads(1)
torch.manual_seed(0)

def vision(arch):
    import services.vision.models as vm
    return vm.build_model(vm.VisionConfig(arch=arch, num_classes=1000, in_chans=3, img_size=224))

def hyena(length):
    from services.genomics.models import GenomicsModel, preset
    return GenomicsModel(preset("tiny-1k", l_max=length + 2, head="lm"))

def tokens(length):
    return torch.randint(7, 11, (1, length))

def run(model, x):
    return model(x) if x.dtype != torch.long else model.hidden(x)

build, make_input, weights, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = eval(build).eval()
if weights.endswith(".new"):
    torch.save(model.state_dict(), weights[:-4])
else:
    model.load_state_dict(torch.load(weights), strict=True)
x = eval(make_input)
times = []
with torch.inference_mode():
    run(model, x)  # warm-up (allocations, caches)
    for _ in range(reps):
        start = time.perf_counter()
        out = run(model, x)
        times.append(time.perf_counter() - start)
print(json.dumps({"median_s": statistics.median(times), "checksum": float(out.double().abs().mean())}))
"""


def export_tree(rev: str, into: Path) -> Path:
    """``rev``'s files (tracked, as committed) under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "tree.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), rev], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def short_rev(rev: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def time_case(tree: Path, case: str, weights: Path, reps: int) -> dict:
    build, make_input = CASES[case].build, CASES[case].make_input
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", WORKER, build, make_input, str(weights), str(reps)],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=1800)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{case} in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="the commit to compare every case with (default: each case's own)")
    parser.add_argument("--reps", type=int, default=7, help="timed forwards per process (median taken)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per tree and case, alternating")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--write", action="store_true", help="replace the model_speed section of RESULTS.md")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"error: unknown cases {unknown}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees: dict[str, Path] = {}
        issue_rev = short_rev(ISSUE_COMMIT)
        for i, case in enumerate(cases, 1):
            rev = short_rev(args.baseline or CASES[case].baseline)
            if rev not in trees:
                trees[rev] = export_tree(rev, Path(tmp) / rev)
            weights = Path(tmp) / f"{case}.pt"
            time_case(ROOT, case, Path(f"{weights}.new"), 1)  # this tree's initialisation, saved
            their_weights = weights
            if CASES[case].own_weights:
                their_weights = Path(tmp) / f"{case}-{rev}.pt"
                time_case(trees[rev], case, Path(f"{their_weights}.new"), 1)
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(time_case(ROOT, case, weights, args.reps))
                theirs.append(time_case(trees[rev], case, their_weights, args.reps))
            same = abs(ours[0]["checksum"] - theirs[0]["checksum"]) <= 1e-4 * max(1e-12, abs(theirs[0]["checksum"]))
            same = "n/a (own weights)" if CASES[case].own_weights else same
            a, b = min(o["median_s"] for o in ours), min(t["median_s"] for t in theirs)
            official = CASES[case].issue_ratio if rev == issue_rev else None
            derived = round(a / b * official, 2) if official is not None else "-"
            rows.append({"case": case, "ours_ms": round(a * 1e3, 1), "baseline_ms": round(b * 1e3, 1), "baseline": rev,
                         "ratio": round(a / b, 3), "same_output": same, "issue_ours_per_official": official or "-",
                         "ours_per_official_derived": derived})  # fmt: skip
            print(f"[{i}/{len(cases)}] {case}: ours {a * 1e3:.1f} ms, {rev} {b * 1e3:.1f} ms, ratio {a / b:.3f}")
    table = markdown_table(rows)
    print(table)
    if args.write:
        write_section(
            "model_speed",
            f"## Model forward speed against earlier code (CPU, one thread)\n\n{provenance()} Best of {args.rounds} "
            f"processes per tree, each the median of {args.reps} forwards after a warm-up, the trees alternating; "
            "ratio = ours / baseline (below 1: faster). `issue_ours_per_official` is the kernels issue's "
            "measurement of the baseline code against the official implementation; `derived` multiplies the "
            "two, an estimate, since the official code is not on this machine. `python -m benchmarks.model_speed "
            f"{'--baseline ' + args.baseline + ' ' if args.baseline else ''}--write`.\n\n{table}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
