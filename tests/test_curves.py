"""Accuracy curves and time to accuracy: evaluating during training changes no update; each
curve point lands at its batch's time on the link; the first crossing is the one reported."""
import json
import math
import shutil

import pandas as pd
import pytest
import torch

from harness.analysis import tta
from harness.analysis.summary import build_summary
from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig
from harness.train.data import load_dataset
from harness.train.reference import run_local
from test_old_runs import FIXTURES, cli

STEPS = 12


def _case(method):
    return Case(DatasetConfig("fake"), ModelConfig("vgg16", 0.25, "conv4"),
                TrainConfig(batch_size=8, max_batches=STEPS, seed=3), ComputeConfig(), method)


@pytest.mark.parametrize("method", ["hierarchical", "split", "cloud"])
def test_evaluating_along_the_way_changes_no_update(method):
    torch.set_num_threads(1)
    data = load_dataset("fake")
    plain, model_a = run_local(_case(method), data, data)
    curved, model_b = run_local(_case(method), data, data, curve_every=5)
    for part in ("edge", "cloud", "exit_head"):
        a, b = getattr(model_a, part).state_dict(), getattr(model_b, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part     # weights and BN statistics
    assert (curved.final_acc, curved.edge_exit_acc) == (plain.final_acc, plain.edge_exit_acc)
    assert [p["step"] for p in curved.curve] == [0, 5, 10, STEPS]
    assert curved.curve[-1]["final_acc"] == plain.final_acc
    assert (curved.curve[0]["edge_exit_acc"] is None) == (method != "hierarchical")
    assert plain.curve == []


def _points(accs, every=10, n_test=2000):
    return pd.DataFrame([{"arch": "vgg16", "split": "conv7", "codec": "fp32", "link": "3g",
                          "method": "split", "rep": 0, "exit": "final", "step": i * every,
                          "t_s": 2.0 * i * every, "t_ci_s": 0.1 * i, "acc": a,
                          "acc_ci": tta.wilson_half_width_one(a, n_test)}
                         for i, a in enumerate(accs)])


def test_time_to_accuracy_is_the_first_crossing_with_both_spreads():
    table = tta.tta_table(_points([0.1, 0.49, 0.52, 0.40, 0.75, 0.80]), (0.5, 0.7, 0.9))
    by = table.set_index("target")
    assert by.loc[0.5, "steps_to_target"] == 20 and by.loc[0.5, "tta_s"] == 40.0
    assert by.loc[0.5, "tta_ci_s"] == pytest.approx(0.2)
    # 0.49 on 2000 samples: its 95% interval (+-0.022) reaches 0.5; 0.52's lower bound does not
    assert by.loc[0.5, "tta_early_s"] == 20.0 and by.loc[0.5, "tta_late_s"] == 80.0
    assert by.loc[0.7, "tta_s"] == 80.0 and by.loc[0.7, "tta_late_s"] == 80.0
    assert math.isnan(by.loc[0.9, "tta_s"]) and pd.isna(by.loc[0.9, "steps_to_target"])
    text = tta.tta_text(table)
    assert text.loc[0, "to 90% (s)"] == "not reached"
    assert text.loc[0, "to 50% (s)"] == "40.0 ± 0.2 [20.0, 80.0]"


@pytest.fixture
def curved_run(tmp_path):
    """The old run fixture with a curve in every case's accuracy.json and two targets."""
    run_dir = tmp_path / "ci" / "20261130T214751Z_321fbe86"
    shutil.copytree(FIXTURES / "old_run_v1", run_dir)
    for case in run_dir.glob("0*"):
        acc = json.loads((case / "accuracy.json").read_text())
        acc["test_samples"] = 500
        acc["curve"] = [{"step": s, "final_acc": 0.1 + 0.06 * s, "edge_exit_acc":
                         0.1 + 0.07 * s if "hierarchical" in case.name else None}
                        for s in (0, 2, 4, 6, 8, 10)]
        (case / "accuracy.json").write_text(json.dumps(acc))
    with open(run_dir / "scenario.yaml", "a") as f:
        f.write("accuracy_targets: [0.4, 0.65]\n")
    return run_dir


def test_curve_points_sit_at_their_batches_time_on_each_link(curved_run):
    summary = build_summary(curved_run)
    curve = tta.curves(curved_run, summary)
    assert set(curve["link"]) == {"3g", "wifi"} and set(curve["exit"]) == {"final", "edge exit"}
    for _, row in summary.iterrows():
        points = curve[(curve["link"] == row["link"]) & (curve["method"] == row["method"])
                       & (curve["exit"] == "final")].sort_values("step")
        times = list(points["t_s"])
        assert times[0] == 0.0 and times == sorted(times)
        assert times[-1] == pytest.approx(row["est_full_wall_s"])      # the last batch's end
        measured = tta.step_times(curved_run / row["case"], row)
        assert len(measured) == row["full_steps"]
        assert measured[int(row["steps"]) - 1][1] == 0.0                # measured: no CI
    assert tta.targets_of(curved_run) == (0.4, 0.65)


def test_report_and_plots_show_the_curves_and_the_table(curved_run):
    assert cli("plot", curved_run).returncode == 0
    assert (curved_run / "plots" / "accuracy_curve.png").stat().st_size > 20_000
    out = cli("report", curved_run)
    assert out.returncode == 0, out.stderr
    text = (curved_run / "report.html").read_text()
    assert "<h2>Time to accuracy</h2>" in text and "to 65% (s)" in text
    assert "Accuracy over training time on each link" in text
