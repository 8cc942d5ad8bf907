"""Datasets as stored (uint8 images in memory), seeded batch order, and preprocessing.

    python run_bench.py train --dataset fashion_mnist --subset 6400

Images stay in their stored dtype and size (Fashion-MNIST: 28x28 uint8) until `preprocess`,
which runs wherever the first layer runs: on the edge for hierarchical/split/edge, in the cloud
for cloud-only (which is sent the stored bytes). Preprocessing pads to 32x32, augments with an
explicit generator (so every method sees identical batches) and normalizes.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.catalog import DATASETS
from harness.errors import HarnessError
from harness.paths import FASHION_MNIST_DIR, cache_dir

FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
LAYOUTS = {
    "fashion_mnist": "the four idx files (.gz or not) of Fashion-MNIST, e.g. from the Debian "
                     "package dataset-fashion-mnist",
    "cifar10": "cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta "
               "(the python version of CIFAR-10)",
    "tiny_imagenet": "train/<wnid>/**.JPEG and val/ (either val/<wnid>/**.JPEG or "
                     "val/images/ with val_annotations.txt)",
}


@dataclass(frozen=True)
class DatasetSpec:
    """How to turn stored images into model inputs."""
    num_classes: int
    channels: int
    image_size: int                 # model input size after padding
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool                   # by default: random crop + horizontal flip
    stored_size: int = 0            # side of the images as stored (0: same as image_size)
    crop_pad: int = 4               # random crop's zero padding, px (at the stored size)
    train_samples: int = 0          # the standard training set's size (0: not fixed)

    @property
    def stored_side(self) -> int:
        return self.stored_size or self.image_size


SPECS = {
    # Augmented only when training.augment asks: pad 2 at 28x28 (DESIGN.md section 10; flips
    # suit its clothing classes); unaugmented by default, as short benchmark budgets train.
    "fashion_mnist": DatasetSpec(10, 1, 32, (0.2860,), (0.3530,), False, stored_size=28,
                                 crop_pad=2, train_samples=60_000),
    "cifar10": DatasetSpec(10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
                           train_samples=50_000),
    "tiny_imagenet": DatasetSpec(200, 3, 64, (0.4802, 0.4481, 0.3975),
                                 (0.2770, 0.2691, 0.2821), True, train_samples=100_000),
    "fake": DatasetSpec(10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True, train_samples=512),
}


@dataclass
class ImageData:
    """A dataset split held in memory exactly as stored."""
    name: str
    images: torch.Tensor            # uint8, N x C x H x W
    labels: torch.Tensor            # int64, N
    spec: DatasetSpec

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: torch.Tensor) -> "ImageData":
        return ImageData(self.name, self.images[indices], self.labels[indices], self.spec)


def load_dataset(name: str, root: str | os.PathLike | None = None, *, train: bool = True,
                 subset: int | None = None, seed: int = 0, verify: bool = True) -> ImageData:
    """Load one split of a dataset; `subset` keeps N samples chosen by a seeded permutation;
    `verify=False` skips torchvision's md5 check of CIFAR-10 (for generated test files only)."""
    if name not in DATASETS:
        raise HarnessError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    loaders = {"fashion_mnist": _fashion_mnist, "cifar10": _cifar10,
               "tiny_imagenet": _tiny_imagenet, "fake": _fake}
    return take_subset(loaders[name](root, train, verify), subset, seed)


def take_subset(data: ImageData, subset: int | None, seed: int) -> ImageData:
    """`subset` samples of `data` chosen by a seeded permutation (all when None)."""
    if subset is not None and subset <= 0:
        raise HarnessError(f"dataset subset must be > 0, got {subset}")
    keep = None if subset is None else torch.randperm(
        len(data), generator=torch.Generator().manual_seed(seed))[:subset]
    return data if keep is None else data.take(keep.sort().values)


