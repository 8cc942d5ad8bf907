"""A scenario in, a results directory out: preflight, accuracy pass, emulated timing, summary.

    sudo .venv/bin/python run_bench.py run scenarios/quick.yaml

Phases: `preflight` (all a user can get wrong, before any work), `accuracy_pass` (per
model/split/codec/method on unshaped loopback, when timing runs on a batch budget),
`timing_pass` (per link: build, calibrate, run its cases), `finish` (summary, plots, state).
A failed case is recorded (status.json says why) and the sweep goes on (unless
`--stop-on-failure`); an interrupt or a link out of tolerance stops it, keeping the finished
cases (`partial`): a bad calibration usually means the machine (resume).
"""
from __future__ import annotations

import contextlib
import dataclasses
import signal
from collections.abc import Callable
from pathlib import Path

import yaml

from harness.files import write_json
from harness.analysis.summary import build_summary
from harness.analysis.totals import load_events, steady
from harness.config import Case, Scenario, dilation_of, parse_scenario
from harness.errors import HarnessError
from harness.run.case import evaluate_case, run_case, write_status
from harness.run.accuracy import accuracy_key, accuracy_keys, accuracy_pass, not_measured
from harness.run.launchers import LocalLauncher, MininetLauncher
from harness.run.pacing import paced
from harness.run import rundir
from harness.run.progress import Progress, acc_text, pace_text, steady_text
from harness.run.reuse import REASONS, reuse_case, reuse_key
from harness.emulation.links import resolve_links
from harness.emulation.dilation import dilate_profile, label as dilation_label, link_label
from harness.run.virtual import settle
from harness.run.window import LinkClock, Window
from harness.train.batches import batches_per_epoch, load_case_data


@dataclasses.dataclass
class Options:
    emulate: bool = True              # False: loopback, no shaping (labelled as such)
    allow_no_delay: bool = False
    quiet: bool = False
    plots: bool = True
    stop_on_failure: bool = False     # True: the first failed case stops the sweep
    cluster: str | None = None        # a Ray cluster's address, or local (harness.run.cluster)
    remote: Callable | None = None    # the timing pass on that cluster (cluster.cluster_pass)
    resolve: Callable = lambda scenario, profiles: scenario   # split: auto (harness.study.select)
    echo: Callable[[str], None] = print


def preflight(scenario: Scenario, opts: Options) -> tuple[Scenario, dict, object, object]:
    """Profiles, data and emulation prerequisites; returns (scenario, profiles, train, test)."""
    unpicked, profiles = resolve_links(scenario)
    scenario = opts.resolve(unpicked, profiles)
    if not opts.emulate:   # no shaping: one unshaped "link", named for what it is
        scenario, profiles = dataclasses.replace(scenario, links=("loopback",)), {}
        if scenario.compute.pace:
            opts.echo("compute.pace: not applied under --loopback (compute runs unpaced)")
    from harness.workers.placement import require_backends
    require_backends(scenario.compute)                       # a GPU asked for must be here
    from harness.run.computecheck import devices_of
    if devices_of(scenario.compute) and not opts.emulate:    # also checks the names
        raise HarnessError("compute.*_device: a device profile needs emulated CPU shares; "
                           "--loopback cannot give them")
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
    resolved = settle(scenario, unpicked, profiles, opts)
    return resolved, profiles, train, test


def _warm_profiles(scenario: Scenario, opts: Options) -> None:
    """Profile each model once (cached per machine) for the runtime model's predictions."""
    from harness.predict.splits import profiles_for
    c = scenario.compute
    for arch in scenario.archs:
        if not opts.quiet:
            opts.echo(f"profiling {arch} per block for the runtime model (cached per machine)")
        profiles_for(arch, scenario.model.width, scenario.dataset.name,
                     scenario.training.batch_size, c.edge_threads, c.cloud_threads)


def timed_case(case: Case, scenario: Scenario) -> Case:
    """The case as run for timing: the batch budget, when the scenario sets one."""
    n = scenario.measure.timing_batches
    return case if n is None else dataclasses.replace(case, training=dataclasses.replace(
        case.training, max_batches=n, epochs=1))


@dataclasses.dataclass
class Run:
    """What every phase of one scenario run shares."""
    scenario: Scenario
    run_dir: Path
    opts: Options
    train: object
    test: object
    progress: Progress | None = None  # made per sweep: it counts the cases left to run
    accuracy: dict | None = None      # (arch, split, codec, method) -> accuracy pass result
    compute: dict = dataclasses.field(default_factory=dict)   # computecheck's, once per run
    measured: dict = dataclasses.field(default_factory=dict)   # reuse_key -> its case directory
    tcp_cc: str = "bbr"               # the congestion control the link's workers use


