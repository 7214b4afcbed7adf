"""The attention model on the TSP trained by REINFORCE with a greedy-rollout baseline (Kool et al., 2019).

The baseline is a frozen copy of the policy, replaced after an epoch when the policy's greedy tours are
significantly shorter on a fixed set (one-sided paired t-test, α = ``baseline_alpha``); until the first
copy exists, an exponential moving average of the batch's mean cost stands in.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from services.pointer import problems
from services.pointer.models import PointerConfig
from services.pointer.search import greedy, rollout, tour_lengths

from .base import PointerPipeline, PointerPreset


@dataclass
class ReinforcePreset(PointerPreset):
    baseline_warmup_epochs: int = 1  # epochs before the first rollout baseline (the moving average until then)
    baseline_eval_size: int = 1000  # instances of the fixed set the t-test compares policy and baseline on
    baseline_alpha: float = 0.05


# fmt: off
PRESETS: dict[str, ReinforcePreset] = {
    p.name: p
    for p in (
        # for tests: seconds
        ReinforcePreset(name="tiny-tsp", about="attention model TSP, 6 cities (tests, seconds)",
                        model=PointerConfig(kind="attention", task="tsp", hidden=32, layers=1, heads=4, ff_hidden=64),
                        n_min=6, n_max=6, steps=4, batch_size=32, epochs=2, eval_n=6, eval_size=32,
                        baseline_eval_size=64, lr=1e-3, log_every=2),
        # make up: a couple of minutes, good enough to answer
        ReinforcePreset(name="quick-tsp", about="attention model TSP, 10 cities (make up, minutes)",
                        model=PointerConfig(kind="attention", task="tsp", hidden=64, layers=2, heads=4,
                                            ff_hidden=256),
                        n_min=10, n_max=10, steps=60, batch_size=128, epochs=3, eval_n=10, eval_size=200,
                        baseline_eval_size=500, lr=1e-3),
        # the published setting, sized for about an hour of this machine's 2 CPUs
        ReinforcePreset(name="am-tsp20", about="attention model TSP, 20 cities (Kool et al.)",
                        model=PointerConfig(kind="attention", task="tsp"), n_min=20, n_max=20, steps=500,
                        batch_size=256, epochs=24, eval_n=20, eval_size=1000, lr=1e-3, grad_clip=1.0),
    )
}
# fmt: on


class ReinforcePipeline(PointerPipeline):
    """Policy gradient on sampled tours; the advantage is the tour's length minus the baseline's."""

    presets = PRESETS

    preset: ReinforcePreset

    def __init__(self, preset: ReinforcePreset, data: str | None = None):
        super().__init__(preset, data)
        if preset.model.task != "tsp":
            task = preset.model.task
            raise ValueError(f"{preset.name}: REINFORCE is for the TSP (model.task={task!r} has exact labels)")
        self.baseline: nn.Module | None = None
        self.baseline_ema: float | None = None

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
        p = self.preset
        rng = np.random.default_rng([p.seed, epoch, rank])
        for n in self.sizes(rng, self.steps_per_epoch(world_size)):
            yield self._points(rng, p.batch_size, n), None

    def _points(self, rng: np.random.Generator, count: int, n: int) -> torch.Tensor:
        """Uniform instances in the model's input order (a tour's length does not depend on it)."""
        points, _ = problems.in_model_order(problems.uniform_points(rng, count, n), self.preset.model.input_order)
        return torch.from_numpy(points).float()

    def train_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        points, _ = batch
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
        metrics = super().end_epoch(model, epoch)
        if epoch + 1 >= self.preset.baseline_warmup_epochs:
            metrics.update(self._maybe_update_baseline(model))
        return metrics

    def _baseline_points(self) -> torch.Tensor:
        rng = np.random.default_rng([self.preset.seed, 4242])
        return self._points(rng, self.preset.baseline_eval_size, self.preset.n_max)

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
            return {"baseline/updated": 1.0, "baseline/cost": float(policy.mean()), "baseline/p_value": p_value}
        return {"baseline/updated": 0.0, "baseline/cost": float(base.mean()), "baseline/p_value": p_value}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "baseline": None if self.baseline is None else self.baseline.state_dict(),
            "baseline_ema": self.baseline_ema,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.baseline_ema = state.get("baseline_ema")
        if state.get("baseline") is not None:
            self.baseline = self.build_model().eval()
            self.baseline.load_state_dict(state["baseline"])
