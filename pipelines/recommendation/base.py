"""What the two recommendation pipelines share: the preset fields naming the data, the registered name and
shuffled batches sharded across workers (best-epoch selection comes from :class:`ValidatedPipeline`).

A task's pipeline (:mod:`.next_item`, :mod:`.clicks`) loads its data, says how one batch trains and how
the model scores on validation (``validate``), and evaluates.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from pipelines.common.contract import ValidatedPipeline, ValidatedPreset


def registered_name(task: str, dataset: str, model: str) -> str:
    """``recommend-<task>-<dataset>-<model kind>``: the MLflow registry name of a trained recommender."""
    return f"recommend-{task}-{dataset}-{model}"


@dataclass
class RecPreset(ValidatedPreset):
    """Fields both tasks have; each task's preset adds ``model`` (its model's config) and its data sizes."""

    dataset: str = "markov"  # the tag in the registered name: markov, toys, sports, synthetic, criteo, ...
    data_format: str = "s3rec"  # the reader of --data


class RecommendationPipeline(ValidatedPipeline):
    """The recipe both tasks follow; subclasses set the class attributes and the data/model hooks."""

    domain = "recommendation"
    predict = "services.recommendation.pyfunc:predict"
    task: ClassVar[str]  # the task's tag in registered names
    kinds: ClassVar[tuple[str, ...]]  # the model kinds --model may choose
    generated: ClassVar[str]  # the dataset tag of the data generated when there is no --data

    preset: RecPreset  # the task's own preset class, with its model's config as ``model``
    train_tensors: tuple[torch.Tensor, ...]  # the training rows, one tensor per batch element

    def __init__(self, preset: RecPreset, data: str | None = None):
        super().__init__(preset, data)
        self.load()

    @abstractmethod
    def load(self) -> None:
        """Read or generate the data: at least :attr:`train_tensors`."""

    @property
    def registered_name(self) -> str:
        return registered_name(self.task, self.preset.dataset, self.preset.model.kind)

    # ------------------------------------------------------------------------------------- training
    def steps_per_epoch(self, world_size: int) -> int:
        rows = len(self.train_tensors[0])
        return max(1, -(-rows // (self.preset.batch_size * world_size)))

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
        p = self.preset
        generator = torch.Generator().manual_seed(p.seed * 1000 + epoch)
        order = torch.randperm(len(self.train_tensors[0]), generator=generator)
        shard = order[rank::world_size]
        for step in range(self.steps_per_epoch(world_size)):
            idx = shard[step * p.batch_size : (step + 1) * p.batch_size]
            if len(idx) == 0:  # shards can differ by one batch: repeat a batch to keep workers in step
                idx = shard[: p.batch_size]
            yield tuple(t[idx] for t in self.train_tensors)
