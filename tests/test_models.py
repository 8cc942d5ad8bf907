"""Model structure, split points, and the per-split report."""
import pytest
import torch

from harness.errors import HarnessError
from harness.train.models import build_split_model, split_points, split_report


@pytest.mark.parametrize("arch,count", [("vgg16", 13), ("resnet18", 9)])
def test_split_points(arch, count):
    assert len(split_points(arch)) == count


@pytest.mark.parametrize("arch", ["vgg16", "resnet18"])
@pytest.mark.parametrize("channels", [1, 3])
def test_report_bytes_are_chw_times_4_and_match_real_activations(arch, channels):
    for row in split_report(arch, width=0.25, in_channels=channels):
        c, h, w = row.activation_shape
        assert row.activation_bytes == c * h * w * 4
        model = build_split_model(arch, row.split, width=0.25, in_channels=channels)
        a = model.edge(torch.zeros(2, channels, 32, 32))
        assert tuple(a.shape) == (2, c, h, w)
        assert row.edge_params + row.cloud_params == sum(p.numel() for p in model.full().parameters())


def test_vgg16_full_width_shapes_and_classifier():
    rows = {r.split: r for r in split_report("vgg16", width=1.0)}
    assert rows["conv4"].activation_shape == (128, 8, 8)     # DESIGN.md's example: 32 KiB
    assert rows["conv4"].activation_bytes == 32 * 1024
    model = build_split_model("vgg16", "conv13", width=1.0)
    assert model.cloud[-1][-1].in_features == 512 and model.cloud[-1][-1].out_features == 10
    # The usual CIFAR VGG-16-BN (512->10 classifier) has 14,728,266 parameters, of which 4,224
    # are conv biases (64+64+128+128+3*256+6*512); ours has none since BatchNorm follows.
    assert rows["conv1"].edge_params + rows["conv1"].cloud_params == 14_728_266 - 4_224


def test_resnet18_full_width_parameter_count():
    # Known count of CIFAR ResNet-18 (3x3 stem, no max-pool, 10 classes): 11,173,962.
    row = split_report("resnet18", width=1.0)[0]
    assert row.edge_params + row.cloud_params == 11_173_962


def test_flops_grow_along_the_network():
    rows = split_report("resnet18", width=0.25)
    edge = [r.edge_flops for r in rows]
    assert edge == sorted(edge) and edge[0] > 0
    totals = {r.edge_flops + r.cloud_flops for r in rows}
    assert max(totals) - min(totals) == 0, "edge + cloud FLOPs is the whole network at any cut"


def test_same_seed_same_weights_whatever_the_split():
    a = build_split_model("vgg16", "conv2", width=0.25, seed=5).full()
    b = build_split_model("vgg16", "conv9", width=0.25, seed=5).full()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kwargs,match", [
    ({"arch": "alexnet", "split": "conv1"}, "unknown model"),
    ({"arch": "vgg16", "split": "classifier"}, "unknown split point"),
    ({"arch": "resnet18", "split": "conv4"}, "unknown split point"),
    ({"arch": "vgg16", "split": "conv4", "width": 0}, "width must be > 0"),
    ({"arch": "vgg16", "split": "conv4", "width": -1}, "width must be > 0"),
    ({"arch": "vgg16", "split": "conv4", "in_channels": 2}, "channels"),
])
def test_bad_model_arguments(kwargs, match):
    arch, split = kwargs.pop("arch"), kwargs.pop("split")
    with pytest.raises(HarnessError, match=match):
        build_split_model(arch, split, **kwargs)
