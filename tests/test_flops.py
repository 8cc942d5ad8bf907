"""FLOP counts of the split parts: exact for a conv, linear in batch, nothing lost at the cut.

    .venv/bin/python -m pytest -q tests/test_flops.py
"""
import pytest
import torch
from torch import nn

from harness.errors import HarnessError
from harness.predict.flops import block_flops, module_flops, part_flops, target_seconds
from harness.train.data import SPECS
from harness.train.models import blocks

SETUP = [("vgg16", ("conv2", "conv7")), ("resnet18", ("stem", "layer3.0"))]


def test_one_conv_matches_the_formula():
    batch, c_in, c_out, k, side = 3, 4, 6, 3, 10
    conv = nn.Conv2d(c_in, c_out, k, stride=2, padding=1)
    x = torch.randn(batch, c_in, side, side)
    fwd, bwd, y = module_flops(conv, x)
    h_out, w_out = y.shape[-2:]
    assert (h_out, w_out) == (5, 5)
    expected = 2 * c_out * c_in * k * k * h_out * w_out * batch
    assert fwd == expected
    assert bwd == 2 * expected                          # grad w.r.t. input and weights
    assert module_flops(conv, x, input_grad=False)[1] == expected   # weights only


def test_counts_are_linear_in_batch():
    small, large = (block_flops("resnet18", 0.25, "fashion_mnist", b) for b in (8, 32))
    for a, b in zip(small["blocks"], large["blocks"]):
        assert a["fwd"] > 0 and (4 * a["fwd"], 4 * a["bwd"]) == (b["fwd"], b["bwd"])
    for split, head in small["heads"].items():
        assert 4 * head["fwd"] == large["heads"][split]["fwd"] > 0


@pytest.mark.parametrize("arch, splits", SETUP)
def test_edge_plus_cloud_is_the_whole_model(arch, splits):
    """The whole model runs on real CPU tensors: this also checks the meta-device counts."""
    spec, batch = SPECS["fashion_mnist"], 2
    whole = nn.Sequential(*[m for _, m in blocks(arch, 0.25, spec.channels, spec.num_classes)])
    x = torch.randn(batch, spec.channels, spec.image_size, spec.image_size)
    fwd, bwd, _ = module_flops(whole, x, input_grad=False)
    for split in splits:
        parts = part_flops(arch, 0.25, "fashion_mnist", batch, split)
        assert parts["edge"]["fwd"] + parts["cloud"]["fwd"] == fwd
        assert parts["edge"]["bwd"] + parts["cloud"]["bwd"] == bwd
        assert parts["edge"]["input_grad"] == 0            # the data needs no gradient
        assert 0 < parts["cloud"]["input_grad"] < parts["cloud"]["bwd"]
        for part in parts.values():
            assert part["total_train"] == part["fwd"] + part["bwd"]


@pytest.mark.parametrize("arch, splits", SETUP)
def test_backward_costs_one_to_three_forwards(arch, splits):
    for split in splits:
        for name, part in part_flops(arch, 0.25, "fashion_mnist", 32, split).items():
            assert 1.0 <= part["bwd"] / part["fwd"] <= 3.0, (split, name)


@pytest.mark.parametrize("arch, splits", SETUP)
def test_a_deeper_split_moves_flops_from_cloud_to_edge(arch, splits):
    shallow, deep = (part_flops(arch, 0.25, "fashion_mnist", 32, s) for s in splits)
    moved = deep["edge"]["fwd"] - shallow["edge"]["fwd"]
    assert moved > 0
    assert shallow["cloud"]["fwd"] - deep["cloud"]["fwd"] == moved
    assert deep["cloud"]["total_train"] < shallow["cloud"]["total_train"]


def test_an_unknown_split_is_named():
    with pytest.raises(HarnessError, match="conv99"):
        part_flops("vgg16", 0.25, "fashion_mnist", 32, "conv99")
    with pytest.raises(HarnessError, match="classifier"):   # the last block is no split point
        part_flops("vgg16", 0.25, "fashion_mnist", 32, "classifier")
    with pytest.raises(HarnessError, match="mnist_typo"):
        block_flops("vgg16", 0.25, "mnist_typo", 32)


def test_results_are_cached_but_not_shared():
    first = block_flops("vgg16", 0.25, "fashion_mnist", 32)
    first["blocks"][0]["fwd"] = -1
    assert block_flops("vgg16", 0.25, "fashion_mnist", 32)["blocks"][0]["fwd"] > 0


def test_target_seconds():
    assert target_seconds(3e9, 1.5) == pytest.approx(2.0)
