"""Edge-only is measured once per model and reused on later links (no root): it sends
nothing over the link, so the copy is its own measurement, labelled as reused.

    .venv/bin/python -m pytest tests/test_edge_only_reuse.py
"""
import json

import pytest

from harness.analysis.summary import build_summary
from harness.config import parse_scenario
from harness.run.rundir import reuse_edge_only


def edge_case(link):
    s = parse_scenario({"name": "r", "methods": ["edge"], "links": [link]})
    return s.cases()[0]


def measured(case_dir, case):
    case_dir.mkdir()
    (case_dir / "case.json").write_text(json.dumps(case.to_dict()))
    (case_dir / "edge.jsonl").write_text(json.dumps(
        {"v": 1, "role": "edge", "event": "compute", "step": 0, "t_start": 0.0, "t_end": 2.0}) + "\n")
    (case_dir / "totals.json").write_text(json.dumps({"wall_s": 2.0, "steps": 1,
                                                      "edge_compute_s": 2.0}))
    (case_dir / "case_info.json").write_text(json.dumps(
        {"rep": 0, "full_steps": 1, "steady": {"est_s": 2.0, "est_ci_s": 0.1}}))
    (case_dir / "accuracy.json").write_text(json.dumps({"final_acc": 0.5, "test_samples": 100}))
    (case_dir / "status.json").write_text(json.dumps({"status": "ok"}))


def test_a_later_links_edge_only_case_is_the_first_links_measurement_labelled(tmp_path):
    first = tmp_path / "000-vgg16-conv4-fp32-3g-edge-r0"
    measured(first, edge_case("3g"))
    later = tmp_path / "001-vgg16-conv4-fp32-wifi-edge-r0"
    totals = reuse_edge_only(first, later, edge_case("wifi"))
    assert totals["wall_s"] == 2.0
    assert json.loads((later / "case.json").read_text())["link"] == "wifi"
    info = json.loads((later / "case_info.json").read_text())
    assert info["reused_from"] == first.name and "sends nothing" in info["reused_why"]
    assert (later / "edge.jsonl").read_text() == (first / "edge.jsonl").read_text()
    rows = build_summary(tmp_path).set_index("link")
    assert rows.loc["wifi", "est_full_wall_s"] == rows.loc["3g", "est_full_wall_s"] == 2.0
    assert "measured once per model, on the first link" in rows.loc["wifi", "runtime_source"]
    assert "measured once" not in rows.loc["3g", "runtime_source"]


def test_reuse_never_writes_over_a_case_directory(tmp_path):
    first = tmp_path / "000-vgg16-conv4-fp32-3g-edge-r0"
    measured(first, edge_case("3g"))
    later = tmp_path / "001-vgg16-conv4-fp32-wifi-edge-r0"
    later.mkdir()
    with pytest.raises(FileExistsError):
        reuse_edge_only(first, later, edge_case("wifi"))
    assert not (later / "case.json").exists()
