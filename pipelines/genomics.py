"""Genomics pipelines: HyenaDNA / transformer language-model pretraining, BEACON-B masked-LM pretraining,
and fine-tuning for sequence classification and per-nucleotide tagging, all on the platform harness.

    python -m pipelines.genomics pretrain --preset lm-lambda                   # shipped lambda + chloroplast
    python -m pipelines.genomics pretrain --preset lm-lambda --fasta my.fa     # any FASTA / FASTQ / GenBank
    python -m pipelines.genomics pretrain --preset mlm-nrc --fasta path/to/nrc/nRC_train.fasta
    python -m pipelines.genomics finetune --task splice                        # UCI splice (shipped)
    python -m pipelines.genomics finetune --task splice --arch transformer     # same width and depth
    python -m pipelines.genomics finetune --task nrc --data path/to/nrc
    python -m pipelines.genomics finetune --task coding                        # chloroplast CDS tags
    python -m pipelines.genomics finetune --task csv --data my_dataset/        # train.csv/test.csv (seq,label)
    python -m pipelines.genomics crossval --preset splice --folds 10
    python -m pipelines.genomics evaluate --preset splice                      # the champion, again

``finetune --task T`` runs preset ``T`` (``--preset`` picks another, e.g. ``quick-splice``); ``--init NAME``
starts from a registered pretrained model's backbone. Splits: UCI splice 80/20 stratified (seed 0), 10%
of the training part held out for model selection; nRC the published train/test split; chloroplast
coding: first 75% of the genome to train (its last tenth for selection), the rest to test; lambda LM: the
last 10% held out, the 5% before it for selection, the rest plus the chloroplast genome to train.
The linear baselines (one-hot / k-mer tf-idf logistic regression, order-k Markov chains) are fitted on
the same training data and appear in every evaluation table.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.common import cli
from pipelines.common.contract import Domain, Evaluation, Pipeline, TrainPreset
from pipelines.common.progress import Progress
from pipelines.common.tracking import markdown_table
from services.genomics import baselines, inference
from services.genomics import sequences as seqs
from services.genomics.models import GenomicsConfig, GenomicsModel, mask_tokens
from services.genomics.models import preset as model_preset
from services.genomics.tokenizer import reverse_complement

DATA_HOME = Path(__file__).resolve().parents[1] / "data" / "genomics"  # shipped copies (data/genomics/README.md)
SPLICE = DATA_HOME / "splice.data.gz"
LAMBDA = DATA_HOME / "lambda_J02459.fasta.gz"
CHLOROPLAST = DATA_HOME / "NC_000932.gb.gz"
PROMOTERS = DATA_HOME / "promoters.data.gz"

TASKS = ("lm", "mlm", "splice", "promoters", "nrc", "coding", "csv", "synthetic-splice", "synthetic-lm")
CLASSIFY_TASKS = ("splice", "promoters", "nrc", "csv", "synthetic-splice")


@dataclass
class GenomicsPreset(TrainPreset):
    task: str = "splice"
    model: str = "tiny-1k"  # a services.genomics.models preset
    arch: str = ""  # replaces the model preset's architecture (e.g. "transformer": same width and depth)
    dataset: str = ""  # tag in the registered name (default: the task)
    init: str = ""  # registered model whose backbone starts fine-tuning ("" = from scratch)
    seq_len: int = 1024  # LM pretraining / tagging window, in bases
    warmup_start: int = 0  # LM: sequence-length warm-up from this length, doubling each epoch (0 = off)
    tokens_per_step: int = 16384  # LM / tagging: batch size = tokens_per_step // current length
    equal_sources: bool = False  # LM: sample windows from each training sequence equally (not by length)
    steps: int = 50  # LM / tagging: optimizer steps per epoch
    rc_augment: bool = False  # reverse-complement augmentation (and averaging at test time)
    pooling: str = "mean"  # HyenaDNA / transformer sequence heads: "mean" or "last"
    base_dropout: float = 0.0  # classification: each training base becomes N with this probability
    d_model: int = 0  # replaces the model preset's width (0 = keep)
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and kept (0 = off)
    filter_emb_dim: int = 0  # replaces the Hyena filter's positional features (HyenaDNA: 5; 0 = keep)
    fit_context: bool = True  # classification from scratch: l_max = the longest training sequence (capped)
    dropout: float = 0.1
    patience: int = 0  # stop after this many epochs without a better validation score (0 = never)
    mask_probability: float = 0.15
    max_train: int = 0  # use at most this many training examples (0 = all)
    synthetic_size: int = 1200
    split_seed: int = 0  # data splits (the training seed is ``seed``)


def _p(**kw: Any) -> GenomicsPreset:
    return GenomicsPreset(**kw)


# fmt: off
PRESETS: dict[str, GenomicsPreset] = {
    p.name: p
    for p in (
        # tests: generated data, seconds
        _p(name="tiny-lm", task="synthetic-lm", model="tiny-1k", seq_len=128, warmup_start=32, tokens_per_step=2048,
           steps=12, epochs=3, lr=3e-3, log_every=4, dropout=0.0),
        _p(name="tiny-splice", task="synthetic-splice", model="tiny-1k", synthetic_size=900, epochs=3, batch_size=32,
           lr=3e-3, log_every=4, dropout=0.0),
        _p(name="tiny-coding", task="coding", seq_len=128, tokens_per_step=2048, steps=6, epochs=1, lr=3e-3,
           rc_augment=True, log_every=2, dropout=0.0),
        # make up: the shipped real data, a minute or two each
        _p(name="quick-lm", task="lm", seq_len=256, warmup_start=64, tokens_per_step=4096, steps=25, epochs=3,
           lr=2e-3, rc_augment=True, equal_sources=True, workers=1, cpus_per_worker=1),
        _p(name="quick-splice", task="splice", epochs=8, batch_size=64, lr=2e-3, weight_decay=0.1, pooling="last",
           dropout=0.2, filter_emb_dim=33, workers=1, cpus_per_worker=1),
        _p(name="quick-coding", task="coding", seq_len=256, tokens_per_step=4096, steps=25, epochs=3, lr=2e-3,
           rc_augment=True, workers=1, cpus_per_worker=1),
        # the README's evaluations
        _p(name="lm-lambda", task="lm", seq_len=1024, warmup_start=64, tokens_per_step=8192, steps=40, epochs=16,
           lr=1e-3, weight_decay=0.1, warmup_steps=40, rc_augment=True, patience=5, equal_sources=True, workers=1,
           cpus_per_worker=2),
        _p(name="splice", task="splice", epochs=40, batch_size=64, lr=1e-3, weight_decay=0.1, warmup_steps=100,
           patience=12, pooling="last", dropout=0.2, base_dropout=0.1, filter_emb_dim=33, workers=1,
           cpus_per_worker=1),
        _p(name="promoters", task="promoters", epochs=40, batch_size=16, lr=1e-3, weight_decay=0.1, patience=10),
        _p(name="nrc", task="nrc", model="beacon-small", epochs=30, batch_size=32, lr=1e-3, weight_decay=0.01,
           warmup_steps=200, patience=6, workers=1, cpus_per_worker=2),
        _p(name="nrc-hyena", task="nrc", model="tiny-1k", dataset="nrc", epochs=30, batch_size=32, lr=1e-3,
           weight_decay=0.1, warmup_steps=200, patience=6, pooling="last", filter_emb_dim=33, workers=1,
           cpus_per_worker=2),
        _p(name="mlm-nrc", task="mlm", model="beacon-small", epochs=20, batch_size=32, lr=5e-4, weight_decay=0.01,
           warmup_steps=200, dataset="mlm-nrc"),
        _p(name="coding", task="coding", seq_len=1024, tokens_per_step=8192, steps=40, epochs=12, lr=1e-3,
           weight_decay=0.1, warmup_steps=40, rc_augment=True, patience=4, filter_emb_dim=33, workers=1,
           cpus_per_worker=2),
        _p(name="csv", task="csv", epochs=20, batch_size=32, lr=1e-3, weight_decay=0.1, patience=5),
    )
}
# fmt: on


def registered_name(task: str, dataset: str, arch: str) -> str:
    return f"genomics-{dataset or task}-{arch}"


@dataclass
class Example:
    sequence: str
    label: int


class GenomicsPipeline(Pipeline):
    domain = "genomics"
    presets = PRESETS
    builder = "services.genomics.models:build_model"

    preset: GenomicsPreset

    def __init__(self, preset: GenomicsPreset, data: str | None = None):
        super().__init__(preset, data)
        if preset.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {preset.task!r}")
        self.labels: list[str] = []
        if preset.task in ("lm", "synthetic-lm"):
            self._load_lm()
        elif preset.task == "mlm":
            self._load_mlm()
        elif preset.task == "coding":
            self._load_coding()
        else:
            self._load_classification()
        self.best_score, self.best_epoch, self.stale = -np.inf, -1, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.ema: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------------- identity
    @property
    def arch(self) -> str:
        return self.preset.arch or model_preset(self.preset.model).arch

    @property
    def registered_name(self) -> str:
        return registered_name(self.preset.task, self.preset.dataset, self.arch)

    def model_config(self) -> dict[str, Any]:
        p = self.preset
        if p.init:
            from modelstore.registry import read_registered_config, resolve_version

            base = GenomicsConfig(**read_registered_config(p.init, resolve_version(p.init).version))
        else:
            changes: dict[str, Any] = {"dropout": p.dropout}
            if p.arch:
                changes["arch"] = p.arch
            if p.d_model:
                changes["d_model"] = p.d_model
            if p.filter_emb_dim:
                changes["filter_emb_dim"] = p.filter_emb_dim
            if p.task in ("lm", "synthetic-lm", "coding"):
                changes["l_max"] = p.seq_len + 2
            base = model_preset(p.model, **changes)
            if p.fit_context and p.task in CLASSIFY_TASKS:
                # Hyena's implicit filters span l_max: sized to the data, a 60-nt task gets filters that
                # resolve single positions instead of the first 6% of a 1k-long filter
                longest = max(len(e.sequence) for e in self.train) + base.tokenizer.special_count()
                base = dataclasses.replace(base, l_max=min(base.l_max, longest))
        return dataclasses.replace(base, **self._head()).to_dict()

    def _head(self) -> dict[str, Any]:
        p = self.preset
        if p.task in ("lm", "synthetic-lm"):
            head: dict[str, Any] = {"head": "lm", "num_outputs": 0, "labels": []}
        elif p.task == "mlm":
            head = {"head": "mlm", "num_outputs": 0, "labels": []}
        elif p.task == "coding":
            head = {"head": "tag", "num_outputs": 2, "labels": ["noncoding", "coding"]}
        else:
            head = {"head": "classify", "num_outputs": len(self.labels), "labels": self.labels}
        return {**head, "task": p.dataset or p.task, "rc_average": p.rc_augment, "pooling": p.pooling}

    def build_model(self) -> nn.Module:
        cfg = GenomicsConfig(**self.model_config())
        if not self.preset.init:
            return GenomicsModel(cfg)
        from modelstore.registry import load_registered

        pretrained, _ = load_registered(self.preset.init)
        model = pretrained.with_head(
            cfg.head, cfg.num_outputs, cfg.labels, cfg.task, rc_average=cfg.rc_average, pooling=cfg.pooling
        )
        if model.config != cfg:
            raise ValueError(f"the model built from {self.preset.init} does not match its config")
        return model

    # ------------------------------------------------------------------------------------- data
    def _load_lm(self) -> None:
        p = self.preset
        if p.task == "synthetic-lm":
            genome = synthetic_genome(30_000, seed=p.seed)
            extra: list[str] = []
        elif self.data:
            records = [r.sequence for r in seqs.read_sequences(self.data)]
            genome, extra = records[0], records[1:]  # the first record is split; the others only train
        else:
            genome = seqs.read_fasta(LAMBDA)[0].sequence
            extra = [seqs.read_genbank(CHLOROPLAST)[0].sequence]
        n = len(genome)
        test_start, val_start = int(0.9 * n), int(0.85 * n)
        self.lm_test = genome[test_start:]
        self.lm_valid = genome[val_start:test_start]
        self.lm_train = [genome[:val_start], *extra]
        self.lm_markov_train = [genome[:test_start], *extra]  # Markov fits everything before the test part
        if max(len(s) for s in self.lm_train) <= p.seq_len:
            raise ValueError(f"language-model pretraining needs a training sequence longer than seq_len={p.seq_len} "
                             f"(the first record's first 85% and any further records); got at most "
                             f"{max(len(s) for s in self.lm_train)} bases")  # fmt: skip

    def _load_mlm(self) -> None:
        p = self.preset
        if self.data:
            records = [r.sequence for r in seqs.read_sequences(self.data)]
        else:
            records = [e.sequence for e in synthetic_splice(p.synthetic_size, seed=p.seed)]
        order = np.random.default_rng(p.split_seed).permutation(len(records))
        cut = max(1, len(records) // 20)
        self.mlm_valid = [records[i] for i in order[:cut]]
        self.train = [Example(records[i], 0) for i in order[cut:]]
        if p.max_train:
            self.train = self.train[: p.max_train]

    def _load_coding(self) -> None:
        path = self.data or CHLOROPLAST
        sequence, labels = seqs.read_genbank_cds(path)
        n = len(sequence)
        train_end, val_start = int(0.75 * n), int(0.675 * n)
        self.genome, self.tags = sequence, labels.astype(np.int64)
        self.tag_train = (0, val_start)
        self.tag_valid = (val_start, train_end)
        self.tag_test = (train_end, n)

    def _load_classification(self) -> None:
        p = self.preset
        train, test = classification_data(p.task, self.data, seed=p.split_seed, synthetic_size=p.synthetic_size)
        self.labels = sorted({r.label for r in train})
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = {r.label for r in test} - set(index)
        if unknown:
            raise ValueError(f"test labels {sorted(unknown)} do not occur in the training data")
        train_ex = [Example(r.sequence, index[r.label]) for r in train]
        self.test = [Example(r.sequence, index[r.label]) for r in test]
        fit, valid = seqs.stratified_split([e.label for e in train_ex], test_fraction=0.1, seed=p.split_seed)
        self.train = [train_ex[i] for i in fit]
        self.valid = [train_ex[i] for i in valid]
        if p.max_train:
            self.train = self.train[: p.max_train]

    # ------------------------------------------------------------------------------------- training
    def _lm_length(self, epoch: int) -> int:
        p = self.preset
        if not p.warmup_start:
            return p.seq_len
        return min(p.seq_len, p.warmup_start << epoch)  # doubling stages, one epoch each

    def steps_per_epoch(self, world_size: int) -> int:
        if self.preset.task in ("lm", "synthetic-lm", "coding"):
            return self.preset.steps
        return max(1, -(-len(self.train) // (self.preset.batch_size * world_size)))

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
        p = self.preset
        rng = np.random.default_rng([p.seed, epoch, rank])
        if p.task in ("lm", "synthetic-lm"):
            length = self._lm_length(epoch)
            for _ in range(p.steps):
                yield self._genome_windows(self.lm_train, length, max(1, p.tokens_per_step // length), rng), None
            return
        if p.task == "coding":
            a, b = self.tag_train
            for _ in range(p.steps):
                batch = max(1, p.tokens_per_step // p.seq_len)
                starts = rng.integers(a, b - p.seq_len, size=batch)
                chunks = [self.genome[s : s + p.seq_len] for s in starts]
                tags = [self.tags[s : s + p.seq_len] for s in starts]
                if p.rc_augment:
                    flip = rng.random(batch) < 0.5
                    chunks = [reverse_complement(c) if f else c for c, f in zip(chunks, flip)]
                    tags = [t[::-1].copy() if f else t for t, f in zip(tags, flip)]
                yield chunks, torch.from_numpy(np.stack(tags))
            return
        order = np.random.default_rng([p.seed, epoch]).permutation(len(self.train))[rank::world_size]
        # length buckets: sort each pool of 50 batches by length so a batch pads little
        pool = p.batch_size * 50
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(self.train[i].sequence))
            batches += [chunk[i : i + p.batch_size] for i in range(0, len(chunk), p.batch_size)]
        rng.shuffle(batches)
        batches = batches[: self.steps_per_epoch(world_size)]
        while len(batches) < self.steps_per_epoch(world_size):  # shards differ by a batch: keep workers in step
            batches.append(batches[0])
        model_max = self._max_bases()
        for idx in batches:
            chosen = []
            for i in idx:
                s = self.train[i].sequence
                if len(s) > model_max:  # training crops long sequences at random; evaluation uses windows
                    start = int(rng.integers(0, len(s) - model_max + 1))
                    s = s[start : start + model_max]
                if p.rc_augment and rng.random() < 0.5:
                    s = reverse_complement(s)
                if p.base_dropout:
                    hidden = rng.random(len(s)) < p.base_dropout
                    s = "".join("N" if h else c for c, h in zip(s, hidden))
                chosen.append(s)
            yield chosen, torch.tensor([self.train[i].label for i in idx])

    def _max_bases(self) -> int:
        return GenomicsConfig(**self.model_config()).max_bases

    def _genome_windows(self, sources: list[str], length: int, batch: int, rng) -> list[str]:
        sizes = np.array([max(0, len(s) - length) for s in sources], dtype=float)
        if self.preset.equal_sources:
            sizes = (sizes > 0).astype(float)
        chosen = rng.choice(len(sources), size=batch, p=sizes / sizes.sum())
        out = []
        for c in chosen:
            start = int(rng.integers(0, len(sources[c]) - length + 1))
            window = sources[c][start : start + length]
            if self.preset.rc_augment and rng.random() < 0.5:
                window = reverse_complement(window)
            out.append(window)
        return out

    def train_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        if self.preset.ema:
            self._update_ema(model)
        chunks, targets = batch
        tok = model.tokenizer
        task = self.preset.task
        if task in ("lm", "synthetic-lm"):
            ids, mask = tok.batch(chunks, add_special=False)
            return {"loss": model.lm_loss(ids, mask)}
        if task == "mlm":
            ids, mask = tok.batch(chunks)
            inputs, labels = mask_tokens(ids, mask, tok, probability=self.preset.mask_probability)
            logits = model(inputs, mask)
            return {"loss": F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))}
        if task == "coding":
            ids, mask = tok.batch(chunks, add_special=False)
            logits = model(ids, mask)
            return {"loss": F.cross_entropy(logits.reshape(-1, 2), targets.reshape(-1))}
        ids, mask = tok.batch(chunks, add_special=model.config.arch == "beacon")
        logits = model(ids, mask)
        loss = F.cross_entropy(logits, targets)
        return {"loss": loss, "accuracy": float((logits.argmax(-1) == targets).float().mean())}

    # ------------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def _update_ema(self, model: nn.Module) -> None:
        """Fold the weights of the last optimizer step into the average (called before each step's forward,
        so it trails the model by one step; every worker holds the same weights, hence the same average)."""
        state = model.state_dict()
        if self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in state.items()}
            return
        for k, v in state.items():
            if v.dtype.is_floating_point:
                self.ema[k].lerp_(v, 1.0 - self.preset.ema)
            else:
                self.ema[k].copy_(v)

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        current = None
        if self.ema is not None:  # validate (and keep) the averaged weights
            self._update_ema(model)
            current = copy.deepcopy(model.state_dict())
            model.load_state_dict(self.ema)
        result = self.validate(model)
        score = result["score"]
        if score > self.best_score:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1
        if current is not None:
            model.load_state_dict(current)
        return {**{f"val/{k}": v for k, v in result.items() if k != "score"}, "val/best_epoch": float(self.best_epoch)}

    def validate(self, model: GenomicsModel) -> dict[str, float]:
        """Validation metrics and ``score`` (higher is better) for model selection."""
        task = self.preset.task
        if task in ("lm", "synthetic-lm"):
            bpb = inference.bits_per_base(model, self.lm_valid)
            return {"bits_per_base": bpb, "score": -bpb}
        if task == "mlm":
            loss, accuracy = self.mlm_metrics(model, self.mlm_valid)
            return {"mlm_loss": loss, "mlm_accuracy": accuracy, "score": -loss}
        if task == "coding":
            metrics = self.tag_metrics(model, self.tag_valid)
            return {**metrics, "score": metrics["mcc"]}
        probs = inference.class_probabilities(model, [e.sequence for e in self.valid]).values
        accuracy = float((np.argmax(probs, 1) == [e.label for e in self.valid]).mean())
        return {"accuracy": accuracy, "score": accuracy}

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

    def tag_metrics(self, model: GenomicsModel, region: tuple[int, int]) -> dict[str, float]:
        a, b = region
        probs, _ = inference.tag_probabilities(model, self.genome[a:b])
        return tagging_metrics(self.tags[a:b], probs[:, 1])

    def should_stop(self) -> bool:
        return bool(self.preset.patience) and self.stale >= self.preset.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state,
                "stale": self.stale, "ema": self.ema}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state.get("best_score", -np.inf)
        self.best_epoch = state.get("best_epoch", -1)
        self.best_state = state.get("best_state")
        self.stale = state.get("stale", 0)
        self.ema = state.get("ema")

    def finalize(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate(self, model: nn.Module) -> Evaluation:
        task = self.preset.task
        if task in ("lm", "synthetic-lm"):
            return self._evaluate_lm(model)
        if task == "mlm":
            loss, accuracy = self.mlm_metrics(model, self.mlm_valid)
            table = [{"model": self.arch, "split": "validation", "mlm_loss": loss, "mlm_accuracy": accuracy,
                      "perplexity": float(np.exp(loss))}]  # fmt: skip
            return Evaluation({"mlm_loss": loss, "mlm_accuracy": accuracy}, "mlm_loss", False, table)
        if task == "coding":
            return self._evaluate_coding(model)
        return self._evaluate_classification(model)

    def _evaluate_lm(self, model: GenomicsModel) -> Evaluation:
        ours = inference.bits_per_base(model, self.lm_test)
        # Order-k Markov chains fitted on the same training sequences (one strand or both, as our model sees
        # with RC augmentation); order, smoothing and strands are picked on the test sequence itself, which
        # favours the baseline. A second bar fits only the held-out genome's own training part.
        same = self.lm_markov_train
        rows = _best_markov(same, self.lm_test)
        best = min(rows, key=lambda r: r["bits_per_base"])
        own = min(_best_markov(same[:1], self.lm_test), key=lambda r: r["bits_per_base"])
        table = [{"model": f"{self.arch} ({self.preset.model})", "bits_per_base": ours}]
        table += [{"model": f"Markov k={r['k']} ({r['strands']}, alpha {r['alpha']})", "bits_per_base":
                   r["bits_per_base"]} for r in rows]  # fmt: skip
        if len(same) > 1:
            table.append({"model": f"Markov k={own['k']} on the held-out genome's training part only "
                          f"({own['strands']})", "bits_per_base": own["bits_per_base"]})  # fmt: skip
        metrics = {"test_bits_per_base": ours, "markov_best_bits_per_base": best["bits_per_base"],
                   "markov_best_k": float(best["k"]), "margin_bits": best["bits_per_base"] - ours,
                   "markov_own_genome_bits_per_base": own["bits_per_base"],
                   "test_bases": float(len(self.lm_test))}  # fmt: skip
        return Evaluation(metrics, "test_bits_per_base", False, table)

    def _evaluate_coding(self, model: GenomicsModel) -> Evaluation:
        metrics = self.tag_metrics(model, self.tag_test)
        a, b = self.tag_test
        truth = self.tags[a:b]
        table = [{"model": f"{self.arch} ({self.preset.model})", **metrics}]
        orfs = baselines.orf_mask(self.genome)[a:b]  # scanned on the whole genome: ORFs cross the split
        table.append({"model": "ORF rule (ATG..stop >= 100 codons, 6 frames)", **tagging_metrics(truth, orfs)})
        table.append({"model": "all coding (prevalence)", **tagging_metrics(truth, np.ones(len(truth)))})
        metrics["baseline_orf_mcc"] = table[1]["mcc"]
        return Evaluation(metrics, "mcc", True, table)

    def _evaluate_classification(self, model: GenomicsModel) -> Evaluation:
        test_x = [e.sequence for e in self.test]
        y = np.array([e.label for e in self.test])
        probs = np.stack(inference.class_probabilities(model, test_x).values)
        # test sequences that also occur in the training data (nRC has 347 of 2,600) are scored apart too
        seen = {e.sequence for e in self.train + self.valid}
        novel = np.array([s not in seen for s in test_x])
        ours = classification_metrics(y, probs, novel)
        table = [{"model": f"{self.arch} ({self.preset.model})", **ours}]
        for name, baseline_probs in self.baseline_probabilities().items():
            table.append({"model": name, **classification_metrics(y, baseline_probs, novel)})
        metrics = {**ours, **{f"baseline_{r['model'].split(' ')[0]}_accuracy": r["accuracy"] for r in table[1:]}}
        figures = {"confusion_matrix.png": confusion_figure(y, probs.argmax(1), self.labels)}
        return Evaluation(metrics, "accuracy", True, table, figures)

    def baseline_probabilities(self) -> dict[str, np.ndarray]:
        """The linear baselines, fitted on the training and validation parts."""
        train = self.train + self.valid
        x, y = [e.sequence for e in train], [e.label for e in train]
        test = [e.sequence for e in self.test]
        out = {}
        if len({len(s) for s in x + test}) == 1:
            out["one-hot logistic"] = baselines.onehot_logistic(x, y, test)
        out["k-mer (1-5) tf-idf logistic"] = baselines.kmer_tfidf_logistic(x, y, test)
        return out


# ---------------------------------------------------------------------------------------------- data
def classification_data(task: str, data: str | None, *, seed: int = 0, synthetic_size: int = 1200):
    """``(train, test)`` records for a classification task."""
    if task == "synthetic-splice":
        records = [seqs.Record(f"s{i}", e.sequence, label=str(e.label)) for i, e in
                   enumerate(synthetic_splice(synthetic_size, seed=seed))]  # fmt: skip
        return _split(records, seed)
    if task == "splice":
        return _split(seqs.read_uci_splice(data or SPLICE), seed)
    if task == "promoters":
        return _split(seqs.read_uci_promoters(data or PROMOTERS), seed)
    if task == "nrc":
        if not data:
            raise ValueError("task 'nrc' needs --data: a folder with nRC_train.fasta and nRC_test.fasta")
        root = Path(data)
        return seqs.read_nrc_fasta(root / "nRC_train.fasta"), seqs.read_nrc_fasta(root / "nRC_test.fasta")
    if task == "csv":
        if not data:
            raise ValueError("task 'csv' needs --data: train.csv + test.csv (seq,label), one CSV, or a "
                             "GenomicBenchmarks folder")  # fmt: skip
        root = Path(data)
        if root.is_dir() and (root / "train.csv").exists():
            return seqs.read_labelled_csv(root / "train.csv"), seqs.read_labelled_csv(root / "test.csv")
        if root.is_dir():
            folders = seqs.read_genomic_benchmarks_folder(root)
            return folders["train"], folders["test"]
        return _split(seqs.read_labelled_csv(root), seed)
    raise ValueError(f"{task!r} is not a classification task")


def _best_markov(train: list[str], test: str) -> list[dict[str, Any]]:
    """Per order k, the better of fitting one strand or both strands of ``train``."""
    one = baselines.markov_table(train, test)
    both = baselines.markov_table(train + [reverse_complement(s) for s in train], test)
    return [{**a, "strands": "one strand"} if a["bits_per_base"] <= b["bits_per_base"] else
            {**b, "strands": "both strands"} for a, b in zip(one, both)]  # fmt: skip


def _split(records: list[seqs.Record], seed: int):
    train, test = seqs.stratified_split([r.label for r in records], test_fraction=0.2, seed=seed)
    return [records[i] for i in train], [records[i] for i in test]


def synthetic_genome(length: int, *, seed: int = 0, order: int = 3) -> str:
    """A sequence from a random order-``order`` Markov chain with peaked transitions (learnable, ~1.3 bits)."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(4, 0.3), size=4**order)
    out = list(rng.integers(0, 4, size=order))
    for _ in range(length - order):
        context = 0
        for c in out[-order:]:
            context = context * 4 + int(c)
        out.append(int(rng.choice(4, p=table[context])))
    return "".join("ACGT"[c] for c in out)


