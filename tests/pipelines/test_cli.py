"""The command line every pipeline shares: its overrides reach the preset that trains."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipelines.common import cli
from pipelines.genomics.domain import DOMAIN


@pytest.fixture
def trained_presets(monkeypatch):
    """The presets that ``train`` receives (the training itself is not this test's subject)."""
    seen = []

    def fake_train(pipeline_class, preset, **kwargs):
        seen.append(preset)
        return SimpleNamespace(evaluation=SimpleNamespace(table=[{"accuracy": 1.0}]), registered_name="m",
                               version=1, promoted=False, run_id="r")  # fmt: skip

    monkeypatch.setattr(cli, "train", fake_train)
    return seen


def test_seed_epochs_and_cpus_override_the_preset(trained_presets):
    base = DOMAIN.presets["tiny-splice"]
    assert cli.main(DOMAIN, ["train", "--preset", "tiny-splice", "--seed", "3", "--epochs", "2", "--cpus", "0.5"]) == 0
    assert cli.main(DOMAIN, ["train", "--preset", "tiny-splice"]) == 0
    changed, kept = trained_presets
    assert (changed.seed, changed.epochs, changed.cpus_per_worker) == (3, 2, 0.5) and base.seed != 3
    assert (kept.seed, kept.epochs, kept.cpus_per_worker) == (base.seed, base.epochs, base.cpus_per_worker)
