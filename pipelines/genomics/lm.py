"""Causal language-model pretraining (HyenaDNA or the same-size transformer) on genome windows.

Split: the first record of the FASTA (default: phage lambda) keeps its last 10% for the test and the 5%
before it for model selection; the rest of it and any further records (default: the Arabidopsis
chloroplast genome) train. The evaluation sets the model's bits per base beside order-k Markov chains
fitted on the same training sequences.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.common.contract import Evaluation
from services.genomics import inference
from services.genomics import sequences as seqs
from services.genomics.models import GenomicsConfig, GenomicsModel
from services.genomics.models import preset as model_preset
from services.genomics.tokenizer import reverse_complement

from .common import TASK_FIELDS, WINDOW_SLACK, GenomicsPipeline, GenomicsPreset
from .data import CHLOROPLAST, LAMBDA, synthetic_genome
from .metrics import best_markov, model_label


def lm_model(task: str, window: int, **changes: Any) -> GenomicsConfig:
    """HyenaDNA tiny-1k as a language model reading ``window`` bases at a time."""
    return model_preset("tiny-1k", task=task, l_max=window + WINDOW_SLACK, **changes)


@dataclass
class LMPreset(GenomicsPreset):
    model: GenomicsConfig = field(default_factory=lambda: lm_model("lm", 1024, dropout=0.1))
    warmup_start: int = 0  # sequence-length warm-up from this length, doubling each epoch (0 = off)
    tokens_per_step: int = 16384  # batch size = tokens_per_step // current length
    equal_sources: bool = False  # sample windows from each training sequence equally (not by length)
    steps: int = 50  # optimizer steps per epoch
    synthetic_bases: int = 0  # > 0: a generated order-3 Markov genome this long instead of a FASTA (tests)


# fmt: off
PRESETS: dict[str, LMPreset] = {p.name: p for p in (
    LMPreset(name="tiny-lm", about="tests: a generated Markov genome, 128-nt windows, seconds",
             model=lm_model("synthetic-lm", 128, dropout=0.0), synthetic_bases=30_000, warmup_start=32,
             tokens_per_step=2048, steps=12, epochs=3, lr=3e-3, log_every=4),
    LMPreset(name="quick-lm", about="make up: lambda + chloroplast, 256-nt windows, about a minute",
             model=lm_model("lm", 256, dropout=0.1, rc_average=True), warmup_start=64, tokens_per_step=4096,
             steps=25, epochs=3, lr=2e-3, equal_sources=True, workers=1, cpus_per_worker=1),
    LMPreset(name="lm-lambda", about="the README's LM: lambda + chloroplast, 1k windows, vs Markov chains",
             model=lm_model("lm", 1024, dropout=0.1, rc_average=True), warmup_start=64, tokens_per_step=8192,
             steps=40, epochs=16, lr=1e-3, weight_decay=0.1, warmup_steps=40, patience=5, equal_sources=True,
             workers=1, cpus_per_worker=2),
)}
# fmt: on


class LMPipeline(GenomicsPipeline):
    presets = PRESETS
    kept_on_model_swap = (*TASK_FIELDS, "head", "num_outputs", "labels", "l_max")

    preset: LMPreset

    def load_data(self) -> None:
        p = self.preset
        if p.synthetic_bases:
            genome = synthetic_genome(p.synthetic_bases, seed=p.seed)
            extra: list[str] = []
        elif self.data:
            records = [r.sequence for r in seqs.read_sequences(self.data)]
            genome, extra = records[0], records[1:]  # the first record is split; the others only train
        else:
            genome = seqs.read_fasta(LAMBDA)[0].sequence
            extra = [seqs.read_genbank(CHLOROPLAST)[0].sequence]
        n = len(genome)
        test_start, val_start = int(0.9 * n), int(0.85 * n)
        self.test = genome[test_start:]
        self.valid = genome[val_start:test_start]
        self.train = [genome[:val_start], *extra]
        self.markov_train = [genome[:test_start], *extra]  # Markov fits everything before the test part
        longest = max(len(s) for s in self.train)
        if longest <= self.window:
            raise ValueError(f"language-model pretraining needs a training sequence longer than the window of "
                             f"{self.window} bases (the first record's first 85% and any further records); got "
                             f"at most {longest} bases")  # fmt: skip

    @property
    def window(self) -> int:
        return self.preset.model.l_max - WINDOW_SLACK

    def window_length(self, epoch: int) -> int:
        """The sequence-length warm-up: ``warmup_start`` doubling each epoch up to the window."""
        p = self.preset
        if not p.warmup_start:
            return self.window
        return min(self.window, p.warmup_start << epoch)

    # ------------------------------------------------------------------------------------- training
    def steps_per_epoch(self, world_size: int) -> int:
        return self.preset.steps

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[tuple[list[str], None]]:
        p = self.preset
        rng = np.random.default_rng([p.seed, epoch, rank])
        length = self.window_length(epoch)
        for _ in range(p.steps):
            yield self._windows(length, max(1, p.tokens_per_step // length), rng), None

    def _windows(self, length: int, batch: int, rng: np.random.Generator) -> list[str]:
        sizes = np.array([max(0, len(s) - length) for s in self.train], dtype=float)
        if self.preset.equal_sources:
            sizes = (sizes > 0).astype(float)
        chosen = rng.choice(len(self.train), size=batch, p=sizes / sizes.sum())
        out = []
        for c in chosen:
            start = int(rng.integers(0, len(self.train[c]) - length + 1))
            window = self.train[c][start : start + length]
            if self.rc_augment and rng.random() < 0.5:
                window = reverse_complement(window)
            out.append(window)
        return out

    def train_step(self, model: GenomicsModel, batch: tuple[list[str], None]) -> dict[str, Any]:
        ids, mask = model.tokenizer.batch(batch[0], add_special=False)
        return {"loss": model.lm_loss(ids, mask)}

    def validate(self, model: GenomicsModel) -> tuple[dict[str, float], float]:
        bpb = inference.bits_per_base(model, self.valid)
        return {"bits_per_base": bpb}, -bpb

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate(self, model: GenomicsModel) -> Evaluation:
        ours = inference.bits_per_base(model, self.test)
        # Order-k Markov chains fitted on the same training sequences (one strand or both, as our model sees
        # with RC augmentation); order, smoothing and strands are picked on the test sequence itself, which
        # favours the baseline. A second bar fits only the held-out genome's own training part.
        same = self.markov_train
        rows = best_markov(same, self.test)
        best = min(rows, key=lambda r: r["bits_per_base"])
        own = min(best_markov(same[:1], self.test), key=lambda r: r["bits_per_base"])
        table = [{"model": model_label(self.preset.model), "bits_per_base": ours}]
        table += [{"model": f"Markov k={r['k']} ({r['strands']}, alpha {r['alpha']})", "bits_per_base":
                   r["bits_per_base"]} for r in rows]  # fmt: skip
        if len(same) > 1:
            table.append({"model": f"Markov k={own['k']} on the held-out genome's training part only "
                          f"({own['strands']})", "bits_per_base": own["bits_per_base"]})  # fmt: skip
        metrics = {"test_bits_per_base": ours, "markov_best_bits_per_base": best["bits_per_base"],
                   "markov_best_k": float(best["k"]), "margin_bits": best["bits_per_base"] - ours,
                   "markov_own_genome_bits_per_base": own["bits_per_base"],
                   "test_bases": float(len(self.test))}  # fmt: skip
        return Evaluation(metrics, "test_bits_per_base", False, table)
