"""Accuracy sanity on real data (slow): 1 epoch of Fashion-MNIST at width 1/4.

split, cloud and edge make identical updates (test_methods.py), so one of them stands for
all three here; hierarchical is trained separately.
"""
from pathlib import Path

import pytest
import torch

from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig
from harness.train.batches import load_case_data
from harness.train.reference import run_local

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed")]


@pytest.mark.parametrize("arch,split", [("vgg16", "conv4"), ("resnet18", "layer2.1")])
def test_one_epoch_fashion_mnist(arch, split):
    torch.set_num_threads(2)
    rows = {}
    for method in ("hierarchical", "split"):
        case = Case(DatasetConfig("fashion_mnist"), ModelConfig(arch, 0.25, split), TrainConfig(),
                    ComputeConfig(), method)
        train, test = load_case_data(case)
        assert len(train) == 60_000 and len(test) == 10_000
        result, _ = run_local(case, train, test)
        rows[method] = result
        print(f"\n{arch}/{split} {method}: final {result.final_acc:.4f} edge exit "
              f"{result.edge_exit_acc} ({result.steps} steps, {result.wall_s:.0f} s)")
    assert rows["split"].final_acc >= 0.85
    assert rows["hierarchical"].final_acc >= 0.85
    assert rows["hierarchical"].edge_exit_acc >= 0.80
