"""Masked-language-model pretraining of BEACON-B (BERT masking over single nucleotides).

The sequences of a FASTA (``--data``; default: generated UCI-like 60-mers) are shuffled with
``split_seed``; one in 20 is held out for validation, which is also the evaluation (pretraining has no
test of its own: the fine-tuning tasks are).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.common.contract import Evaluation
from services.genomics import sequences as seqs
from services.genomics.models import GenomicsConfig, GenomicsModel, mask_tokens
from services.genomics.models import preset as model_preset

from .common import TASK_FIELDS, GenomicsPipeline, GenomicsPreset, example_batches
from .data import Example, synthetic_splice


@dataclass
class MLMPreset(GenomicsPreset):
    model: GenomicsConfig = field(default_factory=lambda: model_preset("beacon-small", task="mlm", dropout=0.1))
    mask_probability: float = 0.15
    max_train: int = 0  # use at most this many training sequences (0 = all)
    synthetic_size: int = 1200  # generated sequences when no --data is given
    split_seed: int = 0  # the validation split (the training seed is ``seed``)


# fmt: off
PRESETS: dict[str, MLMPreset] = {p.name: p for p in (
    MLMPreset(name="mlm-nrc", about="BEACON-B (small) masked-LM pretraining on a FASTA, e.g. nRC's training set",
              model=model_preset("beacon-small", task="mlm-nrc", dropout=0.1), epochs=20, batch_size=32, lr=5e-4,
              weight_decay=0.01, warmup_steps=200),
)}
# fmt: on


class MLMPipeline(GenomicsPipeline):
    presets = PRESETS
    kept_on_model_swap = (*TASK_FIELDS, "head", "num_outputs", "labels")

    preset: MLMPreset

    def load_data(self) -> None:
        p = self.preset
        if self.data:
            records = [r.sequence for r in seqs.read_sequences(self.data)]
        else:
            records = [e.sequence for e in synthetic_splice(p.synthetic_size, seed=p.seed)]
        order = np.random.default_rng(p.split_seed).permutation(len(records))
        cut = max(1, len(records) // 20)
        self.valid = [records[i] for i in order[:cut]]
        self.train = [Example(records[i], 0) for i in order[cut:]]
        if p.max_train:
            self.train = self.train[: p.max_train]

    def steps_per_epoch(self, world_size: int) -> int:
        return max(1, -(-len(self.train) // (self.preset.batch_size * world_size)))

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
        return example_batches(self, self.train, epoch, rank, world_size)

    def train_step(self, model: GenomicsModel, batch: tuple[list[str], torch.Tensor]) -> dict[str, Any]:
        tok = model.tokenizer
        ids, mask = tok.batch(batch[0])
        inputs, labels = mask_tokens(ids, mask, tok, probability=self.preset.mask_probability)
        logits = model(inputs, mask)
        return {"loss": F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))}

    def validate(self, model: GenomicsModel) -> tuple[dict[str, float], float]:
        loss, accuracy = self.mlm_metrics(model, self.valid)
        return {"mlm_loss": loss, "mlm_accuracy": accuracy}, -loss

    @torch.no_grad()
    def mlm_metrics(self, model: GenomicsModel, sequences: list[str]) -> tuple[float, float]:
        """Masked-token loss and accuracy with a fixed masking (so epochs compare)."""
        model.eval()
        generator = torch.Generator().manual_seed(1234)
        total, correct, count = 0.0, 0, 0
        limit = model.config.max_bases
        chunks = [s[:limit] for s in sequences]  # validation of pretraining only: a prefix is enough
        for start in range(0, len(chunks), 32):
            ids, mask = model.tokenizer.batch(chunks[start : start + 32])
            inputs, labels = mask_tokens(ids, mask, model.tokenizer, generator=generator)
            logits = model(inputs, mask)
            chosen = labels != -100
            total += float(F.cross_entropy(logits[chosen], labels[chosen], reduction="sum"))
            correct += int((logits[chosen].argmax(-1) == labels[chosen]).sum())
            count += int(chosen.sum())
        return total / max(count, 1), correct / max(count, 1)

    def evaluate(self, model: GenomicsModel) -> Evaluation:
        loss, accuracy = self.mlm_metrics(model, self.valid)
        table = [{"model": self.arch, "split": "validation", "mlm_loss": loss, "mlm_accuracy": accuracy,
                  "perplexity": float(np.exp(loss))}]  # fmt: skip
        return Evaluation({"mlm_loss": loss, "mlm_accuracy": accuracy}, "mlm_loss", False, table)
