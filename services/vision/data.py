"""Image data for the vision models: ImageFolder trees, MNIST/Fashion-MNIST IDX files, CIFAR python batches
and scikit-learn's bundled digits, all as an :class:`ImageSet` (uint8 images ``[N, H, W]`` or
``[N, H, W, 3]`` plus labels and class names), with a stratified split and timm transforms.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset


@dataclass
class ImageSet:
    images: np.ndarray  # uint8, [N, H, W] (grey) or [N, H, W, 3] (RGB)
    labels: np.ndarray  # int64 [N]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else 3

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], self.classes)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST's format), plain or gzipped: magic 0x0000 08 <ndim>, big-endian sizes, uint8 data."""
    path = Path(path)
    with _open(path) as f:
        header = f.read(4)
        if len(header) != 4 or header[:3] != b"\x00\x00\x08":
            raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {header.hex()!r})")
        ndim = header[3]
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated, {data.size} bytes for shape {dims}")
    return data.reshape(dims)


def read_mnist(images: str | Path, labels: str | Path) -> ImageSet:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"IDX images {x.shape} and labels {y.shape} do not pair up")
    return ImageSet(x, y.astype(np.int64), [str(i) for i in range(10)])


def read_mnist_folder(folder: str | Path, prefix: str = "t10k") -> ImageSet:
    """``<prefix>-images-idx3-ubyte[.gz]`` and ``<prefix>-labels-idx1-ubyte[.gz]`` in ``folder``."""
    folder = Path(folder)
    found = {}
    for kind, dims in (("images", 3), ("labels", 1)):
        for name in (f"{prefix}-{kind}-idx{dims}-ubyte.gz", f"{prefix}-{kind}-idx{dims}-ubyte"):
            if (folder / name).exists():
                found[kind] = folder / name
                break
        else:
            raise ValueError(f"{folder}: no {prefix}-{kind}-idx{dims}-ubyte[.gz] file")
    return read_mnist(found["images"], found["labels"])


def read_cifar(paths: list[str | Path], meta: str | Path | None = None) -> ImageSet:
    """CIFAR-10/100 python batches (pickled dicts; only open files you trust)."""
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        key = b"labels" if b"labels" in batch else b"fine_labels"
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[key], dtype=np.int64))
    classes = [str(i) for i in range(int(max(lab.max() for lab in labels)) + 1)]
    if meta is not None:
        with open(meta, "rb") as f:
            names = pickle.load(f, encoding="bytes")
        classes = [n.decode() for n in names.get(b"label_names", names.get(b"fine_label_names", []))] or classes
    return ImageSet(np.concatenate(images), np.concatenate(labels), classes)


def read_image_folder(root: str | Path, size: int = 64) -> ImageSet:
    """``root/<class>/<image>`` trees (torchvision's ImageFolder layout), resized to ``size`` × ``size`` RGB."""
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{root}: no class folders")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".webp", ".bmp"}:
                continue
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR)))
            labels.append(label)
    return ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64), classes)


def sklearn_digits(size: int = 28) -> ImageSet:
    """scikit-learn's bundled 8×8 digits (values 0–16), upscaled to ``size`` px."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = (digits.images / 16.0 * 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in small])
    return ImageSet(big, digits.target.astype(np.int64), [str(i) for i in range(10)])


def stratified_split(data: ImageSet, test_size: int | float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    train, test = train_test_split(np.arange(len(data)), test_size=test_size, stratify=data.labels, random_state=seed)
    return data.subset(np.sort(train)), data.subset(np.sort(test))


class TransformedImages(Dataset):
    """An :class:`ImageSet` through a (timm) transform that takes PIL images."""

    def __init__(self, data: ImageSet, transform):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.data.images[i])
        return self.transform(image), int(self.data.labels[i])


def make_transforms(channels: int, size: int, mean: tuple, std: tuple, *, training: bool, hflip: float = 0.0):
    """timm's transform pipeline: random resized crop (mild, digits keep their shape) when training."""
    from timm.data import create_transform

    return create_transform(
        input_size=(channels, size, size), is_training=training, scale=(0.8, 1.0), ratio=(0.9, 1.1), hflip=hflip,
        color_jitter=None, auto_augment=None, re_prob=0.0, interpolation="bilinear", mean=mean, std=std,
        crop_pct=1.0,
    )  # fmt: skip
