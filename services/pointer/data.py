"""Labelled instances for the pointer tasks, as padded index sequences the models are trained on.

Targets follow the decoding masks of ``services.pointer.constraints``: TSP tours start at city 0 (the
direction whose second city is smaller), hulls run counter-clockwise from their smallest index then
END, triangulations list sorted triangles in lexicographic order then END (END = ``n``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import problems


def target_sequence(task: str, points: np.ndarray) -> list[int]:
    n = len(points)
    if task == "tsp":
        _, tour = problems.solve_tsp(problems.distance_matrix(points))
        return problems.canonical_tour(tour)
    if task == "convex_hull":
        return [*problems.convex_hull(points), n]
    if task == "delaunay":
        return [i for tri in problems.delaunay_triangles(points) for i in tri] + [n]
    raise ValueError(f"unknown task {task!r}")


def pad_sequences(sequences: list[list[int]], pad: int) -> torch.Tensor:
    length = max(len(s) for s in sequences)
    out = torch.full((len(sequences), length), pad, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq)
    return out


def labelled_batch(task: str, points: np.ndarray, order: str = "given") -> tuple[torch.Tensor, torch.Tensor]:
    """``(points [B, n, 2] float32, targets [B, T] long)``, the points in the model's input ``order`` (the
    labels index that order); TSP pads with -1, others with END."""
    points, _ = problems.in_model_order(points, order)
    n = points.shape[1]
    sequences = [target_sequence(task, p) for p in points]
    return torch.from_numpy(points).float(), pad_sequences(sequences, -1 if task == "tsp" else n)


def make_dataset(task: str, n: int, count: int, seed: int, cache_dir: Path | None = None, order: str = "given"):
    """``count`` uniform instances of ``n`` points with exact labels, in the model's input ``order`` (cached
    as .npz when asked, since exact TSP labels cost seconds per thousand)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{task}-n{n}-{count}-s{seed}{'' if order == 'given' else '-' + order}.npz"
        if path.exists():
            data = np.load(path)
            return torch.from_numpy(data["points"]), torch.from_numpy(data["targets"])
    points = problems.uniform_points(np.random.default_rng(seed), count, n)
    pts, targets = labelled_batch(task, points, order)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, points=pts.numpy(), targets=targets.numpy())
        tmp.replace(path)
    return pts, targets


def read_hull_file(path: str | Path, limit: int | None = None) -> tuple[np.ndarray, list[list[int]]]:
    """Pointer Networks' convex hull files: ``x1 y1 ... xn yn output i1 ... ik`` (1-based, closed).

    Returns ``(points [m, n, 2], hulls)`` with each hull as 0-based indices, counter-clockwise from
    the smallest index (the file's own order is checked to be that polygon, up to rotation).
    """
    points, hulls = [], []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if limit is not None and len(points) >= limit:
                break
            if not line.strip():
                continue
            coords, _, output = line.partition("output")
            values = [float(v) for v in coords.split()]
            if len(values) % 2 or not output.strip():
                raise ValueError(f"{path}:{line_no}: expected 'x1 y1 ... output i1 ... ik'")
            pts = np.asarray(values).reshape(-1, 2)
            cycle = [int(i) - 1 for i in output.split()]
            if cycle[0] == cycle[-1]:
                cycle = cycle[:-1]
            start = cycle.index(min(cycle))
            cycle = cycle[start:] + cycle[:start]
            if problems.polygon_area(pts, cycle) < 0:  # stored clockwise: reverse, keep the start
                cycle = [cycle[0], *reversed(cycle[1:])]
            points.append(pts)
            hulls.append(cycle)
    return np.stack(points), hulls
