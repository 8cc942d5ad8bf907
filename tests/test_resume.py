"""Failed cases, abandoned runs and `run --resume`, over loopback with a tiny scenario.

    .venv/bin/python -m pytest -q tests/test_resume.py

A failed case is recorded and the sweep goes on; a harness killed mid-sweep leaves a run that
`clean` marks abandoned and `run --resume` finishes, running each case directory once, into
the case list an uninterrupted run has; --resume refuses a changed scenario or checkout.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.run import rundir
from harness.run.launchers import LocalLauncher

ROOT = Path(__file__).resolve().parent.parent
TINY = {"name": "tiny", "dataset": {"name": "fake", "subset": 64, "test_subset": 32},
        "model": {"arch": "vgg16", "width": 0.125, "split": "conv4"},
        "training": {"batch_size": 8, "max_batches": 4},
        "methods": ["hierarchical", "split"], "links": ["3g"]}


def write_scenario(tmp_path, **top) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **top}))
    return path


def cli(tmp_path, *args, timeout=300):
    env = {**os.environ, "HIERBENCH_RESULTS": str(tmp_path / "results")}
    return subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_dirs(tmp_path) -> list[Path]:
    return sorted((tmp_path / "results" / "tiny").iterdir())


def status(case_dir: Path) -> str | None:
    try:
        return json.loads((case_dir / "status.json").read_text())["status"]
    except (OSError, ValueError):
        return None


def state(run_dir: Path) -> dict:
    return json.loads((run_dir / "run_status.json").read_text())


class FailingLauncher(LocalLauncher):
    """Loopback, except that the first planned case's cloud dies before READY (exit 3)."""
    fail = True

    def start(self, role, args, log_path):
        case_dir = Path(args[args.index("--case-dir") + 1])
        if not (self.fail and role == "cloud" and case_dir.name.startswith("000-")):
            return super().start(role, args, log_path)
        with open(log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-c", "import sys; print('error: injected "
                                     "cloud failure', file=sys.stderr); sys.exit(3)"],
                                    stdout=subprocess.PIPE, stderr=log, start_new_session=True)


