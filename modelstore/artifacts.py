"""The on-disk form of a trained model: weights in safetensors plus a JSON config that names the
function rebuilding the module.

    <dir>/model.safetensors   the state_dict
    <dir>/config.json         {"builder": "pkg.module:function", "config": {...}, "predict": "pkg.module:fn"}

Pipelines write it, MLflow stores it as the artifacts of a registered pyfunc model, services read it
back. Loading runs our own builder on our own config, so nothing depends on pickled classes or on
``torch.export`` graphs (which drop custom methods such as decoding loops). Imports torch only.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model as load_weights
from safetensors.torch import save_model as save_weights
from torch import nn

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def resolve(path: str) -> Callable[..., Any]:
    """``"package.module:attribute"`` → the attribute."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected 'package.module:attribute', got {path!r}")
    return getattr(importlib.import_module(module_name), attribute)


def save_model(
    directory: str | Path,
    model: nn.Module,
    config: dict[str, Any],
    builder: str,
    predict: str | None = None,
) -> Path:
    """Write ``model``'s weights and the config that rebuilds it into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors' model-level save stores a tensor shared by several names once (e.g. a tied head, or
    # HyenaDNA's Sin frequencies reused across filter layers) and load_weights restores the sharing
    save_weights(model, str(directory / WEIGHTS), force_contiguous=True)
    meta = {"builder": builder, "config": config}
    if predict:
        meta["predict"] = predict
    (directory / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / CONFIG).read_text())


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the module from ``directory`` (strict state_dict match) in eval mode."""
    directory = Path(directory)
    meta = read_config(directory)
    model = resolve(meta["builder"])(meta["config"])
    load_weights(model, str(directory / WEIGHTS), strict=True, device=str(device))
    return model.to(device).eval()


def find_model_dir(root: str | Path) -> Path:
    """The directory holding ``config.json`` at or below ``root`` (MLflow nests the artifacts)."""
    root = Path(root)
    if (root / CONFIG).exists():
        return root
    for candidate in sorted(root.rglob(CONFIG)):
        if (candidate.parent / WEIGHTS).exists():
            return candidate.parent
    raise FileNotFoundError(f"no {CONFIG} with {WEIGHTS} under {root}")
