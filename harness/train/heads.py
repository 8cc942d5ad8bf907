"""Early-exit heads for the edge part: the designs a scenario may name in `model.exit_head`.

    python -c "from harness.train.heads import make_head; print(make_head('mlp', 32, 8, 10))"

The edge part of hierarchical training learns only from its exit's loss (local learning), so
the head decides how much accuracy the method gives up. Published gaps with one cut on
CIFAR-10 (InfoPro, Wang et al., ICLR 2021, Table 2, ResNet-32, test error; end-to-end 7.37%):
a pooled linear head 10.30%, DGL's conv head 8.69%, InfoPro 7.76-8.13%.

| design   | layers                                                                  | source |
|----------|-------------------------------------------------------------------------|--------|
| `dgl`    | [pool to 8x8] conv3x3 + BN + ReLU, avg-pool to 2x2, linear              | Belilovsky et al., ICML 2020 |
| `linear` | global average pool, linear (the "greedy" pooled linear probe)          | InfoPro's greedy baseline |
| `mlp`    | conv3x3 stride 2 + BN + ReLU, avg-pool to 2x2, FC 128 + ReLU, linear     | DGL / InfoPro auxiliary net |

Maps larger than 8x8 are average-pooled to 8x8 first by `dgl` and `mlp` (a 16x cheaper head at
a 32x32 cut: the edge pays for it on every batch).
"""
from __future__ import annotations

import torch
from torch import nn

from harness.catalog import head_key  # noqa: F401  (re-exported: profiles' keys)

HIDDEN = 128                    # the MLP head's hidden width (DGL / InfoPro: FC 128)


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _pre(spatial: int) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(8)] if spatial > 8 else []


def _dgl(channels: int, spatial: int, classes: int) -> list[nn.Module]:
    return [*_pre(spatial), *_conv_bn_relu(channels, channels), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(4 * channels, classes)]


def _linear(channels: int, spatial: int, classes: int) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]


def _mlp(channels: int, spatial: int, classes: int) -> list[nn.Module]:
    stride = 2 if min(spatial, 8) >= 4 else 1      # a 2x2 or 1x1 map is not strided further
    return [*_pre(spatial), *_conv_bn_relu(channels, channels, stride), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(4 * channels, HIDDEN), nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, classes)]


DESIGNS = {"dgl": _dgl, "linear": _linear, "mlp": _mlp}


class ExitHead(nn.Module):
    """An early exit of one design over the edge part's output (channels x spatial x spatial)."""

    def __init__(self, channels: int, spatial: int, num_classes: int, design: str = "dgl"):
        super().__init__()
        self.design = design
        self.body = nn.Sequential(*DESIGNS[design](channels, spatial, num_classes))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.body(a)

