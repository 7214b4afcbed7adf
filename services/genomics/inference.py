"""Inference with a genomics model, shared by the pipelines' evaluations and the REST service.

Sequences longer than the model's context are never cut: they are split into overlapping windows
(:func:`services.genomics.sequences.sliding_windows`) and the results combined — class probabilities and
embeddings averaged over windows, per-nucleotide probabilities averaged over the windows covering each
base, log-likelihoods summed with every base scored once (each window after the first scores only the
bases it adds, with the overlap as context). Every call reports how many windows it used per sequence.
When the model was trained with reverse-complement augmentation (``config.rc_average``), DNA predictions
average the sequence and its reverse complement (tags flipped back into place).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .models import GenomicsModel
from .sequences import sliding_windows
from .tokenizer import reverse_complement

BATCH = 32


@dataclass
class Windowed:
    """Per-sequence results and the number of windows each needed (1 = it fit in one pass)."""

    values: list[np.ndarray]
    windows: list[int]


def context_windows(length: int, model: GenomicsModel, overlap: int | None = None) -> list[tuple[int, int]]:
    size = model.config.max_bases
    overlap = size // 4 if overlap is None else overlap
    return sliding_windows(length, size, min(overlap, size - 1))


@torch.no_grad()
def _forward_chunks(model: GenomicsModel, chunks: list[str], kind: str) -> list[np.ndarray]:
    """Run ``chunks`` (each within the context) in length-sorted batches; ``kind`` = probs | embed | tags."""
    model.eval()
    tok = model.tokenizer
    order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))
    out: list[np.ndarray | None] = [None] * len(chunks)
    add_special = model.config.arch == "beacon"  # BEACON reads <cls> ... <eos>; HyenaDNA heads read bases only
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        ids, mask = tok.batch([chunks[i] for i in idx], add_special=add_special)
        if kind == "probs":
            logits = model(ids, mask).float()
            result = logits if model.config.head == "regress" else torch.softmax(logits, -1)
        elif kind == "embed":
            result = model.pooled(ids, mask)
        else:  # per-base tag probabilities, special tokens removed
            probs = torch.softmax(model(ids, mask).float(), -1)
            keep = mask & _bases(ids, tok)
            result = [p[k] for p, k in zip(probs, keep)]
        for row, i in enumerate(idx):
            out[i] = result[row].float().numpy() if isinstance(result, Tensor) else result[row].numpy()
    return out  # type: ignore[return-value]


def _bases(ids: Tensor, tok) -> Tensor:
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for i in tok.base_ids:
        keep |= ids == i
    return keep


def _variants(sequence: str, rc: bool) -> list[str]:
    return [sequence, reverse_complement(sequence)] if rc else [sequence]


def _per_sequence(model: GenomicsModel, sequences: list[str], kind: str) -> Windowed:
    """Probabilities or embeddings per sequence, averaged over windows (and the reverse complement)."""
    rc = bool(model.config.rc_average)
    chunks, owners = [], []
    windows = []
    for n, seq in enumerate(sequences):
        spans = context_windows(len(seq), model)
        windows.append(len(spans))
        for variant in _variants(seq, rc):
            for a, b in spans:
                chunks.append(variant[a:b])
                owners.append(n)
    results = _forward_chunks(model, chunks, kind)
    values = []
    owners_arr = np.asarray(owners)
    stacked = np.stack(results) if results else np.zeros((0, 1))
    for n in range(len(sequences)):
        values.append(stacked[owners_arr == n].mean(0))
    return Windowed(values, windows)


def class_probabilities(model: GenomicsModel, sequences: list[str]) -> Windowed:
    """Class probabilities (``classify``) or predictions (``regress``) per sequence."""
    return _per_sequence(model, sequences, "probs")


def embeddings(model: GenomicsModel, sequences: list[str]) -> Windowed:
    """One pooled vector per sequence (BEACON-B's pooler needs a classify head: the mean is used otherwise)."""
    return _per_sequence(model, sequences, "embed")


def tag_probabilities(model: GenomicsModel, sequence: str, overlap: int | None = None) -> tuple[np.ndarray, int]:
    """Per-nucleotide class probabilities ``[len, classes]`` and the number of windows used."""
    spans = context_windows(len(sequence), model, overlap)
    total = np.zeros((len(sequence), model.config.num_outputs))
    count = np.zeros((len(sequence), 1))
    chunks = [sequence[a:b] for a, b in spans]
    flipped = bool(model.config.rc_average)
    if flipped:
        chunks += [reverse_complement(c) for c in chunks]
    results = _forward_chunks(model, chunks, "tags")
    for i, probs in enumerate(results):
        a, b = spans[i % len(spans)]
        if i >= len(spans):  # reverse complement: position j of the chunk is base b - 1 - j
            probs = probs[::-1]
        total[a:b] += probs
        count[a:b] += 1
    return total / count, len(spans)


@torch.no_grad()
def log_likelihoods(model: GenomicsModel, sequences: list[str], context: int | None = None) -> Windowed:
    """Per-base ``log p(x_t | x_<t)`` (natural log) for each sequence under a causal LM.

    The first base is scored given nothing but the sequence start (its log-probability after a
    ``[SEP]``-free empty prefix is undefined, so it is left out: ``len - 1`` values per sequence). Long
    sequences are scored window by window, each keeping ``context`` earlier bases as context.
    """
    if model.config.head != "lm":
        raise ValueError("log-likelihoods need a causal language model (head 'lm')")
    model.eval()
    size = model.config.max_bases
    context = size // 2 if context is None else context
    if not 0 <= context < size:
        raise ValueError(f"context must be in [0, {size}), got {context}")
    out, windows = [], []
    for seq in sequences:
        scores = np.zeros(max(len(seq) - 1, 0))
        start, used = 0, 0  # bases [start, end) of the window; scores for targets from `first` on
        first = 1
        while first < len(seq):
            end = min(len(seq), start + size)
            ids, mask = model.tokenizer.batch([seq[start:end]], add_special=False)
            ll = model.log_likelihood(ids, mask)[0].numpy()  # targets start+1 .. end-1
            scores[first - 1 : end - 1] = ll[first - start - 1 :]
            used += 1
            first = end
            start = max(0, end - context)
        out.append(scores)
        windows.append(max(used, 1))
    return Windowed(out, windows)


def bits_per_base(model: GenomicsModel, sequence: str, context: int | None = None) -> float:
    """Mean ``-log2 p`` over bases 2..n of ``sequence``."""
    ll = log_likelihoods(model, [sequence], context).values[0]
    return float(-ll.mean() / np.log(2))
