"""Planar combinatorial tasks: instances, exact labels, solvers, validity checks and metrics.

* Convex hull: the hull's vertices, counter-clockwise, starting at the smallest index (the order of
  the Pointer Networks data). Exact accuracy = the same cycle; area coverage = predicted area / true
  area for valid polygons.
* Delaunay triangulation: the set of triangles, each as sorted vertex indices, sorted. Accuracy = the
  same set; triangle coverage = the share of true triangles predicted.
* TSP (closed tour): exact by Held–Karp dynamic programming up to :data:`EXACT_TSP_MAX` cities, beyond
  that the best of several nearest-neighbour starts improved by 2-opt and Or-opt.

Everything here is numpy/scipy on ``[n, 2]`` float arrays; nothing depends on torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial import Delaunay, QhullError

from services.common.deadline import Deadline

EXACT_TSP_MAX = 12
# The widest coordinate spread accepted: areas (spread²) and tour lengths (n·spread) stay finite in
# float64, and every answer is computed in the unit square and scaled back.
MAX_SPREAD = 1e150


# ----------------------------------------------------------------------------------------- instances
def uniform_points(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    """``[batch, n, 2]`` points uniform in the unit square, rounded to float32 values so that labels computed
    here and the validity masks, which see the model's float32 inputs, agree on near-collinear points."""
    return rng.random((batch, n, 2)).astype(np.float32).astype(np.float64)


INPUT_ORDERS = ("given", "x")


def in_model_order(points: np.ndarray, order: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``points [B, n, 2]`` in a model's input order, with the permutation ``[B, n]`` (row ``b``, slot ``k``:
    the index of the point the model sees ``k``-th; ``None`` for ``"given"``). ``"x"`` sorts by x then y,
    so that answers listed by index (Delaunay's lexicographic triangles, a hull from its smallest index)
    run left to right: a geometric output order, as the Pointer Networks paper's (triangles by incenter)."""
    if order == "given":
        return points, None
    if order != "x":
        raise ValueError(f"input order must be one of {INPUT_ORDERS}, got {order!r}")
    perm = np.lexsort((points[..., 1], points[..., 0]), axis=-1)
    return np.take_along_axis(points, perm[..., None], axis=-2), perm


def orientation(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Twice the signed area of triangle ``abc``: > 0 counter-clockwise, < 0 clockwise, 0 collinear."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def check_points(
    points: object, *, min_points: int = 3, max_points: int | None = None, allow_collinear: bool = False
) -> np.ndarray:
    """Validate user points: ``[n, 2]`` finite numbers, ``min_points <= n <= max_points``, distinct, a
    spread the models can represent (at most :data:`MAX_SPREAD`, and no two points that coincide once
    scaled into the float32 unit square the models see) and (unless ``allow_collinear``) not all on one
    line. ``ValueError`` says which rule failed and where."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("points must be a list of [x, y] number pairs") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"points must have shape [n, 2], got {list(arr.shape)}")
    n = arr.shape[0]
    if n < min_points:
        raise ValueError(f"points must hold at least {min_points} points, got {n}")
    if max_points is not None and n > max_points:
        raise ValueError(f"points must hold at most {max_points} points, got {n}")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise ValueError(f"points must be finite: point {int(bad[0])} is {arr[bad[0]].tolist()}")
    _refuse_duplicates(arr, "points must be distinct: points {i} and {j} are both {p}")
    with np.errstate(over="ignore"):
        spread = float((arr.max(axis=0) - arr.min(axis=0)).max())
    if not spread <= MAX_SPREAD:
        raise ValueError(
            f"points must span at most {MAX_SPREAD:g} in x and in y (so that lengths and areas stay finite), "
            f"got a spread of {spread:.3g}"
        )
    unit = normalise(arr)[0]
    _refuse_duplicates(
        unit.astype(np.float32),
        "points must be separable at the models' float32 precision: points {i} and {j} coincide once "
        "scaled into the unit square (they differ by less than about 1e-7 of the points' spread)",
    )
    centred = unit - unit.mean(axis=0)
    if not allow_collinear and np.linalg.svd(centred, compute_uv=False)[-1] <= 1e-12:
        raise ValueError("points must not all lie on one line")
    return arr


def _refuse_duplicates(arr: np.ndarray, message: str) -> None:
    """Raise ``message`` (formatted with ``i``, ``j``, ``p``) for the first pair of equal rows."""
    order = np.lexsort((arr[:, 1], arr[:, 0]))
    ordered = arr[order]
    same = np.flatnonzero((ordered[1:] == ordered[:-1]).all(axis=1))
    if same.size:
        i, j = sorted((int(order[same[0]]), int(order[same[0] + 1])))
        raise ValueError(message.format(i=i, j=j, p=arr[i].tolist()))


def normalise(points: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Shift and scale into the unit square keeping the aspect ratio: ``(unit, scale, offset)`` with
    ``points = unit * scale + offset``. Models are trained on the unit square; lengths there times
    ``scale`` (areas times ``scale²``) are the caller's."""
    offset = points.min(axis=0)
    scale = float((points - offset).max()) or 1.0
    return (points - offset) / scale, scale, offset


# ----------------------------------------------------------------------------------------- convex hull
def convex_hull(points: np.ndarray) -> list[int]:
    """Hull vertices counter-clockwise from the smallest index (collinear boundary points excluded).

    Andrew's monotone chain on :func:`orientation` in float64 — the predicate the decoding masks use —
    rather than Qhull, whose merging tolerance keeps vertices with turns of about -1e-9 (nearly collinear
    triples) that a strictly convex polygon cannot have.
    """
    pts = np.asarray(points, dtype=np.float64)
    order = sorted(range(len(pts)), key=lambda i: (pts[i, 0], pts[i, 1]))

    def chain(indices: list[int]) -> list[int]:
        out: list[int] = []
        for i in indices:
            while len(out) >= 2 and orientation(pts[out[-2]], pts[out[-1]], pts[i]) <= 0:
                out.pop()
            out.append(i)
        return out

    lower, upper = chain(order), chain(order[::-1])
    vertices = lower[:-1] + upper[:-1]
    start = vertices.index(min(vertices))
    return vertices[start:] + vertices[:start]


def polygon_area(points: np.ndarray, cycle: Sequence[int]) -> float:
    """Signed shoelace area (positive for counter-clockwise)."""
    p = points[list(cycle)]
    return 0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))