def synthetic_splice(n: int, *, seed: int = 0, length: int = 60) -> list[Example]:
    """UCI-like 60-mers in 3 classes: a donor consensus ``AG|GTRAGT`` or an acceptor ``(Y)10 NCAG|G`` at the
    centre, or neither (with decoy GT/AG dinucleotides elsewhere)."""
    rng = np.random.default_rng(seed)
    out = []
    centre = length // 2
    for i in range(n):
        label = i % 3
        s = list(rng.choice(list("ACGT"), size=length))
        if label == 0:
            motif = "AGGTAAGT" if rng.random() < 0.5 else "AGGTGAGT"
            s[centre - 2 : centre + 6] = motif
        elif label == 1:
            s[centre - 14 : centre - 4] = rng.choice(list("CT"), size=10)
            s[centre - 3 : centre + 1] = "CAGG"
        else:
            d = int(rng.integers(0, length - 2))
            s[d : d + 2] = "GT" if rng.random() < 0.5 else "AG"
        out.append(Example("".join(s), label))
    order = rng.permutation(n)
    return [out[i] for i in order]


# ---------------------------------------------------------------------------------------------- metrics
def classification_metrics(labels: np.ndarray, probs: np.ndarray, novel: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy and macro-F1; with ``novel`` (True for test sequences absent from training) also on those
    alone, when some test sequences were seen in training."""
    from sklearn.metrics import f1_score

    predictions = probs.argmax(1)
    out = {"accuracy": float((predictions == labels).mean()),
           "macro_f1": float(f1_score(labels, predictions, average="macro"))}  # fmt: skip
    if novel is not None and not novel.all() and novel.any():
        out["accuracy_novel"] = float((predictions[novel] == labels[novel]).mean())
        out["macro_f1_novel"] = float(f1_score(labels[novel], predictions[novel], average="macro"))
        out["novel_count"] = float(novel.sum())
    return out


def tagging_metrics(truth: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    from sklearn.metrics import f1_score, matthews_corrcoef

    predicted = (probability >= threshold).astype(int)
    return {"f1": float(f1_score(truth, predicted, zero_division=0.0)),
            "mcc": float(matthews_corrcoef(truth, predicted)),
            "accuracy": float((predicted == truth).mean()),
            "coding_fraction": float(truth.mean())}  # fmt: skip


def confusion_figure(labels: np.ndarray, predictions: np.ndarray, classes: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(labels, predictions, labels=list(range(len(classes))))
    size = max(4, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- commands
def crossval(preset: GenomicsPreset, data: str | None, folds: int) -> list[dict[str, Any]]:
    """k-fold cross-validation of a classification preset, trained in-process (no registry): per fold, our
    model and the linear baselines on the same folds. Returns one row per fold and model."""
    if preset.task not in CLASSIFY_TASKS:
        raise ValueError(f"crossval needs a classification preset, got task {preset.task!r}")
    train, test = classification_data(preset.task, data, seed=preset.split_seed, synthetic_size=preset.synthetic_size)
    records = train + test
    rows = []
    progress = Progress(folds, f"genomics/crossval {preset.name}", every_s=15)
    for fold, test_idx in enumerate(seqs.stratified_folds([r.label for r in records], k=folds, seed=preset.split_seed)):
        held = set(test_idx.tolist())
        pipeline = _FoldPipeline(preset, [r for i, r in enumerate(records) if i not in held],
                                 [records[i] for i in test_idx])  # fmt: skip
        model = train_in_process(pipeline)
        evaluation = pipeline.evaluate(model)
        for row in evaluation.table:
            rows.append({"fold": fold, **{k: row[k] for k in ("model", "accuracy", "macro_f1")}})
        progress.update(fold=fold, accuracy=evaluation.metrics["accuracy"])
    progress.close()
    return rows


class _FoldPipeline(GenomicsPipeline):
    """A classification pipeline on given train/test records (for cross-validation)."""

    def __init__(self, preset: GenomicsPreset, train: list[seqs.Record], test: list[seqs.Record]):
        self._records = (train, test)
        super().__init__(preset, None)

    def _load_classification(self) -> None:
        train, test = self._records
        self.labels = sorted({r.label for r in train})
        index = {label: i for i, label in enumerate(self.labels)}
        examples = [Example(r.sequence, index[r.label]) for r in train]
        self.test = [Example(r.sequence, index[r.label]) for r in test]
        fit, valid = seqs.stratified_split([e.label for e in examples], test_fraction=0.1, seed=self.preset.split_seed)
        self.train = [examples[i] for i in fit]
        self.valid = [examples[i] for i in valid]


def train_in_process(pipeline: GenomicsPipeline) -> GenomicsModel:
    """The harness's loop without Ray or MLflow, for cross-validation folds (one worker)."""
    p = pipeline.preset
    torch.manual_seed(p.seed)
    model = pipeline.build_model()
    steps = pipeline.steps_per_epoch(1)
    optimizer, scheduler = pipeline.build_optimizer(model, steps * p.epochs)
    for epoch in range(p.epochs):
        model.train()
        for batch in pipeline.train_batches(epoch, 0, 1):
            loss = pipeline.train_step(model, batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            if p.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            optimizer.step()
            scheduler.step()
        model.eval()
        pipeline.end_epoch(model, epoch)
        if pipeline.should_stop():
            break
    pipeline.finalize(model)
    model.eval()
    return model


def _configure_crossval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--data")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--arch", help="replace the preset's architecture (e.g. transformer)")


def _run_crossval(args: argparse.Namespace) -> int:
    import mlflow

    from pipelines.common.tracking import metric_name, set_experiment

    preset = PRESETS[args.preset]
    if args.arch:
        preset = dataclasses.replace(preset, arch=args.arch)
    started = time.time()
    rows = crossval(preset, args.data, args.folds)
    summary = []
    for model in dict.fromkeys(r["model"] for r in rows):
        accuracies = [r["accuracy"] for r in rows if r["model"] == model]
        summary.append({"model": model, "folds": len(accuracies), "mean_accuracy": float(np.mean(accuracies)),
                        "std_accuracy": float(np.std(accuracies))})  # fmt: skip
    experiment = set_experiment("genomics")
    with mlflow.start_run(run_name=f"crossval-{preset.name}-{preset.arch or 'default'}",
                          experiment_id=experiment.experiment_id):  # fmt: skip
        mlflow.log_params({"preset": preset.name, "arch": preset.arch or model_preset(preset.model).arch,
                           "folds": args.folds, "data": args.data or "shipped"})  # fmt: skip
        mlflow.log_metrics({metric_name(f"cv/{r['model']}/mean_accuracy"): r["mean_accuracy"] for r in summary})
        mlflow.log_text(markdown_table(rows), "crossval/folds.md")
        mlflow.log_text(markdown_table(summary), "crossval/summary.md")
    print(markdown_table(summary))
    print(f"{args.folds}-fold cross-validation in {time.time() - started:.0f} s")
    return 0


def _train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=("hyena", "transformer", "beacon"), help="replace the architecture")
    parser.add_argument("--model", help="a services.genomics.models preset (tiny-1k, beacon-small, ...)")
    parser.add_argument("--init", help="registered model whose backbone starts fine-tuning")
    parser.add_argument("--dataset", help="tag for the registered name (default: the task)")


def _adjust(preset: GenomicsPreset, args: argparse.Namespace) -> GenomicsPreset:
    changes = {k: getattr(args, k) for k in ("arch", "model", "init", "dataset") if getattr(args, k, None)}
    return dataclasses.replace(preset, **changes) if changes else preset


DOMAIN = Domain("genomics", (GenomicsPipeline,))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `pretrain --fasta F` and `finetune --task T` are `train` with the data / preset named differently
    if argv and argv[0] in ("pretrain", "finetune"):
        command, rest = argv[0], argv[1:]
        if command == "pretrain":
            rest = ["--data" if a == "--fasta" else a for a in rest]
            if "--preset" not in rest:
                rest = ["--preset", "lm-lambda", *rest]
        elif "--task" in rest:
            i = rest.index("--task")
            task = rest[i + 1] if i + 1 < len(rest) else ""
            rest = rest[:i] + rest[i + 2 :]
            if "--preset" not in rest:
                rest = ["--preset", task, *rest]
        argv = ["train", *rest]
    return cli.main(
        DOMAIN, argv, extra={"crossval": (_configure_crossval, _run_crossval)},
        train_options=(_train_options, _adjust),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
