"""Validity masks: what a pointer model may output next, so every decoded answer is valid for its task.

A *constraint* holds the batched decoding state of one task and says, at each step, which outputs are
allowed (``mask``). Positions ``0..n-1`` point at input points; tasks whose answers vary in length
also have an END output at position ``n``.

* TSP: each city once; the answer is a permutation (a closed tour).
* Convex hull: a strictly convex, counter-clockwise, simple polygon of input points. A point ``q`` may
  follow ``p0, p1, …, cur`` only if it turns left at ``cur``, lies left of the first edge ``p0→p1`` and
  continues the fan around ``p0`` counter-clockwise; the second point must leave some point on its
  left. Under these rules END (allowed from three points on) always closes a valid polygon, and a
  valid step or END always exists.
* Delaunay: triangles of three distinct, non-collinear points as sorted index triples, emitted in
  strictly increasing lexicographic order (so no triangle twice); END after at least one triangle.
  A prefix is allowed only if some triangle can complete it, so decoding never gets stuck.

:mod:`services.pointer.search` drives the models under these masks; :func:`to_answer` turns a decoded
sequence into the task's answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

TASKS = ("tsp", "convex_hull", "delaunay")


def _orient(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def _gather_points(points: Tensor, index: Tensor) -> Tensor:
    """``points [B, n, 2]``, ``index [B]`` → ``[B, 2]`` (index clamped to a valid point)."""
    return points[torch.arange(points.shape[0]), index.clamp(0, points.shape[1] - 1)]


@dataclass
class Constraint(ABC):
    """Batched decoding state of one task. Subclasses fill ``state`` with ``[B, ...]`` tensors."""

    points: Tensor
    state: dict[str, Tensor] = field(default_factory=dict)

    task = ""
    has_end = False

    @property
    def batch(self) -> int:
        return self.points.shape[0]

    @property
    def n(self) -> int:
        return self.points.shape[1]

    @property
    def vocab(self) -> int:
        return self.n + int(self.has_end)

    @property
    def end(self) -> int:
        return self.n

    @abstractmethod
    def max_steps(self) -> int:
        """Upper bound on the decoding steps."""

    @abstractmethod
    def mask(self) -> Tensor:
        """Bool ``[B, vocab]``: the outputs allowed now."""

    @abstractmethod
    def update(self, choice: Tensor) -> None:
        """Advance every row by its chosen output ``[B]``."""

    @property
    def done(self) -> Tensor:
        return self.state["done"]

    @property
    def first(self) -> Tensor:
        """Index of the first point of the current answer (or triangle); -1 before any."""
        return self.state["first"]

    @property
    def last(self) -> Tensor:
        """Index of the last chosen point; -1 before any."""
        return self.state["last"]

    def select(self, index: Tensor) -> Constraint:
        """Rows ``index`` of every state tensor (for beam search)."""
        copy = type(self)(self.points[index])
        copy.state = {k: v[index] for k, v in self.state.items()}
        return copy

    def _stepping(self, choice: Tensor) -> tuple[Tensor, Tensor]:
        """``(active, step)``: rows still decoding, and those of them that chose a point (not END)."""
        active = ~self.done
        return active, active & (choice != self.end)

    def _finished_mask(self, allowed: Tensor) -> Tensor:
        """Rows already done may only repeat END (or, without END, anything: they are ignored)."""
        done = self.done.unsqueeze(1)
        if self.has_end:
            only_end = torch.zeros_like(allowed)
            only_end[:, self.end] = True
            return torch.where(done, only_end, allowed)
        return allowed | done


class TSPConstraint(Constraint):
    task = "tsp"

    def __init__(self, points: Tensor):
        super().__init__(points)
        b, n = points.shape[:2]
        self.state = {
            "visited": torch.zeros(b, n, dtype=torch.bool),
            "first": torch.full((b,), -1, dtype=torch.long),
            "last": torch.full((b,), -1, dtype=torch.long),
            "count": torch.zeros(b, dtype=torch.long),
            "done": torch.zeros(b, dtype=torch.bool),
        }

    def max_steps(self) -> int:
        return self.n

    def mask(self) -> Tensor:
        return self._finished_mask(~self.state["visited"])

    def update(self, choice: Tensor) -> None:
        s = self.state
        active = ~s["done"]
        rows = torch.arange(self.batch)[active]
        s["visited"][rows, choice[active]] = True
        s["first"] = torch.where(active & (s["first"] < 0), choice, s["first"])
        s["last"] = torch.where(active, choice, s["last"])
        s["count"] = s["count"] + active.long()
        s["done"] = s["count"] >= self.n


class HullConstraint(Constraint):
    task = "convex_hull"
    has_end = True

    def __init__(self, points: Tensor):
        super().__init__(points.double())  # orientation in float64: float32 misjudges near-collinear points
        b, n = points.shape[:2]
        minus = torch.full((b,), -1, dtype=torch.long)
        self.state = {
            "used": torch.zeros(b, n, dtype=torch.bool),
            "first": minus.clone(),
            "second": minus.clone(),
            "prev": minus.clone(),
            "last": minus.clone(),
            "count": torch.zeros(b, dtype=torch.long),
            "done": torch.zeros(b, dtype=torch.bool),
        }

    def max_steps(self) -> int:
        return self.n + 1

    def mask(self) -> Tensor:
        s, pts = self.state, self.points
        b, n = self.batch, self.n
        allowed = torch.zeros(b, n + 1, dtype=torch.bool)
        count = s["count"]
        p0 = _gather_points(pts, s["first"]).unsqueeze(1)
        cur = _gather_points(pts, s["last"]).unsqueeze(1)
        prev = _gather_points(pts, s["prev"]).unsqueeze(1)
        p1 = _gather_points(pts, s["second"]).unsqueeze(1)
        # step 0: any point starts
        allowed[:, :n] |= (count == 0).unsqueeze(1)
        # step 1: q != p0 with some point strictly left of p0 -> q (so that a third point exists)
        if bool((count == 1).any()):
            left_of = _orient(p0.unsqueeze(2), pts.unsqueeze(2), pts.unsqueeze(1)) > 0  # [B, q, r]
            step1 = left_of.any(dim=2) & ~s["used"]
            allowed[:, :n] |= (count == 1).unsqueeze(1) & step1
        # later steps: left turn at cur, left of p0 -> p1, fan around p0 continues counter-clockwise
        later = (_orient(prev, cur, pts) > 0) & (_orient(p0, p1, pts) > 0) & (_orient(p0, cur, pts) > 0) & ~s["used"]
        allowed[:, :n] |= (count >= 2).unsqueeze(1) & later
        allowed[:, n] = count >= 3
        return self._finished_mask(allowed)

    def update(self, choice: Tensor) -> None:
        s = self.state
        active, step = self._stepping(choice)
        rows = torch.arange(self.batch)[step]
        s["used"][rows, choice[step]] = True
        s["first"] = torch.where(step & (s["count"] == 0), choice, s["first"])
        s["second"] = torch.where(step & (s["count"] == 1), choice, s["second"])
        s["prev"] = torch.where(step, s["last"], s["prev"])
        s["last"] = torch.where(step, choice, s["last"])
        s["count"] = s["count"] + step.long()
        s["done"] = s["done"] | (active & ~step)  # END chosen


class DelaunayConstraint(Constraint):
    task = "delaunay"
    has_end = True
    eps = 1e-12

    def __init__(self, points: Tensor, max_triangles: int | None = None):
        super().__init__(points.double())  # orientation in float64: float32 misjudges near-collinear points
        b, n = points.shape[:2]
        self.max_triangles = max_triangles or max(1, 2 * n - 5)
        idx = torch.arange(n)
        i, j, k = idx.view(n, 1, 1), idx.view(1, n, 1), idx.view(1, 1, n)
        ordered = (i < j) & (j < k)
        pts = self.points  # float64, as the labels' triangulation sees them
        area = _orient(pts[:, :, None, None, :], pts[:, None, :, None, :], pts[:, None, None, :, :])
        minus = torch.full((b,), -1, dtype=torch.long)
        self.state = {
            "triangles": (ordered & (area.abs() > self.eps)),  # [B, n, n, n] candidate triangles
            "prev": torch.full((b, 3), -1, dtype=torch.long),  # last completed triangle
            "partial": torch.full((b, 3), -1, dtype=torch.long),
            "pos": torch.zeros(b, dtype=torch.long),  # 0, 1, 2 within the current triangle
            "made": torch.zeros(b, dtype=torch.long),
            "first": minus.clone(),
            "last": minus.clone(),
            "done": torch.zeros(b, dtype=torch.bool),
        }

    def select(self, index: Tensor) -> DelaunayConstraint:
        copy = DelaunayConstraint.__new__(DelaunayConstraint)
        Constraint.__init__(copy, self.points[index])
        copy.max_triangles = self.max_triangles
        copy.state = {k: v[index] for k, v in self.state.items()}
        return copy

    def max_steps(self) -> int:
        return 3 * self.max_triangles + 1

    def _after_prev(self) -> Tensor:
        """``[B, n, n, n]``: triangles lexicographically after the previous one."""
        n = self.n
        prev = self.state["prev"]
        idx = torch.arange(n)
        i, j, k = idx.view(1, n, 1, 1), idx.view(1, 1, n, 1), idx.view(1, 1, 1, n)
        pi, pj, pk = (prev[:, c].view(-1, 1, 1, 1) for c in range(3))
        return (i > pi) | ((i == pi) & ((j > pj) | ((j == pj) & (k > pk))))

    def mask(self) -> Tensor:
        s = self.state
        b, n = self.batch, self.n
        rows = torch.arange(b)
        possible = s["triangles"] & self._after_prev()  # [B, i, j, k]
        allowed = torch.zeros(b, n + 1, dtype=torch.bool)
        pos = s["pos"]
        room = s["made"] < self.max_triangles
        at0 = possible.flatten(2).any(dim=2) & room.unsqueeze(1)  # choose i
        allowed[:, :n] |= (pos == 0).unsqueeze(1) & at0
        a = s["partial"][:, 0].clamp_min(0)
        at1 = possible[rows, a].any(dim=2)  # choose j given i
        allowed[:, :n] |= (pos == 1).unsqueeze(1) & at1
        bj = s["partial"][:, 1].clamp_min(0)
        at2 = possible[rows, a, bj]  # choose k given i, j
        allowed[:, :n] |= (pos == 2).unsqueeze(1) & at2
        can_stop = (s["made"] >= 1) | ~at0.any(dim=1)
        allowed[:, n] = (pos == 0) & can_stop
        return self._finished_mask(allowed)

    def update(self, choice: Tensor) -> None:
        s = self.state
        active, step = self._stepping(choice)
        pos = s["pos"]
        rows = torch.arange(self.batch)
        partial = s["partial"].clone()
        partial[rows[step], pos[step]] = choice[step]
        completes = step & (pos == 2)
        s["prev"] = torch.where(completes.unsqueeze(1), partial, s["prev"])
        s["partial"] = torch.where(completes.unsqueeze(1), torch.full_like(partial, -1), partial)
        s["made"] = s["made"] + completes.long()
        s["first"] = torch.where(step & (pos == 0), choice, s["first"])
        s["last"] = torch.where(step, choice, s["last"])
        s["pos"] = torch.where(step, (pos + 1) % 3, pos)
        s["done"] = s["done"] | (active & ~step)  # END chosen


CONSTRAINTS: dict[str, type[Constraint]] = {
    "tsp": TSPConstraint,
    "convex_hull": HullConstraint,
    "delaunay": DelaunayConstraint,
}


def make_constraint(task: str, points: Tensor) -> Constraint:
    try:
        return CONSTRAINTS[task](points)
    except KeyError:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}") from None


def to_answer(task: str, sequence: list[int], n: int) -> Any:
    """A decoded index sequence (END = ``n``) → the task's answer: a tour, a polygon or triangles."""
    if task == "tsp":
        return list(sequence[:n])
    cut = sequence.index(n) if n in sequence else len(sequence)
    body = sequence[:cut]
    if task == "convex_hull":
        return body
    return [tuple(body[i : i + 3]) for i in range(0, len(body) - len(body) % 3, 3)]