def is_convex_ccw_polygon(points: np.ndarray, cycle: Sequence[int]) -> bool:
    """A simple, strictly convex, counter-clockwise polygon of distinct input points."""
    cycle = list(cycle)
    if len(cycle) < 3 or len(set(cycle)) != len(cycle) or min(cycle) < 0 or max(cycle) >= len(points):
        return False
    p = points[cycle]
    turns = orientation(p, np.roll(p, -1, axis=0), np.roll(p, -2, axis=0))
    if not np.all(turns > 0):
        return False
    # all left turns and total turning 360°: the angles around the first vertex increase monotonically
    fan = orientation(p[0], p[1:-1], p[2:])
    return bool(np.all(fan > 0)) and polygon_area(points, cycle) > 0


def same_cycle(a: Sequence[int], b: Sequence[int]) -> bool:
    """Equal as cyclic sequences (same orientation)."""
    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        return False
    start = b.index(a[0]) if a[0] in b else -1
    return start >= 0 and b[start:] + b[:start] == a


def hull_metrics(points: np.ndarray, predicted: Sequence[int], truth: Sequence[int]) -> dict[str, float]:
    valid = is_convex_ccw_polygon(points, predicted)
    area = polygon_area(points, predicted) / polygon_area(points, truth) if valid else 0.0
    return {"exact": float(same_cycle(predicted, truth)), "area_coverage": area, "valid": float(valid)}


# ----------------------------------------------------------------------------------------- Delaunay
def delaunay_triangles(points: np.ndarray) -> list[tuple[int, int, int]]:
    """Delaunay triangles as sorted index triples, sorted lexicographically."""
    try:
        simplices = Delaunay(points).simplices
    except QhullError as e:
        raise ValueError(f"points admit no triangulation: {str(e).splitlines()[0]}") from None
    return sorted(tuple(sorted(int(i) for i in s)) for s in simplices)


