"""Benchmark commands: run, list, plot, check, baseline.

    python run_bench.py run scenarios/quick.yaml
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import click

from harness.errors import HarnessError
from harness.paths import BASELINES_DIR, SCENARIOS


def _run_state(run_dir: Path) -> tuple[str, str]:
    try:
        state = json.loads((run_dir / "run_status.json").read_text())
    except (OSError, ValueError):
        return "unknown", "no run_status.json"
    if state.get("state") == "complete" and state.get("cases_failed"):
        return "complete, with failed cases", (f"{state['cases_failed']} of "
                                               f"{state.get('cases_total', '?')} failed")
    return state.get("state", "unknown"), state.get("reason", "")


def _summary(run_dir: str):
    """summary.csv of a run (rebuilt from its case directories if missing or stale)."""
    import pandas as pd

    from harness.analysis.summary import build_summary
    path = Path(run_dir)
    if not path.is_dir():
        raise HarnessError(f"run directory not found: {path}")
    state, reason = _run_state(path)
    scenario = path.parent.name
    summary = build_summary(path, scenario) if any(path.glob("*/case.json")) else None
    if summary is None:
        if not (path / "summary.csv").exists():
            raise HarnessError(f"no finished cases in {path}")
        summary = pd.read_csv(path / "summary.csv")
    if state != "complete":
        click.echo(f"note: partial run ({state}: {reason}); {int((summary['status'] == 'ok').sum())}"
                   f" case(s) finished", err=True)
    return summary, state != "complete"



@click.command()
@click.argument("scenario_file", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a scenario key, e.g. --set training.lr=0.01 (repeatable)")
@click.option("--loopback", is_flag=True,
              help="no emulation: workers over loopback TCP, unshaped (labelled 'loopback')")
@click.option("--allow-no-delay", is_flag=True,
              help="if delay cannot be emulated, run anyway and record 'no delay'")
@click.option("--quiet", is_flag=True, help="no progress bars or per-case lines (CI)")
@click.option("--no-plots", is_flag=True)
@click.option("--stop-on-failure", is_flag=True,
              help="stop the sweep at the first failed case (default: record it, go on)")
@click.option("--cluster", default=None, metavar="ADDRESS",
              help="run each link's cases on a node of this Ray cluster ('local': a "
                   "one-machine cluster); needs Ray (make setup-cluster)")
@click.option("--resume", "resume_dir", default=None, metavar="RUN_DIR",
              type=click.Path(file_okay=False, path_type=str),
              help="continue a partial or abandoned run: skip its finished cases, rerun the rest")
def run(scenario_file, overrides, loopback, allow_no_delay, quiet, no_plots, stop_on_failure,
        cluster, resume_dir) -> None:
    """Run a scenario: every case under every link profile; write results and plots."""
    from harness.config import load_scenario
    from harness.run.rundir import mark_abandoned
    from harness.run.scenario import Options, run_scenario
    if scenario_file is None and resume_dir is None:
        raise HarnessError("run: give a SCENARIO_FILE, or --resume RUN_DIR")
    if overrides and resume_dir and scenario_file is None:
        raise HarnessError("--resume with --set: give the scenario file the run was made from")
    remote = None
    if cluster is not None:
        from harness.run.cluster import cluster_pass as remote, connect, ray_module
        if loopback:
            raise HarnessError("--cluster runs under Mininet on its nodes: drop --loopback")
        ray_module()                                 # not installed: say how, before any work
        connect(cluster)                             # unreachable: say so, before any work
    scenario, raw = load_scenario(scenario_file, list(overrides)) if scenario_file else (None, None)
    from harness.study.select import resolver
    echo = lambda s: click.echo(s, err=True)  # noqa: E731
    opts = Options(emulate=not loopback, allow_no_delay=allow_no_delay, quiet=quiet,
                   plots=not no_plots, stop_on_failure=stop_on_failure, cluster=cluster,
                   remote=remote, echo=echo, resolve=resolver(echo, loopback))
    for line in mark_abandoned():
        click.echo(line, err=True)
    if scenario is not None and scenario.kind == "accuracy":
        from harness.study.runner import run_study
        return run_study(scenario, raw, opts, resume_dir)
    run_dir = _resume(Path(resume_dir), raw, opts) if resume_dir else \
        run_scenario(scenario, raw, opts)
    if run_dir is None:
        return
    from harness.study.reuse import attach
    attach(run_dir, echo)
    _print_summary(run_dir)
    _write_report(run_dir)
    _exit_if_cases_failed(run_dir)


def _write_report(run_dir: Path) -> None:
    """The run's HTML page (harness.analysis.report), its path printed."""
    import pandas as pd

    from harness.analysis.report import write_report
    if (run_dir / "summary.csv").exists():
        click.echo(f"report: {write_report(run_dir, pd.read_csv(run_dir / 'summary.csv'))}")


