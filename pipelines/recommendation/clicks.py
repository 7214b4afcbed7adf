"""Click ranking: Hiformer and its baselines (heterogeneous attention, AutoInt, MLP, DCN-v2) on click rows.

    python -m pipelines.recommendation train --preset hiformer-synthetic
    python -m pipelines.recommendation train --preset hiformer-synthetic --model dcnv2
    python -m pipelines.recommendation train --preset ctr-movielens --data movielens.csv --format movielens

AUC and log loss on held-out rows (on the generated data beside the Bayes-optimal AUC); the epoch with the
best AUC on validation rows (apart from the test rows) is kept. A Hiformer is also evaluated as served (last
layer pruned to the task token, then low rank) and timed per request, and the fastest variant within 0.002
AUC of the trained model is reported.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.common.contract import Evaluation
from services.recommendation import ctr, metrics, ranking

from .base import RecommendationPipeline, RecPreset, registered_name

SERVING_RANKS = (2, 4, 8)  # post-hoc SVD ranks evaluated for a full-rank Hiformer
REQUEST_SIZES = {64: "ms_per_request", 1024: "ms_per_1024_candidates"}  # candidates per request → column


@dataclass
class ClickPreset(RecPreset):
    """A click-ranking run: the model's config (``cardinalities``, ``num_dense`` and ``schema`` come from
    the data; a ``rank`` trains Hiformer's composite projections factorised at that rank) and, without
    --data, the size of the generated click rows."""

    dataset: str = "synthetic"
    data_format: str = ""  # criteo | avazu | movielens (needed with --data)
    model: ranking.CTRConfig = field(default_factory=ranking.CTRConfig)
    rows: int = 200_000  # generated training rows
    test_rows: int = 50_000  # generated test rows; as many validation rows, generated apart


# the hiformer-synthetic model, as published, with the regularisation that 1M rows need: without dropout and
# weight decay validation AUC peaked at epoch 4 and fell (0.9032 test after 8 epochs, DCN-v2 0.9047); with
# them, 0.9050 (DCN-v2 0.9058), flat from epoch 6 of 8. Pre-norm layers with a validated weight average and
# weight decay 0.5 reach 0.9061 (pre-norm alone: 0.9034; DCN-v2 with the same average and decay: 0.9070)
_HIFORMER = ranking.CTRConfig(dim=16, layers=2, heads=2, head_dim=8, dropout=0.1)
_SYNTHETIC = dict(rows=1_000_000, test_rows=200_000, epochs=8, batch_size=512, lr=2e-3, weight_decay=0.05)

# fmt: off
PRESETS: dict[str, ClickPreset] = {
    p.name: p
    for p in (
        ClickPreset(name="tiny-ctr", about="Hiformer on 4,000 generated click rows, for tests", rows=4000,
                    test_rows=2000, epochs=2, batch_size=256, lr=3e-3, log_every=2),
        ClickPreset(name="quick-ctr", about="Hiformer on 60,000 generated click rows", rows=60_000,
                    test_rows=20_000, epochs=3, batch_size=512, lr=2e-3),
        # click ranking on the generated data with known optimum (--model picks the baselines)
        ClickPreset(name="hiformer-synthetic", about="Hiformer on 1M generated click rows with a known optimum",
                    model=dataclasses.replace(_HIFORMER, norm="pre"), **{**_SYNTHETIC, "weight_decay": 0.5},
                    ema=0.999),
        ClickPreset(name="hiformer-synthetic-lowrank", about="hiformer-synthetic trained at rank 16",
                    model=dataclasses.replace(_HIFORMER, rank=16), **_SYNTHETIC),
        ClickPreset(name="ctr-criteo", about="Hiformer on Criteo rows (--data)", dataset="criteo",
                    data_format="criteo", epochs=5, batch_size=512, lr=1e-3),
        ClickPreset(name="ctr-avazu", about="Hiformer on Avazu rows (--data)", dataset="avazu",
                    data_format="avazu", epochs=5, batch_size=512, lr=1e-3),
        ClickPreset(name="ctr-movielens", about="Hiformer on MovieLens ratings as clicks (--data)",
                    dataset="movielens", data_format="movielens", epochs=5, batch_size=512, lr=1e-3),
    )
}
# fmt: on


class ClickPipeline(RecommendationPipeline):
    presets = PRESETS
    builder = "services.recommendation.ranking:build_model"
    task = "ctr"
    kinds = ranking.KINDS
    generated = "synthetic"

    preset: ClickPreset

    @property
    def registered_name(self) -> str:  # a low-rank model never competes with the full-rank champion
        p = self.preset
        name = registered_name(self.task, p.dataset, p.model.kind)
        return f"{name}-rank{p.model.rank}" if p.model.rank else name

    def load(self) -> None:
        p = self.preset
        if p.dataset == self.generated and not self.data:
            train = ctr.synthetic_ctr(p.rows, seed=p.seed + 1)
            test = ctr.synthetic_ctr(p.test_rows, seed=p.seed + 2)
            valid = ctr.synthetic_ctr(p.test_rows, seed=p.seed + 3)
            self.schema = ctr.synthetic_schema()
            self.train_tensors = (train.categorical, train.dense, train.labels)
            self.valid_tensors = (valid.categorical, valid.dense, valid.labels)
            self.test_tensors = (test.categorical, test.dense, test.labels)
            self.bayes_auc = metrics.click_metrics(test.labels.numpy(), test.probabilities.numpy())["AUC"]
            return
        if not self.data:
            raise ValueError(f"preset {p.name} needs --data (a {p.data_format} file)")
        if p.data_format not in ctr.READERS:
            raise ValueError(f"--format must be one of {', '.join(ctr.READERS)} for {p.name}, got {p.data_format!r}")
        table = ctr.READERS[p.data_format](self.data)
        # 80% / 20% train / test; the last eighth of the training part validates (70 / 10 / 20 in all)
        order = np.random.default_rng(p.seed).permutation(len(table.rows))
        test_cut = int(0.8 * len(order))
        valid_cut = test_cut - max(1, test_cut // 8)
        parts = order[:valid_cut], order[valid_cut:test_cut], order[test_cut:]
        train_rows = [table.rows[i] for i in parts[0]]
        self.schema = ctr.fit_schema(train_rows, table.categorical, table.dense, min_count=2)
        labels = torch.from_numpy(table.labels.astype(np.float32))
        self.train_tensors, self.valid_tensors, self.test_tensors = (
            (*self.schema.encode([table.rows[i] for i in part]), labels[part]) for part in parts
        )
        self.bayes_auc = None

    def model_config(self) -> dict[str, Any]:
        schema = self.schema
        return dataclasses.replace(
            self.preset.model, cardinalities=schema.cardinalities, num_dense=len(schema.dense), schema=schema.to_dict()
        ).to_dict()

    def train_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        cat, dense, labels = batch
        return {"loss": F.binary_cross_entropy_with_logits(model(cat, dense), labels)}

    @torch.no_grad()
    def click_probabilities(self, model: nn.Module, tensors) -> np.ndarray:
        model.eval()
        cat, dense, _ = tensors
        return torch.cat(
            [torch.sigmoid(model(cat[i : i + 8192], dense[i : i + 8192])) for i in range(0, len(cat), 8192)]
        ).numpy()

    def click_metrics(self, model: nn.Module, tensors=None) -> dict[str, float]:
        """AUC and log loss on ``tensors`` (the test rows unless given)."""
        tensors = self.test_tensors if tensors is None else tensors
        return metrics.click_metrics(tensors[2].numpy(), self.click_probabilities(model, tensors))

    def validate(self, model: nn.Module) -> tuple[dict[str, float], float]:
        result = self.click_metrics(model, self.valid_tensors)
        return result, result["AUC"]

    def evaluate(self, model: nn.Module) -> Evaluation:
        kind, rank = self.preset.model.kind, self.preset.model.rank
        result = self.click_metrics(model)
        if self.bayes_auc is not None:
            result["bayes_optimal_AUC"] = self.bayes_auc
        trained = "trained" if not rank else f"trained at rank {rank}"
        table = [{"model": kind, "variant": trained, **result, **request_times(model, self.test_tensors)}]
        baseline = table[0]
        if kind == "hiformer":  # the serving variants: last layer pruned to the task token, then low rank
            if rank:  # the speed baseline: a full-rank model of the same shape (timing ignores the weights)
                full = ranking.build_model({**self.model_config(), "rank": None})
                baseline = {"model": kind, "variant": "full rank (timing only)",
                            **request_times(full, self.test_tensors)}  # fmt: skip
                table.append(baseline)
            for serving_rank in (None,) if rank else (None, *SERVING_RANKS):
                served = model.for_serving(rank=serving_rank)
                served_result = self.click_metrics(served)
                name = "pruned" if serving_rank is None else f"pruned + SVD rank {serving_rank}"
                table.append({"model": kind, "variant": name, **served_result,
                              **request_times(served, self.test_tensors)})  # fmt: skip
                result[f"{name.replace(' ', '_')}_AUC"] = served_result["AUC"]
            # the fastest variant within 0.002 AUC of the trained model is the one to serve
            close = [r for r in table[1:] if "AUC" in r and r["AUC"] >= table[0]["AUC"] - 0.002]
            if close:
                best = min(close, key=lambda r: r["ms_per_request"])
                result["serving_variant_AUC_drop"] = table[0]["AUC"] - best["AUC"]
                for key in REQUEST_SIZES.values():
                    result[f"serving_speedup_{key.removeprefix('ms_')}"] = baseline[key] / best[key]
        return Evaluation(result, "AUC", True, table)


def request_times(model: nn.Module, tensors) -> dict[str, float]:
    """Median milliseconds per request at each of :data:`REQUEST_SIZES`."""
    return {key: request_ms(model, tensors, candidates) for candidates, key in REQUEST_SIZES.items()}


def request_ms(model: nn.Module, tensors, candidates: int = 64, repeats: int = 50) -> float:
    """Median milliseconds to score one request of ``candidates`` rows (one thread, batch = request)."""
    cat, dense, _ = tensors
    rows = torch.arange(candidates) % len(cat)  # a small test set repeats rows to fill the request
    cat, dense = cat[rows], dense[rows]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            model.eval()
            for _ in range(5):
                model(cat, dense)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(cat, dense)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(times) * 1e3)
