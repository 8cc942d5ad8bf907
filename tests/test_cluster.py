"""Sweeps on a Ray cluster: without Ray one line says how to install it; (root, Ray) the gate
scenario, cut down, on a one-machine cluster gives a local run's cases, statuses and files."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GATE = ["scenarios/ci.yaml", "--set", "links=[wifi]", "--set", "repetitions=1",
        "--set", "checks=[]", "--quiet", "--no-plots"]


def _run(tmp_path, *extra, hide_ray=False):
    env = {**os.environ, "HIERBENCH_RESULTS": str(tmp_path / "results")}
    prelude = "import sys; sys.modules['ray'] = None; " if hide_ray else ""
    code = (prelude + "from harness.cli import main; "
            f"sys.exit(main({['run', *GATE, *extra]!r}))")
    return subprocess.run([sys.executable, "-c", "import sys; " + code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_cluster_without_ray_says_how_to_install_it(tmp_path):
    out = _run(tmp_path, "--cluster", "local", hide_ray=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "Ray is not installed: make setup-cluster" in out.stderr
    assert not (tmp_path / "results").exists()                # refused before any work


def _layout(run_dir):
    """Case directories with their status and file names. Left out: node.json (the
    cluster's own) and STOP, written only when a timing window stops before its batch cap,
    which varies from run to run on one machine too (seen: 2 of 18 gate cases)."""
    return {d.name: (json.loads((d / "status.json").read_text())["status"],
                     sorted(p.name for p in d.iterdir() if p.name not in ("node.json", "STOP")))
            for d in sorted(run_dir.iterdir()) if (d / "case.json").exists()}


def _fixed_numbers(run_dir):
    """Per case: both exits' accuracy and the full and measured-budget step counts."""
    out = {}
    for d in (d for d in sorted(run_dir.iterdir()) if (d / "case.json").exists()):
        acc = json.loads((d / "accuracy.json").read_text())
        info = json.loads((d / "case_info.json").read_text())
        out[d.name] = (acc["final_acc"], acc["edge_exit_acc"], info["full_steps"],
                       info["budget_steps"])
    return out


@pytest.mark.root
@pytest.mark.usefixtures("nothing_left")
@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="Ray not installed (make setup-cluster installs it)")
def test_gate_on_a_one_machine_cluster_matches_a_local_run(tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for where, extra in ((local, ()), (cluster, ("--cluster", "local"))):
        out = _run(where, *extra)
        assert out.returncode == 0, out.stderr
    runs = {w: next((w / "results" / "ci").iterdir()) for w in (local, cluster)}
    assert _layout(runs[local]) == _layout(runs[cluster])
    assert {s for s, _ in _layout(runs[cluster]).values()} == {"ok"}
    top = {w: sorted(p.name for p in r.iterdir()) for w, r in runs.items()}
    assert top[local] == top[cluster]
    # The numbers that do not depend on timing are equal: accuracy (same seed, same threads:
    # the same updates) and each case's step budget; a window's measured batches may differ.
    assert _fixed_numbers(runs[local]) == _fixed_numbers(runs[cluster])
    for case in (d for d in runs[cluster].iterdir() if (d / "case.json").exists()):
        node = json.loads((case / "node.json").read_text())
        assert node["host"] and node["cpu_model"] and node["ray_node_id"]
    meta = json.loads((runs[cluster] / "meta.json").read_text())
    assert meta["emulation"] == "mininet on the nodes of Ray cluster local"
    assert list(runs[cluster].glob("*/node.json")) and not list(Path("/tmp").glob("hierbench-node-*"))


def test_a_gain_across_two_nodes_is_named(tmp_path):
    """Cases of one link on two machines (a resumed cluster run): the gain says which."""
    import shutil

    from harness.analysis.summary import build_summary
    from test_old_runs import FIXTURES
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "old_run_v1", run_dir)
    for case in run_dir.glob("0*"):
        host = "node-b" if "3g-split" in case.name else "node-a"
        (case / "node.json").write_text(json.dumps({"host": host}))
    summary = build_summary(run_dir).set_index(["link", "method"])
    assert summary.loc[("3g", "hierarchical"), "gain_nodes"] == "vs split: node-a / node-b; "
    assert summary.loc[("wifi", "hierarchical"), "gain_nodes"] == ""
    assert summary.loc[("3g", "split"), "node"] == "node-b"


def test_a_cluster_run_hands_its_timing_pass_to_the_remote_the_cli_gives():
    """The timing pass does not import the cluster pass (harness.run.cluster imports the
    scenario runner, not the other way): with --cluster the CLI hands cluster_pass in as
    Options.remote, and the pass runs no link itself."""
    from types import SimpleNamespace

    from harness.run.scenario import Options, timing_pass
    seen = []
    opts = Options(cluster="HEAD:6379", remote=lambda run, todo: seen.append((run, todo)))
    run = SimpleNamespace(scenario=None, opts=opts)
    timing_pass(run, {}, [("000-case", None, 0)])
    assert seen == [(run, [("000-case", None, 0)])]