def _fashion_mnist(root, train: bool, verify: bool) -> ImageData:
    source = Path(root) if root else FASHION_MNIST_DIR
    raw = _stage_fashion_mnist(source)
    prefix = "train" if train else "t10k"
    images = read_idx(raw / f"{prefix}-images-idx3-ubyte", ndim=3)
    labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte", ndim=1)
    if len(labels) != len(images):
        raise HarnessError(f"{raw}: {prefix} has {len(images)} images but {len(labels)} labels")
    return ImageData("fashion_mnist", images.unsqueeze(1).contiguous(), labels.long(),
                     SPECS["fashion_mnist"])


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """An idx file of unsigned bytes (LeCun's MNIST format: magic 0 0 0x08 ndim, then ndim
    big-endian uint32 sizes, then the data) as a uint8 tensor. Read directly rather than
    through torchvision, whose import alone costs every worker ~1.9 s at start-up."""
    blob = np.fromfile(path, dtype=np.uint8)
    head = 4 + 4 * ndim
    if len(blob) < head or blob[0] != 0 or blob[1] != 0 or blob[2] != 0x08 or blob[3] != ndim:
        raise HarnessError(f"{path}: not an idx file of unsigned bytes with {ndim} dimension(s)")
    shape = tuple(int(n) for n in blob[4:head].view(">u4"))
    if len(blob) - head != int(np.prod(shape)):
        raise HarnessError(f"{path}: header says {shape} ({int(np.prod(shape))} bytes of data), "
                           f"the file has {len(blob) - head}")
    return torch.from_numpy(blob[head:].reshape(shape).copy())


