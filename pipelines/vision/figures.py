"""The vision evaluation's figures beyond the confusion matrix: predictions on test images, and Grad-CAM
maps of what the model looked at."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from services.vision import data as vdata
from services.vision.models import grad_cam


def prediction_grid(images: vdata.ImageSet, predictions: np.ndarray, count: int = 24):
    """The first ``count`` test images titled with their predicted class (green right, red wrong)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, count // 3, figsize=(count // 3 * 1.2, 4))
    for ax, i in zip(axes.flat, range(count)):
        ax.imshow(images.images[i], cmap="gray" if images.channels == 1 else None)
        right = predictions[i] == images.labels[i]
        ax.set_title(f"{images.classes[predictions[i]]}", fontsize=8, color="green" if right else "red")
        ax.axis("off")
    fig.tight_layout()
    return fig


def attention_figure(model: nn.Module, images: vdata.ImageSet, transform, count: int = 8):
    """The first ``count`` test images over their Grad-CAM maps on the last feature map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = torch.stack([vdata.TransformedImages(images, transform)[i][0] for i in range(count)])
    maps, _ = grad_cam(model, batch)
    cmap = "gray" if images.channels == 1 else None
    fig, axes = plt.subplots(2, count, figsize=(count * 1.2, 2.6))
    for i in range(count):
        axes[0, i].imshow(images.images[i], cmap=cmap)
        axes[1, i].imshow(images.images[i], cmap=cmap)
        axes[1, i].imshow(maps[i].numpy(), cmap="jet", alpha=0.5)
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    fig.suptitle("Grad-CAM on the last feature map", fontsize=9)
    fig.tight_layout()
    return fig
