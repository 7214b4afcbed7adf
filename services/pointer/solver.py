"""Solving requests with a trained pointer model: normalise, decode (batched), map back, polish.

Used by the Serve app, by the evaluation command and by the MLflow pyfunc wrapper (``predict``), so
every path answers the same way. Points are scaled into the unit square the models were trained on
(aspect ratio kept); lengths and areas are reported in the caller's own units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from services.common.deadline import Deadline

from . import problems
from .constraints import to_answer
from .search import beam_search, greedy, sample_best

if TYPE_CHECKING:  # pandas only for the MLflow entry, so the solver imports without it
    import pandas as pd

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
    """Index sequences for ``unit_points [B, n, 2]`` (already in the unit square), indexing the points as
    given whatever order the model reads them in (its config's ``input_order``)."""
    unit_points, perm = problems.in_model_order(unit_points, model.config.input_order)
    x = torch.as_tensor(unit_points, dtype=torch.float32)
    with torch.no_grad():
        if options.decode == "greedy":
            seqs, _ = greedy(model, x, task)
        elif options.decode == "beam":
            seqs = beam_search(model, x, task, options.beam_width)
        else:
            seqs = sample_best(model, x, task, options.samples)
    if perm is None:
        return seqs.tolist()
    n = perm.shape[1]
    return [[int(p[i]) if i < n else i for i in seq] for p, seq in zip(perm, seqs.tolist())]


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
    return {"triangles": sorted(sorted(int(i) for i in tri) for tri in result)}  # as decoded in the given order


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


def predict(model: nn.Module, model_input: Any, **params: Any) -> pd.DataFrame:
    """MLflow pyfunc entry (``mlflow.pyfunc.load_model(...).predict``, ``mlflow models serve``).

    Input: a ``points`` column, one instance per row (``[[x, y], ...]``, checked as by the REST API); a
    dict ``{"points": [[x, y], ...]}`` is one instance. Params: ``decode``, ``beam_width``, ``samples``,
    ``polish`` (as the REST API's fields). Output: one row per instance with the REST answer's fields
    (``tour``/``length``, ``hull``/``area`` or ``triangles``, and ``batch_size``, ``decode_ms``).
    """
    import pandas as pd

    from modelstore.inputs import frame, no_other_params, sequence_of

    option_names = ("decode", "beam_width", "samples", "polish")
    if isinstance(model_input, dict) and _one_instance(model_input.get("points")):
        # the single-instance body, options included as the REST API takes them
        params = {**{k: model_input[k] for k in option_names if k in model_input}, **params}
        model_input = {k: v for k, v in model_input.items() if k not in option_names}
        model_input = {**model_input, "points": [model_input["points"]]}
    no_other_params(params, option_names)
    options = Options(**params)
    instances = []
    for i, value in enumerate(frame(model_input, required=["points"])["points"]):
        cells = sequence_of(value)
        if cells is None or (cells and not _one_instance(cells)):
            raise ValueError(
                f"points (row {i}) must be one instance, a list of [x, y] pairs; got {value!r:.80}"
                " (a dict input is column-oriented: {'points': [instance, ...]})"
            )
        try:
            instances.append(problems.check_points([sequence_of(p) for p in cells]))
        except ValueError as e:
            raise ValueError(f"points (row {i}): {e}") from None
    return pd.DataFrame(solve_many(model, model.config.task, instances, options))


def serving_example(model: nn.Module) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Two small instances in general position (the input example MLflow stores with the model)."""
    import pandas as pd

    square = [[0.0, 0.0], [1.0, 0.1], [0.9, 1.0], [0.1, 0.8], [0.5, 0.45]]
    return pd.DataFrame({"points": [square, square[:4]]}), {"decode": "greedy", "beam_width": 5, "samples": 16,
                                                              "polish": False}  # fmt: skip


def _one_instance(points: Any) -> bool:
    """``points`` is a list of pairs (one instance), not a list of instances."""
    from modelstore.inputs import sequence_of

    cells = sequence_of(points)
    return cells is not None and all(
        (pair := sequence_of(p)) is not None and all(sequence_of(x) is None for x in pair) for p in cells
    )
