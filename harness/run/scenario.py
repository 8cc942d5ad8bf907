"""A scenario in, a results directory out: preflight, accuracy pass, emulated timing, summary.

    sudo .venv/bin/python run_bench.py run scenarios/quick.yaml

Phases, one function each: `preflight` (everything a user can get wrong, before any work),
`accuracy_pass` (once per model/split/codec/method on unshaped loopback, when the scenario
measures timing on a batch budget), `timing_pass` (per link profile: build the Mininet link,
calibrate it, run every case and repetition inside it), `finish` (summary.csv, plots, state).
An interrupted or failed run keeps its finished cases and says it is partial.
"""
from __future__ import annotations

import dataclasses
import json
import random
import signal
from collections.abc import Callable
from pathlib import Path

import yaml

from harness.analysis.summary import build_summary
from harness.analysis.totals import load_events, steady
from harness.config import Case, Scenario
from harness.errors import HarnessError
from harness.run.case import evaluate_case, run_case
from harness.run.accuracy import accuracy_pass
from harness.run.launchers import LocalLauncher, MininetLauncher
from harness.run.progress import Progress
from harness.run.rundir import new_run_dir
from harness.run.window import Window
from harness.train.batches import batches_per_epoch, load_case_data


@dataclasses.dataclass
class Options:
    emulate: bool = True              # False: loopback, no shaping (labelled as such)
    allow_no_delay: bool = False
    quiet: bool = False
    plots: bool = True
    echo: Callable[[str], None] = print


def preflight(scenario: Scenario, opts: Options) -> tuple[dict, object, object]:
    """Profiles, data and emulation prerequisites; returns (profiles, train, test)."""
    from harness.emulation.links import load_profile
    profiles = {name: load_profile(name) for name in scenario.links} if opts.emulate else {}
    train, test = load_case_data(scenario.cases()[0])
    if opts.emulate:
        from harness.emulation.doctor import checks, emulation_ok
        rows = checks()
        if not emulation_ok(rows):
            missing = [name for name, ok, _ in rows if not ok]
            raise HarnessError(f"network emulation unavailable ({', '.join(missing)}): run "
                               f"'run_bench.py doctor' for fixes, or pass --loopback for an "
                               f"unshaped run")
        _warm_profiles(scenario, opts)
    return profiles, train, test


def _warm_profiles(scenario: Scenario, opts: Options) -> None:
    """Profile each model once (cached per machine) for the runtime model's predictions."""
    from harness.predict.splits import profiles_for
    c = scenario.compute
    for arch in scenario.archs:
        if not opts.quiet:
            opts.echo(f"profiling {arch} per block for the runtime model (cached per machine)")
        profiles_for(arch, scenario.model.width, scenario.dataset.name,
                     scenario.training.batch_size, c.edge_threads, c.cloud_threads)


def full_steps(case: Case, n_train: int) -> int:
    return batches_per_epoch(case, n_train) * case.training.epochs


def timed_case(case: Case, scenario: Scenario) -> Case:
    """The case as run for timing: the batch budget, when the scenario sets one."""
    n = scenario.measure.timing_batches
    if n is None:
        return case
    training = dataclasses.replace(case.training, max_batches=n, epochs=1)
    return dataclasses.replace(case, training=training)


@dataclasses.dataclass
class Run:
    """What every phase of one scenario run shares."""
    scenario: Scenario
    run_dir: Path
    opts: Options
    train: object
    test: object
    progress: Progress
    accuracy: dict | None = None      # (arch, split, codec, method) -> accuracy pass result
    counter: int = 0                  # case directories made so far


