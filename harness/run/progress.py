"""Progress of a scenario run: a bar per case on a terminal, one line per finished case always.

    python -c "from harness.run.progress import Progress"
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


class Progress:
    """A bar per case (batches done at edge and cloud, elapsed, ETA) and a line per case."""

    def __init__(self, opts, total_cases: int):
        self.opts, self.total, self.done, self.bar = opts, total_cases, 0, None

    def start(self, label: str, steps: int, case_dir: Path, method: str = "") -> Callable[[], None]:
        # A bar only on a terminal: a log or CI gets the one line per finished case instead.
        if self.opts.quiet or not sys.stderr.isatty():
            return lambda: None
        from tqdm import tqdm
        self.bar = tqdm(total=steps, desc=f"[{self.done + 1}/{self.total}] {label}",
                        unit="batch", file=sys.stderr, leave=False, dynamic_ncols=True)

        def poll():
            edge, cloud = count_steps(case_dir / "edge.jsonl"), count_steps(case_dir / "cloud.jsonl")
            # A step is done when its last stage is: the cloud's, except for edge-only.
            self.bar.n = edge if method == "edge" else cloud
            self.bar.set_postfix_str(f"edge {edge} cloud {cloud}", refresh=True)
        return poll

    def finish(self, line: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.done += 1
        if not self.opts.quiet:
            self.opts.echo(f"[{self.done}/{self.total}] {line}")


def count_steps(path: Path) -> int:
    """Training steps finished by one worker so far (compute events, not split's forwards)."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    return sum(1 for ln in text.splitlines() if '"event":"compute"' in ln and '"forward"' not in ln)


def steady_text(s: dict, k: float = 1.0) -> str:
    """'; steady 0.812 s/batch +- 3.1%, 100 batches est. 81.4 +- 2.5 s' (when measured);
    times divided by the time dilation factor k."""
    if not s or s.get("interval_s") is None or s["interval_s"] != s["interval_s"]:
        return ""
    rel = s["interval_ci_s"] / s["interval_s"]
    ci = "CI n/a" if rel != rel else f"+- {rel:.1%}"
    return (f"; steady {s['interval_s'] / k:.3f} s/batch {ci}, full budget est. "
            f"{s['est_s'] / k:.1f}"
            + ("" if s["est_ci_s"] != s["est_ci_s"] else f" +- {s['est_ci_s'] / k:.1f}") + " s")


def pace_text(totals: dict) -> str:
    """'; paced, 0 of 40 steps overran' for a paced case, '; 40 modelled steps' where a
    side is modelled, else ''."""
    text = ""
    if totals.get("paced_steps"):
        text = f"; paced, {totals.get('pace_overruns', 0)} of {totals['paced_steps']} steps overran"
    if totals.get("modelled_steps"):
        text += f"; {totals['modelled_steps']} modelled steps"
        if totals.get("modelled_overruns"):
            text += (f" ({totals['modelled_overruns']} lasted up to "
                     f"{1e3 * totals['modelled_excess_max_s']:.2f} ms longer)")
    return text


def acc_text(final_acc) -> str:
    """'final acc 0.7275', or 'accuracy not measured' (generated data: run.accuracy)."""
    return "accuracy not measured" if final_acc is None else f"final acc {final_acc:.4f}"
