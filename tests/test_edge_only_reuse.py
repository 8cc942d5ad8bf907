"""Edge-only is measured once per model and reused on later links and splits, cloud-only once
per model and link and reused at later splits (no root): neither depends on what differs, so
the copy is its own measurement, labelled as reused (harness.run.reuse).

    .venv/bin/python -m pytest tests/test_edge_only_reuse.py
"""
import json

import pytest

from harness.analysis.summary import build_summary
from harness.config import parse_scenario
from harness.run.reuse import reuse_case, reuse_key


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
    totals = reuse_case(first, later, edge_case("wifi"))
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
        reuse_case(first, later, edge_case("wifi"))
    assert not (later / "case.json").exists()


def case_of(method, link="3g", split="conv4", codec="fp32", **compute):
    s = parse_scenario({"name": "r", "methods": [method], "links": [link],
                        "model": {"arch": "vgg16", "width": 0.25, "split": split},
                        "codec": codec, **({"compute": compute} if compute else {})})
    return s.cases()[0]


def test_what_a_reused_measurement_may_differ_in_and_what_it_may_not():
    """Edge-only: link, split, codec and exit head do not enter its timing; cloud-only: the
    split, codec and exit head do not, the link does; the other methods are never reused."""
    edge = reuse_key(case_of("edge"), 0)
    assert edge == reuse_key(case_of("edge", link="wifi", split="conv10", codec="fp16"), 0)
    assert edge != reuse_key(case_of("edge"), 1)
    assert edge != reuse_key(case_of("edge", edge_cores=0.5), 0)
    cloud = reuse_key(case_of("cloud"), 0)
    assert cloud == reuse_key(case_of("cloud", split="conv10", codec="int8"), 0)
    assert cloud != reuse_key(case_of("cloud", link="wifi"), 0)
    assert cloud != reuse_key(case_of("cloud", cloud_cores=0.75), 0) and cloud != edge
    assert reuse_key(case_of("hierarchical"), 0) is None and reuse_key(case_of("split"), 0) is None


def test_a_cloud_only_case_at_another_split_is_filled_from_the_first_without_its_parts(tmp_path):
    first = tmp_path / "000-vgg16-conv4-fp32-3g-cloud-r0"
    measured(first, case_of("cloud"))
    (first / "cloud.jsonl").write_text("{}\n")
    (first / "cloud_part.pt").write_bytes(b"conv4's cloud half")
    later = tmp_path / "001-vgg16-conv10-fp32-3g-cloud-r0"
    own = {"final_acc": 0.61, "test_samples": 100}
    reuse_case(first, later, case_of("cloud", split="conv10"), own)
    assert json.loads((later / "case.json").read_text())["model"]["split"] == "conv10"
    assert (later / "cloud.jsonl").read_text() == "{}\n" and not (later / "cloud_part.pt").exists()
    info = json.loads((later / "case_info.json").read_text())
    assert info["reused_from"] == first.name and "conv4" in info["parts_not_copied"]
    assert json.loads((later / "accuracy.json").read_text()) == own
    rows = build_summary(tmp_path).set_index("split")
    assert rows.loc["conv10", "est_full_wall_s"] == rows.loc["conv4", "est_full_wall_s"]
    assert "cloud-only measured once per model and link" in rows.loc["conv10", "runtime_source"]
    assert first.name in rows.loc["conv10", "runtime_source"]
    assert "measured once" not in rows.loc["conv4", "runtime_source"]
