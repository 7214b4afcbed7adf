"""Pointer-Net solver pipelines: convex hull, Delaunay triangulation and TSP on uniform random points.

    python -m pipelines.pointer train --preset am-tsp20
    python -m pipelines.pointer evaluate --preset am-tsp20
    python -m pipelines.pointer report --data data/combinatorial   # the README's tables
    ray job submit --address http://127.0.0.1:8265 -- python -m pipelines.pointer train --preset quick-tsp

Training is supervised (teacher forcing on exact labels, as in Vinyals et al.) or, for the attention
model, REINFORCE with a greedy-rollout baseline (Kool et al.): the baseline is a frozen copy of the
policy, replaced after an epoch when the policy's greedy tours are significantly shorter on a fixed
set (one-sided paired t-test, α = 0.05); the first epoch uses an exponential moving average instead.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.common import cli
from pipelines.common.contract import Domain, Evaluation, Pipeline, TrainPreset
from pipelines.common.tracking import suite_home
from services.pointer import data as pdata
from services.pointer import problems
from services.pointer.decoding import greedy, rollout, teacher_forcing, tour_lengths
from services.pointer.models import PointerConfig
from services.pointer.solver import Options, solve_many

log = logging.getLogger("attention_suite.pointer")


@dataclass
class PointerPreset(TrainPreset):
    task: str = "tsp"  # tsp | convex_hull | delaunay
    kind: str = "attention"  # attention | ptrnet
    training: str = "supervised"  # supervised | reinforce
    hidden: int = 128
    layers: int = 3
    heads: int = 8
    ff_hidden: int = 512
    clip: float = 10.0
    n_min: int = 20  # training instances have n_min..n_max points (one size per batch)
    n_max: int = 20
    steps: int = 100  # optimizer steps per epoch (all workers together)
    dataset_size: int = 0  # supervised TSP: a fixed cached labelled set of this size (0: fresh data)
    eval_n: int = 20  # the size the champion comparison evaluates at
    eval_size: int = 500
    baseline_warmup_epochs: int = 1
    baseline_eval_size: int = 1000
    baseline_alpha: float = 0.05


def _p(**kw: Any) -> PointerPreset:
    return PointerPreset(**kw)


# fmt: off
PRESETS: dict[str, PointerPreset] = {
    p.name: p
    for p in (
        # for tests: seconds
        _p(name="tiny-tsp", task="tsp", kind="attention", training="reinforce", hidden=32, layers=1,
           heads=4, ff_hidden=64, n_min=6, n_max=6, steps=4, batch_size=32, epochs=2, eval_n=6,
           eval_size=32, baseline_eval_size=64, lr=1e-3, log_every=2),
        _p(name="tiny-hull", task="convex_hull", kind="ptrnet", hidden=32, n_min=5, n_max=8, steps=4,
           batch_size=32, epochs=2, eval_n=6, eval_size=32, lr=1e-3, log_every=2),
        # make up: a couple of minutes each, good enough to answer
        _p(name="quick-tsp", task="tsp", kind="attention", training="reinforce", hidden=64, layers=2,
           heads=4, ff_hidden=256, n_min=10, n_max=10, steps=60, batch_size=128, epochs=3, eval_n=10,
           eval_size=200, baseline_eval_size=500, lr=1e-3),
        _p(name="quick-hull", task="convex_hull", kind="ptrnet", hidden=64, n_min=5, n_max=20, steps=100,
           batch_size=64, epochs=3, eval_n=10, eval_size=200, lr=2e-3),
        _p(name="quick-delaunay", task="delaunay", kind="ptrnet", hidden=64, n_min=5, n_max=8, steps=100,
           batch_size=64, epochs=3, eval_n=6, eval_size=200, lr=2e-3),
        # the published settings, sized for about an hour (or less) of this machine's 2 CPUs
        _p(name="am-tsp20", task="tsp", kind="attention", training="reinforce", n_min=20, n_max=20,
           steps=500, batch_size=256, epochs=24, eval_n=20, eval_size=1000, lr=1e-3, grad_clip=1.0),
        _p(name="ptrnet-tsp10", task="tsp", kind="ptrnet", hidden=256, n_min=5, n_max=10, steps=500,
           batch_size=128, epochs=12, eval_n=10, eval_size=1000, dataset_size=60_000, lr=1e-3,
           grad_clip=2.0),
        _p(name="ptrnet-hull50", task="convex_hull", kind="ptrnet", hidden=256, n_min=5, n_max=50,
           steps=500, batch_size=128, epochs=24, eval_n=50, eval_size=1000, lr=1e-3, grad_clip=2.0),
        _p(name="am-hull50", task="convex_hull", kind="attention", n_min=5, n_max=50, steps=500,
           batch_size=128, epochs=8, eval_n=50, eval_size=1000, lr=5e-4),
        _p(name="ptrnet-delaunay10", task="delaunay", kind="ptrnet", hidden=256, n_min=5, n_max=10,
           steps=500, batch_size=128, epochs=12, eval_n=10, eval_size=1000, lr=1e-3, grad_clip=2.0),
        _p(name="am-delaunay10", task="delaunay", kind="attention", n_min=5, n_max=10, steps=500,
           batch_size=128, epochs=8, eval_n=10, eval_size=1000, lr=5e-4),
    )
}
# fmt: on


def registered_name(task: str, kind: str) -> str:
    return f"pointer-{task.replace('_', '-')}-{kind}"


class PointerPipeline(Pipeline):
    domain = "pointer"
    presets = PRESETS
    builder = "services.pointer.models:build_model"
    predict = "services.pointer.solver:predict"

    preset: PointerPreset

    def __init__(self, preset: PointerPreset, data: str | None = None):
        super().__init__(preset, data)
        if preset.training == "reinforce" and preset.task != "tsp":
            raise ValueError("training='reinforce' is for the TSP (the other tasks have exact labels)")
        self.baseline: nn.Module | None = None
        self.baseline_ema: float | None = None

    @property
    def registered_name(self) -> str:
        return registered_name(self.preset.task, self.preset.kind)

    def model_config(self) -> dict[str, Any]:
        p = self.preset
        return PointerConfig(
            kind=p.kind,
            task=p.task,
            hidden=p.hidden,
            layers=p.layers,
            heads=p.heads,
            ff_hidden=p.ff_hidden,
            clip=p.clip,
        ).to_dict()

    def steps_per_epoch(self, world_size: int) -> int:
        return max(1, self.preset.steps // max(1, world_size))

    # ------------------------------------------------------------------------------------- data
    def _sizes(self, rng: np.random.Generator, count: int) -> list[int]:
        return rng.integers(self.preset.n_min, self.preset.n_max + 1, size=count).tolist()

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
        p = self.preset
        rng = np.random.default_rng([p.seed, epoch, rank])
        steps = self.steps_per_epoch(world_size)
        if p.dataset_size:  # a fixed labelled set (exact TSP labels are expensive), resampled per step
            blocks = self._fixed_dataset()
            for n in self._sizes(rng, steps):
                points, targets = blocks[n]
                idx = torch.from_numpy(rng.choice(len(points), size=p.batch_size, replace=False))
                yield points[idx], targets[idx]
            return
        for n in self._sizes(rng, steps):
            pts = problems.uniform_points(rng, p.batch_size, n)
            if p.training == "reinforce":
                yield torch.from_numpy(pts).float(), None
            else:
                yield pdata.labelled_batch(p.task, pts)

    def _fixed_dataset(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """``dataset_size`` labelled instances split evenly over the sizes n_min..n_max (cached on disk)."""
        if not hasattr(self, "_blocks"):
            p = self.preset
            cache = suite_home() / "cache" / "pointer"
            per_size = max(p.batch_size, p.dataset_size // (p.n_max - p.n_min + 1))
            self._blocks = {
                n: pdata.make_dataset(p.task, n, per_size, seed=1000 + n, cache_dir=cache)
                for n in range(p.n_min, p.n_max + 1)
            }
        return self._blocks

    # ------------------------------------------------------------------------------------- training
    def train_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        points, targets = batch
        if self.preset.training == "reinforce":
            return self._reinforce_step(model, points)
        log_likelihood = teacher_forcing(model, points, self.preset.task, targets)
        tokens = (targets >= 0).sum().clamp_min(1)
        return {"loss": -log_likelihood.sum() / tokens}

    def _reinforce_step(self, model: nn.Module, points: torch.Tensor) -> dict[str, Any]:
        tours, log_likelihood = rollout(model, points, "tsp", sample=True)
        cost = tour_lengths(points, tours)
        if self.baseline is None:  # warm-up: exponential moving average of the batch mean cost
            mean = float(cost.mean())
            self.baseline_ema = mean if self.baseline_ema is None else 0.8 * self.baseline_ema + 0.2 * mean
            baseline = torch.full_like(cost, self.baseline_ema)
        else:
            with torch.no_grad():
                baseline_tours, _ = greedy(self.baseline, points, "tsp")
                baseline = tour_lengths(points, baseline_tours)
        advantage = cost - baseline
        return {
            "loss": (advantage.detach() * log_likelihood).mean(),
            "cost": float(cost.mean()),
            "baseline": float(baseline.mean()),
        }

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        metrics = self._validate(model)
        if self.preset.training == "reinforce" and epoch + 1 >= self.preset.baseline_warmup_epochs:
            metrics.update(self._maybe_update_baseline(model))
        return metrics

    def _baseline_points(self) -> torch.Tensor:
        rng = np.random.default_rng([self.preset.seed, 4242])
        pts = problems.uniform_points(rng, self.preset.baseline_eval_size, self.preset.n_max)
        return torch.from_numpy(pts).float()

    @torch.no_grad()
    def _maybe_update_baseline(self, model: nn.Module) -> dict[str, float]:
        from scipy.stats import ttest_rel

        points = self._baseline_points()
        policy = tour_lengths(points, greedy(model, points, "tsp")[0]).numpy()
        if self.baseline is None:
            self.baseline = copy.deepcopy(model).eval()
            return {"baseline/updated": 1.0, "baseline/cost": float(policy.mean())}
        base = tour_lengths(points, greedy(self.baseline, points, "tsp")[0]).numpy()
        better = policy.mean() < base.mean()
        p_value = float(ttest_rel(policy, base).pvalue / 2) if better else 1.0
        if better and p_value < self.preset.baseline_alpha:
            self.baseline = copy.deepcopy(model).eval()
            return {
                "baseline/updated": 1.0,
                "baseline/cost": float(policy.mean()),
                "baseline/p_value": p_value,
            }
        return {"baseline/updated": 0.0, "baseline/cost": float(base.mean()), "baseline/p_value": p_value}

    def state_dict(self) -> dict[str, Any]:
        return {
            "baseline": None if self.baseline is None else self.baseline.state_dict(),
            "baseline_ema": self.baseline_ema,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline_ema = state.get("baseline_ema")
        if state.get("baseline") is not None:
            self.baseline = self.build_model().eval()
            self.baseline.load_state_dict(state["baseline"])

    # ------------------------------------------------------------------------------------- evaluation
    def _validate(self, model: nn.Module) -> dict[str, float]:
        """A quick greedy check on a fixed small set, every epoch."""
        p = self.preset
        pts, references = test_set(p.task, p.eval_n, min(200, p.eval_size), seed=777)
        with torch.no_grad():
            seqs, _ = greedy(model, torch.from_numpy(pts).float(), p.task)
        rows = [score_answer(p.task, pts[i], seqs[i].tolist(), references[i]) for i in range(len(pts))]
        return {f"val/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def evaluate(self, model: nn.Module) -> Evaluation:
        p = self.preset
        points, references = test_set(p.task, p.eval_n, p.eval_size)
        rows = evaluate_decode(model, p.task, points, references, Options("greedy"))
        summary = summarise(p.task, rows)
        primary, higher = PRIMARY[p.task]
        table = [{"task": p.task, "model": p.kind, "n": p.eval_n, "decode": "greedy", **summary}]
        figures = {"examples.png": draw_examples(p.task, points[:6], [r["answer"] for r in rows[:6]])}
        return Evaluation(summary, primary, higher, table, figures)


# ----------------------------------------------------------------------------------------- scoring
PRIMARY = {
    "tsp": ("gap_pct", False),
    "convex_hull": ("accuracy", True),
    "delaunay": ("triangle_coverage", True),
}


def reference_answer(task: str, points: np.ndarray) -> Any:
    if task == "tsp":
        return problems.solve_tsp(problems.distance_matrix(points))[0]
    if task == "convex_hull":
        return problems.convex_hull(points)
    return problems.delaunay_triangles(points)


@functools.lru_cache(maxsize=32)
def test_set(task: str, n: int, size: int, seed: int = 20151) -> tuple[np.ndarray, list[Any]]:
    """A fixed test set and its reference answers, cached on disk (exact TSP labels take a while);
    written atomically, as several workers may build the same set at once."""
    path = suite_home() / "cache" / "pointer" / f"test-{task}-n{n}-{size}-s{seed}.json"
    points = problems.uniform_points(np.random.default_rng(seed), size, n)
    if path.exists():
        return points, json.loads(path.read_text())["references"]
    references = [reference_answer(task, pts) for pts in points]
    if task == "delaunay":
        references = [[list(t) for t in ref] for ref in references]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"references": references}))
    tmp.replace(path)
    return points, references


def score_answer(task: str, points: np.ndarray, sequence: list[int], reference: Any) -> dict[str, float]:
    """Metrics of one decoded answer (reference=None computes it)."""
    from services.pointer.decoding import to_answer

    answer = to_answer(task, sequence, len(points))
    if reference is None:
        reference = reference_answer(task, points)
    if task == "tsp":
        length = problems.tour_length(points, answer)
        return {
            "length": length,
            "optimal": float(reference),
            "gap_pct": 100 * (length / reference - 1),
            "valid": float(problems.is_permutation(answer, len(points))),
        }
    if task == "convex_hull":
        m = problems.hull_metrics(points, answer, reference)
        return {"accuracy": m["exact"], "area_coverage": m["area_coverage"], "valid": m["valid"]}
    m = problems.delaunay_metrics(answer, reference)
    return {"accuracy": m["exact"], "triangle_coverage": m["triangle_coverage"]}


def evaluate_decode(
    model: nn.Module, task: str, points: np.ndarray, references: list[Any], options: Options, batch: int = 256
) -> list[dict[str, Any]]:
    """Score every instance with one decoding setting (through the same solver the service uses)."""
    rows = []
    for start in range(0, len(points), batch):
        chunk = list(points[start : start + batch])
        answers = solve_many(model, task, chunk, options)
        for pts, ans, ref in zip(chunk, answers, references[start : start + batch]):
            seq = _sequence_of(task, ans, len(pts))
            rows.append({**score_answer(task, pts, seq, ref), "answer": ans})
    return rows


def _sequence_of(task: str, answer: dict[str, Any], n: int) -> list[int]:
    if task == "tsp":
        return answer["tour"]
    if task == "convex_hull":
        return [*answer["hull"], n]
    return [i for tri in answer["triangles"] for i in tri] + [n]


def summarise(task: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k in rows[0] if k != "answer"]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    if task == "convex_hull":  # area coverage over valid outputs only, as in the paper
        valid = [r["area_coverage"] for r in rows if r["valid"]]
        summary["area_coverage"] = float(np.mean(valid)) if valid else 0.0
    if task == "tsp":  # gap of the mean lengths, the paper's way of comparing
        summary["gap_pct"] = 100 * (summary["length"] / summary["optimal"] - 1)
    return summary


def draw_examples(task: str, points: np.ndarray, answers: list[dict[str, Any]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(2.6 * len(points), 2.8), squeeze=False)
    for ax, pts, ans in zip(axes[0], points, answers):
        ax.scatter(pts[:, 0], pts[:, 1], s=10, color="black", zorder=3)
        if task == "tsp":
            cyc = [*ans["tour"], ans["tour"][0]]
            ax.plot(pts[cyc, 0], pts[cyc, 1], color="tab:blue")
            ax.set_title(f"length {ans['length']:.3f}", fontsize=8)
        elif task == "convex_hull":
            cyc = [*ans["hull"], ans["hull"][0]]
            ax.fill(pts[cyc, 0], pts[cyc, 1], alpha=0.25, color="tab:green")
            ax.plot(pts[cyc, 0], pts[cyc, 1], color="tab:green")
        else:
            for tri in ans["triangles"]:
                cyc = [*tri, tri[0]]
                ax.plot(pts[cyc, 0], pts[cyc, 1], color="tab:purple", linewidth=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------- report
def _report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder with convex_hull_5_test.txt and tsplib/ (optional)")
    parser.add_argument("--size", type=int, default=1000, help="test instances per (task, n)")
    parser.add_argument("--out", default=None, help="also write the markdown tables to this file")


def _report(args: argparse.Namespace) -> int:
    from pipelines.pointer_report import run_report

    return run_report(args)


DOMAIN = Domain("pointer", (PointerPipeline,))


def main(argv: list[str] | None = None) -> int:
    return cli.main(DOMAIN, argv, extra={"report": (_report_args, _report)})


if __name__ == "__main__":
    sys.exit(main())