def delaunay_metrics(predicted: Sequence[Sequence[int]], truth: Sequence[Sequence[int]]) -> dict[str, float]:
    pred = {tuple(sorted(t)) for t in predicted}
    true = {tuple(sorted(t)) for t in truth}
    return {"exact": float(pred == true), "triangle_coverage": len(pred & true) / len(true)}


# ----------------------------------------------------------------------------------------- TSP
def distance_matrix(points: np.ndarray) -> np.ndarray:
    diff = points[:, None, :] - points[None, :, :]
    return np.sqrt((diff**2).sum(-1))


def tour_length(points: np.ndarray, tour: Sequence[int]) -> float:
    """Euclidean length of the closed tour through ``points [n, 2]``."""
    p = points[np.asarray(tour)]
    return float(np.sqrt(((p - np.roll(p, -1, axis=0)) ** 2).sum(-1)).sum())


def tour_cost(dist: np.ndarray, tour: Sequence[int]) -> float:
    """Length of the closed tour under a distance matrix ``[n, n]``."""
    t = np.asarray(tour)
    return float(dist[t, np.roll(t, -1)].sum())


def is_permutation(tour: Sequence[int], n: int) -> bool:
    return len(tour) == n and sorted(int(i) for i in tour) == list(range(n))


def held_karp(dist: np.ndarray) -> tuple[float, list[int]]:
    """Exact TSP by dynamic programming over subsets (``O(2^n n²)``), tour starting at city 0."""
    n = dist.shape[0]
    if n <= 3:
        tour = list(range(n))
        return float(dist[tour, np.roll(tour, -1)].sum()) if n > 1 else 0.0, tour
    if n > 20:
        raise ValueError(f"held_karp is limited to 20 cities, got {n}")
    m = n - 1  # city 0 is the fixed start; subsets range over cities 1..n-1
    full = 1 << m
    cost = np.full((full, m), np.inf)
    parent = np.full((full, m), -1, dtype=np.int64)
    for j in range(m):
        cost[1 << j, j] = dist[0, j + 1]
    d = dist[1:, 1:]
    masks = np.arange(full)
    popcount = np.array([bin(s).count("1") for s in range(full)])
    for size in range(2, m + 1):
        subsets = masks[popcount == size]
        for j in range(m):
            with_j = subsets[((subsets >> j) & 1) == 1]
            prev = with_j & ~(1 << j)
            options = cost[prev] + d[:, j]  # [subsets, m]: arrive at j from each k
            best = options.argmin(axis=1)
            cost[with_j, j] = options[np.arange(len(with_j)), best]
            parent[with_j, j] = best
    last = cost[full - 1] + dist[1:, 0]
    j = int(last.argmin())
    length = float(last[j])
    tour, subset = [], full - 1
    while j >= 0:
        tour.append(j + 1)
        j, subset = int(parent[subset, j]), subset & ~(1 << j)
    return length, [0, *reversed(tour)]


def nearest_neighbour(dist: np.ndarray, start: int = 0) -> list[int]:
    n = dist.shape[0]
    tour, visited = [start], np.zeros(n, dtype=bool)
    visited[start] = True
    for _ in range(n - 1):
        row = np.where(visited, np.inf, dist[tour[-1]])
        nxt = int(row.argmin())
        tour.append(nxt)
        visited[nxt] = True
    return tour


def _checked_distances(dist: np.ndarray) -> float:
    """The tolerance of an improvement under ``dist`` (relative to its largest entry); refuses
    non-finite distances, against which no improvement test terminates."""
    if not np.isfinite(dist).all():
        raise ValueError("distances must be finite")
    return 1e-12 * max(1.0, float(dist.max()))


