"""Accuracy sanity on real data (slow): one epoch of 20,000 Fashion-MNIST images, width 1/4,
at the workers' one torch thread, seed 0.

split, cloud and edge make identical updates (test_methods.py), so split stands for all three;
hierarchical is trained separately. One epoch at lr 0.05 ends wherever its last SGD steps left
it, and a different CPU's floating-point reduction order moves it like a different seed does,
so the thresholds come from the spread over seeds and machines. Seeds 0-2 were measured with
`scripts/accuracy_spread.py --seeds 0 1 2` (this configuration, 2026-11-30); the CI column is
seed 0 on CI's machine (2026-12-01), where split/resnet18 landed 0.17 below the same seed here:

| arch     | method       | exit  | seed 0 | seed 1 | seed 2 | CI s0  | min    | floor |
|----------|--------------|-------|--------|--------|--------|--------|--------|-------|
| vgg16    | hierarchical | final | 0.8244 | 0.7448 | 0.7402 | passed | 0.7402 | 0.55  |
| vgg16    | hierarchical | edge  | 0.8398 | 0.8018 | 0.7946 | passed | 0.7946 | 0.60  |
| vgg16    | split        | final | 0.8068 | 0.7722 | 0.7710 | passed | 0.7710 | 0.55  |
| resnet18 | hierarchical | final | 0.8484 | 0.7948 | 0.8198 | 0.8450 | 0.7948 | 0.60  |
| resnet18 | hierarchical | edge  | 0.7818 | 0.7694 | 0.8086 | 0.7858 | 0.7694 | 0.55  |
| resnet18 | split        | final | 0.8496 | 0.7904 | 0.8522 | 0.6784 | 0.6784 | 0.50  |

floor = min - 0.174 (the widest range seen in one row, split/resnet18: 0.8522 - 0.6784),
rounded down to 0.05. Three seeds' standard deviation (the earlier rule, mean - 4 sd) did not
cover another machine: the end of one epoch at lr 0.05 without decay has a heavy tail.
hierarchical - split (final exit), per seed: vgg16 +0.018, -0.027, -0.031; resnet18 -0.001,
+0.004, -0.032, CI +0.167: hierarchical may trail split by at most 0.20 at equal budget (its
worst 0.032 plus the widest range). Chance is 0.10: every floor is 5x above it, so a method
that stops learning fails.
"""
import pytest
import torch

from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig
from harness.paths import FASHION_MNIST_DIR
from harness.train.batches import load_case_data
from harness.train.reference import run_local

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")]

SUBSET, TEST_SUBSET = 20_000, 5_000
FLOORS = {("vgg16", "hierarchical"): (0.55, 0.60), ("vgg16", "split"): (0.55, None),
          ("resnet18", "hierarchical"): (0.60, 0.55), ("resnet18", "split"): (0.50, None)}
MAX_COST = 0.20          # hierarchical's final exit vs split's, same budget


@pytest.mark.parametrize("arch,split", [("vgg16", "conv4"), ("resnet18", "layer2.1")])
def test_one_epoch_fashion_mnist(arch, split):
    torch.set_num_threads(1)
    rows = {}
    for method in ("hierarchical", "split"):
        case = Case(DatasetConfig("fashion_mnist", subset=SUBSET, test_subset=TEST_SUBSET),
                    ModelConfig(arch, 0.25, split), TrainConfig(seed=0), ComputeConfig(), method)
        train, test = load_case_data(case)
        assert len(train) == SUBSET and len(test) == TEST_SUBSET
        result, _ = run_local(case, train, test)
        assert result.steps == SUBSET // 64
        rows[method] = result
        print(f"\n{arch}/{split} {method}: final {result.final_acc:.4f} edge exit "
              f"{result.edge_exit_acc} ({result.steps} steps, {result.wall_s:.0f} s)")
    for method, result in rows.items():
        final_floor, edge_floor = FLOORS[arch, method]
        assert result.final_acc >= final_floor, f"{method} final exit"
        if edge_floor is not None:
            assert result.edge_exit_acc >= edge_floor, f"{method} edge exit"
    assert rows["hierarchical"].final_acc >= rows["split"].final_acc - MAX_COST
