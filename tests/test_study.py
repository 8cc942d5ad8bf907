"""Accuracy studies: the plan, the cache (keys, invalidation, damage), the paired summary, and
a whole study that is killed and resumes from its cache (generated data: seconds)."""
import dataclasses
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.analysis.study import study_summary
from harness.config import parse_scenario
from harness.paths import REPO
from harness.study import cache
from harness.study.plan import trainings

TINY = {"name": "tiny_study", "kind": "accuracy", "dataset": {"name": "fake"},
        "model": {"arch": "vgg16", "width": 0.125, "split": ["conv2", "conv4"],
                  "exit_head": ["dgl", "linear"]},
        "training": {"seeds": [0, 1], "epochs": 1, "batch_size": 64, "schedule": "onecycle",
                     "warmup": 0.2, "nesterov": True},
        "methods": ["hierarchical", "split", "cloud", "edge"], "links": ["3g"],
        "measure": {"curve_every": 4}}


def test_plan_runs_model_by_model_seed_by_seed_with_one_end_to_end_each():
    two = {**TINY, "model": {**TINY["model"], "arch": ["vgg16", "resnet18"],
                             "split": ["conv2", "layer1.0"], "exit_head": "dgl"}}
    assert [t.label for t in trainings(parse_scenario(two))] == [
        "vgg16-e2e-seed0", "vgg16-conv2-dgl-seed0", "vgg16-e2e-seed1", "vgg16-conv2-dgl-seed1",
        "resnet18-e2e-seed0", "resnet18-layer1.0-dgl-seed0", "resnet18-e2e-seed1",
        "resnet18-layer1.0-dgl-seed1"]
    items = trainings(parse_scenario(TINY))
    assert [t.label for t in items] == [
        "vgg16-e2e-seed0", "vgg16-conv2-dgl-seed0", "vgg16-conv2-linear-seed0",
        "vgg16-conv4-dgl-seed0", "vgg16-conv4-linear-seed0",
        "vgg16-e2e-seed1", "vgg16-conv2-dgl-seed1", "vgg16-conv2-linear-seed1",
        "vgg16-conv4-dgl-seed1", "vgg16-conv4-linear-seed1"]
    assert {t.case.method for t in items} == {"edge", "hierarchical"}


def test_cache_key_covers_what_decides_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HIERBENCH_CACHE", str(tmp_path))
    items = trainings(parse_scenario(TINY))
    keys = [cache.training_key(t.case, t.kind, 1) for t in items]
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == len(keys), "all distinct"
    e2e = keys[0]
    assert e2e["split"] is None and e2e["exit_head"] is None, "e2e is split-independent"
    other = parse_scenario({**TINY, "training": {**TINY["training"], "lr": 0.2}})
    assert cache.training_key(trainings(other)[0].case, "end-to-end", 1) != e2e
    assert cache.training_key(items[0].case, "end-to-end", 2) != e2e, "threads are in the key"
    path = cache.store(e2e, {"final_acc": 0.5}, {"created_utc": "x", "git_commit": "0" * 40})
    assert cache.lookup(e2e)["result"] == {"final_acc": 0.5}
    assert str(tmp_path) in str(path)
    path.write_text("{not json")
    assert cache.lookup(e2e) is None, "a damaged entry is trained again, never trusted"


def test_code_change_invalidates(tmp_path, monkeypatch):
    code = tmp_path / "train"
    code.mkdir()
    (code / "methods.py").write_text("a = 1\n")
    monkeypatch.setattr(cache, "TRAIN_CODE", code)
    before = cache.code_version()
    (code / "methods.py").write_text("a = 2\n")
    assert cache.code_version() != before
    (code / "methods.py").write_text("a = 1\n")
    assert cache.code_version() == before