def _resume(run_dir: Path, given_raw: dict | None, opts) -> Path | None:
    """Check that RUN_DIR may be resumed with this code and scenario, then resume it."""
    from harness.run.rundir import check_resumable, read_state
    from harness.run.scenario import resume_scenario
    state = read_state(run_dir)
    if state.get("state") == "complete" and not state.get("cases_failed"):
        click.echo(f"nothing to do: {run_dir} is complete ({state.get('cases_total', '?')} "
                   f"case(s) ok)", err=True)
        return None
    saved, meta, _ = check_resumable(run_dir, given_raw)
    if str(meta.get("emulation", "")).startswith("none"):
        opts.emulate = False              # resumed as it was made: over loopback
    elif not opts.emulate:
        raise HarnessError(f"--resume {run_dir}: the run was emulated; resume it without "
                           f"--loopback")
    return resume_scenario(run_dir, saved, opts)


def _exit_if_cases_failed(run_dir: Path) -> None:
    """One line and exit 1 when the sweep finished with failed cases."""
    state = json.loads((run_dir / "run_status.json").read_text())
    if state.get("cases_failed"):
        first = state["failed_cases"][0]
        why = json.loads((run_dir / first / "status.json").read_text()).get("reason", "")
        click.echo(f"error: {state['cases_failed']} of {state['cases_total']} case(s) failed "
                   f"(first: {first}: {why}); the summary covers the rest; rerun them with "
                   f"--resume {run_dir}", err=True)
        raise click.exceptions.Exit(1)

@click.command("list")
def list_cmd() -> None:
    """Link profiles, scenarios, models and their split points."""
    from harness.catalog import ARCHS, split_points
    from harness.emulation.links import list_profiles, load_profile
    click.echo("link profiles (topologies/):")
    for name in list_profiles():
        p = load_profile(name)
        rates = " / ".join(f"{d} {'trace' if getattr(p, f'{d}_trace') else 'steps'}, mean "
                           f"{getattr(p, f'{d}_mbps'):.3g}" if p.schedule(d)
                           else f"{d} {getattr(p, f'{d}_mbps'):g}" for d in ("up", "down"))
        outages = "".join(f", {d:g} s {direction} outage at {s:g} s" for s, d, direction in p.outages)
        click.echo(f"  {name:<12} {rates} Mbit/s, RTT {p.rtt_ms:g} ms, loss {p.loss_pct:g}% up / "
                   f"{p.down_loss_pct:g}% down, queue {p.queue_packets} packets{outages}")
    click.echo("scenarios (scenarios/):")
    for path in sorted(SCENARIOS.glob("*.yaml")):
        import yaml
        doc = yaml.safe_load(path.read_text()) or {}
        click.echo(f"  {path.name:<22} {str(doc.get('description', '')).strip()[:70]}")
    click.echo("models and split points:")
    for arch in ARCHS:
        click.echo(f"  {arch}: {', '.join(split_points(arch))}")
    _list_devices()


def _list_devices(width: float = 0.25, dataset: str = "fashion_mnist", batch: int = 64) -> None:
    """Device profiles and their modelled per-batch compute for each model's default split."""
    from harness.catalog import ARCHS, DEFAULT_SPLIT
    from harness.emulation.devices import all_devices
    from harness.predict.targets import PARTS, part_targets
    devices = all_devices()
    click.echo("device profiles (topologies/devices/):")
    for device in devices.values():
        click.echo(f"  {device.describe()}")
    click.echo(f"target compute per batch, MODELLED (training FLOPs from torch's counter / "
               f"sustained rate), {dataset}, width {width:g}, batch {batch}, at each model's "
               f"default split:")
    for arch in ARCHS:
        split = DEFAULT_SPLIT[arch]
        for device in devices.values():
            t = part_targets(device, arch, width, dataset, batch, split)
            click.echo(f"  {arch + '@' + split:<18} {device.name:<12} "
                       + ", ".join(f"{p} {_ms(t[p]['target_s'])}" for p in PARTS))


def _ms(seconds: float) -> str:
    """Milliseconds with three significant digits, never in exponent form."""
    ms = seconds * 1e3
    return f"{ms:>8.{max(0, 2 - math.floor(math.log10(ms))) if ms > 0 else 0}f} ms"

@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
def plot(run_dir) -> None:
    """(Re)draw a run's plots into RUN_DIR/plots/ (works on partial runs)."""
    from harness.analysis.plots import make_all
    summary, partial = _summary(run_dir)
    summary.to_csv(Path(run_dir) / "summary.csv", index=False)
    for path in make_all(Path(run_dir), partial=partial):
        click.echo(str(path))

