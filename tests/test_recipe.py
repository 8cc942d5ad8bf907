"""The training recipe's pieces: schedules, exit heads, augmentation, seeds in a scenario."""
import pytest
import torch

from harness.catalog import EXIT_HEADS, SCHEDULES
from harness.config import parse_scenario
from harness.errors import HarnessError
from harness.train import methods as m
from harness.train.data import SPECS, preprocess
from harness.train.heads import DESIGNS, ExitHead
from harness.train.models import build_split_model, count_params
from harness.train.recipe import lr_at


def test_catalog_names_every_design_and_schedule():
    assert tuple(DESIGNS) == EXIT_HEADS
    for name in SCHEDULES:
        lr_at(name, 0.1, 0, 10, 0.0)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_shapes(schedule):
    total, warm = 200, 0.1
    rates = [lr_at(schedule, 0.1, t, total, warm) for t in range(total)]
    ramp = rates[:20]
    assert all(b > a for a, b in zip(ramp, ramp[1:])), "warm-up rises linearly"
    assert ramp[0] == pytest.approx(0.1 / 20) and ramp[-1] == pytest.approx(0.1)
    after = rates[20:]
    if schedule == "constant":
        assert after == [0.1] * len(after)
    else:
        assert all(b <= a for a, b in zip(after, after[1:])), "decays monotonically"
        assert after[-1] < 0.1 * 0.02, "ends near zero"
    if schedule == "cosine":
        mid = lr_at("cosine", 0.1, 20 + 90, total, warm)
        assert mid == pytest.approx(0.05, rel=0.02)
    if schedule == "onecycle":
        mid = lr_at("onecycle", 0.1, 20 + 90, total, warm)
        assert mid == pytest.approx(0.05, rel=0.02)


def test_schedule_refuses_bad_input():
    with pytest.raises(HarnessError, match="schedule"):
        lr_at("step", 0.1, 0, 10, 0.0)
    with pytest.raises(HarnessError, match="at least one step"):
        lr_at("cosine", 0.1, 0, 0, 0.0)


def test_scheduled_optimizer_follows_the_schedule():
    w = torch.nn.Parameter(torch.ones(3))
    cfg = m.OptimConfig(lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=True,
                        schedule="cosine", warmup=0.2)
    opt = m.make_optimizer([w], cfg, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
    assert seen == pytest.approx([lr_at("cosine", 0.1, t, 10, 0.2) for t in range(10)])
    assert opt.opt.param_groups[0]["nesterov"] is True
    with pytest.raises(HarnessError, match="number of steps"):
        m.make_optimizer([w], cfg)
    plain = m.make_optimizer([w], m.OptimConfig())
    assert isinstance(plain, torch.optim.SGD), "constant without warm-up: the optimizer itself"


@pytest.mark.parametrize("channels,spatial", [(16, 32), (32, 8), (128, 2), (128, 1)])
def test_head_parameter_counts(channels, spatial):
    """Parameters of each design, counted by hand from its layers."""
    classes = 10
    conv_bn = 9 * channels * channels + 2 * channels
    expected = {"dgl": conv_bn + 4 * channels * classes + classes,
                "linear": channels * classes + classes,
                "mlp": conv_bn + 4 * channels * 128 + 128 + 128 * classes + classes}
    for design, n in expected.items():
        head = ExitHead(channels, spatial, classes, design)
        assert count_params(head) == n, design
        assert head(torch.zeros(2, channels, spatial, spatial)).shape == (2, classes)


def test_split_model_takes_its_head_and_keeps_the_network():
    a = build_split_model("vgg16", "conv4", width=0.25, in_channels=1, seed=3, head="dgl")
    b = build_split_model("vgg16", "conv4", width=0.25, in_channels=1, seed=3, head="linear")
    assert a.exit_head.design == "dgl" and b.exit_head.design == "linear"
    for pa, pb in zip(a.full().parameters(), b.full().parameters()):
        assert torch.equal(pa, pb), "the network does not depend on the head"
    with pytest.raises(HarnessError, match="exit head"):
        build_split_model("vgg16", "conv4", head="big")


def test_head_flops_are_counted_per_design():
    from harness.predict.flops import part_flops
    heads = {d: part_flops("vgg16", 0.25, "fashion_mnist", 8, "conv2", d)["head"]["total_train"]
             for d in EXIT_HEADS}
    assert heads["linear"] < heads["mlp"] and heads["linear"] < heads["dgl"]
    assert all(v > 0 for v in heads.values())


def test_augmentation_is_seeded_and_fits_the_dataset():
    spec = SPECS["fashion_mnist"]
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    one = preprocess(images, spec, torch.Generator().manual_seed(5))
    two = preprocess(images, spec, torch.Generator().manual_seed(5))
    assert torch.equal(one, two), "same generator, same crops and flips"
    plain = preprocess(images, spec, None)
    assert not torch.equal(one, plain)
    # pad 2 at 28x28 then 2 more: every crop still holds the whole 28x28 image (shifted by at
    # most 2 px), so no pixel of the garment is cut off
    background = (0 - spec.mean[0]) / spec.std[0]
    ink = (one != background).flatten(1).sum(1)
    assert torch.equal(ink, (plain != background).flatten(1).sum(1))


def test_scenario_seeds_heads_schedule():
    s = parse_scenario({"name": "x", "kind": "accuracy", "model": {"exit_head": ["dgl", "mlp"]},
                        "training": {"seeds": [0, 1, 2], "schedule": "onecycle",
                                     "warmup": 0.1, "nesterov": True, "augment": True}})
    assert s.seeds == (0, 1, 2) and s.heads == ("dgl", "mlp") and s.training.seed == 0
    assert s.training.schedule == "onecycle" and s.training.augment is True
    for bad, where in [({"training": {"seeds": [0, 0]}}, "training.seeds"),
                       ({"training": {"seeds": [-1]}}, "training.seeds"),
                       ({"training": {"schedule": "step"}}, "training.schedule"),
                       ({"training": {"warmup": 1.5}}, "training.warmup"),
                       ({"model": {"exit_head": "big"}}, "model.exit_head"),
                       ({"kind": "study"}, "kind"),
                       ({"training": {"seeds": [0, 1]}}, "training.seeds"),    # a benchmark
                       ({"model": {"exit_head": ["dgl", "mlp"]}}, "model.exit_head")]:
        with pytest.raises(HarnessError, match=where):
            parse_scenario({"name": "x", **bad})


def test_split_all_takes_every_point():
    from harness.catalog import split_points
    s = parse_scenario({"name": "x", "kind": "accuracy",
                        "model": {"arch": ["vgg16", "resnet18"], "split": "all"}})
    assert set(s.splits) == set(split_points("vgg16")) | set(split_points("resnet18"))
