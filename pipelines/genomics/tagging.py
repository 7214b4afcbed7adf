"""Per-nucleotide tagging: which bases of a genome code for protein (GenBank CDS features, both strands).

Split (default: the Arabidopsis chloroplast genome): the first 75% trains, its last tenth held out for
model selection; the remaining 25% is the test. The evaluation sets the model beside an ORF rule scanned
over the whole genome (ORFs cross the split) and the all-coding prevalence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.common.contract import Evaluation
from services.genomics import baselines, inference
from services.genomics import sequences as seqs
from services.genomics.models import GenomicsConfig, GenomicsModel
from services.genomics.models import preset as model_preset
from services.genomics.tokenizer import reverse_complement

from .common import TASK_FIELDS, WINDOW_SLACK, GenomicsPipeline, GenomicsPreset
from .data import CHLOROPLAST
from .metrics import model_label, tagging_metrics


def coding_model(window: int, **changes: Any) -> GenomicsConfig:
    """HyenaDNA tiny-1k tagging each base of ``window``-base windows as noncoding or coding."""
    return model_preset("tiny-1k", head="tag", num_outputs=2, labels=["noncoding", "coding"], task="coding",
                        l_max=window + WINDOW_SLACK, **changes)  # fmt: skip


@dataclass
class TaggingPreset(GenomicsPreset):
    model: GenomicsConfig = field(default_factory=lambda: coding_model(1024, dropout=0.1))
    tokens_per_step: int = 16384  # batch size = tokens_per_step // window
    steps: int = 50  # optimizer steps per epoch


# fmt: off
PRESETS: dict[str, TaggingPreset] = {p.name: p for p in (
    TaggingPreset(name="tiny-coding", about="tests: chloroplast CDS tags, 128-nt windows, seconds",
                  model=coding_model(128, dropout=0.0, rc_average=True), tokens_per_step=2048, steps=6, epochs=1,
                  lr=3e-3, log_every=2),
    TaggingPreset(name="quick-coding", about="make up: chloroplast CDS tags, 256-nt windows, about a minute",
                  model=coding_model(256, dropout=0.1, rc_average=True), tokens_per_step=4096, steps=25, epochs=3,
                  lr=2e-3, workers=1, cpus_per_worker=1),
    TaggingPreset(name="coding", about="the README's tagging: chloroplast CDS, 1k windows, vs the ORF rule",
                  model=coding_model(1024, dropout=0.1, rc_average=True, filter_emb_dim=33), tokens_per_step=8192,
                  steps=40, epochs=12, lr=1e-3, weight_decay=0.1, warmup_steps=40, patience=4, workers=1,
                  cpus_per_worker=2),
)}
# fmt: on


class TaggingPipeline(GenomicsPipeline):
    presets = PRESETS
    kept_on_model_swap = (*TASK_FIELDS, "head", "num_outputs", "labels", "l_max")

    preset: TaggingPreset

    def load_data(self) -> None:
        sequence, labels = seqs.read_genbank_cds(self.data or CHLOROPLAST)
        n = len(sequence)
        train_end, val_start = int(0.75 * n), int(0.675 * n)
        self.genome, self.tags = sequence, labels.astype(np.int64)
        self.train_region = (0, val_start)
        self.valid_region = (val_start, train_end)
        self.test_region = (train_end, n)

    @property
    def window(self) -> int:
        return self.preset.model.l_max - WINDOW_SLACK

    def steps_per_epoch(self, world_size: int) -> int:
        return self.preset.steps

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
        p, window = self.preset, self.window
        rng = np.random.default_rng([p.seed, epoch, rank])
        a, b = self.train_region
        for _ in range(p.steps):
            batch = max(1, p.tokens_per_step // window)
            starts = rng.integers(a, b - window, size=batch)
            chunks = [self.genome[s : s + window] for s in starts]
            tags = [self.tags[s : s + window] for s in starts]
            if self.rc_augment:
                flip = rng.random(batch) < 0.5
                chunks = [reverse_complement(c) if f else c for c, f in zip(chunks, flip)]
                tags = [t[::-1].copy() if f else t for t, f in zip(tags, flip)]
            yield chunks, torch.from_numpy(np.stack(tags))

    def batch_loss(self, model: GenomicsModel, batch: tuple[list[str], torch.Tensor]) -> dict[str, Any]:
        chunks, targets = batch
        ids, mask = model.tokenizer.batch(chunks, add_special=False)
        logits = model(ids, mask)
        return {"loss": F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))}

    def validate(self, model: GenomicsModel) -> dict[str, float]:
        metrics = self.tag_metrics(model, self.valid_region)
        return {**metrics, "score": metrics["mcc"]}

    def tag_metrics(self, model: GenomicsModel, region: tuple[int, int]) -> dict[str, float]:
        a, b = region
        probs, _ = inference.tag_probabilities(model, self.genome[a:b])
        return tagging_metrics(self.tags[a:b], probs[:, 1])

    def evaluate(self, model: GenomicsModel) -> Evaluation:
        metrics = self.tag_metrics(model, self.test_region)
        a, b = self.test_region
        truth = self.tags[a:b]
        table = [{"model": model_label(self.preset.model), **metrics}]
        orfs = baselines.orf_mask(self.genome)[a:b]  # scanned on the whole genome: ORFs cross the split
        table.append({"model": "ORF rule (ATG..stop >= 100 codons, 6 frames)", **tagging_metrics(truth, orfs)})
        table.append({"model": "all coding (prevalence)", **tagging_metrics(truth, np.ones(len(truth)))})
        metrics["baseline_orf_mcc"] = table[1]["mcc"]
        return Evaluation(metrics, "mcc", True, table)
