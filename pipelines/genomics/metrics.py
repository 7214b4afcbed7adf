"""What the genomics evaluations report: classification and tagging metrics, the Markov baselines of the
language model, and how a table names our model."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.genomics import baselines
from services.genomics.models import PRESETS as MODEL_PRESETS
from services.genomics.models import GenomicsConfig
from services.genomics.tokenizer import reverse_complement


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


def best_markov(train: list[str], test: str) -> list[dict[str, Any]]:
    """Per order k, the better of fitting one strand or both strands of ``train``."""
    one = baselines.markov_table(train, test)
    both = baselines.markov_table(train + [reverse_complement(s) for s in train], test)
    return [{**a, "strands": "one strand"} if a["bits_per_base"] <= b["bits_per_base"] else
            {**b, "strands": "both strands"} for a, b in zip(one, both)]  # fmt: skip


def model_label(cfg: GenomicsConfig) -> str:
    """``arch (model preset)`` for evaluation tables: the first named model of this width, depth, heads and
    norm (one of the same context first), else ``arch (width x depth)``."""

    def shape(c: GenomicsConfig) -> tuple:
        return c.d_model, c.n_layer, c.d_inner, c.num_heads, c.norm

    named = [n for n, c in MODEL_PRESETS.items() if shape(c) == shape(cfg)]
    named.sort(key=lambda n: MODEL_PRESETS[n].l_max != cfg.l_max)
    return f"{cfg.arch} ({named[0] if named else f'{cfg.d_model}x{cfg.n_layer}'})"