def run_one(run: Run, case: Case, case_dir: Path, launcher, rep: int, link_profile=None) -> None:
    """One emulated case: run, record what was measured and how, evaluate if needed."""
    scenario, train, test, progress = run.scenario, run.train, run.test, run.progress
    timed = timed_case(paced(case) if run.opts.emulate else case, scenario)
    steps, n_full = (batches_per_epoch(c, len(train)) * c.training.epochs for c in (timed, case))
    show = progress.start(f"{case.label} rep {rep}", steps, case_dir, case.method)
    m, k = scenario.measure, dilation_of(case.compute)
    window = None if m.timing_batches is None else Window(     # its time cap dilates too
        case_dir, case.method, m.min_batches, m.ci_target, n_full, m.max_seconds * k)
    clock = LinkClock(launcher, case_dir, case.method)      # a time-varying link's time zero

    def poll():
        show()
        if window is not None:
            window.poll()
    totals = run_case(timed, case_dir, launcher, on_poll=poll, on_tick=clock.tick)
    clock.write(case_dir)
    info = {"rep": rep, "full_steps": n_full, "measured_steps": totals["steps"],
            "budget_steps": steps, "launcher": launcher.describe,
            "stopped_early": bool(window and window.stopped), "dilation": k}
    cached = n_full - batches_per_epoch(case, len(train)) if case.method == "cloud" else 0
    judged = (window.judged, window.judged_source) if window is not None else (None, None)
    info["steady"] = steady(load_events(case_dir), n_full, case.method, cached, *judged)
    if link_profile is not None:
        from harness.run.factors import case_predictions
        info.update(case_predictions(case, link_profile, totals["steps"],
                                     batches_per_epoch(case, len(train)), run.compute, run.tcp_cc))
    if timed.compute.pace_s is not None:
        info["pace_s"] = timed.compute.pace_s
    write_json(case_dir / "case_info.json", info)
    acc = not_measured(case)
    if acc is None and run.accuracy is None:
        acc = evaluate_case(timed, case_dir, train, test)
        acc["acc_source"] = f"measured: this emulated run ({steps} batches), {len(test)} test samples"
        acc["test_samples"] = len(test)
    elif acc is None:
        acc = run.accuracy[accuracy_key(case)]
    write_json(case_dir / "accuracy.json", acc)
    progress.finish(f"{case.label} rep {rep}: {totals['wall_s'] / k:.2f} s for {totals['steps']} "
                    f"batches{steady_text(info['steady'], k)}{pace_text(totals)}, "
                    f"{acc_text(acc['final_acc'])}{dilation_label(k)}")


def timing_pass(run: Run, profiles: dict, todo: list[tuple[str, Case, int]]) -> None:
    """Per link profile with cases to run: one topology, calibrated first, its cases inside."""
    from harness.emulation.linkcheck import calibrate, require_ok, summary_line, write_linkcheck
    from harness.run.computecheck import check_compute
    scenario, opts = run.scenario, run.opts
    if opts.cluster:                    # each link's cases on a node of its own (opts.remote)
        return opts.remote(run, todo)
    k = dilation_of(scenario.compute)
    for link_name, cases in ((n, [e for e in todo if e[1].link == n]) for n in scenario.links):
        if not cases:
            continue
        if not opts.emulate:
            _run_cases(run, cases, LocalLauncher(), None, None)
            continue
        from harness.emulation.topology import emulated_link
        profile = dilate_profile(profiles[link_name], k)  # as set up; predictions use it too
        with emulated_link(profile, scenario.compute, allow_no_delay=opts.allow_no_delay,
                           tcp_cc=scenario.tcp_cc) as link:
            check = calibrate(link, profile, scenario.tolerances,
                              scenario.measure.calibrate_seconds)
            check["measured_at"] = "topology start, before its cases"
            check["dilation"], run.tcp_cc = k, link.emulation["tcp_cc"]
            link_dir = rundir.link_dir(run.run_dir, link_name)   # once: it moves an old check
            write_linkcheck(link_dir, check)
            if not opts.quiet:
                opts.echo(summary_line(check) + link_label(k))
            require_ok(check)
            shares = check_compute(link, scenario, link_dir, opts, run.compute)
            with contextlib.closing(MininetLauncher(link)) as launcher:   # its fork servers
                _run_cases(run, cases, launcher, check, profile, shares)


