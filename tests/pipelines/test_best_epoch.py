"""Early stopping with a candidate to beat: a baseline given before training (epoch -1) is kept unless an
epoch beats it, and does not stop a run that is still improving."""

from __future__ import annotations

import torch

from pipelines.common.contract import BestEpoch


def test_a_candidate_before_training_competes_for_the_weights_but_not_for_patience():
    model = torch.nn.Linear(1, 1)
    best = BestEpoch(patience=2)
    best.update(0.9, -1, model)
    for epoch, score in enumerate([0.5, 0.6, 0.7, 0.8]):  # each below the candidate, each the run's best
        best.update(score, epoch, model)
        assert not best.should_stop() and best.best_epoch == -1
    best.update(0.8, 4, model)
    assert not best.should_stop()
    best.update(0.7, 5, model)
    assert best.should_stop() and best.best_epoch == -1  # two epochs without the run's own improvement
    resumed = BestEpoch(patience=2)
    resumed.load_state_dict(best.state_dict())
    assert (resumed.run_best, resumed.stale, resumed.best_score) == (0.8, 2, 0.9)
    assert resumed.update(0.95, 6, model) and resumed.best_epoch == 6 and resumed.stale == 0


def test_without_a_candidate_patience_counts_from_the_best_epoch():
    model = torch.nn.Linear(1, 1)
    best = BestEpoch(patience=2)
    for epoch, score in enumerate([0.5, 0.7, 0.6, 0.7]):  # a tie is no improvement
        best.update(score, epoch, model)
    assert best.should_stop() and best.best_epoch == 1


def test_an_epoch_that_does_not_clear_the_candidate_keeps_it_whatever_its_score():
    model = torch.nn.Linear(1, 1)
    best = BestEpoch(patience=3)
    best.update(0.9, -1, model)
    assert not best.update(1.0, 0, model, clears_candidate=False) and best.best_epoch == -1
    assert best.run_best == 1.0 and best.stale == 0  # the run's own best still counts for patience
    assert best.update(0.95, 1, model) and best.best_epoch == 1
    # once a training epoch holds the best, a higher score replaces it as before
    assert best.update(0.97, 2, model, clears_candidate=False) and best.best_epoch == 2
    plain = BestEpoch()  # no candidate: nothing to clear
    assert plain.update(0.5, 0, model, clears_candidate=False) and plain.best_epoch == 0