@pytest.fixture
def in_process(tmp_path, monkeypatch, capsys):
    """main(argv) in this process, results under tmp_path, the first case's cloud failing."""
    monkeypatch.setenv("HIERBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr("harness.run.scenario.LocalLauncher", FailingLauncher)
    monkeypatch.setattr(FailingLauncher, "fail", True)

    def call(*argv):
        rc = main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err
    return call


def test_a_failed_case_is_recorded_and_the_sweep_goes_on(tmp_path, in_process):
    rc, out, err = in_process("run", str(write_scenario(tmp_path)), "--loopback", "--no-plots",
                              "--quiet")
    assert rc == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 case(s) failed (first: 000-") and "exit 3" in last
    assert sum("FAILED: cloud exited before READY (exit 3)" in ln for ln in err.splitlines()) == 1
    run_dir, = run_dirs(tmp_path)
    doc = state(run_dir)
    assert (doc["state"], doc["cases_ok"], doc["cases_failed"]) == ("complete", 1, 1)
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary["status"]) == ["failed", "ok"]       # the one after the failure ran
    assert "cloud exited before READY (exit 3)" in summary["status_reason"].iloc[0]
    assert summary["final_acc"].iloc[1] > 0 and summary["final_acc"].isna().iloc[0]
    assert "failed" in out                                   # the printed table shows it
    rc, _, err = in_process("baseline", str(run_dir))
    assert rc == 2 and "(complete, with failed cases: 1 of 2 failed)" in err
    assert err.strip().splitlines()[-1].endswith("partial run: refusing to make a baseline of it")


def test_stop_on_failure_stops_and_resume_reruns_the_rest(tmp_path, in_process):
    path = str(write_scenario(tmp_path))
    rc, _, err = in_process("run", path, "--loopback", "--no-plots", "--quiet", "--stop-on-failure")
    assert rc == 2 and err.strip().splitlines()[-1].startswith("error: run stopped: cloud exited")
    run_dir, = run_dirs(tmp_path)
    doc = state(run_dir)
    assert (doc["state"], doc["cases_failed"], doc["cases_not_run"]) == ("partial", 1, 1)
    failed = doc["failed_cases"][0]

    FailingLauncher.fail = False
    rc, out, err = in_process("run", "--resume", str(run_dir), "--loopback", "--no-plots",
                              "--quiet")
    assert rc == 0, err
    assert f"resume: moved half-done {failed} to superseded/{failed}.1" in err
    doc = state(run_dir)
    assert (doc["state"], doc["cases_ok"], doc["cases_failed"]) == ("complete", 2, 0)
    assert doc["resumes"][-1]["moved_aside"] == {failed: f"superseded/{failed}.1"}
    assert [h["state"] for h in doc["history"]] == ["running", "partial", "running", "complete"]
    assert (run_dir / "superseded" / f"{failed}.1" / "cloud.log").read_text().strip() \
        == "error: injected cloud failure"
    assert list(pd.read_csv(run_dir / "summary.csv")["status"]) == ["ok", "ok"]
    rc, _, err = in_process("run", "--resume", str(run_dir))
    assert rc == 0 and err.strip() == f"nothing to do: {run_dir} is complete (2 case(s) ok)"


def _fake_run(tmp_path, **state_doc) -> Path:
    """A run directory as `run` leaves it, without running anything."""
    commit, _ = rundir.git_state()
    run_dir = tmp_path / "results" / "tiny" / "20250101T000000Z_x"
    run_dir.mkdir(parents=True)
    (run_dir / "meta.json").write_text(json.dumps({"git_commit": commit, "git_dirty": True,
                                                   "emulation": "none: loopback TCP"}))
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    (run_dir / "run_status.json").write_text(json.dumps(state_doc))
    return run_dir


def test_resume_refuses_a_changed_scenario_a_live_run_and_another_commit(tmp_path, in_process,
                                                                          monkeypatch):
    run_dir = _fake_run(tmp_path, state="partial", reason="interrupted")
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({**TINY, "training": {**TINY["training"], "lr": 0.01}}))
    refusals = {"training.lr (saved None, given 0.01)": ("run", str(changed), "--resume",
                                                         str(run_dir)),
                "--set: give the scenario file": ("run", "--resume", str(run_dir), "--set", "a=1")}
    for needle, argv in refusals.items():
        rc, _, err = in_process(*argv)
        assert rc == 2 and err.count("\n") == 1 and needle in err, err
    commit, _ = rundir.git_state()
    monkeypatch.setattr(rundir, "git_state", lambda: ("0" * 40, True))
    rc, _, err = in_process("run", "--resume", str(run_dir))
    assert rc == 2 and f"made at commit {commit[:8]}, the checkout is at 00000000" in err
    meta = json.loads((run_dir / "meta.json").read_text())
    (run_dir / "meta.json").write_text(json.dumps({**meta, "git_dirty": False}))
    monkeypatch.setattr(rundir, "git_state", lambda: (commit, True))
    rc, _, err = in_process("run", "--resume", str(run_dir))
    assert rc == 2 and "uncommitted changes, the run's had none" in err
    # This very process is a live harness: `run` must leave its run alone and refuse it.
    (run_dir / "run_status.json").write_text(json.dumps(
        {"state": "running", "harness": rundir.process_identity()}))
    rc, _, err = in_process("run", "--resume", str(run_dir))
    assert rc == 2 and "still running (harness pid" in err and "marked abandoned" not in err


def test_liveness_from_pid_start_time_and_boot_id():
    me = rundir.process_identity()
    assert rundir.harness_gone(me) is None
    assert "another process" in rundir.harness_gone({**me, "start_ticks": me["start_ticks"] + 1})
    assert "rebooted" in rundir.harness_gone({**me, "boot_id": "not-this-boot"})
    assert rundir.harness_gone({**me, "host": "elsewhere"}) is None     # cannot tell: leave it
    child = subprocess.Popen([sys.executable, "-c", ""])
    ident = rundir.process_identity(child.pid)
    child.wait()
    assert "no longer exists" in rundir.harness_gone(ident)


