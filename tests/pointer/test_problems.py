"""Exact labels, solvers, validity checks and TSPLIB reading for the pointer tasks."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from services.common.deadline import Deadline, DeadlineExceeded
from services.pointer import data, problems, tsplib

DATA = Path(__file__).resolve().parent.parent / "data"


def _brute_force(dist: np.ndarray) -> float:
    n = len(dist)
    return min(problems.tour_cost(dist, [0, *p]) for p in itertools.permutations(range(1, n)))


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_held_karp_matches_brute_force(n):
    rng = np.random.default_rng(n)
    for _ in range(3):
        dist = problems.distance_matrix(rng.random((n, 2)))
        length, tour = problems.held_karp(dist)
        assert problems.is_permutation(tour, n) and tour[0] == 0
        assert length == pytest.approx(problems.tour_cost(dist, tour))
        assert length == pytest.approx(_brute_force(dist))


def test_local_search_never_worsens_and_heuristic_is_near_exact():
    rng = np.random.default_rng(1)
    gaps = []
    for _ in range(5):
        pts = rng.random((14, 2))
        dist = problems.distance_matrix(pts)
        start = problems.nearest_neighbour(dist, 0)
        for improved in (
            problems.two_opt(dist, start),
            problems.or_opt(dist, start),
            problems.polish(dist, start),
        ):
            assert problems.is_permutation(improved, 14)
            assert problems.tour_cost(dist, improved) <= problems.tour_cost(dist, start) + 1e-9
        exact, _ = problems.held_karp(dist)
        heuristic = min(
            problems.tour_cost(dist, problems.polish(dist, problems.nearest_neighbour(dist, s))) for s in range(8)
        )
        assert heuristic >= exact - 1e-9
        gaps.append(heuristic / exact - 1)
    assert np.mean(gaps) < 0.01  # multi-start 2-opt + Or-opt is within 1% of optimal on average at n = 14


def test_solve_tsp_is_exact_up_to_twelve_cities():
    pts = np.random.default_rng(2).random((10, 2))
    dist = problems.distance_matrix(pts)
    assert problems.solve_tsp(dist)[0] == pytest.approx(_brute_force(dist))


def test_convex_hull_order_and_metrics():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.2], [1.0, 1.0], [0.0, 1.0]])
    hull = problems.convex_hull(pts)
    assert hull == [0, 1, 3, 4]
    assert problems.is_convex_ccw_polygon(pts, hull)
    assert not problems.is_convex_ccw_polygon(pts, [0, 4, 3, 1])  # clockwise
    assert not problems.is_convex_ccw_polygon(pts, [0, 1, 2, 3, 4])  # point 2 is a reflex vertex
    assert problems.polygon_area(pts, hull) == pytest.approx(1.0)
    m = problems.hull_metrics(pts, [1, 3, 4, 0], hull)  # same cycle, other start
    assert m == {"exact": 1.0, "area_coverage": pytest.approx(1.0), "valid": 1.0}
    m = problems.hull_metrics(pts, [0, 1, 3], hull)
    assert m["exact"] == 0.0 and m["area_coverage"] == pytest.approx(0.5)


def test_delaunay_labels_and_metrics():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.1, 1.2]])
    tris = problems.delaunay_triangles(pts)
    assert tris == sorted(tris) and all(a < b < c for a, b, c in tris)
    assert len(tris) == 2
    assert problems.delaunay_metrics(tris, tris) == {"exact": 1.0, "triangle_coverage": 1.0}
    assert problems.delaunay_metrics(tris[:1], tris)["triangle_coverage"] == 0.5


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([[0, 0], [1, 1]], "at least 3"),
        ([[0, 0], [1, 1], [0, 0]], "points 0 and 2"),
        ([[0, 0], [1, float("nan")], [2, 0]], "finite: point 1"),
        ([[0, 0, 0], [1, 1, 1], [2, 2, 2]], "shape"),
        ([[0, 0], [1, 1], [2, 2]], "one line"),
        ("not points", "number pairs"),
    ],
)
def test_check_points_refuses_bad_input(points, message):
    with pytest.raises(ValueError, match=message):
        problems.check_points(points, max_points=10)


def test_check_points_limits_and_collinear_tsp():
    with pytest.raises(ValueError, match="at most 4"):
        problems.check_points(np.random.default_rng(0).random((5, 2)), max_points=4)
    line = problems.check_points([[0, 0], [1, 1], [2, 2]], allow_collinear=True)
    assert line.shape == (3, 2)


def test_tsplib_geo_distances_reproduce_the_published_optimum():
    instance = tsplib.read_tsp(DATA / "burma14.tsp")
    assert (instance.name, instance.dimension, instance.edge_weight_type) == ("burma14", 14, "GEO")
    length, _ = problems.held_karp(instance.distances())
    assert length == 3323  # TSPLIB's optimum: GEO rounding and sphere constants are exactly TSPLIB's


def test_tsplib_metrics_and_errors():
    text = (
        "NAME: t\nTYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: {kind}\nNODE_COORD_SECTION\n1 0 0\n2 3 4\n3 0 5.5\nEOF\n"
    )
    euc = tsplib.parse_tsp(text.format(kind="EUC_2D")).distances()
    assert euc[0, 1] == 5 and euc[0, 2] == 6  # nint(5.5) = 6
    assert tsplib.parse_tsp(text.format(kind="CEIL_2D")).distances()[1, 2] == 4  # ceil(3.20)
    att = tsplib.parse_tsp(text.format(kind="ATT")).distances()
    assert att[0, 1] == 2  # sqrt(25/10) = 1.58 -> nint 2 (2 >= 1.58, so no +1)
    with pytest.raises(ValueError, match="EDGE_WEIGHT_TYPE must be one of"):
        tsplib.parse_tsp(text.format(kind="EXPLICIT"))
    with pytest.raises(ValueError, match="lacks node 3"):
        tsplib.parse_tsp(text.format(kind="EUC_2D").replace("3 0 5.5\n", ""))
    with pytest.raises(ValueError, match="DIMENSION"):
        tsplib.parse_tsp("NAME: x\nEDGE_WEIGHT_TYPE: EUC_2D\nNODE_COORD_SECTION\n1 0 0\n")


def test_read_paper_hull_file_orients_counter_clockwise():
    points, hulls = data.read_hull_file(DATA / "convex_hull_5_sample.txt")
    assert points.shape == (3, 5, 2)
    for pts, hull in zip(points, hulls):
        assert hull[0] == min(hull)
        assert problems.is_convex_ccw_polygon(pts, hull)
        assert problems.same_cycle(hull, problems.convex_hull(pts))


def test_hull_labels_agree_with_the_decoding_masks_on_float32_inputs():
    """Labels come from float64 geometry, models see float32 points: generated points are float32 values and
    the masks test orientation in float64, so no near-collinear hull vertex is refused (a 50-point training
    batch once failed on a turn of -3e-9)."""
    import torch

    from services.pointer.constraints import make_constraint

    points = problems.uniform_points(np.random.default_rng(7), 2000, 50)
    assert np.array_equal(points, points.astype(np.float32).astype(np.float64))
    labels = [problems.convex_hull(p) for p in points]
    assert all(problems.is_convex_ccw_polygon(p, h) for p, h in zip(points, labels))
    constraint = make_constraint("convex_hull", torch.tensor(points, dtype=torch.float32))
    steps = max(map(len, labels)) + 1
    targets = torch.full((len(labels), steps), constraint.end)
    for row, hull in enumerate(labels):
        targets[row, : len(hull)] = torch.tensor(hull)
    for step in range(steps):
        allowed = constraint.mask()
        done = constraint.state["done"]
        assert bool((allowed.gather(1, targets[:, step : step + 1]).squeeze(1) | done).all()), step
        constraint.update(targets[:, step])


def test_polishing_is_bounded_and_refuses_non_finite_distances():
    rng = np.random.default_rng(3)
    dist = problems.distance_matrix(rng.random((60, 2)))
    with pytest.raises(DeadlineExceeded):
        problems.polish(dist, list(range(60)), deadline=Deadline(0.0))  # expired: stops after one pass
    broken = dist.copy()
    broken[3, 7] = broken[7, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        problems.polish(broken, list(range(60)))
    # identical answers without a deadline, and never longer than the input tour
    tour = problems.polish(dist, list(range(60)))
    assert problems.tour_cost(dist, tour) <= problems.tour_cost(dist, list(range(60)))


@pytest.mark.parametrize(
    ("points", "rule"),
    [
        ([[-1.7e308, 0], [1.7e308, 1], [0, 2]], "span at most"),
        ([[0, 0], [1e-300, 0], [1e16, 1]], "float32 precision"),
        ([[0, 0], [1, 1], [2, 2 + 1e-15]], "one line"),
    ],
)
def test_points_the_models_cannot_represent_are_refused(points, rule):
    with pytest.raises(ValueError, match=rule):
        problems.check_points(points)


def test_answers_are_computed_in_the_unit_square_and_scaled_back():
    from services.pointer.solver import Options, answer

    points = problems.check_points([[1e140, 0], [0, 1e140], [1e140, 1e140], [0, 0]])
    unit, scale, _ = problems.normalise(points)
    hull = answer("convex_hull", unit, scale, [3, 0, 2, 1, 4], Options())
    assert hull["area"] == pytest.approx(1e280)  # the raw shoelace products would overflow
    tsp = answer("tsp", unit, scale, [3, 0, 2, 1], Options(polish=True))
    assert tsp["length"] == pytest.approx(4e140)


def test_shipped_test_set_references_are_what_a_fresh_solve_gives():
    from pipelines.pointer.scoring import SHIPPED, problem

    files = sorted(SHIPPED.glob("test-*.json"))
    assert files, SHIPPED
    for path in files:
        task, n, size, seed = path.stem.removeprefix("test-").split("-")
        shipped = json.loads(path.read_text())["references"]
        points = problems.uniform_points(np.random.default_rng(int(seed[1:])), int(size), int(n[1:]))
        assert len(shipped) == len(points), path.name
        scorer = problem(task)
        for i in range(0, len(points), len(points) // 8):  # eight instances spread over the set
            assert scorer.as_json(scorer.reference(points[i])) == pytest.approx(shipped[i], rel=1e-9), (path.name, i)
