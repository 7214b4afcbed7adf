"""The command line every pipeline shares, run for real (in-process training, a real MLflow store): its
overrides reach the preset that trains, and the run logs them."""

from __future__ import annotations

import argparse
import re

from mlflow import MlflowClient

from pipelines import genomics
from pipelines.common import cli
from pipelines.genomics.domain import DOMAIN


def test_seed_and_epochs_override_the_preset_and_are_logged(ray_cluster, capsys):
    base = DOMAIN.presets["tiny-splice"]
    assert base.seed != 3 and base.epochs != 1
    # the suite's Ray session (the run would start one of its own, which the cluster fixture could not
    # start beside); a registered name of its own (--dataset), so that no other test's model gains a version
    argv = ["finetune", "--task", "tiny-splice", "--dataset", "cli-seed", "--workers", "0", "--seed", "3",
            "--epochs", "1", "--no-promote"]  # fmt: skip
    assert genomics.main(argv) == 0
    registered, run_id = re.search(r"registered (\S+) v\d+ .*; run (\w+)\)", capsys.readouterr().out).groups()
    assert "cli-seed" in registered
    params = MlflowClient().get_run(run_id).data.params
    assert (params["preset.seed"], params["preset.epochs"]) == ("3", "1")


def test_a_command_without_epochs_or_cpus_overrides_only_the_seed():
    """``crossval`` takes ``--seed`` alone: the preset's epochs and CPUs stay."""
    base = DOMAIN.presets["tiny-splice"]
    preset = cli.overridden(base, argparse.Namespace(seed=2))
    assert (preset.seed, preset.epochs, preset.cpus_per_worker) == (2, base.epochs, base.cpus_per_worker) != (
        base.seed, base.epochs, base.cpus_per_worker)  # fmt: skip
    assert cli.overridden(base, argparse.Namespace(seed=None, epochs=None, cpus=None)) == base