def _case_dirs(run_dir: Path) -> list[Path]:
    return sorted(d for d in run_dir.iterdir() if (d / "case.json").exists())


def _kill_workers_of(run_dir: Path) -> None:
    """SIGKILL, by pid, the workers the killed harness left running in this run directory."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(run_dir).encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


def test_killed_run_is_abandoned_then_resumed_into_the_uninterrupted_case_list(tmp_path):
    path = write_scenario(tmp_path, methods=["hierarchical", "edge"],
                          measure={"timing_batches": 4, "min_batches": 2, "max_seconds": 5})
    env = {**os.environ, "HIERBENCH_RESULTS": str(tmp_path / "results")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_bench.py"), "run", str(path),
                             "--loopback", "--no-plots", "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:       # kill once one case has finished and the next one has started
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            dirs = _case_dirs(run_dirs(tmp_path)[0]) if (tmp_path / "results").exists() else []
            done = [d for d in dirs if rundir.case_done(d, emulated=False)]
            if done and any(status(d) == "running" for d in dirs):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    run_dir, = run_dirs(tmp_path)
    _kill_workers_of(run_dir)
    assert state(run_dir)["state"] == "running"
    kept = {d.name: ((d / "edge.jsonl").stat().st_mtime_ns, (d / "accuracy.json").read_text())
            for d in _case_dirs(run_dir) if rundir.case_done(d, emulated=False)}
    half = [d.name for d in _case_dirs(run_dir) if d.name not in kept]
    assert len(kept) == len(half) == 1
    accuracy_files = {p: p.stat().st_mtime_ns for p in (run_dir / "accuracy").rglob("*.json")}

    proc = cli(tmp_path, "clean", "--runs-only")
    assert proc.returncode == 0 and proc.stdout.strip() == \
        f"marked abandoned: {run_dir} (pid {state(run_dir)['harness']['pid']} no longer exists)"
    doc = state(run_dir)
    assert doc["state"] == "abandoned" and "harness died" in doc["reason"] and doc["abandoned_utc"]

    proc = cli(tmp_path, "run", str(path), "--resume", str(run_dir), "--loopback", "--no-plots",
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    doc = state(run_dir)
    assert (doc["state"], doc["cases_ok"], doc["cases_failed"]) == ("complete", 2, 0)
    record, = doc["resumes"]
    assert record["accuracy_pass"] == "reused" and set(record["moved_aside"]) == set(half)
    assert sorted(record["cases_to_run"]) == sorted(set(_names(run_dir)) - set(kept))
    for name, (mtime, acc) in kept.items():          # finished cases were not run again
        assert (run_dir / name / "edge.jsonl").stat().st_mtime_ns == mtime
        assert (run_dir / name / "accuracy.json").read_text() == acc
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "accuracy").rglob("*.json")} \
        == accuracy_files
    assert sorted(p.name for p in (run_dir / "superseded").iterdir()) == [f"{h}.1" for h in half]

    proc = cli(tmp_path, "run", str(path), "--loopback", "--no-plots", "--quiet")  # uninterrupted
    assert proc.returncode == 0, proc.stderr
    resumed, whole = (pd.read_csv(d / "summary.csv") for d in run_dirs(tmp_path))
    assert list(resumed["case"]) == list(whole["case"]) == _names(run_dir)
    assert (resumed["status"] == "ok").all() and (whole["status"] == "ok").all()
    assert resumed["final_acc"].tolist() == pytest.approx(whole["final_acc"].tolist(), abs=1e-9)


def _names(run_dir: Path) -> list[str]:
    from harness.config import parse_scenario
    from harness.run.scenario import Options, preflight
    raw = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    scenario = preflight(parse_scenario(raw), Options(emulate=False))[0]
    return [name for name, _, _ in rundir.case_plan(scenario)]
