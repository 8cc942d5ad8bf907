"""A run directory written by an earlier release still plots, checks and totals the same.

The fixture is a real emulated run of scenarios/ci.yaml (one repetition, under Mininet, commit
321fbe86, before the package was split into stages), trimmed of its model weights and plots.
`old_run_v1.totals.txt` and `old_run_v1.check.txt` are what that release printed for it.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
PLOTS = ("runtime", "gain", "accuracy_vs_time", "timeline", "bytes", "predicted")


@pytest.fixture
def old_run(tmp_path):
    run_dir = tmp_path / "ci" / "20261130T214751Z_321fbe86"
    shutil.copytree(FIXTURES / "old_run_v1", run_dir)
    return run_dir


def cli(*args):
    return subprocess.run([sys.executable, "run_bench.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_totals_unchanged(old_run):
    out = cli("totals", old_run)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{old_run}: training-phase totals per case (seconds, bytes; accuracy off the clock)"
    expected = (FIXTURES / "old_run_v1.totals.txt").read_text().splitlines()
    assert lines[1:] == expected[1:]


def test_check_unchanged(old_run):
    out = cli("check", old_run, "--baseline", FIXTURES / "old_run_v1.baseline.json")
    assert out.returncode == 1, "the old release found the wifi gain below its floor"
    # The release's five columns, unchanged; later columns (the CI, repetitions) are new.
    shown = [line.split()[:5] for line in out.stdout.splitlines()[1:3]]
    expected = [line.split() for line in
                (FIXTURES / "old_run_v1.check.txt").read_text().splitlines()[1:3]]
    assert shown == expected
    assert all(line.split()[5] == "n/a" for line in out.stdout.splitlines()[1:3]), \
        "an old run has no CI: the value itself is judged, as before"


def test_plots_unchanged(old_run):
    out = cli("plot", old_run)
    assert out.returncode == 0, out.stderr
    written = sorted(Path(line).name for line in out.stdout.splitlines())
    assert written == sorted(f"{name}.{ext}" for name in PLOTS for ext in ("png", "svg"))
    assert all((old_run / "plots" / name).stat().st_size > 5000 for name in written)
