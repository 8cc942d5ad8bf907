"""The regression gate and the summary's gains, on synthetic run directories (no torch)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analysis.compare import (baseline_values, github_benchmark_json, judge,
                                      load_baseline, parse_check, write_baseline)
from harness.analysis.summary import build_summary
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parent.parent
WALLS = {"3g": {"hierarchical": 60.0, "split": 100.0, "cloud": 50.0, "edge": 80.0},
         "wifi": {"hierarchical": 30.0, "split": 40.0, "cloud": 20.0, "edge": 80.0}}


def fake_run(tmp_path, walls=WALLS, reps=2, partial_after=None):
    run = tmp_path / "results" / "quick" / "20260101T000000Z_deadbeef"
    run.mkdir(parents=True)
    (run / "scenario.yaml").write_text("name: quick\nchecks: [gain_vs_split@3g:10%]\n")
    n = 0
    for rep in range(reps):
        for link, per_method in walls.items():
            for method, wall in per_method.items():
                d = run / f"{n:03d}-vgg16-conv7-fp32-{link}-{method}-r{rep}"
                d.mkdir()
                case = {"method": method, "codec": "fp32", "link": link,
                        "model": {"arch": "vgg16", "split": "conv7"}, "training": {"batch_size": 64}}
                (d / "case.json").write_text(json.dumps(case))
                (d / "case_info.json").write_text(json.dumps({"rep": rep, "full_steps": 100}))
                ok = partial_after is None or n < partial_after
                (d / "status.json").write_text(json.dumps({"status": "ok" if ok else "failed"}))
                if ok:
                    w = wall * (1 + 0.01 * rep)
                    (d / "totals.json").write_text(json.dumps({
                        "steps": 10, "wall_s": w, "edge_compute_s": w / 2, "uplink_s": w * 0.9,
                        "cloud_compute_s": w / 3, "downlink_s": 0.0, "bytes_up_total": 1000,
                        "bytes_down_total": 0, "raw_bytes_to_cloud": 0}))
                    (d / "accuracy.json").write_text(json.dumps({"final_acc": 0.8, "edge_exit_acc": None,
                                                                 "acc_source": "measured"}))
                n += 1
    state = "complete" if partial_after is None else "partial"
    (run / "run_status.json").write_text(json.dumps({"state": state, "reason": "test"}))
    return run


def test_summary_gains_and_extrapolation(tmp_path):
    s = build_summary(fake_run(tmp_path), "quick")
    h = s[(s["method"] == "hierarchical") & (s["link"] == "3g") & (s["rep"] == 0)].iloc[0]
    assert h["gain_vs_split"] == pytest.approx(0.4)
    assert h["gain_vs_cloud"] == pytest.approx(-0.2)
    assert h["gain_vs_edge"] == pytest.approx(0.25)
    assert h["est_full_wall_s"] == pytest.approx(600.0)
    assert "extrapolated linearly from 10 measured batches to 100" in h["runtime_source"]
    assert h["pipeline_eff"] == pytest.approx(0.9)
    assert s[s["method"] == "split"]["gain_vs_split"].isna().all()


@pytest.mark.parametrize("text,match", [("gain_vs_split@3g", "expected"), ("speed@3g:5%", "unknown metric"),
                                        ("gain_vs_split@3g:-5%", "expected"), ("gain_vs_split:5%", "expected")])
def test_bad_checks(text, match):
    with pytest.raises(HarnessError, match=match):
        parse_check(text)


def test_parse_check():
    c = parse_check("gain_vs_split@3g/vgg16:12.5%")
    assert (c.metric, c.link, c.arch, c.tolerance) == ("gain_vs_split", "3g", "vgg16", 0.125)
    assert str(c) == "gain_vs_split@3g/vgg16:12.5%"


def test_gate_passes_on_its_own_baseline_and_fails_30pct_higher(tmp_path):
    s = build_summary(fake_run(tmp_path), "quick")
    checks = [parse_check("gain_vs_split@3g:10%"), parse_check("gain_vs_cloud@wifi/vgg16:5%")]
    same = baseline_values(s)
    assert (judge(s, checks, same)["verdict"] == "pass").all()
    higher = {k: v + 0.30 for k, v in same.items()}
    table = judge(s, checks, higher)
    assert (table["verdict"] == "REGRESSION").all()
    assert github_benchmark_json(s, checks)[0] == {"name": "gain_vs_split@3g", "unit": "%",
                                                   "value": pytest.approx(100 * s[(s.method == "hierarchical") & (s.link == "3g")]["gain_vs_split"].median(), abs=1e-3)}


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_check_and_baseline_commands(tmp_path):
    run = fake_run(tmp_path, reps=3)
    base = tmp_path / "base.json"
    proc = run_cli("baseline", str(run), "--output", str(base))
    assert proc.returncode == 0, proc.stderr
    ok = run_cli("check", str(run), "--baseline", str(base), "--github-json", str(tmp_path / "gh.json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "pass" in ok.stdout and json.loads((tmp_path / "gh.json").read_text())
    doc = json.loads(base.read_text())
    doc["values"] = {k: v + 0.30 for k, v in doc["values"].items()}
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(doc))
    bad = run_cli("check", str(run), "--baseline", str(worse))
    assert bad.returncode == 1
    assert "REGRESSION" in bad.stdout and "gain_vs_split@3g:10%" in bad.stdout
    assert "+40.0%" in bad.stdout and "+70.0%" in bad.stdout     # current vs raised baseline
    absent = run_cli("check", str(run), "--baseline", str(base), "--check", "gain_vs_split@4g:10%")
    assert absent.returncode == 1 and "missing" in absent.stdout, absent.stdout + absent.stderr
    missing = run_cli("check", str(run), "--baseline", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: baseline file not found")


def test_partial_run_is_checked_and_labelled(tmp_path):
    run = fake_run(tmp_path, reps=3, partial_after=5)
    base = tmp_path / "base.json"
    write_baseline(build_summary(run, "quick"), base, "x", "quick")
    proc = run_cli("check", str(run), "--baseline", str(base), "--check", "gain_vs_split@3g:10%")
    assert proc.returncode == 0, proc.stderr
    assert "partial run" in proc.stderr
    refused = run_cli("baseline", str(run), "--output", str(tmp_path / "b2.json"))
    assert refused.returncode == 2 and "partial" in refused.stderr


def test_malformed_baseline(tmp_path):
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(HarnessError, match="malformed"):
        load_baseline(tmp_path / "b.json")


def test_baseline_needs_three_repetitions_and_no_accuracy_at_chance(tmp_path):
    with pytest.raises(HarnessError, match="at least 3 repetitions"):
        write_baseline(build_summary(fake_run(tmp_path, reps=2), "quick"), tmp_path / "b.json",
                       "x", "quick")
    s = build_summary(fake_run(tmp_path / "3", reps=3), "quick")
    s.loc[s["method"] == "hierarchical", "final_acc"] = 0.11        # a model that never learned
    doc = write_baseline(s, tmp_path / "b3.json", "x", "quick")
    assert not any(k.startswith("final_acc") for k in doc["values"])
    assert "final_acc@3g" in doc["omitted_at_chance"]
    table = judge(s, [parse_check("final_acc@3g:5%")], {"final_acc@3g": 0.112})
    assert table["verdict"].tolist() == ["baseline-at-chance"]


def test_regression_only_when_the_whole_ci_is_below_the_floor(tmp_path):
    s = build_summary(fake_run(tmp_path, reps=1), "quick")
    h = (s["method"] == "hierarchical") & (s["link"] == "3g")
    check = parse_check("gain_vs_split@3g:10%")            # current gain 0.40
    s.loc[h, "gain_vs_split_ci"] = 0.03
    assert judge(s, [check], {"gain_vs_split@3g": 0.52})["verdict"].tolist() == ["noise"]
    assert judge(s, [check], {"gain_vs_split@3g": 0.54})["verdict"].tolist() == ["REGRESSION"]
    # A CI wider than a third of the tolerance cannot excuse a 12-point drop as noise.
    s.loc[h, "gain_vs_split_ci"] = 0.05
    assert judge(s, [check], {"gain_vs_split@3g": 0.52})["verdict"].tolist() == ["CI-TOO-WIDE"]
    assert judge(s, [check], {"gain_vs_split@3g": 0.48})["verdict"].tolist() == ["pass"]
    s.loc[h, "gain_vs_split_ci"] = float("nan")             # no CI: the value alone decides
    assert judge(s, [check], {"gain_vs_split@3g": 0.52})["verdict"].tolist() == ["REGRESSION"]


def test_compare_two_runs_reports_the_difference_and_overlap(tmp_path):
    from harness.analysis.compare import compare_runs
    a = build_summary(fake_run(tmp_path / "a", reps=1), "quick")
    slower_split = {link: {**m, "split": m["split"] * 1.5} for link, m in WALLS.items()}
    b = build_summary(fake_run(tmp_path / "b", walls=slower_split, reps=1), "quick")
    for s in (a, b):
        s["gain_vs_split_ci"] = 0.02
    table = compare_runs(a, b).set_index(["link", "metric"])
    row = table.loc[("3g", "gain_vs_split")]
    assert row["run_a"] == pytest.approx(0.4) and row["run_b"] == pytest.approx(0.6)
    assert row["diff_points"] == pytest.approx(20.0) and not row["cis_overlap"]
    assert table.loc[("3g", "gain_vs_cloud"), "diff_points"] == pytest.approx(0.0)


def test_repeated_single_measurement_keeps_its_own_ci(tmp_path):
    """Accuracy comes from one accuracy pass: three identical repetitions are not a CI of 0."""
    from harness.analysis.compare import measure_ci
    s = build_summary(fake_run(tmp_path, reps=3), "quick")
    s["final_acc_ci"] = 0.02
    value, ci, reps = measure_ci(s, "final_acc", "3g", None)
    assert (value, ci, reps) == (0.8, 0.02, 3)
    h = s.index[(s["method"] == "hierarchical") & (s["link"] == "3g")]
    s.loc[h, "gain_vs_split"] = [0.38, 0.40, 0.42]                  # repetitions that differ
    value, ci, _ = measure_ci(s, "gain_vs_split", "3g", None)
    assert value == pytest.approx(0.40) and ci == pytest.approx(4.303 * 0.02 / 3 ** 0.5)


def test_the_gate_refuses_a_run_on_other_compute_than_its_baseline(tmp_path):
    """The baseline records how compute was produced; a run paced to other cores, or on
    device profiles, is refused with each difference named (exit 2, nothing judged); a
    baseline made before baselines recorded compute is used with a note."""
    run = fake_run(tmp_path, reps=3)
    for case in run.glob("*/case.json"):
        doc = json.loads(case.read_text())
        doc["compute"] = {"pace": True, "edge_cores": 0.25, "cloud_cores": 0.5,
                          "edge_device": None, "cloud_device": None, "edge_backend": "cpu",
                          "cloud_backend": "cpu", "over_ceiling": "refuse", "dilation": 1.0}
        case.write_text(json.dumps(doc))
    base = tmp_path / "base.json"
    assert run_cli("baseline", str(run), "--output", str(base)).returncode == 0
    assert json.loads(base.read_text())["compute"]["edge_cores"] == 0.25
    same = run_cli("check", str(run), "--baseline", str(base))
    assert same.returncode == 0 and "compute: as the baseline's" in same.stderr
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(run, other / run.name)
    for case in (other / run.name).glob("*/case.json"):
        doc = json.loads(case.read_text())
        doc["compute"].update(edge_device="rpi4", dilation=2.0)     # dilation alone: allowed
        case.write_text(json.dumps(doc))
    refused = run_cli("check", str(other / run.name), "--baseline", str(base))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "edge_device None in the baseline, 'rpi4' in the run" in refused.stderr
    assert "dilation" not in refused.stderr and "REGRESSION" not in refused.stdout
    old = json.loads(base.read_text())
    del old["compute"]
    base.write_text(json.dumps(old))
    noted = run_cli("check", str(other / run.name), "--baseline", str(base))
    assert noted.returncode == 0 and "the baseline records no compute" in noted.stderr