def _run_cases(run: Run, cases: list[tuple[str, Case, int]], launcher, check: dict | None,
               link_profile, shares: Callable | None = None) -> None:
    """Cases and repetitions on one link, in plan order; a failed case is recorded and the
    sweep goes on (unless --stop-on-failure). `shares(case)` sets calibrated CPU shares."""
    for name, case, rep in cases:
        case_dir, key = run.run_dir / name, reuse_key(case, rep)
        try:
            if key in run.measured:          # the same measurement made by an earlier case
                acc = not_measured(case) or (run.accuracy or {}).get(accuracy_key(case))
                reuse_case(run.measured[key], case_dir, case, acc)
                run.progress.finish(f"{case.label} rep {rep}: {REASONS[case.method]}, in "
                                    f"{run.measured[key].name}")
                continue
            if shares is not None:
                shares(case)
            run_one(run, case, case_dir, launcher, rep, link_profile)
            if key is not None and check is not None:
                run.measured[key] = case_dir
        except HarnessError as exc:
            if case_dir.is_dir():     # run_case wrote why; a failure after it must say so too
                write_status(case_dir, "failed", str(exc))
            line = f"{case.label} rep {rep}: FAILED: {exc}"
            run.progress.finish(line)
            if run.opts.quiet:
                run.opts.echo(line)
            if run.opts.stop_on_failure:
                raise
        finally:
            if check is not None and case_dir.exists():
                write_json(case_dir / "linkcheck.json", check, indent=2)


def run_scenario(scenario: Scenario, raw: dict, opts: Options) -> Path:
    """Run a whole scenario; returns the run directory (complete, or partial with a reason)."""
    scenario, profiles, train, test = preflight(scenario, opts)
    emulation = ((f"mininet on the nodes of Ray cluster {opts.cluster}" if opts.cluster else "mininet")
                 if opts.emulate else "none: loopback TCP, no link shaping, no CPU shares (--loopback)")
    picked = {"picked_splits": [list(p) for p in scenario.picked_splits]} \
        if scenario.picked_splits else {}
    run_dir = rundir.new_run_dir(scenario.name, extra_meta={"emulation": emulation,
                                                      "scenario": scenario.name, **picked})
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    opts.echo(f"run directory: {run_dir}")
    plan = rundir.case_plan(scenario)
    return _sweep(Run(scenario, run_dir, opts, train, test), profiles, plan, plan)


def resume_scenario(run_dir: Path, raw: dict, opts: Options) -> Path:
    """Continue a partial or abandoned run in place: finished cases are kept, half-done case
    directories go to superseded/, the accuracy pass is reused when it finished, and each link
    with cases left is calibrated again."""
    scenario, profiles, train, test = preflight(
        parse_scenario(raw, str(run_dir / "scenario.yaml")), opts)
    plan = rundir.case_plan(scenario)
    todo = [e for e in plan if not rundir.case_done(run_dir / e[0], opts.emulate)]
    accuracy, resumes = rundir.prepare_resume(
        run_dir, [name for name, _, _ in todo], accuracy_keys(scenario) if todo else set(),
        opts.echo)
    opts.echo(f"resuming {run_dir}: {len(plan) - len(todo)} of {len(plan)} case(s) kept, "
              f"{len(todo)} to run")
    run = Run(scenario, run_dir, opts, train, test, accuracy=accuracy)
    return _sweep(run, profiles, plan, todo, resumes=resumes)


def _sweep(run: Run, profiles: dict, plan: list, todo: list, **state) -> Path:
    """The accuracy pass (unless reused) and the timing pass over `todo`; then the state,
    summary and plots over every planned case."""
    scenario, run_dir, opts = run.scenario, run.run_dir, run.opts
    names = [name for name, _, _ in plan]
    need_accuracy = bool(todo) and run.accuracy is None and bool(accuracy_keys(scenario))
    n_accuracy = len(accuracy_keys(scenario)) if need_accuracy else 0
    run.progress = Progress(opts, len(todo) + n_accuracy)
    rundir.write_state(run_dir, "running", cases_total=len(plan), harness=rundir.process_identity(), **state)
    # Both signals end the run cleanly, also where SIGINT arrives ignored (a job started in
    # the background by a non-interactive shell inherits SIG_IGN, and Python keeps it).
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if need_accuracy:
            run.accuracy = accuracy_pass(scenario.cases(), run_dir, run.train, run.test,
                                         run.progress, scenario.measure.curve_every)
        timing_pass(run, profiles, todo)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, HarnessError) else (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
        rundir.write_state(run_dir, "partial", reason, **rundir.case_counts(run_dir, names))
        _summarize(run_dir, scenario, opts, partial=True)
        raise HarnessError(f"run stopped: {reason} (finished cases kept in {run_dir})") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = rundir.case_counts(run_dir, names)
    rundir.write_state(run_dir, "complete", **counts)
    _summarize(run_dir, scenario, opts, partial=counts["cases_failed"] > 0)
    return run_dir


def _summarize(run_dir: Path, scenario: Scenario, opts: Options, partial: bool) -> None:
    try:
        summary = build_summary(run_dir, scenario.name)
    except HarnessError:
        return                                    # nothing finished yet
    summary.to_csv(run_dir / "summary.csv", index=False)
    from harness.analysis.tta import write_tta
    write_tta(run_dir, summary)
    if opts.plots:
        from harness.analysis.plots import make_all
        make_all(run_dir, partial=partial)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
