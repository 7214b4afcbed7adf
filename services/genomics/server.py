"""The genomics app's model deployment and the messages its ingress sends it.

Models: ``lm`` (the causal language model: embeddings and variant effects), ``classify:<task>`` and
``tag:<task>``. Messages: :class:`Classify`, :class:`Embed`, :class:`Tag` (sequences already normalised
by the ingress) and :class:`ScoreVariants`. Classify and embed requests for the same model are pooled
into one call (the windows of all their sequences run in shared length-sorted batches); tag and
variant requests run one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray import serve

from services.common.serving import Answer, Message, ModelServer

from . import inference


@dataclass
class Classify(Message):
    model: str  # classify:<task>
    task: str
    sequences: list[str]
    ids: list[str | None]


@dataclass
class Embed(Message):
    model: str  # lm or classify:<task>
    sequences: list[str]
    ids: list[str | None]


@dataclass
class Tag(Message):
    model: str  # tag:<task>
    sequences: list[str]
    ids: list[str | None]


@dataclass(frozen=True)
class Substitution:
    position: int
    alt: str


@dataclass
class ScoreVariants(Message):
    """Log-likelihood change of each substitution in ``sequence`` under the language model."""

    sequence: str
    variants: list[Substitution]


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class GenomicsServer(ModelServer):
    """Holds the language model (``lm``) and the fine-tuned ones (``classify:<task>``, ``tag:<task>``)."""

    def details(self, key: str, version: str) -> dict[str, Any]:
        cfg = self.models[key].config
        return {"arch": cfg.arch, "context_bases": cfg.max_bases, "labels": cfg.labels, "rc_average": cfg.rc_average}

    def process_batch(self, requests: list[Message]) -> list[Answer]:
        return run_batch(self.models, self.infos, requests)


def run_batch(models: dict[str, Any], infos: dict[str, Any], requests: list[Message]) -> list[Answer]:
    """Answer a batch (module-level so that Serve pickles it by reference)."""
    out: list[Answer | None] = [None] * len(requests)
    pooled: dict[tuple[type, str], list[int]] = {}
    for i, r in enumerate(requests):
        if isinstance(r, Classify | Embed):
            pooled.setdefault((type(r), r.model), []).append(i)
    for (kind, key), idx in pooled.items():
        model = models[key]
        sequences = [s for i in idx for s in requests[i].sequences]
        fn = inference.class_probabilities if kind is Classify else inference.embeddings
        result = fn(model, sequences)
        offset = 0
        for i in idx:
            r = requests[i]
            n = len(r.sequences)
            values, windows = result.values[offset : offset + n], result.windows[offset : offset + n]
            offset += n
            out[i] = _classified(r, model, values, windows) if kind is Classify else _embedded(r, values, windows)
            out[i]["model"] = _ref(infos[key])
    for i, r in enumerate(requests):
        if isinstance(r, Tag):
            out[i] = {"results": [_tag(models[r.model], s, rid) for s, rid in zip(r.sequences, r.ids)],
                      "model": _ref(infos[r.model])}  # fmt: skip
        elif isinstance(r, ScoreVariants):
            out[i] = {"effects": variant_effects(models["lm"], r.sequence, r.variants), "model": _ref(infos["lm"])}
    return out  # type: ignore[return-value]


def _ref(info) -> dict[str, str]:
    return {"name": info.name, "version": info.version}


def _classified(request: Classify, model, values: list[np.ndarray], windows: list[int]) -> dict[str, Any]:
    labels = model.config.labels
    results = []
    for seq, rid, probs, w in zip(request.sequences, request.ids, values, windows):
        results.append({"id": rid, "label": labels[int(np.argmax(probs))], "length": len(seq), "windows": w,
                        "probabilities": {label: float(p) for label, p in zip(labels, probs)}})  # fmt: skip
    return {"results": results, "task": request.task}


def _embedded(request: Embed, values: list[np.ndarray], windows: list[int]) -> dict[str, Any]:
    results = [{"id": rid, "vector": v.astype(float).tolist(), "length": len(s), "windows": w}
               for s, rid, v, w in zip(request.sequences, request.ids, values, windows)]  # fmt: skip
    return {"results": results, "dim": len(values[0]) if values else 0}


def _tag(model, sequence: str, rid: str | None) -> dict[str, Any]:
    probs, windows = inference.tag_probabilities(model, sequence)
    return {"id": rid, "runs": label_runs(probs, model.config.labels), "length": len(sequence), "windows": windows}


def label_runs(probs: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """Maximal runs of the same predicted label: ``start``, ``end`` (exclusive), ``label``, mean probability."""
    predicted = probs.argmax(1)
    edges = np.flatnonzero(np.diff(predicted)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(predicted)]])
    return [{"start": int(a), "end": int(b), "label": labels[int(predicted[a])],
             "mean_probability": float(probs[a:b, predicted[a]].mean())} for a, b in zip(starts, ends)]  # fmt: skip


@torch.no_grad()
def variant_effects(model, sequence: str, variants: list[Substitution]) -> list[dict[str, Any]]:
    """``log p(alt) - log p(ref)`` under the causal LM, each on the context window around its variant (up to
    half a context before it, the rest after: a base only changes the likelihood of itself and later bases)."""
    size = model.config.max_bases
    results = []
    for v in variants:
        pos, alt = v.position, v.alt
        start = max(0, min(pos - size // 2, len(sequence) - size))
        end = min(len(sequence), start + size)
        ref_window = sequence[start:end]
        alt_window = ref_window[: pos - start] + alt + ref_window[pos - start + 1 :]
        ids, mask = model.tokenizer.batch([ref_window, alt_window], add_special=False)
        ll = model.log_likelihood(ids, mask).sum(1)
        results.append({"position": pos, "ref": sequence[pos], "alt": alt,
                        "delta_log_likelihood": float(ll[1] - ll[0]), "window": [start, end]})  # fmt: skip
    return results
