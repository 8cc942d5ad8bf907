"""Steady-state runtime of a pipelined run: fill time, per-batch interval with its 95% CI, and
the full-budget estimate fill + (N-1) x interval.

    python -c "from harness.analysis.steady import steady_state"

A run of N batches through a pipeline takes fill + (N-1) x Δ, where Δ is the steady interval
between batch completions (DESIGN.md section 8). Scaling a short window linearly multiplies
the fill (TCP start-up, first allocations, the pipeline filling) by N/window, which is wrong by
construction for pipelined methods. Here a batch completes when its last compute step ends
(on either side); the first `warmup` intervals are set aside; Δ is the mean of the rest
that the CI's groups hold (below).

Confidence interval: batch intervals are autocorrelated (a slow batch holds up the next one
in a pipeline), so the CI is computed by the method of batch means: the steady intervals are
cut into `blocks` consecutive groups, and Student's t is applied to the group means, which are
close to independent when each group spans several batches. The CI describes this run's steady
rate; repetitions (in the summary) add the run-to-run spread.
"""
from __future__ import annotations

import math
import statistics

# Student's t, two-sided 95%, by degrees of freedom (1..30); larger: the normal 1.96.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
MAX_BLOCKS = 6
MIN_BLOCKS = 3


def t95(df: int) -> float:
    """Two-sided 95% quantile of Student's t with `df` degrees of freedom."""
    return T95[df - 1] if 1 <= df <= len(T95) else 1.96


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, 95% CI half-width) of independent values; half-width NaN for fewer than 2."""
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def warmup_intervals(n_intervals: int) -> int:
    """Intervals set aside as start-up: a fifth of them, at least 2 (TCP start, queue fill)."""
    return max(2, n_intervals // 5)


def mser_warmup(values: list[float]) -> int:
    """MSER truncation point (White, 1997): the d <= n/2 minimising the squared standard
    error of the mean of values[d:], sum((x - mean)^2) / (n - d)^2. It drops a start-up
    stretch that differs from the rest (measured: an edge held 0.70 s twice by a full send
    queue during TCP slow start over a 600 ms RTT, then 0.513 s steps to the millisecond).
    Not used on completions: there it would also drop the BBR PROBE_RTT stalls that recur
    every 10 s and belong in the rate."""
    n = len(values)
    best, best_d = math.inf, 0
    for d in range(n // 2 + 1):
        rest = values[d:]
        mean = statistics.fmean(rest)
        score = sum((x - mean) ** 2 for x in rest) / len(rest) ** 2
        if score < best - 1e-15:
            best, best_d = score, d
    return best_d


def batch_means(intervals: list[float]) -> list[float]:
    """Means of up to MAX_BLOCKS consecutive, equal-length groups (the tail remainder dropped
    from the front, so the latest, most settled intervals are kept)."""
    k = min(MAX_BLOCKS, len(intervals) // 2)
    if k < MIN_BLOCKS:
        return []
    size = len(intervals) // k
    kept = intervals[len(intervals) - k * size:]
    return [statistics.fmean(kept[i * size:(i + 1) * size]) for i in range(k)]


def completion_times(compute_spans) -> list[float]:
    """When each step completed, in step order: the latest end among the given spans.

    `compute_spans`: (step, t_end) pairs of the compute events of the method's final stage
    (catalog.FINAL_STAGE); steps must count up from 0.
    """
    done: dict[int, float] = {}
    for step, t_end in compute_spans:
        if step is None or step != step:     # NaN: not a training step
            continue
        step = int(step)
        done[step] = max(done.get(step, t_end), t_end)
    return [done[k] for k in sorted(done)]


def steady_state(completions: list[float], start: float, n_full: int,
                 source: list[float] | None = None) -> dict:
    """Fill, steady interval (95% CI by batch means) and the estimate for n_full batches.

    `completions`: the time each measured batch completed, in step order; `start`: when the
    first batch started. Seconds throughout. With too few batches for a CI the interval is
    still given and every CI is NaN.

    `source`: when each batch left the pipeline's first stage (hierarchical: the edge's
    compute), in step order. A pipeline cannot run faster than its source, but its last stage
    can for a while: a start-up backlog (the first transfers in TCP slow start over a long
    RTT) drains at the link's rate, which is steady-looking and wrong (600 ms RTT: 0.44 s per
    batch measured while the edge made one every 0.51 s). So the estimate is also made from
    the source: its own steady extrapolation plus the smallest latency from source to
    completion seen in the steady part, and the larger of the two is taken (`bound` says
    which: "completions" or "source"). The smallest latency seen is still an upper bound on
    the drained one, so a backlog not yet drained errs long, by at most that latency.

    The completions bind only where the latency from source to completion grows: the slope of
    the steady latencies over the batch index, 95% CI by least squares (latency_trend), above
    zero. A later stage slower than the source makes its queue, and so the latency, grow by
    the difference every batch. Where the slope's CI reaches zero the later stages keep pace,
    and the source's rate is the pipeline's even when the completions' estimate is a hair
    larger: their mean interval is the source's plus (last latency - first) / intervals, so a
    transfer held up once and caught up only widens their CI (measured: VGG-16 on 4g, an edge
    paced at 1.608 s per batch, one transfer 0.26 s late and the next one early; both
    estimates 1256.4 s, 2.5 ms apart; the completions' CI +-19.7%, the source's +-0.0%).
    A source whose own steady part is too short for a CI (MSER set a long start-up aside)
    keeps the larger estimate, as before. `completions_est_s` and `latency_slope_s` (with
    `latency_slope_ci_s`) say what decided.
    """
    out = _extrapolate(completions, start, n_full)
    out["bound"] = "completions"
    if not source or len(source) < len(completions) or out["interval_s"] != out["interval_s"]:
        return out
    src = _extrapolate(source, start, n_full, settled=True)
    warm = out["warmup_batches"] - 1
    lags = [c - s for c, s in zip(completions[warm:], source[warm:])]
    latency = min(lags)
    slope, slope_ci = latency_trend(lags)
    est = src["est_s"] + max(latency, 0.0)
    out.update(completions_est_s=out["est_s"], latency_slope_s=slope, latency_slope_ci_s=slope_ci)
    # NaN (too few batches) is not shown to keep pace; nor is a source without a CI of its own
    keeps_pace = slope - slope_ci <= 0 and src["interval_ci_s"] == src["interval_ci_s"]
    if est > out["est_s"] or keeps_pace:
        interval = src["interval_s"]
        out.update(interval_s=interval, interval_ci_s=src["interval_ci_s"], est_s=est,
                   est_ci_s=src["est_ci_s"], fill_s=est - (n_full - 1) * interval,
                   bound="source", source_latency_s=latency)
    return out


def latency_trend(lags: list[float]) -> tuple[float, float]:
    """(slope, 95% CI half-width) of a least-squares line through `lags` over their index,
    in seconds per batch; the half-width is NaN for fewer than 3 values."""
    n = len(lags)
    if n < 2:
        return math.nan, math.nan
    xs = range(n)
    x_mean, y_mean = (n - 1) / 2, statistics.fmean(lags)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, lags)) / sxx
    if n < 3:
        return slope, math.nan
    resid = sum((y - y_mean - slope * (x - x_mean)) ** 2 for x, y in zip(xs, lags))
    return slope, t95(n - 2) * math.sqrt(resid / (n - 2) / sxx)


def _extrapolate(completions: list[float], start: float, n_full: int,
                 settled: bool = False) -> dict:
    """steady_state of one series of completion times (no source bound). `settled`: the
    warm-up is at least MSER's truncation point (mser_warmup)."""
    times = [t - start for t in completions]
    intervals = [b - a for a, b in zip(times, times[1:])]
    if not intervals:
        wall = times[-1] if times else math.nan
        return {"fill_s": wall, "interval_s": math.nan, "interval_ci_s": math.nan,
                "est_s": wall if n_full <= len(times) else math.nan, "est_ci_s": math.nan,
                "measured_batches": len(times), "warmup_batches": 0, "blocks": 0}
    warm = warmup_intervals(len(intervals))
    if settled:
        warm = max(warm, mser_warmup(intervals))
    warm = min(warm, len(intervals) - 1)
    blocks = batch_means(intervals[warm:])
    if blocks:          # the mean is over the intervals the CI describes (batch_means keeps the
        warm = len(intervals) - len(blocks) * ((len(intervals) - warm) // len(blocks))  # latest)
    steady = intervals[warm:]
    interval = statistics.fmean(steady)
    _, half = mean_ci(blocks) if blocks else (interval, math.nan)
    # The measured transient is kept exactly: batches 0..warm as they happened, then the rate.
    fill = times[warm] - warm * interval
    remaining = max(n_full - 1 - warm, 0)
    return {"fill_s": fill, "interval_s": interval, "interval_ci_s": half,
            "est_s": times[warm] + remaining * interval, "est_ci_s": remaining * half,
            "measured_batches": len(times), "warmup_batches": warm + 1, "blocks": len(blocks)}


def ratio_ci(num: float, num_ci: float, den: float, den_ci: float) -> float:
    """95% CI half-width of num/den from the two half-widths (delta method, independent)."""
    if not den or any(map(math.isnan, (num, num_ci, den, den_ci))):
        return math.nan
    return abs(num / den) * math.hypot(num_ci / num if num else 0.0, den_ci / den)