@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--baseline", "baseline_file", required=True,
              type=click.Path(dir_okay=False, path_type=str))
@click.option("--check", "check_texts", multiple=True,
              help="METRIC@LINK[/ARCH]:TOL%% (default: the scenario's checks)")
@click.option("--github-json", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="also write github-action-benchmark customBiggerIsBetter JSON here")
def check(run_dir, baseline_file, check_texts, github_json) -> None:
    """Gate: compare a run's runtime gains with a baseline; exit 1 on a regression."""
    from harness.analysis.compare import (PASSING, format_verdicts, github_benchmark_json,
                                          judge, load_baseline, parse_check, same_compute)
    summary, _ = _summary(run_dir)
    texts = list(check_texts) or _scenario_checks(Path(run_dir))
    if not texts:
        raise HarnessError("no checks: give --check or list them under 'checks' in the scenario")
    checks = [parse_check(t) for t in texts]
    table = judge(summary, checks, load_baseline(Path(baseline_file)))
    click.echo(same_compute(Path(run_dir), Path(baseline_file)) or "compute: as the baseline's",
               err=True)
    click.echo(format_verdicts(table))
    if github_json:
        Path(github_json).write_text(json.dumps(github_benchmark_json(summary, checks), indent=2))
    bad = table[~table["verdict"].isin(PASSING)]
    if len(bad):
        click.echo(f"{len(bad)} of {len(table)} check(s) failed", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"all {len(table)} check(s) passed")

@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--output", default=None, help="default: results/baselines/<scenario>.json")
def baseline(run_dir, output) -> None:
    """Promote a run's gains to a baseline file for `check`."""
    from harness.analysis.compare import write_baseline
    summary, partial = _summary(run_dir)
    if partial:
        raise HarnessError(f"{run_dir} is a partial run: refusing to make a baseline of it")
    scenario = Path(run_dir).parent.name
    path = Path(output) if output else BASELINES_DIR / f"{scenario}.json"
    doc = write_baseline(summary, path, str(run_dir), scenario)
    click.echo(f"wrote {path} ({len(doc['values'])} values)")


@click.command("compare")
@click.argument("run_a", type=click.Path(file_okay=False, path_type=str))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=str))
def compare_cmd(run_a, run_b) -> None:
    """Two runs' gains side by side per case: difference and whether their CIs overlap."""
    from harness.analysis.compare import compare_runs
    table = compare_runs(_summary(run_a)[0], _summary(run_b)[0])
    if table.empty:
        raise HarnessError("the two runs have no hierarchical gains in common")
    pct = {c: table[c].map(lambda v: f"{100 * v:+.1f}%" if v == v else "-")
           for c in ("run_a", "run_b")}
    ci = {c: table[c].map(lambda v: f"±{100 * v:.1f}" if v == v else "n/a")
          for c in ("ci_a", "ci_b")}
    click.echo(table.assign(**pct, **ci).to_string(index=False, float_format=lambda v: f"{v:+.1f}"))
    click.echo(f"largest difference {table['diff_points'].abs().max():.1f} points; CIs overlap "
               f"in {int(table['cis_overlap'].sum())} of {len(table)}")


def _scenario_checks(run_dir: Path) -> list[str]:
    import yaml
    try:
        raw = yaml.safe_load((run_dir / "scenario.yaml").read_text()) or {}
    except OSError:
        return []
    checks = raw.get("checks") or []
    return [checks] if isinstance(checks, str) else list(checks)


def _print_summary(run_dir: Path) -> None:
    import pandas as pd

    from harness.analysis.tables import MIN_REPS_FOR_CI, across_repetitions, per_case, run_notes
    if not (run_dir / "summary.csv").exists():
        return                                # no case got as far as its directory
    summary = pd.read_csv(run_dir / "summary.csv")
    fmt = {"float_format": lambda v: f"{v:.3f}", "na_rep": "-", "index": False}
    click.echo(per_case(summary).to_string(**fmt))
    reps = int(summary["rep"].max()) + 1 if len(summary) else 0
    if reps >= MIN_REPS_FOR_CI:
        click.echo(f"\nacross {reps} repetitions (median ± 95% CI of the repetitions, Student's t):")
        click.echo(across_repetitions(summary).to_string(**fmt))
    for line in run_notes(summary):
        click.echo(line)
    if (run_dir / "tta.csv").exists():
        from harness.analysis.tta import tta_text
        click.echo("\ntime to accuracy (s on each link; ± runtime CI [first within the accuracy's "
                   "CI, first with its lower bound]; the report says how):")
        click.echo(tta_text(pd.read_csv(run_dir / "tta.csv")).to_string(index=False))
    click.echo(f"results in {run_dir}; plots in {run_dir / 'plots'}")


COMMANDS = (run, list_cmd, plot, check, baseline, compare_cmd)
