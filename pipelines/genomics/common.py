"""What the four genomics pipelines share: the preset fields every task has (the model's own config nested,
a registered model to start from), identity and model building, batches of labelled sequences, and
training in-process on the harness's loop (best-epoch selection and the weight average come from
:class:`ValidatedPipeline`)."""

from __future__ import annotations

import dataclasses
import tempfile
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from pipelines.common.contract import Pipeline, ValidatedPipeline, ValidatedPreset
from pipelines.common.driver import final_model
from services.genomics.models import GenomicsConfig, GenomicsModel
from services.genomics.models import preset as model_preset
from services.genomics.tokenizer import reverse_complement

from .data import Example

# What fine-tuning takes from this pipeline when the backbone comes from a registered model (--init)
HEAD_FIELDS = ("head", "num_outputs", "labels", "task", "rc_average", "pooling", "kmer_features", "onehot_length")
# What a preset decides beyond the architecture, kept when --model swaps in another named model
TASK_FIELDS = ("dropout", "filter_emb_dim", "filter_periods", "pooling", "rc_average", "kmer_features", "task")
WINDOW_SLACK = 2  # HyenaDNA sizes l_max as the window + 2 (its [CLS] ... [SEP] convention)


@dataclass
class GenomicsPreset(ValidatedPreset):
    """``model`` is the whole model config: ``task`` names the registered model (``genomics-<task>-<arch>``)
    and the service's task, ``rc_average`` also turns on reverse-complement augmentation in training."""

    model: GenomicsConfig = field(default_factory=lambda: model_preset("tiny-1k"))
    init: str = ""  # registered model whose backbone starts fine-tuning ("" = from scratch)


class GenomicsPipeline(ValidatedPipeline):
    """One task's pipeline; subclasses load their data, batch it, take a loss step, validate and evaluate."""

    domain = "genomics"
    builder = "services.genomics.models:build_model"
    predict = "services.genomics.pyfunc:predict"
    kept_on_model_swap: ClassVar[tuple[str, ...]] = TASK_FIELDS

    preset: GenomicsPreset

    def __init__(self, preset: GenomicsPreset, data: str | None = None):
        super().__init__(preset, data)
        self.load_data()

    @classmethod
    def adjusted(cls, preset: GenomicsPreset, *, arch: str | None = None, model: str | None = None,
                 init: str | None = None, dataset: str | None = None,
                 attention: str | None = None) -> GenomicsPreset:  # fmt: skip
        """The command line's ``--model`` (another named model, this task's fields kept), ``--arch``,
        ``--attention`` (the attention archs' mechanism), ``--dataset`` (the name's tag) and ``--init``
        applied to ``preset``."""
        cfg = preset.model
        if model:
            cfg = dataclasses.replace(model_preset(model), **{f: getattr(cfg, f) for f in cls.kept_on_model_swap})
        if arch:
            cfg = dataclasses.replace(cfg, arch=arch)
        if attention:
            cfg = dataclasses.replace(cfg, attention=attention)
        if dataset:
            cfg = dataclasses.replace(cfg, task=dataset)
        changes: dict[str, Any] = {"model": cfg} if cfg != preset.model else {}
        if init:
            changes["init"] = init
        return dataclasses.replace(preset, **changes) if changes else preset

    # ------------------------------------------------------------------------------------- identity
    @property
    def arch(self) -> str:
        return self.preset.model.arch

    @property
    def registered_name(self) -> str:
        model = self.preset.model
        attention = f"-{model.attention}" if model.attention and model.attention != model.mechanism_default else ""
        return f"genomics-{model.task}-{self.arch}{attention}"

    def own_config(self) -> GenomicsConfig:
        """The model this preset trains from scratch (classification adds what only the data says)."""
        return self.preset.model

    def model_config(self) -> dict[str, Any]:
        own = self.own_config()
        if not self.preset.init:
            return own.to_dict()
        from modelstore.registry import read_registered_config, resolve_version

        init = self.preset.init
        registered = GenomicsConfig(**read_registered_config(init, resolve_version(init).version)["config"])
        return dataclasses.replace(registered, **{f: getattr(own, f) for f in HEAD_FIELDS}).to_dict()

    def build_model(self) -> nn.Module:
        cfg = GenomicsConfig(**self.model_config())
        if not self.preset.init:
            return GenomicsModel(cfg)
        from modelstore.registry import load_registered

        pretrained, _ = load_registered(self.preset.init)
        model = pretrained.with_head(**{f: getattr(cfg, f) for f in HEAD_FIELDS})
        if model.config != cfg:
            raise ValueError(f"the model built from {self.preset.init} does not match its config")
        return model

    def max_bases(self) -> int:
        return GenomicsConfig(**self.model_config()).max_bases

    @property
    def rc_augment(self) -> bool:
        return self.preset.model.rc_average

    # ------------------------------------------------------------------------------------- the task's part
    @abstractmethod
    def load_data(self) -> None:
        """Read and split this task's data (``self.data`` or the shipped default)."""


