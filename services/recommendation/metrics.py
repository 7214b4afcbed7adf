"""Ranking and click metrics.

Next-item ranking follows the full-ranking protocol: every item is scored, the user's already seen items
are excluded (the target itself is never excluded), and with a single target ``HR@k`` is whether its rank
is below ``k`` and ``NDCG@k = 1 / log2(rank + 2)`` when it is (rank 0 = first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

KS = (5, 10, 20)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, seen: Sequence[Sequence[int]]) -> torch.Tensor:
    """0-based rank of each target among all items ``1..N`` (index 0 = padding is never ranked).

    Args:
        scores: ``[B, N + 1]`` item scores.
        targets: ``[B]`` item indices.
        seen: per row, the items to exclude (the user's history).
    """
    scores = scores.clone().float()
    target_scores = scores.gather(1, targets.view(-1, 1))
    scores[:, 0] = -math.inf
    rows = [r for r, items in enumerate(seen) for _ in items]
    cols = [i for items in seen for i in items]
    if rows:
        scores[torch.tensor(rows), torch.tensor(cols)] = -math.inf
    scores.scatter_(1, targets.view(-1, 1), target_scores)  # the target stays rankable even if seen before
    return (scores > target_scores).sum(dim=1)


def ranking_metrics(ranks: torch.Tensor, ks: Sequence[int] = KS) -> dict[str, float]:
    ranks = ranks.double()
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.double().mean())
        out[f"NDCG@{k}"] = float(torch.where(hit, 1.0 / torch.log2(ranks + 2.0), torch.zeros_like(ranks)).mean())
    return out


def click_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return {"AUC": float(roc_auc_score(labels, p)), "logloss": float(log_loss(labels, p, labels=[0, 1]))}
