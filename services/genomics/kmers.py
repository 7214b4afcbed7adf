"""k-mer frequencies of token ids, in torch: the features of the k-mer logistic baseline
(:func:`.baselines.kmer_tfidf_logistic`) computed inside a model, for its linear "wide" branch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def kmer_frequencies(ids: Tensor, base_ids: list[int], k_max: int) -> Tensor:
    """``ids [b, L]`` → ``[b, 4 + 16 + ... + 4^k_max]``: for each k-mer over A/C/G/T (``base_ids`` in that
    order; windows with N, padding or special tokens are skipped) its sublinear term frequency
    ``1 + log(count)`` (0 when absent), the whole vector L2-normalised: the features of the k-mer tf-idf
    logistic baseline (:func:`.baselines.kmer_tfidf_logistic`) without its idf weighting."""
    codes = torch.full_like(ids, -1)
    for code, token in enumerate(base_ids):
        codes = codes.masked_fill(ids == token, code)
    blocks = []
    for k in range(1, k_max + 1):
        counts = ids.new_zeros(ids.shape[0], 4**k, dtype=torch.float32)
        if ids.shape[1] >= k:
            windows = codes.unfold(1, k, 1)  # [b, L-k+1, k]
            valid = (windows >= 0).all(-1)
            index = (windows.clamp_min(0) * (4 ** torch.arange(k - 1, -1, -1, device=ids.device))).sum(-1)
            counts.scatter_add_(1, index, valid.float())
        blocks.append(torch.where(counts > 0, 1 + torch.log(counts.clamp_min(1)), counts))
    return F.normalize(torch.cat(blocks, 1), dim=1)
