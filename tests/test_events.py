"""Event logs onto one time axis: shared clocks, and drift between two machines' clocks."""
import json

import pytest

from harness.analysis.totals import load_events


def write(case_dir, role, records):
    (case_dir / f"{role}.jsonl").write_text("".join(json.dumps({"v": 1, "role": role, **r}) + "\n"
                                                    for r in records))


def test_two_machines_drift_is_interpolated(tmp_path):
    # The cloud's clock runs 1.000 s ahead at edge time 0 and 1.100 s ahead at edge time 100.
    write(tmp_path, "edge", [
        {"event": "clock", "t": 0.0, "phase": "start", "shared_clock": False, "offset_s": 1.0},
        {"event": "compute", "step": 0, "t_start": 10.0, "t_end": 11.0},
        {"event": "clock", "t": 100.0, "phase": "end", "shared_clock": False, "offset_s": 1.1}])
    write(tmp_path, "cloud", [{"event": "compute", "step": 0, "t_start": 51.05, "t_end": 61.06}])
    df = load_events(tmp_path)
    cloud = df[df["role"] == "cloud"].iloc[0]
    assert cloud["t_start"] == pytest.approx(50.0, abs=1e-3)     # 1.05 s ahead at edge time 50
    assert cloud["t_end"] == pytest.approx(60.0, abs=1e-3)


def test_shared_clock_is_left_alone(tmp_path):
    write(tmp_path, "edge", [
        {"event": "clock", "t": 0.0, "phase": "start", "shared_clock": True, "offset_s": 0.0,
         "offset_estimate_s": 0.004},
        {"event": "clock", "t": 9.0, "phase": "end", "shared_clock": True, "offset_s": 0.0}])
    write(tmp_path, "cloud", [{"event": "compute", "step": 0, "t_start": 5.0, "t_end": 6.0}])
    cloud = load_events(tmp_path).query("role == 'cloud'").iloc[0]
    assert (cloud["t_start"], cloud["t_end"]) == (5.0, 6.0)


def test_one_offset_of_an_earlier_release_applies_throughout(tmp_path):
    write(tmp_path, "edge", [{"event": "clock", "t": 0.0, "offset_s": 0.25, "rtt_s": 0.1}])
    write(tmp_path, "cloud", [{"event": "compute", "step": 0, "t_start": 5.25, "t_end": 6.25}])
    cloud = load_events(tmp_path).query("role == 'cloud'").iloc[0]
    assert (cloud["t_start"], cloud["t_end"]) == (5.0, 6.0)
