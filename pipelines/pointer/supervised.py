"""Supervised pointer training, as in Vinyals et al. (2015): teacher forcing on exact answers (convex
hulls and Delaunay triangulations from scipy, TSP tours by dynamic programming), for either model kind.

Labels come fresh with every batch, except where they are expensive (exact TSP tours): then a fixed
labelled set of ``dataset_size`` instances, cached on disk, is resampled every step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.common.tracking import suite_home
from services.pointer import data as pdata
from services.pointer import problems
from services.pointer.models import PointerConfig
from services.pointer.search import teacher_forcing

from .base import PointerPipeline, PointerPreset


@dataclass
class SupervisedPreset(PointerPreset):
    dataset_size: int = 0  # a fixed cached labelled set of this size (0: fresh labels every batch)


def _ptrnet(task: str, hidden: int) -> PointerConfig:
    return PointerConfig(kind="ptrnet", task=task, hidden=hidden)


def _attention(task: str) -> PointerConfig:
    return PointerConfig(kind="attention", task=task)


# fmt: off
PRESETS: dict[str, SupervisedPreset] = {
    p.name: p
    for p in (
        # for tests: seconds
        SupervisedPreset(name="tiny-hull", about="Ptr-Net convex hull, 5-8 points (tests, seconds)",
                         model=_ptrnet("convex_hull", 32), n_min=5, n_max=8, steps=4, batch_size=32, epochs=2,
                         eval_n=6, eval_size=32, lr=1e-3, log_every=2),
        # make up: a couple of minutes each, good enough to answer
        SupervisedPreset(name="quick-hull", about="Ptr-Net convex hull, 5-20 points (make up, minutes)",
                         model=_ptrnet("convex_hull", 64), n_min=5, n_max=20, steps=100, batch_size=64, epochs=3,
                         eval_n=10, eval_size=200, lr=2e-3),
        SupervisedPreset(name="quick-delaunay", about="Ptr-Net Delaunay, 5-8 points (make up, minutes)",
                         model=_ptrnet("delaunay", 64), n_min=5, n_max=8, steps=100, batch_size=64, epochs=3,
                         eval_n=6, eval_size=200, lr=2e-3),
        # the published settings, sized for about an hour (or less) of this machine's 2 CPUs
        SupervisedPreset(name="ptrnet-tsp10", about="Ptr-Net TSP on 60,000 Held-Karp tours of 5-10 cities (paper)",
                         model=_ptrnet("tsp", 256), n_min=5, n_max=10, steps=500, batch_size=128, epochs=12,
                         eval_n=10, eval_size=1000, dataset_size=60_000, lr=1e-3, grad_clip=2.0),
        SupervisedPreset(name="ptrnet-hull50", about="Ptr-Net convex hull, 5-50 points, scored at 50 (paper)",
                         model=_ptrnet("convex_hull", 256), n_min=5, n_max=50, steps=500, batch_size=128,
                         epochs=24, eval_n=50, eval_size=1000, lr=1e-3, grad_clip=2.0),
        SupervisedPreset(name="am-hull50", about="attention model convex hull, 5-50 points, supervised",
                         model=_attention("convex_hull"), n_min=5, n_max=50, steps=500, batch_size=128, epochs=8,
                         eval_n=50, eval_size=1000, lr=5e-4),
        SupervisedPreset(name="ptrnet-delaunay10", about="Ptr-Net Delaunay, 5-10 points (paper)",
                         model=_ptrnet("delaunay", 256), n_min=5, n_max=10, steps=500, batch_size=128, epochs=12,
                         eval_n=10, eval_size=1000, lr=1e-3, grad_clip=2.0),
        SupervisedPreset(name="ptrnet-delaunay5", about="Ptr-Net Delaunay trained and scored at 5 points (paper)",
                         model=_ptrnet("delaunay", 256), n_min=5, n_max=5, steps=500, batch_size=128, epochs=10,
                         eval_n=5, eval_size=1000, lr=1e-3, grad_clip=2.0),
        SupervisedPreset(name="am-delaunay10", about="attention model Delaunay, 5-10 points, supervised",
                         model=_attention("delaunay"), n_min=5, n_max=10, steps=500, batch_size=128, epochs=8,
                         eval_n=10, eval_size=1000, lr=5e-4),
    )
}
# fmt: on


def _reading_sorted(preset: SupervisedPreset) -> SupervisedPreset:
    """The preset with a model that reads the points sorted by x (its labels then run left to right)."""
    return replace(preset, name=f"{preset.name}-x", about=f"{preset.about}; points read sorted by x",
                   model=replace(preset.model, input_order="x"))  # fmt: skip


PRESETS.update({v.name: v for v in (_reading_sorted(PRESETS[n]) for n in ("ptrnet-delaunay5", "ptrnet-delaunay10",
                                                                          "ptrnet-hull50"))})  # fmt: skip


class SupervisedPipeline(PointerPipeline):
    """Teacher forcing: the mean negative log-likelihood of the exact answer's tokens."""

    presets = PRESETS

    preset: SupervisedPreset

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
        p = self.preset
        rng = np.random.default_rng([p.seed, epoch, rank])
        steps = self.steps_per_epoch(world_size)
        if p.dataset_size:
            blocks = self._fixed_dataset()
            for n in self.sizes(rng, steps):
                points, targets = blocks[n]
                idx = torch.from_numpy(rng.choice(len(points), size=p.batch_size, replace=False))
                yield points[idx], targets[idx]
            return
        for n in self.sizes(rng, steps):
            yield pdata.labelled_batch(p.model.task, problems.uniform_points(rng, p.batch_size, n), p.model.input_order)

    def _fixed_dataset(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """``dataset_size`` labelled instances split evenly over the sizes n_min..n_max (cached on disk)."""
        if not hasattr(self, "_blocks"):
            p = self.preset
            cache = suite_home() / "cache" / "pointer"
            per_size = max(p.batch_size, p.dataset_size // (p.n_max - p.n_min + 1))
            order = p.model.input_order
            self._blocks = {
                n: pdata.make_dataset(p.model.task, n, per_size, seed=1000 + n, cache_dir=cache, order=order)
                for n in range(p.n_min, p.n_max + 1)
            }
        return self._blocks

    def train_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        points, targets = batch
        log_likelihood = teacher_forcing(model, points, self.preset.model.task, targets)
        tokens = (targets >= 0).sum().clamp_min(1)
        return {"loss": -log_likelihood.sum() / tokens}
