"""Datasets in their real on-disk formats (generated tiny files), order, preprocessing."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from harness.train.data import augment_generator, batch_order, load_dataset, preprocess
from harness.errors import HarnessError
from harness.paths import FASHION_MNIST_DIR


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fmnist_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HIERBENCH_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "fm"
    src.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(src / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(src / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    return src


@pytest.fixture
def cifar_dir(tmp_path):
    base = tmp_path / "cifar" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    # Test data written in the official format (python pickles): this is the format we read with
    # torchvision; our own code never unpickles anything from the network.
    for name, n in [(f"data_batch_{i}", 10) for i in range(1, 6)] + [("test_batch", 10)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n).tolist()}
        (base / name).write_bytes(pickle.dumps(batch))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    return base.parent


def test_fashion_mnist_from_gz_files(fmnist_dir):
    train = load_dataset("fashion_mnist", fmnist_dir)
    test = load_dataset("fashion_mnist", fmnist_dir, train=False)
    assert train.images.shape == (50, 1, 28, 28) and train.images.dtype == torch.uint8
    assert len(test) == 20
    x = preprocess(train.images[:4], train.spec, augment_generator(0, 0))
    assert x.shape == (4, 1, 32, 32), "Fashion-MNIST is padded to 32x32"


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_package():
    train = load_dataset("fashion_mnist", subset=1000)
    assert len(load_dataset("fashion_mnist", train=False)) == 10_000
    assert len(train) == 1000 and set(train.labels.tolist()) == set(range(10))


def test_cifar10_format_and_integrity_error(cifar_dir):
    data = load_dataset("cifar10", cifar_dir, verify=False)
    assert data.images.shape == (50, 3, 32, 32)
    with pytest.raises(HarnessError, match="incomplete or corrupted"):
        load_dataset("cifar10", cifar_dir)  # md5s differ from the official release


def test_tiny_imagenet_layouts(tmp_path):
    root = tmp_path / "tiny"
    for wnid in ("n01", "n02"):
        (root / "train" / wnid / "images").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (64, 64), (i * 40, 0, 0)).save(root / "train" / wnid / "images" / f"{i}.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(root / "val" / "images" / "v0.JPEG")
    (root / "val" / "val_annotations.txt").write_text("v0.JPEG\tn02\t0\t0\t64\t64\n")
    train = load_dataset("tiny_imagenet", root)
    val = load_dataset("tiny_imagenet", root, train=False)
    assert train.images.shape == (6, 3, 64, 64) and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert val.labels.tolist() == [1]


@pytest.mark.parametrize("name,layout", [("fashion_mnist", "idx files"),
                                         ("cifar10", "cifar-10-batches-py"),
                                         ("tiny_imagenet", "train/<wnid>")])
def test_missing_directory_names_path_and_layout(tmp_path, name, layout):
    missing = tmp_path / "nowhere"
    with pytest.raises(HarnessError) as err:
        load_dataset(name, missing)
    msg = str(err.value)
    assert str(missing) in msg and layout in msg and "\n" not in msg


def test_malformed_fashion_mnist_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HIERBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "fm").mkdir()
    with pytest.raises(HarnessError, match="train-images-idx3-ubyte"):
        load_dataset("fashion_mnist", tmp_path / "fm")


def test_unknown_dataset_and_bad_subset():
    with pytest.raises(HarnessError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(HarnessError, match="subset"):
        load_dataset("fake", subset=0)


def test_order_and_subset_are_deterministic():
    assert all(torch.equal(a, b) for a, b in zip(batch_order(100, 8, 1, 0), batch_order(100, 8, 1, 0)))
    assert not torch.equal(batch_order(100, 8, 1, 0)[0], batch_order(100, 8, 1, 1)[0])
    assert len(batch_order(100, 8, 1, 0)) == 12, "partial batch dropped"
    a, b = load_dataset("fake", subset=40, seed=3), load_dataset("fake", subset=40, seed=3)
    assert torch.equal(a.labels, b.labels) and len(a) == 40
    assert not torch.equal(a.images, load_dataset("fake", subset=40, seed=4).images)


def test_augmentation_is_reproducible_and_real():
    data = load_dataset("fake")
    x1 = preprocess(data.images[:16], data.spec, augment_generator(0, 0))
    x2 = preprocess(data.images[:16], data.spec, augment_generator(0, 0))
    plain = preprocess(data.images[:16], data.spec, None)
    assert torch.equal(x1, x2) and not torch.equal(x1, plain)
    assert abs(plain.mean().item()) < 0.1 and abs(plain.std().item() - 1.16) < 0.1


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_idx_reader_matches_torchvision(tmp_path):
    """The idx files are read without torchvision (its import costs a worker ~1.9 s); the
    tensors must be torchvision's own, bit for bit."""
    import shutil
    from torchvision.datasets import FashionMNIST
    load_dataset("fashion_mnist")                        # stages the raw files in the cache
    from harness.train.data import _stage_fashion_mnist
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(_stage_fashion_mnist(FASHION_MNIST_DIR), raw)
    for train in (True, False):
        ours = load_dataset("fashion_mnist", train=train)
        theirs = FashionMNIST(str(tmp_path), train=train, download=False)
        assert torch.equal(ours.images[:, 0], theirs.data)
        assert torch.equal(ours.labels, theirs.targets.long())


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:3], "not an idx file"),                        # shorter than a header
    (lambda b: b"\x00\x00\x0d" + b[3:], "not an idx file"),      # float data, not bytes
    (lambda b: b[:-5], "the file has"),                          # truncated data
])
def test_damaged_idx_file_names_the_file(fmnist_dir, damage, message):
    path = fmnist_dir / "train-labels-idx1-ubyte.gz"
    blob = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(damage(blob)))
    with pytest.raises(HarnessError, match=message) as err:
        load_dataset("fashion_mnist", fmnist_dir)
    assert "train-labels-idx1-ubyte" in str(err.value)
