"""Image loaders on real files and broken ones, the stratified split and the transforms."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.vision import data as vd

DATA = Path(__file__).resolve().parent.parent / "data"


def test_idx_reader_on_real_mnist_files():
    images = vd.read_idx(DATA / "mnist-20-images-idx3-ubyte.gz")
    labels = vd.read_idx(DATA / "mnist-20-labels-idx1-ubyte.gz")
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert labels.tolist()[:5] == [7, 2, 1, 0, 4]  # the well-known first MNIST test labels
    assert len(vd.read_mnist_folder(DATA, prefix="mnist-20")) == 20


def test_idx_reader_refuses_broken_files(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 16)
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        vd.read_idx(bad)
    truncated = tmp_path / "short-idx3-ubyte.gz"
    raw = gzip.open(DATA / "mnist-20-images-idx3-ubyte.gz").read()
    truncated.write_bytes(gzip.compress(raw[:1000]))
    with pytest.raises(ValueError, match="truncated"):
        vd.read_idx(truncated)
    with pytest.raises(ValueError, match="no t10k-images"):
        vd.read_mnist_folder(tmp_path)


def test_cifar_batches_and_image_folders(tmp_path):
    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 1]}
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump(batch, f)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"cat", b"dog", b"eel"]}, f)
    cifar = vd.read_cifar([tmp_path / "data_batch_1"], tmp_path / "batches.meta")
    assert cifar.images.shape == (4, 32, 32, 3) and cifar.classes == ["cat", "dog", "eel"]
    assert np.array_equal(cifar.images[0, :, :, 0].reshape(-1), batch[b"data"][0, :1024])
    for label in ("a", "b"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(
                tmp_path / "folder" / label / f"{i}.png"
            )
    (tmp_path / "folder" / "a" / "notes.txt").write_text("ignored")
    folder = vd.read_image_folder(tmp_path / "folder", size=16)
    assert (
        folder.images.shape == (6, 16, 16, 3)
        and folder.classes == ["a", "b"]
        and folder.labels.tolist() == [0] * 3 + [1] * 3
    )


def test_digits_split_and_transforms():
    digits = vd.sklearn_digits(28)
    assert digits.images.shape == (1797, 28, 28) and digits.channels == 1
    train, test = vd.stratified_split(digits, 0.2, seed=0)
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert np.abs(np.bincount(test.labels) - 36).max() <= 1  # stratified
    x, y = vd.TransformedImages(test, vd.make_transforms(1, 28, (0.1307,), (0.3081,), training=True))[0]
    assert x.shape == (1, 28, 28) and y == test.labels[0]