def example_batches(pipeline: GenomicsPipeline, examples: list[Example], epoch: int, rank: int, world_size: int,
                    base_dropout: float = 0.0) -> Iterator[tuple[list[str], torch.Tensor]]:  # fmt: skip
    """This worker's ``steps_per_epoch`` batches of labelled sequences: shuffled, bucketed by length (each
    pool of 50 batches sorted so a batch pads little), long sequences cropped at random to the model's
    context, optionally reverse-complemented and with bases dropped to N. A set smaller than an epoch's
    batches is cycled, one fresh permutation per pass."""
    p = pipeline.preset
    rng = np.random.default_rng([p.seed, epoch, rank])
    steps = pipeline.steps_per_epoch(world_size)
    passes = max(1, -(-steps * p.batch_size * world_size // len(examples)))
    shuffle = np.random.default_rng([p.seed, epoch])
    order = np.concatenate([shuffle.permutation(len(examples)) for _ in range(passes)])[rank::world_size]
    pool = p.batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(examples[i].sequence))
        batches += [chunk[i : i + p.batch_size] for i in range(0, len(chunk), p.batch_size)]
    rng.shuffle(batches)
    batches = batches[:steps]
    while len(batches) < steps:  # shards differ by a batch: keep workers in step
        batches.append(batches[0])
    model_max = pipeline.max_bases()
    for idx in batches:
        chosen = []
        for i in idx:
            s = examples[i].sequence
            if len(s) > model_max:  # training crops long sequences at random; evaluation uses windows
                start = int(rng.integers(0, len(s) - model_max + 1))
                s = s[start : start + model_max]
            if pipeline.rc_augment and rng.random() < 0.5:
                s = reverse_complement(s)
            if base_dropout:
                hidden = rng.random(len(s)) < base_dropout
                s = "".join("N" if h else c for c, h in zip(s, hidden))
            chosen.append(s)
        yield chosen, torch.tensor([examples[i].label for i in idx])


def train_in_process(pipeline: Pipeline) -> nn.Module:
    """Train ``pipeline`` on the harness's loop (:func:`pipelines.common.loop.train_loop`) in this process:
    Ray Train's local mode (no cluster), checkpoints in a temporary folder, no MLflow run and no
    registration (cross-validation folds, tests). Returns the final model as the driver would evaluate it
    (the best epoch restored); ``pipeline`` gets the run's state (best epoch, weight average)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.common.driver import qualified_name
    from pipelines.common.loop import train_loop
    from pipelines.common.storage import Storage

    run_name = f"{pipeline.domain}-{pipeline.preset.name}-in-process"
    with tempfile.TemporaryDirectory(prefix="genomics-train-") as folder:
        store = Storage.from_uri(folder)
        config = {
            "pipeline": qualified_name(type(pipeline)),
            "preset": pipeline.preset.to_dict(),
            "preset_class": qualified_name(type(pipeline.preset)),
            "data": pipeline.data,
            "run_id": None,  # nothing tracked
            "run_name": run_name,
            "storage_uri": store.uri,
            "local": True,
            "tracking_uri": None,
            "threads": torch.get_num_threads(),
            "fail_at_epoch": None,
        }
        TorchTrainer(
            train_loop,
            train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=0),
            run_config=RunConfig(name=run_name, **store.ray_train_storage()),
        ).fit()
        state = store.latest_state(run_name)
    if state is None:
        raise RuntimeError(f"training {run_name} in-process finished without a checkpoint")
    return final_model(pipeline, state)
