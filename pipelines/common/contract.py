"""What a domain gives the harness: its presets, a :class:`Pipeline` and the :class:`Evaluation` it returns.

A domain subclasses :class:`Pipeline` with: presets, how to build the model, its training batches for each
worker, one loss step, optional end-of-epoch work (baselines), and an evaluation; :class:`ValidatedPipeline`
adds best-epoch selection and early stopping on a validation score. The loop
(:mod:`.loop`) runs it on every worker; the driver (:mod:`.driver`) evaluates, registers and promotes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


# ------------------------------------------------------------------------------ what a domain gives
@dataclass
class TrainPreset:
    """Hyperparameters shared by every domain; domains subclass it with their own fields."""

    name: str = "tiny"
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    seed: int = 0
    workers: int = 2
    cpus_per_worker: float = 0.5
    log_every: int = 10
    about: str = ""  # one line for --help and `presets`

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """The inverse of :meth:`to_dict`, nested config dataclasses included (``model=HyenaConfig(...)``)."""
        return _rebuild(cls, values)


@dataclass
class Evaluation:
    """The result of evaluating one model: metrics, which one decides promotion, a table, figures."""

    metrics: dict[str, float]
    primary: str
    higher_is_better: bool
    table: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # artifact name -> matplotlib figure

    def score(self) -> float:
        return float(self.metrics[self.primary])

    def better_than(self, other: Evaluation) -> bool:
        return self.score() > other.score() if self.higher_is_better else self.score() < other.score()


class Pipeline(ABC):
    """A domain's training recipe. Instances are rebuilt inside every worker from (class, preset, data)."""

    domain: ClassVar[str]
    presets: ClassVar[dict[str, TrainPreset]]
    builder: ClassVar[str]  # "package.module:function" rebuilding the model from model_config()
    predict: ClassVar[str | None] = None  # request -> response function for the pyfunc wrapper

    def __init__(self, preset: TrainPreset, data: str | None = None):
        self.preset = preset
        self.data = data

    @classmethod
    def preset_named(cls, name: str) -> TrainPreset:
        try:
            return cls.presets[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r} for {cls.domain}; known: {', '.join(cls.presets)}") from None

    @property
    @abstractmethod
    def registered_name(self) -> str:
        """The model's name in the MLflow registry."""

    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """The JSON config ``builder`` rebuilds the model from."""

    def build_model(self) -> nn.Module:
        from modelstore.artifacts import resolve

        return resolve(self.builder)(self.model_config())

    @abstractmethod
    def steps_per_epoch(self, world_size: int) -> int:
        """Optimizer steps per epoch on each worker."""

    @abstractmethod
    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterable[Any]:
        """This worker's batches for ``epoch`` (deterministic in epoch and rank, so resuming repeats them)."""

    @abstractmethod
    def train_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        """Forward one batch; return ``{"loss": tensor, **scalar metrics}``."""

    def after_step(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Work after each optimizer step on every worker (a weight average)."""

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """Work after each epoch on every worker (validation, baseline updates); returns metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Domain training state to checkpoint beyond model and optimizer (e.g. an RL baseline)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`state_dict`."""

    def should_stop(self) -> bool:
        """Early stopping: checked on every worker after :meth:`end_epoch` (must agree across workers)."""
        return False

    def begin(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Once before the first epoch of a fresh run (not on resume, not when the final model is rebuilt)."""

    def finalize(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Adjust the final model before evaluation (e.g. load the best epoch's weights)."""

    def build_optimizer(self, model: nn.Module, total_steps: int):
        """AdamW with linear warm-up then cosine decay to 10% of the peak rate."""
        p = self.preset
        optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        warmup = max(0, p.warmup_steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    @abstractmethod
    def evaluate(self, model: nn.Module) -> Evaluation:
        """Evaluate a trained model on the held-out set the champion comparison uses."""


class BestEpoch:
    """Early stopping on a validation score (higher is better): remembers the best epoch and its weights and
    counts epochs without improvement (:class:`ValidatedPipeline` checkpoints it and restores the best).

    A candidate given before training (``epoch < 0``, a baseline to beat) competes for the weights kept
    but not for patience: that counts the epochs since the training run's own best, so a run that is still
    improving is not stopped for being below the candidate."""

    def __init__(self, patience: int = 0):
        self.patience = patience  # 0 = never stop early
        self.best_score, self.best_epoch, self.stale = -math.inf, -1, 0
        self.run_best = -math.inf  # the best score of the training epochs (epoch >= 0)
        self.best_state: dict[str, torch.Tensor] | None = None

    def update(self, score: float, epoch: int, model: nn.Module, clears_candidate: bool = True) -> bool:
        """Record this epoch's score; True when it is the best so far (its weights are kept). An epoch that
        does not ``clears_candidate`` keeps the candidate given before training even with a higher score
        (its lead is within the noise of the comparison)."""
        if epoch >= 0:
            self.run_best, self.stale = (score, 0) if score > self.run_best else (self.run_best, self.stale + 1)
        holds_candidate = self.best_epoch < 0 and self.best_state is not None
        if score > self.best_score and (clears_candidate or not holds_candidate):
            self.best_score, self.best_epoch = score, epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        return False

    def should_stop(self) -> bool:
        return bool(self.patience) and self.stale >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights, when there was one."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "stale": self.stale,
                "run_best": self.run_best, "best_state": self.best_state}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state.get("best_score", -math.inf)
        self.best_epoch = state.get("best_epoch", -1)
        self.stale = state.get("stale", 0)
        self.run_best = state.get("run_best", self.best_score)
        self.best_state = state.get("best_state")


class WeightAverage:
    """An exponential moving average of the weights, folded in after every optimizer step. The decay warms
    up as TensorFlow's ExponentialMovingAverage (``min(decay, (1 + n) / (10 + n))`` at update ``n``): without
    it a decay of 0.999 still averages in the early weights when patience ends. Every worker holds the same
    weights, hence the same average."""

    def __init__(self, decay: float):
        self.decay = decay
        self.state: dict[str, torch.Tensor] | None = None
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weights = model.state_dict()
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in weights.items()}
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in weights.items():
            if v.dtype.is_floating_point:
                self.state[k].lerp_(v, 1.0 - decay)
            else:
                self.state[k].copy_(v)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module):
        """The averaged weights in ``model`` inside the block, training's own weights back after it."""
        own = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.state)
        try:
            yield
        finally:
            model.load_state_dict(own)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.state, "ema_updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state, self.updates = state.get("ema"), state.get("ema_updates", 0)