def _stage_fashion_mnist(source: Path) -> Path:
    """Un-gzip the idx files once into a cache folder of their own source; returns it."""
    if not source.is_dir():
        hint = " (install: apt-get install dataset-fashion-mnist)" if source == FASHION_MNIST_DIR else ""
        raise HarnessError(f"Fashion-MNIST directory not found: {source}{hint}; "
                           f"expected {LAYOUTS['fashion_mnist']}")
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    raw = cache_dir() / "data" / "FashionMNIST" / key
    raw.mkdir(parents=True, exist_ok=True)
    for base in FMNIST_FILES:
        target = raw / base
        if target.exists():
            continue
        if (source / base).exists():
            shutil.copyfile(source / base, target)
        elif (source / f"{base}.gz").exists():
            tmp = target.with_suffix(".part")
            with gzip.open(source / f"{base}.gz", "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.rename(target)
        else:
            raise HarnessError(f"Fashion-MNIST file {base}[.gz] missing in {source}; "
                               f"expected {LAYOUTS['fashion_mnist']}")
    return raw


def _cifar10(root, train: bool, verify: bool) -> ImageData:
    if root is None:
        raise HarnessError(f"CIFAR-10 needs a directory (dataset.root); expected {LAYOUTS['cifar10']}")
    root = Path(root)
    if root.name == "cifar-10-batches-py":
        root = root.parent
    if not (root / "cifar-10-batches-py").is_dir():
        raise HarnessError(f"CIFAR-10 not found in {root}: expected {LAYOUTS['cifar10']}")
    from torchvision.datasets import CIFAR10
    cls = CIFAR10 if verify else _unchecked_cifar10()
    try:
        ds = cls(str(root), train=train, download=False)
    except (RuntimeError, OSError, KeyError, ValueError, EOFError) as exc:
        raise HarnessError(f"CIFAR-10 in {root / 'cifar-10-batches-py'} is incomplete or "
                           f"corrupted ({exc}); expected {LAYOUTS['cifar10']}") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return ImageData("cifar10", images, torch.tensor(ds.targets, dtype=torch.long), SPECS["cifar10"])


def _unchecked_cifar10():
    """CIFAR-10 reader without the md5 checks, for generated files in tests."""
    from torchvision.datasets import CIFAR10

    class UncheckedCIFAR10(CIFAR10):
        def _check_integrity(self) -> bool:
            base = Path(self.root) / self.base_folder
            return all((base / name).exists() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            meta = dict(self.meta)
            self.meta = {**meta, "md5": None}  # check_integrity(path, None): existence only
            try:
                super()._load_meta()
            finally:
                self.meta = meta

    return UncheckedCIFAR10


def _tiny_imagenet(root, train: bool, verify: bool) -> ImageData:
    if root is None:
        raise HarnessError("Tiny ImageNet needs a directory (dataset.root); "
                           f"expected {LAYOUTS['tiny_imagenet']}")
    from torchvision.datasets import ImageFolder
    root = Path(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise HarnessError(f"Tiny ImageNet not found in {root}: expected {LAYOUTS['tiny_imagenet']}")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if train:
        try:
            ds = ImageFolder(str(train_dir))
        except (FileNotFoundError, RuntimeError) as exc:
            raise HarnessError(f"Tiny ImageNet train/ in {root} is malformed ({exc})") from None
        samples = ds.samples
    else:
        samples = _tiny_imagenet_val(root, classes)
    return _decode("tiny_imagenet", samples, SPECS["tiny_imagenet"])


def _tiny_imagenet_val(root: Path, classes: list[str]) -> list[tuple[str, int]]:
    val = root / "val"
    annotations = val / "val_annotations.txt"
    index = {c: i for i, c in enumerate(classes)}
    if annotations.exists():
        samples = []
        for line in annotations.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in index:
                samples.append((str(val / "images" / parts[0]), index[parts[1]]))
        return samples
    if val.is_dir():
        from torchvision.datasets import ImageFolder
        ds = ImageFolder(str(val))
        return [(p, index[ds.classes[t]]) for p, t in ds.samples if ds.classes[t] in index]
    raise HarnessError(f"Tiny ImageNet val/ missing in {root}: expected {LAYOUTS['tiny_imagenet']}")


def _decode(name: str, samples: list[tuple[str, int]], spec: DatasetSpec) -> ImageData:
    from PIL import Image
    size = spec.image_size
    images = torch.empty(len(samples), 3, size, size, dtype=torch.uint8)
    for i, (path, _) in enumerate(samples):
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size))
            images[i] = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    labels = torch.tensor([t for _, t in samples], dtype=torch.long)
    return ImageData(name, images, labels, spec)


def _fake(root, train: bool, verify: bool) -> ImageData:
    """Random images for unit tests only: never used for a reported accuracy."""
    g = torch.Generator().manual_seed(1 if train else 2)
    n = 512 if train else 128
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageData("fake", images, labels, SPECS["fake"])


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Index batches for one epoch: a permutation seeded by (seed, epoch); the last partial
    batch is dropped so every step has the same shape (and BatchNorm a full batch)."""
    if batch_size <= 0:
        raise HarnessError(f"batch size must be > 0, got {batch_size}")
    if n < batch_size:
        raise HarnessError(f"dataset has {n} samples, fewer than one batch of {batch_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return [perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def augment_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that drives augmentation for one epoch (same for every method)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch + 7)


def preprocess(images: torch.Tensor, spec: DatasetSpec, gen: torch.Generator | None) -> torch.Tensor:
    """uint8 N x C x H x W as stored -> normalized float32 model input.

    Pads to the spec's size, then (when `gen` is given) random crop with the spec's zero
    padding and horizontal flip per sample, as torchvision's RandomCrop(padding=p) and
    RandomHorizontalFlip do, but driven by `gen` so the sequence is reproducible. Whether a
    training augments is the caller's (harness.train.batches.Augmenter): no `gen`, no draws.
    """
    x = images.float().div_(255.0)
    pad = spec.image_size - x.shape[-1]
    if pad > 0:
        x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    if gen is not None:
        n, size, p = x.shape[0], spec.image_size, spec.crop_pad
        padded = F.pad(x, (p, p, p, p))
        offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        out = torch.empty_like(x)
        for i in range(n):
            dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
            crop = padded[i, :, dy:dy + size, dx:dx + size]
            out[i] = crop.flip(-1) if flips[i] else crop
        x = out
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return (x - mean) / std
