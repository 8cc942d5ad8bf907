"""Run an accuracy study: every training the cache lacks, side by side, each cached as it ends.

    python run_bench.py run scenarios/accuracy.yaml        # again after a kill: resumes

Each training runs in a fresh (spawned) process at the scenario's torch thread count, as many
at once as the cores allow; the moment one finishes, its entry is written to the cache
(harness.study.cache), so a study killed at any point loses at most the trainings then
running. A rerun of the same scenario reuses every cached entry and trains only the rest; the
run directory says, per training, whether it was trained in this run or reused and from where.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.files import write_json
from harness.machine import cpu_model, git_state
from harness.run import rundir
from harness.run.accuracy import train_once
from harness.study import cache
from harness.study.plan import Training, trainings
from harness.train.batches import load_case_data, total_steps


def run_study(scenario, raw: dict, opts, resume_dir=None) -> None:
    """Train (or reuse) every training of the study into a new run directory."""
    if resume_dir:
        raise HarnessError("--resume: an accuracy study resumes by itself (every finished "
                           "training is cached): run the same scenario again")
    items = trainings(scenario)
    train, test = load_case_data(items[0].case)     # data errors before any work
    threads = scenario.compute.edge_threads
    run_dir = rundir.new_run_dir(scenario.name, extra_meta={
        "emulation": "none: an accuracy study (trainings only, no links)" + (
            f"; trained on the nodes of Ray cluster {opts.cluster}" if opts.cluster else ""),
        "scenario": scenario.name, "kind": "accuracy", "train_code": cache.code_version()})
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    opts.echo(f"run directory: {run_dir}")
    keys = [cache.training_key(t.case, t.kind, threads) for t in items]
    hits = [cache.lookup(k) for k in keys]
    todo = [i for i, hit in enumerate(hits) if hit is None]
    steps = total_steps(items[0].case, len(train))
    workers = max(1, min(len(todo) or 1, (os.cpu_count() or 1) // threads))
    opts.echo(f"accuracy study: {len(items)} trainings of {steps} steps "
              f"({scenario.training.epochs} epoch(s) of {len(train)} samples), "
              f"{len(items) - len(todo)} reused from the cache, {len(todo)} to train, "
              + (f"as Ray tasks on cluster {opts.cluster}" if opts.cluster else
                 f"{workers} at a time") + f" at {threads} thread(s) each")
    for i, hit in enumerate(hits):
        if hit is not None:
            _record(run_dir, i, items[i], keys[i], hit["result"], "reused", hit)
    rundir.write_state(run_dir, "running", cases_total=len(items),
                       harness=rundir.process_identity())
    try:
        _train(items, keys, todo, threads, scenario.measure.curve_every, run_dir, opts, workers)
    except KeyboardInterrupt:
        rundir.write_state(run_dir, "partial", "interrupted (finished trainings are cached: "
                           "run the scenario again to resume)", cases_total=len(items))
        raise HarnessError(f"interrupted: {run_dir} is partial; every finished training is "
                           f"cached, run the same scenario again to resume") from None
    rundir.write_state(run_dir, "complete", cases_total=len(items), cases_failed=0)
    finish(run_dir, scenario, steps // scenario.training.epochs, opts)
    opts.echo(f"results in {run_dir}")


def finish(run_dir: Path, scenario, n_per_epoch: int, opts) -> None:
    """The tables, the modelled runtimes per link and the figures of a finished study."""
    from harness.analysis.study import tta_table, write_tables
    from harness.analysis.studyplots import fig_accuracy_vs_split, fig_runtime_accuracy
    from harness.study.runtime import modelled_runtimes
    runtimes = modelled_runtimes(scenario, n_per_epoch)
    runtimes.to_csv(run_dir / "study_runtime.csv", index=False)
    summary = write_tables(run_dir, opts.echo)
    tta_table(run_dir).to_csv(run_dir / "study_tta.csv", index=False)
    opts.echo(f"time to 0.85 and 0.90 per model, link, method and split (modelled runtime, "
              f"accuracy measured per seed): {run_dir / 'study_tta.csv'}")
    if not opts.plots:
        return
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    for name, fig in (("accuracy_vs_split", fig_accuracy_vs_split(summary)),
                      ("runtime_accuracy", fig_runtime_accuracy(summary, runtimes))):
        fig.savefig(plots / f"{name}.png")
        opts.echo(f"plot: {plots / f'{name}.png'}")


def _train(items: list[Training], keys: list[dict], todo: list[int], threads: int,
           curve_every: int, run_dir: Path, opts, workers: int) -> None:
    """Train `todo` (here, or as Ray tasks under --cluster); cache and record each the moment
    it ends. A training that fails leaves the others going; the study then ends partial."""
    if not todo:
        return
    began, done = time.monotonic(), 0

    def keep(i: int, result: dict, node: dict | None) -> None:
        nonlocal done
        provenance = _provenance(node)
        path = cache.store(keys[i], result, provenance)
        _record(run_dir, i, items[i], keys[i], result, "trained",
                {"path": str(path), "provenance": provenance})
        done += 1
        left = (time.monotonic() - began) / done * (len(todo) - done)
        opts.echo(f"[{done}/{len(todo)}] {items[i].label}: final {result['final_acc']:.4f}"
                  + (f", edge exit {result['edge_exit_acc']:.4f}"
                     if result.get("edge_exit_acc") is not None else "")
                  + (f" on {node['host']}" if node else "")
                  + f" ({result['train_wall_s']:.0f} s; about {left / 60:.0f} min left)")

    cases = {i: items[i].case.to_dict() for i in todo}
    if opts.cluster:
        from harness.study.cluster import train_on_cluster
        failed = train_on_cluster(cases, threads, curve_every, opts, keep)
    else:
        failed = _train_here(cases, threads, curve_every, workers, keep)
    if failed:
        for i, reason in failed:
            opts.echo(f"FAILED {items[i].label}: {reason}")
        reason = (f"{len(failed)} of {len(todo)} trainings failed (first: "
                  f"{items[failed[0][0]].label}: {failed[0][1]})")
        rundir.write_state(run_dir, "partial", reason + "; the others are cached",
                           cases_total=len(items))
        raise HarnessError(f"{reason}; every finished training is cached: run the same "
                           f"scenario again to retry the rest ({run_dir} is partial)")


def _train_here(cases: dict[int, dict], threads: int, curve_every: int, workers: int,
                keep) -> list[tuple[int, str]]:
    """Train `cases` side by side in spawned processes; [(index, reason)] of those that failed."""
    failed = []
    ctx = multiprocessing.get_context("spawn")      # torch's thread pools do not survive fork
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        running = {pool.submit(train_once, case, threads, curve_every): i
                   for i, case in cases.items()}
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = running.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:        # noqa: BLE001 - reported, the rest go on
                        failed.append((i, f"{type(exc).__name__}: {exc}".splitlines()[0]))
                        continue
                    keep(i, result, None)
        except BaseException:
            for future in running:
                future.cancel()
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()             # a killed study must not leave trainings running
            raise
    return failed


def _provenance(node: dict | None) -> dict:
    """When, from which commit (the head's, for a node: a node's code hash must match it) and
    on which machine a training ran."""
    commit, dirty = git_state()
    where = ({"cpu_model": node["cpu_model"], "host": node["host"],
              "ray_node_id": node["ray_node_id"]} if node else
             {"cpu_model": cpu_model(), "host": os.uname().nodename})
    return {"created_utc": rundir.utc_now(), "git_commit": commit, "git_dirty": dirty, **where}


def _record(run_dir: Path, i: int, item: Training, key: dict, result: dict, how: str,
            hit: dict) -> None:
    """trainings/<nn>-<label>.json: the key, the result, and where it came from."""
    where = run_dir / "trainings"
    where.mkdir(exist_ok=True)
    source = (f"trained in this run, cached as {hit['path']}" if how == "trained" else
              f"reused from the cache {hit['path']} (trained {hit['provenance']['created_utc']}"
              f" at commit {hit['provenance']['git_commit'][:8]})")
    write_json(where / f"{i:03d}-{item.label}.json",
               {"label": item.label, "kind": item.kind, "key": key, "result": result,
                "how": how, "source": source}, indent=1)
