"""Building the suite's vision models from a JSON config (what the registry stores), and explaining
their predictions.

``build_model({"arch": "van_small_input", "num_classes": 10, "in_chans": 1, ...})`` goes through
``timm.create_model``; importing this package (``services/vision/__init__.py``) registered VAN, BiFormer
and Agent Attention in timm. The config also carries what serving needs: class names, input size, normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import timm
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class VisionConfig:
    arch: str = "van_small_input"
    num_classes: int = 10
    in_chans: int = 1
    img_size: int = 28
    classes: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    mean: tuple[float, ...] = (0.1307,)
    std: tuple[float, ...] = (0.3081,)
    drop_path_rate: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(config: dict | VisionConfig) -> nn.Module:
    cfg = config if isinstance(config, VisionConfig) else VisionConfig(**config)
    # Every architecture takes img_size: the token models fix their patch grid by it, the convolutional
    # ones accept any input and ignore it.
    model = timm.create_model(cfg.arch, num_classes=cfg.num_classes, in_chans=cfg.in_chans, img_size=cfg.img_size,
                              drop_path_rate=cfg.drop_path_rate)  # fmt: skip
    model.suite_config = cfg
    return model


def feature_grid(model: nn.Module, features: Tensor) -> Tensor:
    """``forward_features`` output as a spatial map ``[b, C, h, w]`` (token models: patch tokens)."""
    if features.ndim == 4:
        return features
    grid = model.token_grid()
    tokens = features[:, -grid[0] * grid[1] :]  # drop prefix (class) tokens
    return tokens.transpose(1, 2).reshape(features.shape[0], -1, *grid)


def grad_cam(model: nn.Module, images: Tensor, target: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Grad-CAM on the last feature map: ``relu(Σ_c mean(∂y/∂F_c) F_c)`` upsampled to the input, in [0, 1].

    Returns ``(maps [b, H, W], logits [b, classes])``.
    """
    model.eval()
    features = model.forward_features(images)
    features.retain_grad()
    logits = model.forward_head(features)
    chosen = logits.argmax(dim=1) if target is None else target
    logits.gather(1, chosen.view(-1, 1)).sum().backward()
    grid, grads = feature_grid(model, features), feature_grid(model, features.grad)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * grid).sum(dim=1, keepdim=True))
    cam = nn.functional.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).detach(), logits.detach()
