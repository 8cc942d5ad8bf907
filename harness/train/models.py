"""Split-ready CIFAR-style VGG-16 and ResNet-18, early-exit heads and the per-split report.

    python run_bench.py splits --model vgg16 --width 0.25

Every model is an ordered list of named blocks. A separation point is named after the last
block that stays on the edge: splitting VGG-16 at ``conv4`` puts conv1..conv4 on the edge
and conv5..classifier in the cloud.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.catalog import ARCHS, EXIT_HEADS, split_points
from harness.errors import HarnessError
from harness.train.heads import ExitHead

# VGG-16 conv widths at full width; "M" is a 2x2 max-pool folded into the conv before it.
VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M")


def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def vgg16_blocks(width: float, in_channels: int, num_classes: int) -> list[tuple[str, nn.Module]]:
    """VGG-16 with BatchNorm, CIFAR style: 13 conv blocks then one linear classifier."""
    blocks, c_in, index = [], in_channels, 0
    plan = list(VGG16_PLAN)
    for i, item in enumerate(plan):
        if item == "M":
            continue
        index += 1
        c_out = scaled(item, width)
        layers = conv_bn_relu(c_in, c_out)
        if i + 1 < len(plan) and plan[i + 1] == "M":
            layers.append(nn.MaxPool2d(2))
        blocks.append((f"conv{index}", nn.Sequential(*layers)))
        c_in = c_out
    # Adaptive pooling keeps the 512->classes classifier valid for 64x64 inputs (Tiny ImageNet).
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    blocks.append(("classifier", classifier))
    return blocks


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet18_blocks(width: float, in_channels: int, num_classes: int) -> list[tuple[str, nn.Module]]:
    """ResNet-18, CIFAR style: 3x3 stem without max-pool, four stages of two basic blocks."""
    c = scaled(64, width)
    blocks = [("stem", nn.Sequential(*conv_bn_relu(in_channels, c)))]
    c_in = c
    for stage, (base, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        c_out = scaled(base, width)
        for j in range(2):
            blocks.append((f"layer{stage}.{j}", BasicBlock(c_in, c_out, stride if j == 0 else 1)))
            c_in = c_out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    blocks.append(("head", head))
    return blocks


BUILDERS = {"vgg16": vgg16_blocks, "resnet18": resnet18_blocks}


@dataclass
class SplitModel:
    """The three trainable parts of a split network (built on CPU, in train mode by default)."""
    arch: str
    split: str
    edge: nn.Sequential
    cloud: nn.Sequential
    exit_head: ExitHead
    activation_shape: tuple[int, ...]   # per sample, at the separation point

    def full(self) -> nn.Sequential:
        """The unsplit network f = f_c o f_e (shares parameters with the parts)."""
        return nn.Sequential(*self.edge, *self.cloud)

    def to(self, device: torch.device) -> "SplitModel":
        """All three parts moved to `device` (in place, as nn.Module.to); itself returned."""
        for part in (self.edge, self.cloud, self.exit_head):
            part.to(device)
        return self


def blocks(arch: str, width: float, in_channels: int, num_classes: int):
    if arch not in BUILDERS:
        raise HarnessError(f"unknown model '{arch}' (known: {', '.join(ARCHS)})")
    if not width > 0:
        raise HarnessError(f"model width must be > 0, got {width}")
    if in_channels not in (1, 3):
        raise HarnessError(f"input channels must be 1 or 3, got {in_channels}")
    return BUILDERS[arch](width, in_channels, num_classes)


def build_split_model(arch: str, split: str, *, width: float = 1.0, in_channels: int = 3,
                      num_classes: int = 10, image_size: int = 32, seed: int = 0,
                      head: str = "dgl") -> SplitModel:
    """Build the network from `seed`, cut it after block `split`, and add a seeded exit head
    of design `head` (harness.train.heads).

    The edge and cloud weights depend only on (arch, width, channels, classes, seed), never on
    the split point or method, so every method starts from the same network.
    """
    if head not in EXIT_HEADS:
        raise HarnessError(f"unknown exit head '{head}' (known: {', '.join(EXIT_HEADS)})")
    torch.manual_seed(seed)
    parts = blocks(arch, width, in_channels, num_classes)
    names = [name for name, _ in parts]
    if split not in names[:-1]:
        raise HarnessError(f"unknown split point '{split}' for {arch} "
                           f"(valid: {', '.join(names[:-1])})")
    cut = names.index(split) + 1
    edge = nn.Sequential(*[m for _, m in parts[:cut]])
    cloud = nn.Sequential(*[m for _, m in parts[cut:]])
    with torch.no_grad():
        edge.eval()
        shape = tuple(edge(torch.zeros(1, in_channels, image_size, image_size)).shape[1:])
        edge.train()
    torch.manual_seed(seed + 1)
    exit_part = ExitHead(shape[0], shape[-1], num_classes, head)
    return SplitModel(arch, split, edge, cloud, exit_part, shape)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(module: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Forward FLOPs per sample (2 x multiply-accumulates of conv and linear layers only)."""
    total = 0

    def hook(mod, inputs, output):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += 2 * k * output[0].numel()
        elif isinstance(mod, nn.Linear):
            total += 2 * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            out = module(x)
        module.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total, out


@dataclass(frozen=True)
class SplitReport:
    split: str
    activation_shape: tuple[int, ...]
    activation_bytes: int          # per sample, fp32
    edge_params: int
    head_params: int
    cloud_params: int
    edge_flops: int                # forward, per sample
    head_flops: int
    cloud_flops: int


def split_report(arch: str, *, width: float = 1.0, in_channels: int = 3, num_classes: int = 10,
                 image_size: int = 32, head: str = "dgl") -> list[SplitReport]:
    """Per separation point: activation size, parameters and forward FLOPs of each part."""
    rows = []
    for split in split_points(arch):
        m = build_split_model(arch, split, width=width, in_channels=in_channels,
                              num_classes=num_classes, image_size=image_size, head=head)
        x = torch.zeros(1, in_channels, image_size, image_size)
        edge_flops, a = forward_flops(m.edge, x)
        head_flops, _ = forward_flops(m.exit_head, a)
        cloud_flops, _ = forward_flops(m.cloud, a)
        rows.append(SplitReport(split, m.activation_shape, a[0].numel() * 4,
                                count_params(m.edge), count_params(m.exit_head),
                                count_params(m.cloud), edge_flops, head_flops, cloud_flops))
    return rows
