"""The weight average any validated pipeline keeps with ``ema``: the training loop folds in every optimizer
step and checkpoints carry it (that validation scores the average while training goes on with its own
weights: tests/genomics/test_pipeline.py)."""

from __future__ import annotations

import dataclasses

import torch

from pipelines.genomics import train_in_process
from pipelines.recommendation.domain import DOMAIN as RECOMMENDATION


def test_the_loop_folds_every_step_into_the_average_and_a_checkpoint_keeps_it():
    preset = dataclasses.replace(RECOMMENDATION.presets["tiny-ctr"], ema=0.9)
    pipeline = RECOMMENDATION.pipeline(preset)
    train_in_process(pipeline)
    steps = pipeline.steps_per_epoch(1) * preset.epochs
    assert steps > 2 and pipeline.average.updates == steps - 1  # the first step's weights start it

    resumed = RECOMMENDATION.pipeline(preset)
    resumed.load_state_dict(pipeline.state_dict())
    assert resumed.average.updates == pipeline.average.updates
    assert all(torch.equal(resumed.average.state[k], v) for k, v in pipeline.average.state.items())


def test_without_ema_there_is_no_average():
    pipeline = RECOMMENDATION.pipeline("tiny-ctr")
    assert pipeline.preset.ema == 0 and pipeline.average is None and "ema" not in pipeline.state_dict()