@dataclass
class ValidatedPreset(TrainPreset):
    """The preset of a :class:`ValidatedPipeline`."""

    patience: int = 0  # epochs without a better validation score before stopping (0: never stop early)
    ema: float = 0.0  # decay of a weight average (:class:`WeightAverage`) validated instead of the weights (0 = off)


class ValidatedPipeline(Pipeline):
    """A pipeline validated after every epoch on data apart from its test set: the best epoch's weights are
    the ones evaluated and registered, and training stops after ``preset.patience`` epochs without a better
    validation score. With ``preset.ema`` it is the weight average that is validated and kept, while training
    goes on with its own weights. A domain says how to validate (:meth:`validate`); the rest is here."""

    preset: ValidatedPreset

    def __init__(self, preset: ValidatedPreset, data: str | None = None):
        super().__init__(preset, data)
        self.best = BestEpoch(preset.patience)
        self.average = WeightAverage(preset.ema) if preset.ema else None

    @abstractmethod
    def validate(self, model: nn.Module) -> tuple[dict[str, float], float]:
        """Validation metrics (logged as ``val/<name>``) and the score the best epoch is chosen by (higher is
        better)."""

    def clears_candidate(self) -> bool:
        """Whether the epoch just validated may replace a candidate given before training (a baseline, see
        :class:`BestEpoch`) when it scores higher: by default it may."""
        return True

    def after_step(self, model: nn.Module) -> None:
        if self.average is not None:
            self.average.update(model)

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        if self.average is None or self.average.state is None:
            return self._validate_epoch(model, epoch)
        with self.average.swapped_in(model):
            return self._validate_epoch(model, epoch)

    def _validate_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        metrics, score = self.validate(model)
        self.best.update(score, epoch, model, self.clears_candidate())
        return {**{f"val/{k}": v for k, v in metrics.items()}, "val/best_epoch": float(self.best.best_epoch)}

    def should_stop(self) -> bool:
        return self.best.should_stop()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best.state_dict(), **(self.average.state_dict() if self.average else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # checkpoints written before this class kept the best epoch's fields at the top level
        self.best.load_state_dict(state.get("best", state))
        if self.average is not None:
            self.average.load_state_dict(state)

    def finalize(self, model: nn.Module) -> None:
        self.best.restore(model)


def _rebuild(cls: type, values: dict[str, Any]):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            value, kind = values[f.name], hints[f.name]
            kwargs[f.name] = (
                _rebuild(kind, value) if dataclasses.is_dataclass(kind) and isinstance(value, dict) else value
            )
    return cls(**kwargs)


@dataclass(frozen=True)
class Domain:
    """A domain's pipelines: one per task, each with its own presets. The table of presets is the only
    place a preset's name picks its pipeline (no dispatch on a task string anywhere else)."""

    name: str
    pipelines: tuple[type[Pipeline], ...]

    def __post_init__(self):
        names = [n for cls in self.pipelines for n in cls.presets]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"{self.name}: presets named twice: {', '.join(doubled)}")

    @property
    def presets(self) -> dict[str, TrainPreset]:
        return {name: preset for cls in self.pipelines for name, preset in cls.presets.items()}

    def pipeline_class(self, preset: str) -> type[Pipeline]:
        for cls in self.pipelines:
            if preset in cls.presets:
                return cls
        known = ", ".join(sorted(self.presets))
        raise ValueError(f"unknown preset {preset!r} for {self.name}; known: {known}")

    def pipeline(self, preset: str | TrainPreset, data: str | None = None) -> Pipeline:
        """The pipeline of a preset (by name, or an adjusted copy of a named one)."""
        name = preset if isinstance(preset, str) else preset.name
        cls = self.pipeline_class(name)
        return cls(cls.presets[name] if isinstance(preset, str) else preset, data)
