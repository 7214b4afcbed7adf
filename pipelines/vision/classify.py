"""Image classification with VAN, BiFormer and Agent Attention on the platform harness, with timm's
optimizer, scheduler, transforms, Mixup/CutMix and label smoothing.

Data (``--data``): a folder with MNIST/Fashion-MNIST IDX files (the 10,000 ``t10k`` images are split
8,000 / 2,000, stratified, seed 0), CIFAR python batches (``data_batch_*``/``test_batch``), or an
ImageFolder tree; without ``--data``, scikit-learn's bundled 8×8 digits upscaled to 28 px (split
1,437 / 360). The held-out split is evaluated after every epoch (logged, never used to pick a model).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.common.contract import Evaluation, Pipeline, TrainPreset
from pipelines.common.tracking import confusion_figure
from services.vision import data as vdata
from services.vision.models import VisionConfig

from .figures import attention_figure, prediction_grid


@dataclass(frozen=True)
class TimmModel:
    """The model a preset trains: an architecture in timm's registry (``services.vision`` registers ours)
    and the model arguments the preset sets; the data supplies the rest of :class:`VisionConfig`."""

    arch: str = "van_small_input"
    img_size: int = 28  # also the size the transforms resize to
    drop_path_rate: float = 0.05


@dataclass
class VisionPreset(TrainPreset):
    model: TimmModel = field(default_factory=TimmModel)
    family: str = "van"  # van | biformer | agent: the registered name vision-<family>-<dataset>
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.1
    test_fraction: float = 0.2  # held out, for data without a test split of its own (MNIST: 2,000)


VAN = TimmModel("van_small_input")
BIFORMER = TimmModel("biformer_small_input")
AGENT = TimmModel("agent_deit_small_input")

# fmt: off
PRESETS: dict[str, VisionPreset] = {
    p.name: p
    for p in (
        VisionPreset(name="tiny-van", about="VAN on scikit-learn's digits (tests, seconds)", model=VAN, epochs=2,
                     batch_size=64, lr=2e-3, log_every=2),
        VisionPreset(name="quick-van", about="VAN on scikit-learn's digits, no download (minutes)", model=VAN,
                     epochs=4, batch_size=64, lr=2e-3),
        VisionPreset(name="quick-biformer", about="BiFormer on scikit-learn's digits (minutes)", model=BIFORMER,
                     family="biformer", epochs=4, batch_size=64, lr=2e-3),
        VisionPreset(name="quick-agent", about="Agent Attention DeiT on scikit-learn's digits (minutes)",
                     model=AGENT, family="agent", epochs=4, batch_size=64, lr=1e-3),
        VisionPreset(name="van-mnist", about="VAN on MNIST with Mixup (--data data/vision)", model=VAN, epochs=30,
                     batch_size=128, lr=2e-3, mixup=0.2),
        VisionPreset(name="biformer-mnist", about="BiFormer on MNIST with Mixup (--data data/vision)",
                     model=BIFORMER, family="biformer", epochs=30, batch_size=128, lr=2e-3, mixup=0.2),
        VisionPreset(name="agent-mnist", about="Agent Attention DeiT on MNIST with Mixup (--data data/vision)",
                     model=AGENT, family="agent", epochs=40, batch_size=128, lr=1e-3, mixup=0.2),
    )
}
# fmt: on


class ClassifyPipeline(Pipeline):
    """A timm classifier on one image set: cross-entropy (soft targets under Mixup/CutMix), AdamW with
    timm's cosine schedule stepped per update, accuracy on the held-out split."""

    domain = "vision"
    presets = PRESETS
    builder = "services.vision.models:build_model"
    predict = "services.vision.pyfunc:predict"

    preset: VisionPreset

    def __init__(self, preset: VisionPreset, data: str | None = None):
        super().__init__(preset, data)
        self.dataset_name, full = self._read()
        test_size = 2000 if self.dataset_name == "mnist" else preset.test_fraction
        self.train_set, self.test_set = vdata.stratified_split(full, test_size, seed=0)
        channels, size = full.channels, preset.model.img_size
        self.mean, self.std = (
            ((0.1307,), (0.3081,)) if channels == 1 else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        )
        self.train_tf = vdata.make_transforms(channels, size, self.mean, self.std, training=True,
                                              hflip=0.5 if channels == 3 else 0.0)  # fmt: skip
        self.eval_tf = vdata.make_transforms(channels, size, self.mean, self.std, training=False)
        self.mixup = None
        if preset.mixup > 0 or preset.cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=preset.mixup, cutmix_alpha=preset.cutmix,
                               label_smoothing=preset.label_smoothing, num_classes=len(full.classes))  # fmt: skip

    def _read(self) -> tuple[str, vdata.ImageSet]:
        if not self.data:
            return "digits", vdata.sklearn_digits(self.preset.model.img_size)
        root = Path(self.data)
        if any(root.glob("*idx3-ubyte*")):
            return "mnist", vdata.read_mnist_folder(root)
        batches = sorted(root.glob("data_batch_*"))
        if batches:
            meta = root / "batches.meta"
            return "cifar", vdata.read_cifar([*batches, root / "test_batch"], meta if meta.exists() else None)
        return root.name.lower(), vdata.read_image_folder(root, self.preset.model.img_size)

    @property
    def registered_name(self) -> str:
        return f"vision-{self.preset.family}-{self.dataset_name}"

    def model_config(self) -> dict[str, Any]:
        m = self.preset.model
        return VisionConfig(arch=m.arch, num_classes=len(self.train_set.classes), in_chans=self.train_set.channels,
                            img_size=m.img_size, classes=self.train_set.classes, mean=self.mean, std=self.std,
                            drop_path_rate=m.drop_path_rate).to_dict()  # fmt: skip

    def build_optimizer(self, model: nn.Module, total_steps: int):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        p = self.preset
        optimizer = create_optimizer_v2(model, "adamw", lr=p.lr, weight_decay=p.weight_decay)
        per_epoch = max(1, total_steps // max(1, p.epochs))
        scheduler, _ = create_scheduler_v2(optimizer, "cosine", num_epochs=p.epochs, warmup_epochs=p.warmup_epochs,
                                           warmup_lr=p.lr * 0.01, min_lr=p.lr * 0.01, step_on_epochs=False,
                                           updates_per_epoch=per_epoch)  # fmt: skip
        return optimizer, _PerStep(scheduler, optimizer)

    def steps_per_epoch(self, world_size: int) -> int:
        return max(1, len(self.train_set) // (self.preset.batch_size * world_size))

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
        p = self.preset
        order = np.random.default_rng([p.seed, epoch]).permutation(len(self.train_set))[rank::world_size]
        dataset = vdata.TransformedImages(self.train_set, self.train_tf)
        for step in range(self.steps_per_epoch(world_size)):
            idx = order[step * p.batch_size : (step + 1) * p.batch_size]
            images = torch.stack([dataset[i][0] for i in idx])
            labels = torch.from_numpy(self.train_set.labels[idx])
            yield images, labels

    def train_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        images, labels = batch
        if self.mixup is not None:
            images, targets = self.mixup(images, labels)
            loss = torch.sum(-targets * torch.log_softmax(model(images), dim=-1), dim=-1).mean()
        else:
            loss = nn.functional.cross_entropy(model(images), labels, label_smoothing=self.preset.label_smoothing)
        return {"loss": loss}

    @torch.no_grad()
    def predict_all(self, model: nn.Module, images: vdata.ImageSet) -> np.ndarray:
        """Logits of every image, through the evaluation transform."""
        model.eval()
        dataset = vdata.TransformedImages(images, self.eval_tf)
        logits = []
        for start in range(0, len(dataset), 256):
            batch = torch.stack([dataset[i][0] for i in range(start, min(len(dataset), start + 256))])
            logits.append(model(batch))
        return torch.cat(logits).numpy()

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        predictions = self.predict_all(model, self.test_set).argmax(1)
        return {"val/accuracy": float((predictions == self.test_set.labels).mean())}

    def evaluate(self, model: nn.Module) -> Evaluation:
        predictions = self.predict_all(model, self.test_set).argmax(1)
        labels, classes = self.test_set.labels, self.test_set.classes
        accuracy = float((predictions == labels).mean())
        per_class = {f"accuracy/{c}": float((predictions[labels == i] == i).mean()) for i, c in enumerate(classes)}
        table = [{"model": self.preset.model.arch, "dataset": self.dataset_name, "train": len(self.train_set),
                  "test": len(self.test_set), "accuracy": accuracy}]  # fmt: skip
        figures = {
            "confusion_matrix.png": confusion_figure(labels, predictions, classes),
            "predictions.png": prediction_grid(self.test_set, predictions),
            "attention_maps.png": attention_figure(model, self.test_set, self.eval_tf),
        }
        return Evaluation({"accuracy": accuracy, **per_class}, "accuracy", True, table, figures)


class _PerStep:
    """timm schedulers step per epoch or per update; the harness steps once per optimizer step."""

    def __init__(self, scheduler, optimizer):
        self.scheduler, self.optimizer, self.updates = scheduler, optimizer, 0
        scheduler.step_update(0)

    def step(self) -> None:
        self.updates += 1
        self.scheduler.step_update(self.updates)

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        self.scheduler.step_update(self.updates)
