"""The pointer pipelines register their best validation epoch, not their last (lower is better for the
TSP gap, higher for hull accuracy), and the choice survives a checkpoint and resume."""

from __future__ import annotations

import pytest
import torch

from pipelines.pointer import DOMAIN


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("preset", ["tiny-tsp", "tiny-hull"])
def test_the_best_validation_epoch_is_the_one_kept(preset):
    pipeline = DOMAIN.pipeline(preset)
    primary, higher = pipeline.problem.primary, pipeline.problem.higher_is_better
    torch.manual_seed(0)
    candidates = [pipeline.build_model().eval() for _ in range(3)]
    model = pipeline.build_model().eval()
    scores = []
    for epoch, candidate in enumerate(candidates):
        model.load_state_dict(candidate.state_dict())
        metrics = pipeline.end_epoch(model, epoch)
        scores.append(metrics[f"val/{primary}"])
    signed = [s if higher else -s for s in scores]
    best = max(range(3), key=lambda i: (signed[i], -i))  # the first of equals, as BestEpoch keeps it
    assert metrics["val/best_epoch"] == best
    assert len(set(scores)) > 1, scores  # three random models that score alike would test nothing

    resumed = DOMAIN.pipeline(preset)
    resumed.load_state_dict(pipeline.state_dict())
    for p in (pipeline, resumed):
        final = pipeline.build_model()
        p.finalize(final)
        kept = _weights(final)
        assert all(torch.equal(kept[k], v) for k, v in candidates[best].state_dict().items()), (scores, best)