def test_summary_pairs_gaps_by_seed():
    rows = []
    for seed, (e2e, hier, edge) in enumerate([(0.90, 0.88, 0.80), (0.92, 0.91, 0.82),
                                              (0.91, 0.87, 0.81)]):
        rows.append({"kind": "end-to-end", "arch": "vgg16", "split": "-", "exit_head": "-",
                     "seed": seed, "final_acc": e2e, "edge_exit_acc": None})
        rows.append({"kind": "hierarchical", "arch": "vgg16", "split": "conv2",
                     "exit_head": "dgl", "seed": seed, "final_acc": hier,
                     "edge_exit_acc": edge})
    s = study_summary(pd.DataFrame(rows)).set_index("kind")
    assert s.loc["end-to-end", "final_acc"] == pytest.approx(0.91)
    h = s.loc["hierarchical"]
    assert h["gap"] == pytest.approx(-0.02)            # median of -0.02, -0.01, -0.04
    # CI of the mean of the paired differences: t(2) = 4.303, sd 0.01528 / sqrt 3
    assert h["gap_ci"] == pytest.approx(4.303 * 0.015275 / 3 ** 0.5, rel=1e-3)
    assert h["gap_pairs"] == 3 and h["edge_gap"] == pytest.approx(-0.10)


def _cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


@pytest.mark.slow
def test_study_killed_then_resumed(tmp_path):
    """A study killed after some trainings resumes: those are reused, the rest trained, and
    the result equals an uninterrupted study's (same seeds, same code, same threads)."""
    scen = tmp_path / "tiny.yaml"
    scen.write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "HIERBENCH_CACHE": str(tmp_path / "cache"),
           "HIERBENCH_RESULTS": str(tmp_path / "results")}
    entries = tmp_path / "cache" / "accuracy"
    proc = _cli(["run", str(scen), "--no-plots"], env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(entries.glob("*.json"))) < 3:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(list(entries.glob("*.json")))
    assert 3 <= kept < 10, f"killed with {kept} of 10 trainings cached"
    done = _cli(["run", str(scen), "--no-plots"], env)
    out = done.communicate(timeout=300)[0]
    assert done.returncode == 0, out
    assert f"{kept} reused from the cache, {10 - kept} to train" in out
    killed, run = sorted((tmp_path / "results" / "tiny_study").iterdir())
    assert json.loads((killed / "run_status.json").read_text())["state"] == "abandoned"
    table = pd.read_csv(run / "study.csv")
    assert len(table) == 10 and (table["how"] == "reused").sum() == kept
    assert table["source"].str.contains(str(entries)).all()
    again = _cli(["run", str(scen), "--no-plots"], env)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and "10 reused from the cache, 0 to train" in out, out
    rerun = pd.read_csv(sorted((tmp_path / "results" / "tiny_study").iterdir())[-1] / "study.csv")
    assert rerun["final_acc"].tolist() == table["final_acc"].tolist()
    assert Path(run / "study_summary.csv").exists() and Path(run / "study_runtime.csv").exists()
    modelled = pd.read_csv(run / "study_runtime.csv")
    assert modelled["runtime_source"].str.startswith("modelled").all()


def test_selection_takes_the_fastest_split_within_the_budget():
    from harness.study.select import Candidate, choose
    table = [Candidate("conv2", 0.030, 0.004, 10.0), Candidate("conv7", 0.008, 0.003, 14.0),
             Candidate("conv10", 0.002, 0.002, 30.0), Candidate("conv4", 0.012, 0.005, 12.0)]
    best, why = choose(table, 0.01)
    assert best.split == "conv7"
    assert "fastest of 2 within budget" in why and "conv2 (10.0 s, drop 3.00)" in why
    assert "conv4 (12.0 s, drop 1.20)" in why
    assert choose(table, 0.05)[0].split == "conv2"
    assert choose(table, 0.002)[0].split == "conv10"
    none, why = choose(table, 0.001)
    assert none is None and "no split within a drop of 0.10 points" in why


