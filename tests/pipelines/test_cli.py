"""The command line every pipeline shares, run for real (in-process training, a real MLflow store): its
overrides reach the preset that trains, and the run logs them."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest
from mlflow import MlflowClient

from pipelines import genomics
from pipelines.common import cli
from pipelines.genomics.domain import DOMAIN
from pipelines.recommendation.domain import DOMAIN as RECOMMENDATION


def test_seed_epochs_and_set_override_the_preset_and_are_logged(ray_cluster, capsys):
    base = DOMAIN.presets["tiny-splice"]
    assert base.seed != 3 and base.epochs != 1 and base.lr != 0.002 and base.model.dropout != 0.05
    # the suite's Ray session (the run would start one of its own, which the cluster fixture could not
    # start beside); a registered name of its own (--dataset), so that no other test's model gains a version
    argv = ["finetune", "--task", "tiny-splice", "--dataset", "cli-seed", "--workers", "0", "--seed", "3",
            "--epochs", "1", "--set", "lr=0.002", "--set", "model.dropout=0.05", "--no-promote"]  # fmt: skip
    assert genomics.main(argv) == 0
    registered, run_id = re.search(r"registered (\S+) v\d+ .*; run (\w+)\)", capsys.readouterr().out).groups()
    assert "cli-seed" in registered
    params = MlflowClient().get_run(run_id).data.params
    assert (params["preset.seed"], params["preset.epochs"]) == ("3", "1")
    assert (params["preset.lr"], params["preset.model.dropout"]) == ("0.002", "0.05")


def test_set_reads_each_field_as_its_type():
    base = DOMAIN.presets["nrc"]
    assert cli.with_setting(base, "lr=5e-4").lr == 5e-4
    assert cli.with_setting(base, "epochs=7").epochs == 7
    assert cli.with_setting(base, "model.dropout=0.3").model == dataclasses.replace(base.model, dropout=0.3)
    assert cli.with_setting(base, "grad_clip=none").grad_clip is None  # an optional field
    assert cli.with_setting(base, "fit_context=true").fit_context is True
    assert cli.with_setting(base, "init=genomics-mlm-nrc-beacon").init == "genomics-mlm-nrc-beacon"
    assert cli.with_setting(base, "model.pooling=last").model.pooling == "last"
    clicks = RECOMMENDATION.presets["hiformer-synthetic"]
    assert cli.with_setting(clicks, "model.mlp=128,64").model.mlp == [128, 64]
    assert cli.with_setting(clicks, "model.mlp=[32]").model.mlp == [32]
    with pytest.raises(ValueError, match=r"--set model.mlp=wide: must be a comma-separated list"):
        cli.with_setting(clicks, "model.mlp=wide")
    with pytest.raises(ValueError, match=r"--set model.mlp=1.5,2: must be a comma-separated list of int"):
        cli.with_setting(clicks, "model.mlp=1.5,2")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("lr=fast", "--set lr=fast: must be a finite number"),
        ("lr=nan", "--set lr=nan: must be a finite number"),
        ("epochs=1.5", "--set epochs=1.5: must be an integer"),
        ("fit_context=maybe", "--set fit_context=maybe: must be true or false"),
        ("lrr=1", "--set lrr: ClassifyPreset has no field 'lrr'; did you mean lr?"),
        ("model.dropoutt=0.1", "--set model.dropoutt: GenomicsConfig has no field 'dropoutt'; did you mean dropout"),
        ("model=3", "--set model: a config; set its fields as model.FIELD=VALUE"),
        ("lr.x=1", "--set lr.x: 'lr' is a float, not a config with fields"),
        ("lr", "expected KEY=VALUE"),
    ],
)
def test_a_bad_set_names_the_key_and_the_rule(setting, message):
    with pytest.raises(ValueError) as error:
        cli.with_setting(DOMAIN.presets["nrc"], setting)
    assert message in str(error.value)


def test_a_bad_set_ends_the_command_in_one_line_before_anything_trains(capsys):
    assert genomics.main(["finetune", "--task", "tiny-splice", "--workers", "0", "--set", "batch_size=big"]) == 2
    assert capsys.readouterr().err == "error: --set batch_size=big: must be an integer\n"


def test_a_command_without_epochs_or_cpus_overrides_only_the_seed():
    """``crossval`` takes ``--seed`` alone: the preset's epochs and CPUs stay."""
    base = DOMAIN.presets["tiny-splice"]
    preset = cli.overridden(base, argparse.Namespace(seed=2))
    assert (preset.seed, preset.epochs, preset.cpus_per_worker) == (2, base.epochs, base.cpus_per_worker) != (
        base.seed, base.epochs, base.cpus_per_worker)  # fmt: skip
    assert cli.overridden(base, argparse.Namespace(seed=None, epochs=None, cpus=None)) == base
