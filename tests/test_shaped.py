"""Timing without the dataset (`dataset.missing: shaped`): generated data of the real dataset's
shape, runtimes measured on it, accuracy reported as not measured, never as a number.

    .venv/bin/python -m pytest tests/test_shaped.py
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig, parse_scenario
from harness.errors import HarnessError
from harness.run.accuracy import accuracy_keys, not_measured
from harness.train.batches import load_case_data
from harness.train.shaped import shaped_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_shaped_cifar10_has_the_real_splits_shape_and_is_seeded():
    train, test = shaped_dataset("cifar10", True), shaped_dataset("cifar10", False)
    assert train.images.shape == (50_000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (10_000, 3, 32, 32)
    assert train.labels.dtype == torch.long and set(train.labels.unique().tolist()) == set(range(10))
    assert torch.equal(shaped_dataset("cifar10", False).images, test.images)
    assert not torch.equal(shaped_dataset("cifar10", False, seed=1).images, test.images)
    assert not torch.equal(train.images[:10_000], test.images)     # the splits differ


def _scenario(**dataset):
    return parse_scenario({"name": "s", "dataset": dataset, "links": ["3g"],
                           "model": {"arch": "vgg16", "split": "conv4"},
                           "measure": {"timing_batches": 10}})


@pytest.mark.parametrize("dataset, message", [
    ({"name": "cifar10", "missing": "noise"}, "dataset.missing: expected refuse or shaped"),
    ({"name": "fashion_mnist", "missing": "shaped"}, "'fashion_mnist' has no fixed shape"),
])
def test_bad_missing_is_refused_by_name(dataset, message):
    with pytest.raises(HarnessError, match=message):
        _scenario(**dataset)


def test_a_shaped_scenario_measures_no_accuracy_and_says_why():
    s = _scenario(name="cifar10", missing="shaped")
    assert accuracy_keys(s) == set()
    acc = not_measured(s.cases()[0])
    assert acc["final_acc"] is None and acc["edge_exit_acc"] is None
    assert acc["acc_source"].startswith("not measured: no dataset given")
    assert not_measured(_scenario(name="cifar10", root="/x", missing="shaped").cases()[0]) is None
    assert accuracy_keys(_scenario(name="cifar10", root="/x")) != set()


def test_a_root_loads_the_real_dataset_even_where_shaped_is_allowed(tmp_path):
    """`missing: shaped` only stands in for a dataset not given: with a root, the real
    loader runs (here it finds no CIFAR-10 and says so), nothing is generated."""
    case = Case(DatasetConfig("cifar10", root=str(tmp_path), missing="shaped"),
                ModelConfig("vgg16", 0.25, "conv4"), TrainConfig(batch_size=8), ComputeConfig(),
                "hierarchical")
    with pytest.raises(HarnessError, match="CIFAR-10 not found"):
        load_case_data(case)
    sub = Case(DatasetConfig("cifar10", subset=640, test_subset=100, missing="shaped"),
               ModelConfig("vgg16", 0.25, "conv4"), TrainConfig(batch_size=8), ComputeConfig(),
                "hierarchical")
    train, test = load_case_data(sub)
    assert len(train) == 640 and len(test) == 100


def test_a_loopback_run_on_shaped_data_is_timed_and_prints_no_accuracy(tmp_path):
    """The whole pipeline on generated CIFAR-10 (activations up, and raw images up for
    cloud-only): runtimes measured, no accuracy pass, every case's accuracy empty with its
    reason in summary.csv, the output and the report."""
    scenario = tmp_path / "shaped.yaml"
    scenario.write_text(json.dumps({
        "name": "shaped", "dataset": {"name": "cifar10", "missing": "shaped"},
        "model": {"arch": "vgg16", "width": 0.25, "split": "conv4"},
        "training": {"batch_size": 8, "max_batches": 30},
        "methods": ["hierarchical", "cloud"],
        "measure": {"timing_batches": 10, "min_batches": 6, "max_seconds": 5}}))
    env = {**os.environ, "HIERBENCH_RESULTS": str(tmp_path / "results")}
    proc = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), "run", str(scenario),
                           "--loopback"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy pass" not in proc.stderr
    assert proc.stderr.count("accuracy not measured") == 2
    assert "not measured: no dataset given" in proc.stdout
    run_dir = next((tmp_path / "results" / "shaped").iterdir())
    import pandas as pd
    summary = pd.read_csv(run_dir / "summary.csv")
    assert len(summary) == 2 and summary["final_acc"].isna().all()
    assert summary["est_full_wall_s"].notna().all()
    assert summary["acc_source"].str.startswith("not measured: no dataset given").all()
    plots = {p.name for p in (run_dir / "plots").glob("*.png")}
    assert "runtime.png" in plots and "accuracy_vs_time.png" not in plots   # nothing to plot
    report = (run_dir / "report.html").read_text()
    assert "not measured: no dataset given" in report
