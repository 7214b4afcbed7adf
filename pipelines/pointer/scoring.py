"""How the pointer pipelines score answers: one :class:`Problem` per task (its exact reference answer, the
metrics of a decoded answer, the summary over a test set, how an answer is drawn), the fixed test sets
with their references (shipped or cached on disk), and decoding a test set through the service's own solver.

The three problems differ only here; the pipelines and the report look a task's :class:`Problem` up once
(:func:`problem`) and never branch on the task's name.
"""

from __future__ import annotations

import functools
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import nn

from pipelines.common.tracking import suite_home
from services.pointer import problems
from services.pointer.constraints import to_answer
from services.pointer.solver import Options, solve_many

# References that ship: copies of the cache files below, checked against fresh solves by the tests
SHIPPED = Path(__file__).resolve().parents[2] / "data" / "combinatorial" / "references"


class Problem(ABC):
    """One task's scoring. ``primary`` decides promotion; ``sequence`` turns a solver answer (the service's
    response body) back into the index sequence the model decoded (END = ``n``)."""

    task: ClassVar[str]
    primary: ClassVar[str]
    higher_is_better: ClassVar[bool]

    @abstractmethod
    def reference(self, points: np.ndarray) -> Any:
        """The exact (or, for the TSP beyond 12 cities, best known) answer."""

    def as_json(self, reference: Any) -> Any:
        """A reference as the test-set cache stores it."""
        return reference

    @abstractmethod
    def metrics(self, points: np.ndarray, answer: Any, reference: Any) -> dict[str, float]:
        """Metrics of one answer (as :func:`services.pointer.constraints.to_answer` gives it)."""

    @abstractmethod
    def sequence(self, answer: dict[str, Any], n: int) -> list[int]:
        """The decoded index sequence of a solver answer."""

    def summarise(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        """Each metric's mean over a test set."""
        keys = [k for k in rows[0] if k != "answer"]
        return {k: float(np.mean([r[k] for r in rows])) for k in keys}

    @abstractmethod
    def columns(self, summary: dict[str, float]) -> dict[str, float]:
        """A summary as the report's table shows it."""

    @abstractmethod
    def draw(self, ax, points: np.ndarray, answer: dict[str, Any]) -> None:
        """Draw one solver answer over its points."""

    def score(self, points: np.ndarray, sequence: list[int], reference: Any = None) -> dict[str, float]:
        """Metrics of one decoded sequence (``reference=None`` computes it)."""
        answer = to_answer(self.task, sequence, len(points))
        return self.metrics(points, answer, self.reference(points) if reference is None else reference)


class TSP(Problem):
    task, primary, higher_is_better = "tsp", "gap_pct", False

    def reference(self, points: np.ndarray) -> float:
        return problems.solve_tsp(problems.distance_matrix(points))[0]

    def metrics(self, points: np.ndarray, answer: list[int], reference: float) -> dict[str, float]:
        length = problems.tour_length(points, answer)
        return {
            "length": length,
            "optimal": float(reference),
            "gap_pct": 100 * (length / reference - 1),
            "valid": float(problems.is_permutation(answer, len(points))),
        }

    def sequence(self, answer: dict[str, Any], n: int) -> list[int]:
        return answer["tour"]

    def summarise(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        summary = super().summarise(rows)
        summary["gap_pct"] = 100 * (summary["length"] / summary["optimal"] - 1)  # the paper's comparison
        return summary

    def columns(self, summary: dict[str, float]) -> dict[str, float]:
        return {"length": summary["length"], "reference": summary["optimal"], "gap %": summary["gap_pct"]}

    def draw(self, ax, points: np.ndarray, answer: dict[str, Any]) -> None:
        cycle = [*answer["tour"], answer["tour"][0]]
        ax.plot(points[cycle, 0], points[cycle, 1], color="tab:blue")
        ax.set_title(f"length {answer['length']:.3f}", fontsize=8)


class ConvexHull(Problem):
    task, primary, higher_is_better = "convex_hull", "accuracy", True

    def reference(self, points: np.ndarray) -> list[int]:
        return problems.convex_hull(points)

    def metrics(self, points: np.ndarray, answer: list[int], reference: list[int]) -> dict[str, float]:
        m = problems.hull_metrics(points, answer, reference)
        return {"accuracy": m["exact"], "area_coverage": m["area_coverage"], "valid": m["valid"]}

    def sequence(self, answer: dict[str, Any], n: int) -> list[int]:
        return [*answer["hull"], n]

    def summarise(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        summary = super().summarise(rows)
        valid = [r["area_coverage"] for r in rows if r["valid"]]  # over valid outputs only, as in the paper
        summary["area_coverage"] = float(np.mean(valid)) if valid else 0.0
        return summary

    def columns(self, summary: dict[str, float]) -> dict[str, float]:
        return {
            "accuracy %": 100 * summary["accuracy"],
            "area %": 100 * summary["area_coverage"],
            "valid %": 100 * summary["valid"],
        }

    def draw(self, ax, points: np.ndarray, answer: dict[str, Any]) -> None:
        cycle = [*answer["hull"], answer["hull"][0]]
        ax.fill(points[cycle, 0], points[cycle, 1], alpha=0.25, color="tab:green")
        ax.plot(points[cycle, 0], points[cycle, 1], color="tab:green")


class Delaunay(Problem):
    task, primary, higher_is_better = "delaunay", "triangle_coverage", True

    def reference(self, points: np.ndarray) -> list[tuple[int, int, int]]:
        return problems.delaunay_triangles(points)

    def as_json(self, reference: list[tuple[int, int, int]]) -> list[list[int]]:
        return [list(t) for t in reference]

    def metrics(self, points: np.ndarray, answer: list[tuple], reference: list) -> dict[str, float]:
        m = problems.delaunay_metrics(answer, reference)
        return {"accuracy": m["exact"], "triangle_coverage": m["triangle_coverage"]}

    def sequence(self, answer: dict[str, Any], n: int) -> list[int]:
        return [i for triangle in answer["triangles"] for i in triangle] + [n]

    def columns(self, summary: dict[str, float]) -> dict[str, float]:
        return {"accuracy %": 100 * summary["accuracy"], "triangles %": 100 * summary["triangle_coverage"]}

    def draw(self, ax, points: np.ndarray, answer: dict[str, Any]) -> None:
        for triangle in answer["triangles"]:
            cycle = [*triangle, triangle[0]]
            ax.plot(points[cycle, 0], points[cycle, 1], color="tab:purple", linewidth=0.8)


PROBLEMS: dict[str, Problem] = {p.task: p for p in (TSP(), ConvexHull(), Delaunay())}


def problem(task: str) -> Problem:
    try:
        return PROBLEMS[task]
    except KeyError:
        raise ValueError(f"task must be one of {', '.join(PROBLEMS)}, got {task!r}") from None


@functools.lru_cache(maxsize=32)
def test_set(task: str, n: int, size: int, seed: int = 20151) -> tuple[np.ndarray, list[Any]]:
    """A fixed test set and its reference answers: shipped (:data:`SHIPPED`, the sets whose references take
    a minute or more to solve) or cached on disk, written atomically as several workers may build the same
    set at once."""
    name = f"test-{task}-n{n}-{size}-s{seed}.json"
    points = problems.uniform_points(np.random.default_rng(seed), size, n)
    path = suite_home() / "cache" / "pointer" / name
    for known in (SHIPPED / name, path):
        if known.exists():
            return points, json.loads(known.read_text())["references"]
    scorer = problem(task)
    references = [scorer.as_json(scorer.reference(pts)) for pts in points]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"references": references}))
    tmp.replace(path)
    return points, references


def evaluate_decode(
    model: nn.Module, scorer: Problem, points: np.ndarray, references: list[Any], options: Options, batch: int = 256
) -> list[dict[str, Any]]:
    """Score every instance with one decoding setting (through the same solver the service uses)."""
    rows = []
    for start in range(0, len(points), batch):
        chunk = list(points[start : start + batch])
        answers = solve_many(model, scorer.task, chunk, options)
        for pts, answer, reference in zip(chunk, answers, references[start : start + batch]):
            sequence = scorer.sequence(answer, len(pts))
            rows.append({**scorer.score(pts, sequence, reference), "answer": answer})
    return rows


def draw_examples(scorer: Problem, points: np.ndarray, answers: list[dict[str, Any]]):
    """A row of solved instances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(2.6 * len(points), 2.8), squeeze=False)
    for ax, pts, answer in zip(axes[0], points, answers):
        ax.scatter(pts[:, 0], pts[:, 1], s=10, color="black", zorder=3)
        scorer.draw(ax, pts, answer)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig
