"""The paper-regime table: the right runtimes per row, changes with the right sign and CI, the
model's pick marked, the paper's figure beside, and the notes that say what each figure is.

    .venv/bin/python -m pytest tests/test_paper.py
"""
import json

import pandas as pd
import pytest

from harness.analysis.paper import paper_notes, paper_table, picked_splits
from harness.errors import HarnessError
from harness.config import load_scenario


def _row(method, split, link, est, ci, **extra):
    return {"arch": "vgg16", "split": split, "link": link, "method": method, "rep": 0,
            "status": "ok", "full_steps": 781, "est_full_wall_s": est, "est_full_wall_ci_s": ci,
            "predicted_full_s": est * 1.02, "edge_compute": "paced", "edge_device": "jetson_nano",
            "cloud_compute": "modelled" if method != "edge" else None,
            "cloud_device": "a100", "acc_source": "not measured: no dataset given", **extra}


def _summary():
    rows = [_row("hierarchical", "conv13", "3g", 1300.0, 20.0, gain_vs_split=0.5,
                 gain_vs_split_ci=0.02, gain_vs_cloud=-0.1, gain_vs_cloud_ci=0.03,
                 gain_vs_edge=0.05, gain_vs_edge_ci=0.01),
            _row("split", "conv13", "3g", 2600.0, 40.0),
            _row("hierarchical", "conv10", "3g", 3200.0, 30.0, gain_vs_split=0.6,
                 gain_vs_split_ci=0.01, gain_vs_cloud=-1.7, gain_vs_cloud_ci=0.1,
                 gain_vs_edge=-1.3, gain_vs_edge_ci=0.05),
            _row("split", "conv10", "3g", 8000.0, 90.0),
            _row("cloud", "conv13", "3g", 1180.0, 10.0),
            _row("edge", "conv13", "3g", 1370.0, 1.0),
            _row("split", "conv7", "3g", 9.0, 1.0, status="failed")]
    return pd.DataFrame(rows)


def test_each_hierarchical_case_gets_its_own_baselines_and_its_changes():
    t = paper_table(_summary(), {("vgg16", "3g", "conv13")}).set_index("split")
    assert list(t.index) == ["conv10", "conv13 *"]                       # the pick marked
    assert t.loc["conv13 *", "hierarchical_s"] == "1300 ± 20"
    assert t.loc["conv13 *", "split_s"] == "2600 ± 40"                   # same split
    assert t.loc["conv10", "split_s"] == "8000 ± 90"
    assert t.loc["conv10", "cloud_s"] == "1180 ± 10" and t.loc["conv10", "edge_s"] == "1370 ± 1"
    assert t.loc["conv13 *", "vs_split"] == "-50% ± 2%"                  # a change: -gain
    assert t.loc["conv13 *", "vs_cloud"] == "+10% ± 3%"
    assert t.loc["conv10", "vs_edge"] == "+130% ± 5%"
    assert (t["paper"] == "-29%").all() and t.loc["conv13 *", "model_s"] == "1326"


def test_a_run_without_hierarchical_results_is_refused_by_name():
    s = _summary()
    with pytest.raises(HarnessError, match="no hierarchical case finished"):
        paper_table(s[s["method"] != "hierarchical"], set())


def test_notes_say_what_is_modelled_what_is_not_measured_and_how_long_it_took(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"picked_splits": [["vgg16", "3g", "conv13"]]}))
    (tmp_path / "run_status.json").write_text(json.dumps({
        "state": "complete", "cases_ok": 6, "history": [
            {"utc": "2026-12-07T01:00:00Z", "state": "running"},
            {"utc": "2026-12-07T01:33:30Z", "state": "complete"}]}))
    assert picked_splits(tmp_path) == {("vgg16", "3g", "conv13")}
    notes = "\n".join(paper_notes(_summary(), tmp_path))
    assert "full budget (781 batches)" in notes
    assert "cloud compute: MODELLED" in notes and "edge compute: paced (jetson_nano)" in notes
    assert "accuracy: not measured: no dataset given" in notes
    assert "wall time of the run: 33.5 min (complete, 6 cases ok)" in notes
    assert "against a baseline its abstract does not name" in notes


def test_the_paper_regime_scenario_is_the_papers_setting():
    """Full width, CIFAR-10's shape, a Jetson-class edge and an A100-class cloud, three links,
    every method, the model's pick plus two fixed splits per model, generated data without a
    dataset."""
    s, _ = load_scenario("scenarios/paper_regime.yaml")
    assert s.model.width == 1.0 and s.dataset.name == "cifar10" and s.dataset.missing == "shaped"
    assert set(s.archs) == {"vgg16", "resnet18"} and set(s.links) == {"3g", "4g", "wifi"}
    assert s.compute.edge_device == "jetson_nano" and s.compute.cloud_device == "a100"
    assert s.selection == {"by": "runtime"} and s.splits[0] == "auto"
    from harness.catalog import split_points
    for arch in s.archs:
        assert len([sp for sp in s.splits[1:] if sp in split_points(arch)]) == 2
    assert set(s.methods) == {"hierarchical", "split", "cloud", "edge"}
