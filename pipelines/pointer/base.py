"""What both pointer trainings share: the preset (the model's :class:`PointerConfig` nested, the sizes of
the generated instances, the evaluation size), the registered name, a quick validation each epoch (the
best epoch's weights are the ones registered, as in the other domains) and the evaluation the champion
comparison uses. :mod:`.supervised` and :mod:`.reinforce` add how to train.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from pipelines.common.contract import Evaluation, ValidatedPipeline, ValidatedPreset
from services.pointer.models import PointerConfig
from services.pointer.solver import Options, decode_batch

from .scoring import draw_examples, evaluate_decode, problem, test_set


@dataclass
class PointerPreset(ValidatedPreset):
    model: PointerConfig = field(default_factory=PointerConfig)
    n_min: int = 20  # training instances have n_min..n_max points (one size per batch)
    n_max: int = 20
    steps: int = 100  # optimizer steps per epoch (all workers together)
    eval_n: int = 20  # the size the champion comparison evaluates at
    eval_size: int = 500


def registered_name(task: str, kind: str) -> str:
    """The registry's name for a task's model of one kind (``pointer-convex-hull-ptrnet``)."""
    return f"pointer-{task.replace('_', '-')}-{kind}"


class PointerPipeline(ValidatedPipeline):
    """A pointer model on generated uniform points; subclasses say how it learns."""

    domain = "pointer"
    builder = "services.pointer.models:build_model"
    predict = "services.pointer.solver:predict"

    preset: PointerPreset

    def __init__(self, preset: PointerPreset, data: str | None = None):
        super().__init__(preset, data)
        self.problem = problem(preset.model.task)

    @property
    def registered_name(self) -> str:
        return registered_name(self.preset.model.task, self.preset.model.kind)

    def model_config(self) -> dict[str, Any]:
        return self.preset.model.to_dict()

    def steps_per_epoch(self, world_size: int) -> int:
        return max(1, self.preset.steps // max(1, world_size))

    def sizes(self, rng: np.random.Generator, count: int) -> list[int]:
        """Each batch's number of points, drawn from n_min..n_max."""
        return rng.integers(self.preset.n_min, self.preset.n_max + 1, size=count).tolist()

    def validate(self, model: nn.Module) -> tuple[dict[str, float], float]:
        """A quick greedy check on a fixed small set, every epoch."""
        p = self.preset
        pts, references = test_set(p.model.task, p.eval_n, min(200, p.eval_size), seed=777)
        seqs = decode_batch(model, p.model.task, pts, Options("greedy"))
        rows = [self.problem.score(pts[i], seqs[i], references[i]) for i in range(len(pts))]
        metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        value = metrics[self.problem.primary]
        return metrics, value if self.problem.higher_is_better else -value

    def evaluate(self, model: nn.Module) -> Evaluation:
        p, scorer = self.preset, self.problem
        points, references = test_set(p.model.task, p.eval_n, p.eval_size)
        rows = evaluate_decode(model, scorer, points, references, Options("greedy"))
        summary = scorer.summarise(rows)
        table = [{"task": p.model.task, "model": p.model.kind, "n": p.eval_n, "decode": "greedy", **summary}]
        figures = {"examples.png": draw_examples(scorer, points[:6], [r["answer"] for r in rows[:6]])}
        return Evaluation(summary, scorer.primary, scorer.higher_is_better, table, figures)