def test_auto_needs_a_budget_or_the_runtime_model():
    from harness.errors import HarnessError
    ok = parse_scenario({"name": "x", "model": {"split": "auto"},
                         "selection": {"max_accuracy_drop": 0.01}})
    assert ok.splits == ("auto",) and ok.selection == {"max_accuracy_drop": 0.01}
    both = parse_scenario({"name": "x", "model": {"split": ["auto", "conv4"]},
                           "selection": {"by": "runtime"}})
    assert both.splits == ("auto", "conv4") and both.selection == {"by": "runtime"}
    assert all(c.model.split == "conv4" for c in both.cases())    # before the pick: fixed only
    for bad, where in [({"model": {"split": "auto"}}, "selection: required"),
                       ({"model": {"split": "auto"}, "selection": {"by": "accuracy"}},
                        "selection.by: expected runtime"),
                       ({"model": {"split": "auto"},
                         "selection": {"by": "runtime", "max_accuracy_drop": 0.01}},
                        "selection.by: expected runtime alone"),
                       ({"model": {"split": "auto"}, "selection": {}},
                        "expected max_accuracy_drop or by: runtime"),
                       ({"selection": {"max_accuracy_drop": 0.01}}, "only with"),
                       ({"model": {"split": "auto"}, "selection": {"max_accuracy_drop": 2}},
                        "max_accuracy_drop"),
                       ({"model": {"split": "auto"}, "selection": {"budget": 0.1}}, "selection")]:
        with pytest.raises(HarnessError, match=where):
            parse_scenario({"name": "x", **bad})


def test_auto_by_runtime_picks_the_models_fastest_split_per_link_beside_fixed_ones():
    """selection {by: runtime}: per link the split the runtime model predicts fastest for
    hierarchical training; the fixed split runs on every link too, and nothing else."""
    from harness.catalog import split_points
    from harness.emulation.links import resolve_links
    from harness.predict.splits import predict_case
    from harness.study.select import resolve_auto
    s = parse_scenario({"name": "x", "model": {"arch": "vgg16", "split": ["auto", "conv2"]},
                        "links": ["3g", "wifi"], "selection": {"by": "runtime"},
                        "dataset": {"name": "fashion_mnist", "subset": 6400},
                        "measure": {"timing_batches": 10}})
    s, profiles = resolve_links(s)
    lines = []
    r = resolve_auto(s, profiles, lines.append)
    assert len(r.picked_splits) == 2 and len(lines) == 2
    for arch, link, pick in r.picked_splits:
        case = next(c for c in s.cases())
        times = {sp: predict_case(dataclasses.replace(
            case, model=dataclasses.replace(case.model, split=sp), method="hierarchical",
            link=link), profiles[link], 100).total_s for sp in split_points(arch)}
        assert pick == min(times, key=times.get)
        assert {c.model.split for c in r.cases() if c.link == link} == {pick, "conv2"}
    assert all("by the runtime model" in ln and "accuracy not considered" in ln for ln in lines)


def test_a_dilated_run_picks_its_splits_again_under_the_tcp_its_workers_use():
    """The picks model the workers' TCP (the kernel's default when tcp_cc is unset); when
    dilation turns BBR into reno they are made again under reno, with figures the cases'
    own predictions share (the paper table's model column), and the dilation kept."""
    from types import SimpleNamespace

    from harness.emulation.links import resolve_links
    from harness.emulation.plan import workers_cc
    from harness.predict.splits import predict_case
    from harness.run.virtual import picks_under_cc
    from harness.study.select import resolve_auto
    s = parse_scenario({"name": "x", "model": {"arch": "vgg16", "split": ["auto", "conv2"]},
                        "links": ["3g"], "selection": {"by": "runtime"},
                        "dataset": {"name": "fashion_mnist", "subset": 6400},
                        "measure": {"timing_batches": 10}})
    s, profiles = resolve_links(s)
    lines = []
    opts = SimpleNamespace(echo=lines.append, resolve=lambda sc, pr: resolve_auto(sc, pr, lines.append))
    first = opts.resolve(s, profiles)
    assert f"s modelled with TCP {workers_cc(None)}, fastest of" in lines[0]
    assert picks_under_cc(first, s, profiles, opts) is first and len(lines) == 1
    dilated = dataclasses.replace(first, tcp_cc="reno",
                                  compute=dataclasses.replace(first.compute, dilation=1.3))
    out = picks_under_cc(dilated, s, profiles, opts)
    assert lines[1].startswith("split: auto picked again with TCP reno")
    assert "s modelled with TCP reno, fastest of" in lines[2] and len(lines) == 3
    assert out.tcp_cc == "reno" and out.compute.dilation == 1.3
    (_, _, pick), = out.picked_splits
    case = next(c for c in s.cases())
    case = dataclasses.replace(case, model=dataclasses.replace(case.model, split=pick),
                               method="hierarchical", link="3g")
    reno_s = predict_case(case, profiles["3g"], 100, bbr=False).total_s
    assert f"{pick}: {reno_s:.1f} s modelled with TCP reno" in lines[2]
    assert {c.model.split for c in out.cases()} == {pick, "conv2"}


