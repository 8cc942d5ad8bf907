"""The four methods against a plain unsplit training loop (pure, CPU, no network)."""
import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.train import methods as m
from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig
from harness.train.data import load_dataset
from harness.train.batches import Augmenter, build_model, train_batches
from harness.train.reference import TRAINERS
from harness.train.models import BUILDERS

STEPS = 20


def make_case(arch, split, method, batch=8):
    return Case(DatasetConfig("fake"), ModelConfig(arch, 0.25, split),
                TrainConfig(batch_size=batch, max_batches=STEPS, seed=3), ComputeConfig(), method)


def reference_weights(case, data):
    """A plain nn.Sequential of the same blocks, trained with a plain loop: the ground truth."""
    torch.manual_seed(case.training.seed)
    blocks = BUILDERS[case.model.arch](case.model.width, 3, 10)
    net = nn.Sequential(*[mod for _, mod in blocks])
    t = case.training
    opt = torch.optim.SGD(net.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    prep = Augmenter(case, data.spec, STEPS)
    for step, _, images, y in train_batches(data, case):
        opt.zero_grad()
        F.cross_entropy(net(prep(step, images)), y).backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def method_weights(case, data):
    model = build_model(case, data.spec)
    TRAINERS[case.method](model, case, train_batches(data, case), Augmenter(case, data.spec, STEPS))
    return [p.detach().clone() for p in model.full().parameters()]


@pytest.fixture(scope="module")
def fake():
    return load_dataset("fake")


@pytest.mark.parametrize("arch,split", [("vgg16", "conv2"), ("vgg16", "conv7"),
                                        ("resnet18", "layer1.1"), ("resnet18", "layer3.0")])
@pytest.mark.parametrize("method", ["split", "cloud", "edge"])
def test_end_to_end_methods_equal_unsplit_training(fake, arch, split, method):
    case = make_case(arch, split, method)
    ref = reference_weights(case, fake)
    got = method_weights(case, fake)
    assert len(ref) == len(got)
    diff = max((r - g).abs().max().item() for r, g in zip(ref, got))
    start = build_model(case, fake.spec)
    moved = max((r - s).abs().max().item() for r, s in zip(ref, start.full().parameters()))
    assert moved > 1e-3, "training must actually change the weights"
    assert diff <= 1e-5, f"{method} at {arch}/{split}: max abs diff {diff:.3g}"


def test_hierarchical_differs_from_end_to_end(fake):
    """Local learning is a different optimisation problem: the edge must not match split."""
    h = method_weights(make_case("vgg16", "conv4", "hierarchical"), fake)
    s = method_weights(make_case("vgg16", "conv4", "split"), fake)
    assert max((a - b).abs().max().item() for a, b in zip(h, s)) > 1e-3


def test_hierarchical_edge_gradients_come_only_from_exit_loss(fake):
    case = make_case("resnet18", "layer2.0", "hierarchical")
    model = build_model(case, fake.spec)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    edge_params = [*model.edge.parameters(), *model.exit_head.parameters()]

    # Expected: gradients of the exit loss alone, on an untouched copy.
    twin = copy.deepcopy(model)
    twin_params = [*twin.edge.parameters(), *twin.exit_head.parameters()]
    expected = torch.autograd.grad(F.cross_entropy(twin.exit_head(twin.edge(x)), y), twin_params)

    opt_e = m.make_optimizer(edge_params, m.OptimConfig(lr=0.1))
    seen = []
    real_step = opt_e.step
    opt_e.step = lambda: (seen.extend(p.grad.clone() for p in edge_params), real_step())[1]
    handoff, _ = m.hierarchical_edge_step(model.edge, model.exit_head, opt_e, x, y)
    for got, want in zip(seen, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    # The cloud step must change nothing on the edge: weights, grads, buffers.
    before = {k: v.clone() for k, v in model.edge.state_dict().items()}
    grads_before = [p.grad.clone() for p in model.edge.parameters()]
    opt_c = m.make_optimizer(model.cloud.parameters(), m.OptimConfig(lr=0.1))
    cloud_before = [p.clone() for p in model.cloud.parameters()]
    m.cloud_step(model.cloud, opt_c, handoff.activations, handoff.labels)
    for k, v in model.edge.state_dict().items():
        assert torch.equal(v, before[k]), f"cloud step changed edge tensor {k}"
    for p, g in zip(model.edge.parameters(), grads_before):
        assert torch.equal(p.grad, g)
    assert any(not torch.equal(a, b) for a, b in zip(cloud_before, model.cloud.parameters()))


def test_hierarchical_hands_over_only_detached_activations_and_labels(fake):
    case = make_case("vgg16", "conv4", "hierarchical")
    model = build_model(case, fake.spec)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    opt = m.make_optimizer([*model.edge.parameters(), *model.exit_head.parameters()], m.OptimConfig())
    handoff, _ = m.hierarchical_edge_step(model.edge, model.exit_head, opt, x, y)
    assert [f.name for f in dataclasses.fields(handoff)] == ["activations", "labels"]
    a = handoff.activations
    assert a.grad_fn is None and not a.requires_grad
    assert tuple(a.shape[1:]) == model.activation_shape != tuple(x.shape[1:])
    assert a.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    assert torch.equal(handoff.labels, y)


def test_split_backward_rejects_wrong_gradient_shape(fake):
    model = build_model(make_case("vgg16", "conv2", "split"), fake.spec)
    opt = m.make_optimizer(model.edge.parameters(), m.OptimConfig())
    a = m.split_edge_forward(model.edge, opt, torch.randn(2, 3, 32, 32))
    with pytest.raises(Exception, match="gradient shape"):
        m.split_edge_backward(a, torch.zeros(1, 2, 3), opt)


def test_evaluate_reports_both_exits(fake):
    model = build_model(make_case("vgg16", "conv4", "hierarchical"), fake.spec)
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))
               for _ in range(3)]
    model.edge.train()
    acc = m.evaluate(model.edge, model.cloud, model.exit_head, batches)
    assert model.edge.training, "evaluate restores train mode"
    # The same counts by hand, in eval mode (BatchNorm running statistics), over all batches.
    model.edge.eval(), model.cloud.eval(), model.exit_head.eval()
    with torch.no_grad():
        final = sum((model.cloud(model.edge(x)).argmax(1) == y).sum().item() for x, y in batches)
        early = sum((model.exit_head(model.edge(x)).argmax(1) == y).sum().item() for x, y in batches)
    assert acc["final_acc"] == final / 48 and acc["edge_exit_acc"] == early / 48
    model.edge.train(), model.cloud.train(), model.exit_head.train()
    assert m.evaluate(model.edge, model.cloud, None, batches)["edge_exit_acc"] is None
    assert model.edge.training, "evaluate restores train mode"
