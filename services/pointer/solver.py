"""Solving requests with a trained pointer model: normalise, decode (batched), map back, polish.

Used by the Serve app, by the evaluation command and by the MLflow pyfunc wrapper (``predict``), so
every path answers the same way. Points are scaled into the unit square the models were trained on
(aspect ratio kept); lengths and areas are reported in the caller's own units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from services.common.deadline import Deadline

from . import problems
from .decoding import beam_search, greedy, sample_best, to_answer

DECODES = ("greedy", "beam", "sample")


@dataclass(frozen=True)
class Options:
    decode: str = "greedy"
    beam_width: int = 5
    samples: int = 16
    polish: bool = False

    def __post_init__(self):
        if self.decode not in DECODES:
            raise ValueError(f"decode must be one of {', '.join(DECODES)}, got {self.decode!r}")
        if not 1 <= self.beam_width <= 64:
            raise ValueError(f"beam_width must be in 1..64, got {self.beam_width}")
        if not 1 <= self.samples <= 1024:
            raise ValueError(f"samples must be in 1..1024, got {self.samples}")


def decode_batch(model: nn.Module, task: str, unit_points: np.ndarray, options: Options) -> list[list[int]]:
    """Index sequences for ``unit_points [B, n, 2]`` (already in the unit square)."""
    x = torch.as_tensor(unit_points, dtype=torch.float32)
    with torch.no_grad():
        if options.decode == "greedy":
            seqs, _ = greedy(model, x, task)
        elif options.decode == "beam":
            seqs = beam_search(model, x, task, options.beam_width)
        else:
            seqs = sample_best(model, x, task, options.samples)
    return seqs.tolist()


def answer(
    task: str, unit: np.ndarray, scale: float, sequence: list[int], options: Options, deadline: Deadline | None = None
) -> dict[str, Any]:
    """The response body for one instance from its decoded sequence. Everything is computed on the
    ``unit`` points (well conditioned whatever the caller's range) and scaled back by ``scale``."""
    n = len(unit)
    result = to_answer(task, sequence, n)
    if task == "tsp":
        tour = [int(i) for i in result]
        body: dict[str, Any] = {"tour": tour, "length": problems.tour_length(unit, tour) * scale}
        if options.polish:
            polished = problems.polish(problems.distance_matrix(unit), tour, deadline=deadline)
            body = {
                "tour": polished,
                "length": problems.tour_length(unit, polished) * scale,
                "model_tour": tour,
                "model_length": body["length"],
            }
        return body
    if task == "convex_hull":
        hull = [int(i) for i in result]
        return {"hull": hull, "area": problems.polygon_area(unit, hull) * scale * scale}
    return {"triangles": [[int(i) for i in tri] for tri in result]}


def solve_many(
    model: nn.Module,
    task: str,
    instances: list[np.ndarray],
    options: Options,
    deadline: Deadline | None = None,
) -> list[dict[str, Any]]:
    """Solve instances (each checked by :func:`problems.check_points`) with one options set; instances
    of equal size decode together in one batch. ``deadline`` bounds the polishing."""
    results: list[dict[str, Any] | None] = [None] * len(instances)
    by_size: dict[int, list[int]] = {}
    for i, pts in enumerate(instances):
        by_size.setdefault(len(pts), []).append(i)
    for indices in by_size.values():
        start = time.perf_counter()
        normalised = [problems.normalise(instances[i]) for i in indices]
        sequences = decode_batch(model, task, np.stack([unit for unit, _, _ in normalised]), options)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        for i, seq, (unit, scale, _) in zip(indices, sequences, normalised):
            results[i] = {
                **answer(task, unit, scale, seq, options, deadline),
                "batch_size": len(indices),
                "decode_ms": elapsed_ms,
            }
    return results  # type: ignore[return-value]


def predict(model: nn.Module, model_input: dict[str, Any], **params: Any) -> dict[str, Any]:
    """MLflow pyfunc entry: ``{"points": [[x, y], ...], "decode": ..., ...}`` → the answer body."""
    task = model.config.task
    points = problems.check_points(model_input["points"])
    options = Options(
        **{k: model_input[k] for k in ("decode", "beam_width", "samples", "polish") if k in model_input},
        **params,
    )
    return solve_many(model, task, [points], options)[0]