def run_one(run: Run, case: Case, case_dir: Path, launcher, rep: int, link_profile=None) -> None:
    """One emulated case: run, record what was measured and how, evaluate if needed."""
    scenario, train, test, progress = run.scenario, run.train, run.test, run.progress
    timed = timed_case(case, scenario)
    steps, n_full = full_steps(timed, len(train)), full_steps(case, len(train))
    show = progress.start(f"{case.label} rep {rep}", steps, case_dir, case.method)
    window = None
    if scenario.measure.timing_batches is not None:
        m = scenario.measure
        window = Window(case_dir, case.method, m.min_batches, m.ci_target, n_full,
                        m.max_seconds)

    def poll():
        show()
        if window is not None:
            window.poll()
    try:
        totals = run_case(timed, case_dir, launcher, on_poll=poll)
    except HarnessError as exc:
        progress.finish(f"{case.label} rep {rep}: FAILED: {exc}")
        raise
    info = {"rep": rep, "full_steps": n_full, "measured_steps": totals["steps"],
            "budget_steps": steps, "launcher": launcher.describe,
            "stopped_early": bool(window and window.stopped)}
    cached = n_full - batches_per_epoch(case, len(train)) if case.method == "cloud" else 0
    info["steady"] = steady(load_events(case_dir), n_full, case.method, cached)
    if link_profile is not None:
        from harness.predict.splits import predict_case
        per_epoch = batches_per_epoch(case, len(train))
        for key, n, epochs in (("predicted_s", totals["steps"], 1),
                               ("predicted_full_s", per_epoch, case.training.epochs)):
            pred = predict_case(case, link_profile, n, epochs)
            info[key] = pred.total_s
        info.update(predicted_bottleneck=pred.bottleneck, predicted_busy=pred.busy,
                    predicted_by="runtime model (harness/predict/runtime.py)")
    (case_dir / "case_info.json").write_text(json.dumps(info) + "\n")
    if run.accuracy is None:
        acc = evaluate_case(timed, case_dir, train, test)
        acc["acc_source"] = f"measured: this emulated run ({steps} batches), {len(test)} test samples"
        acc["test_samples"] = len(test)
    else:
        acc = run.accuracy[(case.model.arch, case.model.split, case.codec, case.method)]
    (case_dir / "accuracy.json").write_text(json.dumps(acc) + "\n")
    progress.finish(f"{case.label} rep {rep}: {totals['wall_s']:.2f} s for {totals['steps']} "
                    f"batches{_steady_text(info['steady'])}, final acc {acc['final_acc']:.4f}")


def _steady_text(s: dict) -> str:
    """'; steady 0.812 s/batch +- 3.1%, 100 batches est. 81.4 +- 2.5 s' (when measured)."""
    if not s or s.get("interval_s") is None or s["interval_s"] != s["interval_s"]:
        return ""
    rel = s["interval_ci_s"] / s["interval_s"]
    ci = "CI n/a" if rel != rel else f"+- {rel:.1%}"
    return (f"; steady {s['interval_s']:.3f} s/batch {ci}, full budget est. {s['est_s']:.1f}"
            + ("" if s["est_ci_s"] != s["est_ci_s"] else f" +- {s['est_ci_s']:.1f}") + " s")


def timing_pass(run: Run, profiles: dict) -> None:
    """Per link profile: one topology, calibrated first, all cases and repetitions inside it."""
    from harness.emulation.linkcheck import calibrate, require_ok, write_linkcheck
    scenario, opts = run.scenario, run.opts
    for link_name in scenario.links:
        cases = [c for c in scenario.cases() if c.link == link_name]
        if not opts.emulate:
            _run_cases(run, cases, LocalLauncher(), None, None)
            continue
        from harness.emulation.topology import emulated_link
        with emulated_link(profiles[link_name], scenario.compute,
                           allow_no_delay=opts.allow_no_delay) as link:
            check = calibrate(link, profiles[link_name], scenario.tolerances,
                              scenario.measure.calibrate_seconds)
            check["measured_at"] = "topology start, before its cases"
            link_dir = run.run_dir / "links" / link_name
            link_dir.mkdir(parents=True)
            write_linkcheck(link_dir, check)
            if not opts.quiet:
                opts.echo(_linkcheck_line(check))
            require_ok(check)
            _run_cases(run, cases, MininetLauncher(link), check, profiles[link_name])


