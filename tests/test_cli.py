"""The command line as a user runs it: one-line errors, non-zero exits, real tables."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, timeout=300):
    # `run` marks abandoned runs under results/ first: keep the repository's results out of it.
    env = {**os.environ, "HIERBENCH_RESULTS": str(ROOT / "tests" / "no-such-results")}
    return subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,needle", [
    (["train", "--dataset", "cifar10", "--data-root", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["train", "--model", "alexnet"], "model.arch"),
    (["train", "--model", "vgg16", "--split", "layer2.1"], "unknown split point"),
    (["train", "--width", "0"], "model.width"),
    (["train", "--width", "-0.5"], "model.width"),
    (["train", "--dataset", "imagenet"], "unknown dataset"),
    (["train", "--methods", "hierarchical,teleport"], "methods"),
    (["train", "--batch-size", "1"], "batch_size"),
    (["splits", "--model", "lenet"], "unknown model"),
    (["run", "scenarios/ci.yaml", "--loopback", "--set", "links=['..']"], "links: '..'"),
    (["run", "scenarios/ci.yaml", "--loopback", "--set", "links=[../up]"], "../up: no such file"),
    (["run", "scenarios/ci.yaml", "--loopback", "--set", "name=../up"], "name: '../up'"),
    (["run"], "SCENARIO_FILE"),
    (["predict", "--edge-device", "tpu9"], "device profile 'tpu9': unknown"),
    (["predict", "--cloud-device", "/nonexistent/gpu.yaml"], "/nonexistent/gpu.yaml"),
])
def test_bad_input_is_one_line_and_nonzero(args, needle):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_splits_table():
    proc = run_cli("splits", "--model", "vgg16", "--width", "1")
    assert proc.returncode == 0
    assert "conv4" in proc.stdout and "128x8x8" in proc.stdout and "32768" in proc.stdout


def test_train_prints_a_table_for_every_method(tmp_path):
    out = tmp_path / "t.csv"
    proc = run_cli("train", "--dataset", "fake", "--max-batches", "3", "--batch-size", "16",
                   "--model", "resnet18", "--split", "layer1.0", "--csv", str(out))
    assert proc.returncode == 0, proc.stderr
    import pandas as pd
    table = pd.read_csv(out)
    assert list(table["method"]) == ["hierarchical", "split", "cloud", "edge"]
    assert (table["steps"] == 3).all() and (table["wall_s"] > 0).all()
    assert table["edge_exit_acc"].notna().tolist() == [True, False, False, False]
    for method in table["method"]:
        assert method in proc.stdout


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "train" in proc.stdout and "splits" in proc.stdout


def test_loopback_scenario_run_prints_cis_and_shares_end_to_end_accuracy(tmp_path):
    """A whole scenario over loopback (no root): the accuracy pass trains hierarchical and one
    end-to-end run side by side, the timing window runs, every figure is printed with ± CI."""
    import json
    scenario = tmp_path / "loop.yaml"
    scenario.write_text(json.dumps({
        "name": "loop", "dataset": {"name": "fake"},
        "model": {"arch": "vgg16", "width": 0.25, "split": "conv4"},
        "training": {"batch_size": 8, "max_batches": 30},
        "methods": ["hierarchical", "split", "edge"],
        "measure": {"timing_batches": 16, "min_batches": 8, "max_seconds": 10}}))
    env = {**os.environ, "HIERBENCH_RESULTS": str(tmp_path / "results")}
    proc = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), "run", str(scenario),
                           "--loopback", "--no-plots"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy pass: 2 training(s)" in proc.stderr
    assert "±" in proc.stdout and "gain_vs_split" in proc.stdout
    run_dir = next((tmp_path / "results" / "loop").iterdir())
    acc = {d.name.split("-")[-1]: json.loads((d / "accuracy.json").read_text())
           for d in (run_dir / "accuracy").iterdir()}
    assert acc["split"]["final_acc"] == acc["edge"]["final_acc"]
    assert "trained once for split, cloud and edge" in acc["edge"]["acc_source"]
    assert "trained once" not in acc["hierarchical"]["acc_source"]


def test_list_shows_device_profiles_and_their_modelled_targets():
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    assert "device profiles (topologies/devices/):" in proc.stdout
    assert "rpi4" in proc.stdout and "4.8 GFLOP/s sustained" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.strip().startswith("vgg16@conv4")]
    assert len(rows) == 6 and all("edge" in r and "head" in r and "cloud" in r for r in rows)
    assert "MODELLED" in proc.stdout