def two_opt(dist: np.ndarray, tour: Sequence[int], *, deadline: Deadline | None = None) -> list[int]:
    """Best-improvement 2-opt (one vectorised scan per city) until no move shortens the tour, for at
    most ``n`` passes over the tour; ``deadline`` is checked after each pass."""
    t = np.asarray(tour, dtype=np.int64)
    n = len(t)
    tol = _checked_distances(dist)
    if n < 4:
        return t.tolist()
    for _ in range(n):
        improved = False
        for i in range(n - 2):
            a, b = t[i], t[i + 1]
            js = np.arange(i + 2, n if i > 0 else n - 1)
            c, d = t[js], t[(js + 1) % n]
            delta = dist[a, c] + dist[b, d] - dist[a, b] - dist[c, d]
            k = int(delta.argmin())
            if delta[k] < -tol:
                j = int(js[k])
                t[i + 1 : j + 1] = t[i + 1 : j + 1][::-1]
                improved = True
        if not improved:
            break
        if deadline is not None:
            deadline.check()
    return t.tolist()


def or_opt(
    dist: np.ndarray, tour: Sequence[int], max_segment: int = 3, *, deadline: Deadline | None = None
) -> list[int]:
    """Move segments of 1..``max_segment`` cities (either way round) to their best place, until no
    move shortens the tour, for at most ``n`` passes; ``deadline`` is checked after each pass."""
    t = np.asarray(tour, dtype=np.int64)
    n = len(t)
    tol = _checked_distances(dist)
    if n < 5:
        return t.tolist()
    for _ in range(n):
        improved = False
        for seg_len in range(1, min(max_segment, n - 3) + 1):
            for start in range(n):
                idx = (start + np.arange(seg_len)) % n
                seg = t[idx]
                prev, nxt = t[(start - 1) % n], t[(start + seg_len) % n]
                gain = dist[prev, seg[0]] + dist[seg[-1], nxt] - dist[prev, nxt]
                keep = np.ones(n, dtype=bool)
                keep[idx] = False
                rest = t[keep]
                u, v = rest, np.roll(rest, -1)
                forward = dist[u, seg[0]] + dist[seg[-1], v] - dist[u, v]
                backward = dist[u, seg[-1]] + dist[seg[0], v] - dist[u, v]
                costs = np.minimum(forward, backward)
                k = int(costs.argmin())
                if costs[k] < gain - tol:
                    insert = seg if forward[k] <= backward[k] else seg[::-1]
                    t = np.concatenate([rest[: k + 1], insert, rest[k + 1 :]])
                    improved = True
        if not improved:
            break
        if deadline is not None:
            deadline.check()
    return t.tolist()


POLISH_ROUNDS = 8


def polish(dist: np.ndarray, tour: Sequence[int], *, deadline: Deadline | None = None) -> list[int]:
    """2-opt then Or-opt, repeated while they improve (at most :data:`POLISH_ROUNDS` rounds, each
    bounded by the number of cities); never returns a longer tour than ``tour``."""
    tol = _checked_distances(dist)
    best = list(tour)
    best_len = tour_cost(dist, best)
    for _ in range(POLISH_ROUNDS):
        t = or_opt(dist, two_opt(dist, best, deadline=deadline), deadline=deadline)
        length = tour_cost(dist, t)
        if length >= best_len - tol:
            break
        best, best_len = t, length
    return best


def solve_tsp(dist: np.ndarray, *, starts: int = 8, seed: int = 0) -> tuple[float, list[int]]:
    """``(length, tour)`` for a distance matrix: exact up to :data:`EXACT_TSP_MAX` cities, else the best
    polished tour from ``starts`` nearest-neighbour starts."""
    n = dist.shape[0]
    if n <= EXACT_TSP_MAX:
        return held_karp(dist)
    rng = np.random.default_rng(seed)
    best_len, best = math.inf, list(range(n))
    for start in rng.choice(n, size=min(starts, n), replace=False):
        tour = polish(dist, nearest_neighbour(dist, int(start)))
        length = tour_cost(dist, tour)
        if length < best_len:
            best_len, best = length, tour
    return best_len, best


def canonical_tour(tour: Sequence[int]) -> list[int]:
    """Rotate to start at city 0 and pick the direction whose second city is the smaller."""
    t = list(tour)
    i = t.index(0)
    t = t[i:] + t[:i]
    return t if len(t) < 3 or t[1] < t[-1] else [t[0], *reversed(t[1:])]