def _run_cases(run: Run, cases: list[Case], launcher, check: dict | None, link_profile) -> None:
    """Every case and repetition on one link; the order within a repetition is shuffled with
    the scenario's seed, so drift (thermal, background load) does not favour one method."""
    for rep in range(run.scenario.repetitions):
        order = list(cases)
        random.Random(run.scenario.training.seed * 1000 + rep).shuffle(order)
        for case in order:
            case_dir = run.run_dir / f"{run.counter:03d}-{case.label}-r{rep}"
            run.counter += 1
            try:
                run_one(run, case, case_dir, launcher, rep, link_profile)
            finally:
                if check is not None and case_dir.exists():
                    (case_dir / "linkcheck.json").write_text(json.dumps(check, indent=2) + "\n")


def _linkcheck_line(c: dict) -> str:
    m, cfg = c["measured"], c["configured"]
    loss = "".join(f", loss {d} {m[f'{d}_loss_pct']:.2f}/{cfg.get(f'{d}_loss_pct', 0):g}%"
                   for d in ("up", "down") if f"{d}_loss_pct" in m)
    return (f"link {c['profile']}: up {m['up_mbps']:.2f}/{cfg['up_mbps']:g} Mbit/s, down "
            f"{m['down_mbps']:.2f}/{cfg['down_mbps']:g} Mbit/s, RTT {m['rtt_ms']:.1f}/"
            f"{cfg['rtt_ms']:g} ms{loss} (measured/configured): "
            f"{'ok' if c['ok'] else 'OUT OF TOLERANCE'}")


def write_state(run_dir: Path, state: str, reason: str = "", **extra) -> None:
    (run_dir / "run_status.json").write_text(json.dumps({"state": state, "reason": reason, **extra},
                                                        indent=2) + "\n")


def run_scenario(scenario: Scenario, raw: dict, opts: Options) -> Path:
    """Run a whole scenario; returns the run directory (complete, or partial with a reason)."""
    if not opts.emulate:
        # No shaping: one unshaped "link", named for what it is, never a profile's name.
        scenario = dataclasses.replace(scenario, links=("loopback",))
    profiles, train, test = preflight(scenario, opts)
    emulation = ("mininet" if opts.emulate else
                 "none: loopback TCP, no link shaping, no CPU shares (--loopback)")
    run_dir = new_run_dir(scenario.name, extra_meta={"emulation": emulation,
                                                      "scenario": scenario.name})
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    total = len(scenario.cases()) * scenario.repetitions
    n_accuracy = len({(c.model.arch, c.model.split, c.codec, c.method) for c in scenario.cases()}) \
        if scenario.measure.timing_batches is not None else 0
    write_state(run_dir, "running", cases_total=total)
    opts.echo(f"run directory: {run_dir}")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        run = Run(scenario, run_dir, opts, train, test, Progress(opts, total + n_accuracy))
        if scenario.measure.timing_batches is not None:
            run.accuracy = accuracy_pass(scenario.cases(), run_dir, train, test, run.progress)
        timing_pass(run, profiles)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, HarnessError) else (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
        write_state(run_dir, "partial", reason, cases_total=total)
        _summarize(run_dir, scenario, opts, partial=True)
        raise HarnessError(f"run stopped: {reason} (finished cases kept in {run_dir})") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    write_state(run_dir, "complete", cases_total=total)
    _summarize(run_dir, scenario, opts, partial=False)
    return run_dir


def _summarize(run_dir: Path, scenario: Scenario, opts: Options, partial: bool) -> None:
    try:
        summary = build_summary(run_dir, scenario.name)
    except HarnessError:
        return                                    # nothing finished yet
    summary.to_csv(run_dir / "summary.csv", index=False)
    if opts.plots:
        from harness.analysis.plots import make_all
        make_all(run_dir, partial=partial)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