def test_auto_without_a_cached_study_says_so_before_any_work(tmp_path, monkeypatch):
    from harness.emulation.links import resolve_links
    from harness.errors import HarnessError
    from harness.study.select import resolver
    monkeypatch.setenv("HIERBENCH_CACHE", str(tmp_path))
    s = parse_scenario({"name": "x", "model": {"split": "auto"}, "links": ["3g"],
                        "selection": {"max_accuracy_drop": 0.01}})
    s, profiles = resolve_links(s)
    with pytest.raises(HarnessError, match="run 'run_bench.py run scenarios/accuracy.yaml'"):
        resolver(print, False)(s, profiles)
    with pytest.raises(HarnessError, match="not with --loopback"):
        resolver(print, True)(s, profiles)


def test_time_to_accuracy_from_each_seeds_curve_on_the_modelled_runtime(tmp_path):
    from harness.analysis.study import tta_table
    (tmp_path / "trainings").mkdir()
    curves = {0: [0.1, 0.86, 0.91], 1: [0.1, 0.84, 0.905], 2: [0.1, 0.87, 0.89]}
    for seed, accs in curves.items():
        doc = {"label": f"x{seed}", "kind": "end-to-end",
               "key": {"arch": "vgg16", "kind": "end-to-end", "split": None, "exit_head": None,
                       "seed": seed, "recipe": {"epochs": 2}},
               "result": {"curve": [{"step": s, "final_acc": a} for s, a in
                                    zip((0, 50, 100), accs)]}}
        (tmp_path / "trainings" / f"{seed}.json").write_text(json.dumps(doc))
    pd.DataFrame([{"arch": "vgg16", "split": "conv2", "exit_head": "-", "method": "edge",
                   "link": "3g", "predicted_s": 200.0}]).to_csv(tmp_path / "study_runtime.csv",
                                                                index=False)
    t = tta_table(tmp_path, (0.85, 0.90)).set_index("target")
    # 0.85: seeds reach it at steps 50, 100, 50 of 100 -> 100 s, 200 s, 100 s: median 100 s
    assert t.loc[0.85, "tta_s"] == pytest.approx(100.0) and t.loc[0.85, "reached"] == 3
    assert t.loc[0.85, "tta_ci_s"] == pytest.approx(4.303 * 57.735 / 3 ** 0.5, rel=1e-3)
    # 0.90: seed 2 never gets there: no time, and the table says 2 of 3 reached it
    assert math.isnan(t.loc[0.90, "tta_s"]) and t.loc[0.90, "reached"] == 2


