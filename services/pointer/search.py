"""Decoding strategies under the validity masks of :mod:`services.pointer.constraints`: greedy, sampling
(best of ``k`` by the task's score), beam search, and teacher forcing for training. All are batched.

Models provide ``encode(points)``, ``initial_state(encoded)`` and
``step(encoded, state, constraint) -> (log_probs, state)``; every output of every strategy is a valid answer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .constraints import make_constraint

NEG_INF = float("-inf")


def tour_lengths(points: Tensor, tours: Tensor) -> Tensor:
    """Closed tour lengths ``[B]`` for ``points [B, n, 2]`` and ``tours [B, n]``."""
    ordered = points.gather(1, tours.unsqueeze(-1).expand(-1, -1, 2))
    return (ordered - ordered.roll(-1, dims=1)).norm(dim=-1).sum(dim=1)


@torch.no_grad()
def greedy(model, points: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """Most likely output at every step: ``(sequences [B, T], log-likelihoods [B])``."""
    return rollout(model, points, task, sample=False)


def rollout(model, points: Tensor, task: str, *, sample: bool, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Greedy (``sample=False``) or sampled decoding; keeps the autograd graph of the log-likelihood
    (REINFORCE needs it); wrap in ``torch.no_grad()`` for inference."""
    constraint = make_constraint(task, points)
    encoded = model.encode(points)
    state = model.initial_state(encoded)
    choices, total = [], torch.zeros(points.shape[0])
    for _ in range(constraint.max_steps()):
        log_probs, state = model.step(encoded, state, constraint)
        if sample:
            choice = torch.distributions.Categorical(logits=log_probs / temperature).sample()
        else:
            choice = log_probs.argmax(dim=-1)
        picked = log_probs.gather(1, choice.unsqueeze(1)).squeeze(1)
        total = total + torch.where(constraint.done, torch.zeros_like(picked), picked)
        constraint.update(choice)
        choices.append(choice)
        if bool(constraint.done.all()):
            break
    return torch.stack(choices, dim=1), total


def teacher_forcing(model, points: Tensor, task: str, targets: Tensor) -> Tensor:
    """Log-likelihood ``[B]`` of ``targets [B, T]`` (padded with END, or -1 for TSP) under the masks."""
    constraint = make_constraint(task, points)
    encoded = model.encode(points)
    state = model.initial_state(encoded)
    total = torch.zeros(points.shape[0])
    for t in range(targets.shape[1]):
        log_probs, state = model.step(encoded, state, constraint)
        target = targets[:, t]
        pad = (target < 0) | constraint.done
        target = torch.where(pad, log_probs.argmax(dim=-1), target)
        picked = log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
        if not bool(torch.isfinite(picked[~pad]).all()):
            raise ValueError("a target sequence violates the task's validity masks")
        total = total + torch.where(pad, torch.zeros_like(picked), picked)
        constraint.update(target)
    return total


@torch.no_grad()
def sample_best(model, points: Tensor, task: str, samples: int, temperature: float = 1.0) -> Tensor:
    """``samples`` sampled answers per instance plus the greedy one; keep the shortest tour (TSP) or
    the most likely answer (other tasks). Returns sequences ``[B, T]``."""
    b = points.shape[0]
    repeated = points.repeat_interleave(samples, dim=0)
    seqs, logp = rollout(model, repeated, task, sample=True, temperature=temperature)
    greedy_seqs, greedy_logp = rollout(model, points, task, sample=False)
    length = max(seqs.shape[1], greedy_seqs.shape[1])
    seqs = _pad(seqs, length, points.shape[1]).view(b, samples, length)
    seqs = torch.cat([_pad(greedy_seqs, length, points.shape[1]).unsqueeze(1), seqs], dim=1)
    if task == "tsp":
        n = points.shape[1]
        lengths = tour_lengths(points.repeat_interleave(samples + 1, 0), seqs[:, :, :n].reshape(-1, n))
        score = -lengths.view(b, samples + 1)
    else:
        score = torch.cat([greedy_logp.unsqueeze(1), logp.view(b, samples)], dim=1)
    return seqs[torch.arange(b), score.argmax(dim=1)]


def _pad(seqs: Tensor, length: int, end: int) -> Tensor:
    if seqs.shape[1] >= length:
        return seqs
    return torch.cat([seqs, torch.full((seqs.shape[0], length - seqs.shape[1]), end)], dim=1)


@torch.no_grad()
def beam_search(model, points: Tensor, task: str, width: int) -> Tensor:
    """Beam search keeping the ``width`` most likely valid prefixes per instance; returns the best
    finished sequence per instance (shortest tour for TSP, most likely answer otherwise)."""
    b = points.shape[0]
    constraint = make_constraint(task, points)
    encoded = model.encode(points)
    state = model.initial_state(encoded)
    beam_origin = torch.arange(b)  # instance of every beam row
    scores = torch.zeros(b)
    history = torch.zeros(b, 0, dtype=torch.long)
    for _ in range(constraint.max_steps()):
        log_probs, state = model.step(_select(encoded, beam_origin), state, constraint)
        step_scores = torch.where(
            constraint.done.unsqueeze(1), torch.where(log_probs > NEG_INF, 0.0, NEG_INF), log_probs
        )
        candidates = scores.unsqueeze(1) + step_scores  # [rows, V]
        vocab = candidates.shape[1]
        new_rows, new_scores, new_choice = [], [], []
        for inst in range(b):
            rows = torch.nonzero(beam_origin == inst).squeeze(1)
            flat = candidates[rows].reshape(-1)
            k = min(width, int(torch.isfinite(flat).sum()))
            top = flat.topk(k)
            new_rows.append(rows[top.indices // vocab])
            new_choice.append(top.indices % vocab)
            new_scores.append(top.values)
        parent = torch.cat(new_rows)
        choice = torch.cat(new_choice)
        scores = torch.cat(new_scores)
        beam_origin = beam_origin[parent]
        history = torch.cat([history[parent], choice.unsqueeze(1)], dim=1)
        constraint = constraint.select(parent)
        state = _select(state, parent)
        constraint.update(choice)
        if bool(constraint.done.all()):
            break
    best = []
    for inst in range(b):
        rows = torch.nonzero(beam_origin == inst).squeeze(1)
        if task == "tsp":
            n = points.shape[1]
            lengths = tour_lengths(points[inst].expand(len(rows), -1, -1), history[rows, :n])
            best.append(history[rows[lengths.argmin()]])
        else:
            best.append(history[rows[scores[rows].argmax()]])
    return torch.stack(best)


def _select(tree: Any, index: Tensor) -> Any:
    """Rows ``index`` of a model's encoded/state structure (dicts/tuples of batch-first tensors)."""
    if isinstance(tree, Tensor):
        return tree[index]
    if isinstance(tree, dict):
        return {k: _select(v, index) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_select(v, index) for v in tree)
    return tree
