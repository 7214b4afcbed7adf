"""Every decode of every model is a valid answer; exact labels are feasible under the masks;
teacher forcing, beam search and sampling agree with their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.pointer import constraints, data, problems, search, solver
from services.pointer.models import MODEL_KINDS, build_model


def _tiny(kind: str, task: str):
    torch.manual_seed(0)
    return build_model({"kind": kind, "task": task, "hidden": 16, "layers": 1, "heads": 2, "ff_hidden": 32}).eval()


def _valid(task: str, points: np.ndarray, answer) -> bool:
    if task == "tsp":
        return problems.is_permutation(answer, len(points))
    if task == "convex_hull":
        return problems.is_convex_ccw_polygon(points, answer)
    triangles = [tuple(t) for t in answer]
    return (
        len(triangles) >= 1
        and len(set(triangles)) == len(triangles)
        and all(a < b < c and abs(problems.orientation(points[a], points[b], points[c])) > 0 for a, b, c in triangles)
    )


@pytest.mark.parametrize("task", constraints.TASKS)
@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("n", [3, 5, 9, 14])
def test_every_strategy_returns_valid_answers(task, kind, n):
    model = _tiny(kind, task)
    points = torch.rand(6, n, 2, generator=torch.Generator().manual_seed(n))
    outputs = {
        "greedy": search.greedy(model, points, task)[0],
        "beam": search.beam_search(model, points, task, width=3),
        "sample": search.sample_best(model, points, task, samples=4),
    }
    for name, sequences in outputs.items():
        for i in range(len(points)):
            answer = constraints.to_answer(task, sequences[i].tolist(), n)
            assert _valid(task, points[i].double().numpy(), answer), (name, answer)


@pytest.mark.parametrize("task", constraints.TASKS)
def test_exact_labels_are_feasible_under_the_masks(task):
    """Teacher forcing raises if a target step is masked out: the labels and masks must agree."""
    model = _tiny("ptrnet", task)
    rng = np.random.default_rng(0)
    for n in (4, 7, 12):
        points, targets = data.labelled_batch(task, problems.uniform_points(rng, 40, n))
        log_likelihood = search.teacher_forcing(model, points, task, targets)
        assert torch.isfinite(log_likelihood).all()


def test_hull_masks_accept_only_convex_counter_clockwise_continuations():
    pts = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]]])
    c = constraints.make_constraint("convex_hull", pts)
    assert c.mask()[0, :5].all() and not c.mask()[0, 5]  # any start, no END yet
    c.update(torch.tensor([0]))
    c.update(torch.tensor([1]))
    allowed = c.mask()[0]
    assert allowed.tolist() == [False, False, True, True, True, False]  # left of 0->1, no END with 2 points
    c.update(torch.tensor([2]))
    allowed = c.mask()[0]
    assert allowed[3] and not allowed[4] and allowed[5]  # 4 would turn right; END closes a triangle
    c.update(torch.tensor([3]))
    c.update(torch.tensor([5]))
    assert bool(c.done[0])


def test_teacher_forcing_equals_the_sum_of_step_log_probabilities():
    model = _tiny("attention", "tsp")
    points = torch.rand(3, 6, 2)
    tours, log_likelihood = search.rollout(model, points, "tsp", sample=False)
    assert torch.allclose(search.teacher_forcing(model, points, "tsp", tours), log_likelihood, atol=1e-5)


def test_beam_width_one_is_greedy_and_sampling_never_loses_to_greedy():
    model = _tiny("attention", "tsp")
    points = torch.rand(5, 8, 2, generator=torch.Generator().manual_seed(3))
    greedy, _ = search.greedy(model, points, "tsp")
    assert torch.equal(search.beam_search(model, points, "tsp", width=1), greedy)
    best = search.sample_best(model, points, "tsp", samples=16)
    assert bool((search.tour_lengths(points, best) <= search.tour_lengths(points, greedy) + 1e-6).all())


def test_tour_lengths_match_numpy():
    points = torch.rand(2, 7, 2, dtype=torch.float64)
    tours = torch.stack([torch.randperm(7), torch.randperm(7)])
    for i in range(2):
        expected = problems.tour_length(points[i].numpy(), tours[i].tolist())
        assert float(search.tour_lengths(points, tours)[i]) == pytest.approx(expected)


@pytest.mark.parametrize("task", ["delaunay", "convex_hull", "tsp"])
def test_a_model_reading_points_sorted_by_x_answers_in_the_given_order(task):
    """An ``input_order="x"`` model sees each instance sorted by x whatever the caller's order: answering a
    shuffled instance is answering the original one, indices mapped through the shuffle; its labels index
    the sorted points (Delaunay: triangles listed left to right)."""
    torch.manual_seed(0)
    model = build_model({"kind": "ptrnet", "task": task, "hidden": 16, "input_order": "x"}).eval()
    rng = np.random.default_rng(3)
    points = problems.uniform_points(rng, 4, 9)
    shuffle = np.stack([rng.permutation(9) for _ in range(4)])
    shuffled = np.take_along_axis(points, shuffle[..., None], axis=1)
    options = solver.Options("greedy")
    for original, moved, q in zip(points, shuffled, shuffle):
        a = solver.solve_many(model, task, [original], options)[0]
        b = solver.solve_many(model, task, [moved], options)[0]
        key = {"delaunay": "triangles", "convex_hull": "hull", "tsp": "tour"}[task]
        mapped = [[int(q[i]) for i in tri] for tri in b[key]] if task == "delaunay" else [int(q[i]) for i in b[key]]
        if task == "delaunay":
            assert sorted(sorted(t) for t in mapped) == a[key]
            assert _valid(task, original, [tuple(t) for t in a[key]])
        else:
            assert mapped == a[key]  # the same cycle, started where the sorted order starts it
    sorted_points, perm = problems.in_model_order(points, "x")
    assert (np.diff(sorted_points[..., 0], axis=1) >= 0).all() and (
        sorted_points == points[np.arange(4)[:, None], perm]
    ).all()
    _, targets = data.labelled_batch("delaunay", points, "x")
    first = [int(i) for i in targets[0][: 3 * len(problems.delaunay_triangles(points[0]))]]
    assert first == [i for tri in problems.delaunay_triangles(sorted_points[0]) for i in tri]
    with pytest.raises(ValueError, match="input_order"):
        build_model({"kind": "ptrnet", "task": task, "input_order": "y"})


def test_delaunay_masks_judge_float32_inputs_in_float64():
    """A sliver that float32 arithmetic calls collinear (area exactly 0) is still a triangle: the masks
    compute orientation in float64 as the labels do (a float32 mask stopped a training on such a label)."""
    points = torch.tensor([[[0.1146882176399231, 0.3167651295661926], [0.6965049505233765, 0.9142746925354004],
                            [0.6587472558021545, 0.8754985928535461]]], dtype=torch.float32)  # fmt: skip
    assert float(constraints._orient(points[0, 0], points[0, 1], points[0, 2])) == 0.0  # float32 misjudges it
    targets = torch.tensor([[0, 1, 2, 3]])
    assert torch.isfinite(search.teacher_forcing(_tiny("ptrnet", "delaunay"), points, "delaunay", targets)).all()