def test_a_benchmark_case_gets_converged_accuracy_only_from_a_complete_study_cache(
        tmp_path, monkeypatch):
    """Every seed of the same model, width, dataset, split and head cached: median, CI and the
    paired gap; a seed missing or the training code changed: nothing (the short-budget figure
    stays, labelled)."""
    from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig
    from harness.study import reuse
    monkeypatch.setenv("HIERBENCH_CACHE", str(tmp_path / "cache"))
    study_file = tmp_path / "accuracy.yaml"
    study_file.write_text(yaml.safe_dump({**TINY, "training": {**TINY["training"],
                                                              "seeds": [0, 1, 2]}}))
    monkeypatch.setattr(reuse, "STUDY", study_file)
    study = parse_scenario(yaml.safe_load(study_file.read_text()))
    accs = {("end-to-end", None): [0.90, 0.92, 0.91], ("hierarchical", "conv4"): [0.89, 0.915, 0.90]}
    stored = []
    for t in trainings(study):
        m = t.case.model
        split = m.split if t.kind == "hierarchical" else None
        if (t.kind, split) not in accs or (t.kind == "hierarchical" and m.exit_head != "dgl"):
            continue
        acc = accs[(t.kind, split)][t.case.training.seed]
        stored.append(cache.store(cache.training_key(t.case, t.kind, 1),
                                  {"final_acc": acc, "edge_exit_acc": acc - 0.05},
                                  {"created_utc": "x", "git_commit": "0" * 40}))
    bench = Case(DatasetConfig("fake", subset=256), ModelConfig("vgg16", 0.125, "conv4", "dgl"),
                 TrainConfig(batch_size=32), ComputeConfig(), "hierarchical", "fp32", "3g")
    got = reuse.converged_for(bench)
    assert got["seeds"] == 3 and got["final_acc"] == pytest.approx(0.90)
    assert got["gap"] == pytest.approx(-0.01) and got["gap_ci"] > 0
    assert "converged" in got["source"] and "seeds 0, 1, 2" in got["source"]
    e2e = reuse.converged_for(Case(bench.dataset, bench.model, bench.training, bench.compute,
                                   "split", "fp32", "3g"))
    assert e2e["final_acc"] == pytest.approx(0.91)
    other_head = Case(bench.dataset, ModelConfig("vgg16", 0.125, "conv4", "linear"),
                      bench.training, bench.compute, "hierarchical", "fp32", "3g")
    assert reuse.converged_for(other_head) is None, "that head was not cached"
    stored[-1].unlink()
    assert reuse.converged_for(bench) is None, "one seed missing: nothing"
    monkeypatch.setattr(cache, "code_version", lambda: "another")
    assert reuse.converged_for(Case(bench.dataset, bench.model, bench.training, bench.compute,
                                    "split", "fp32", "3g")) is None, "training code changed"


def test_auto_chooses_per_link_from_the_cached_study_and_the_cases_follow(tmp_path, monkeypatch):
    from harness.emulation.links import resolve_links
    from harness.study import reuse
    from harness.study.select import resolver
    monkeypatch.setenv("HIERBENCH_CACHE", str(tmp_path / "cache"))
    study_file = tmp_path / "accuracy.yaml"
    study_file.write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "exit_head": "dgl"},
                                          "training": {**TINY["training"], "seeds": [0, 1, 2]}}))
    monkeypatch.setattr(reuse, "STUDY", study_file)
    # conv4 is the faster cut on this generated data (smaller activations), but costs 3 points
    accs = {None: [0.90, 0.92, 0.91], "conv2": [0.895, 0.915, 0.905], "conv4": [0.87, 0.89, 0.88]}
    for t in trainings(parse_scenario(yaml.safe_load(study_file.read_text()))):
        split = t.case.model.split if t.kind == "hierarchical" else None
        cache.store(cache.training_key(t.case, t.kind, 1),
                    {"final_acc": accs[split][t.case.training.seed], "edge_exit_acc": 0.8},
                    {"created_utc": "x", "git_commit": "0" * 40})
    bench = {"name": "b", "dataset": {"name": "fake"}, "links": ["3g", "wifi"],
             "model": {"arch": "vgg16", "width": 0.125, "split": "auto"},
             "training": {"batch_size": 64}, "methods": ["hierarchical", "split"]}
    for budget, pick in ((0.01, "conv2"), (0.05, "conv4")):
        lines = []
        s, profiles = resolve_links(parse_scenario({**bench, "selection": {
            "max_accuracy_drop": budget}}))
        chosen = resolver(lines.append, False)(s, profiles)
        assert chosen.chosen_splits == (("vgg16", "3g", pick), ("vgg16", "wifi", pick))
        assert {(c.link, c.model.split) for c in chosen.cases()} == {("3g", pick), ("wifi", pick)}
        assert all(line.startswith(f"split for vgg16 over ") for line in lines) and len(lines) == 2
        if pick == "conv2":
            assert "accuracy drop 0.50 ± 0.00 points (budget 1.00), fastest of 1 within " \
                   "budget; faster but over budget: conv4" in lines[0]
        else:
            assert "accuracy drop 3.00 ± 0.00 points (budget 5.00), fastest of 2" in lines[0]


def test_a_failing_training_is_reported_and_the_others_go_on():
    """One training that raises (here: a case that is no case) does not stop the rest."""
    from harness.study.runner import _train_here
    good = trainings(parse_scenario({**TINY, "training": {**TINY["training"], "seeds": [0]},
                                     "model": {**TINY["model"], "split": ["conv2"],
                                               "exit_head": ["dgl"]}}))[0].case.to_dict()
    kept = {}
    failed = _train_here({0: {"model": "not a case"}, 1: good}, 1, 0, 2,
                         lambda i, result, node: kept.update({i: (result, node)}))
    assert [i for i, _ in failed] == [0] and failed[0][1].count("\n") == 0
    assert list(kept) == [1] and 0 < kept[1][0]["final_acc"] <= 1 and kept[1][1] is None


def test_a_nodes_reply_is_cached_only_from_the_same_training_code():
    from harness.study.cluster import _checked
    code = cache.code_version()
    ok = {"result": {"final_acc": 0.91}, "node": {}, "code": code}
    assert _checked(ok, code) is None
    assert "other training code" in _checked({**ok, "code": "f" * 64}, code)
    assert "not one" in _checked({**ok, "result": {"final_acc": float("nan")}}, code)
    assert "not one" in _checked({**ok, "result": {"final_acc": 1.5}}, code)
    assert "no result" in _checked(None, code)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="Ray not installed (make setup-cluster installs it)")
def test_a_study_on_a_one_machine_cluster_equals_a_local_one(tmp_path):
    """The same trainings as Ray tasks: the same accuracies (same seeds, code and threads),
    each cached on the head with the node that trained it."""
    small = {**TINY, "training": {**TINY["training"], "seeds": [0]},
             "model": {**TINY["model"], "split": ["conv2"], "exit_head": ["dgl"]}}
    scen = tmp_path / "small.yaml"
    scen.write_text(yaml.safe_dump(small))
    tables = {}
    for where, extra in (("local", []), ("cluster", ["--cluster", "local"])):
        env = {**os.environ, "HIERBENCH_CACHE": str(tmp_path / where / "cache"),
               "HIERBENCH_RESULTS": str(tmp_path / where / "results")}
        proc = _cli(["run", str(scen), "--no-plots", *extra], env)
        out = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, out
        assert "0 reused from the cache, 2 to train" in out
        run = next((tmp_path / where / "results" / "tiny_study").iterdir())
        tables[where] = pd.read_csv(run / "study.csv")
        entries = [json.loads(p.read_text())
                   for p in (tmp_path / where / "cache" / "accuracy").glob("*.json")]
        assert len(entries) == 2
        assert all(("ray_node_id" in e["provenance"]) == (where == "cluster") for e in entries)
    assert "Ray cluster local" in json.loads((run / "meta.json").read_text())["emulation"]
    for col in ("label", "final_acc", "edge_exit_acc"):
        assert tables["local"][col].fillna(-1).tolist() == tables["cluster"][col].fillna(-1).tolist()
