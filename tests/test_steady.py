"""Steady-state runtime from batch completion times (pure: synthetic pipelines)."""
import json
import math
import random

import pytest

from harness.analysis.steady import (batch_means, completion_times, latency_trend, mean_ci,
                                     mser_warmup, ratio_ci, steady_state, t95)


def pipeline(n, fill, interval, jitter=0.0, seed=0):
    """Completion times of a pipeline: the first batch at `fill`, then one per `interval`."""
    rng = random.Random(seed)
    return [fill + k * interval + rng.uniform(-jitter, jitter) for k in range(n)]


def test_estimate_keeps_the_fill_once():
    # Three equal stages of 1 s: batch k completes at 3 + k (DESIGN.md section 8's example).
    s = steady_state(pipeline(12, fill=3.0, interval=1.0), start=0.0, n_full=100)
    assert s["interval_s"] == pytest.approx(1.0)
    assert s["fill_s"] == pytest.approx(3.0)
    assert s["est_s"] == pytest.approx(3.0 + 99 * 1.0)        # 102 s, where 12 -> 100 linear
    linear = 14.0 * 100 / 12                                   # what scaling the window gives
    assert linear > 1.1 * s["est_s"]                        # 116.7 s: 14% too long


def test_start_up_batches_are_set_aside():
    # A slow TCP start: the first two intervals take 5 s, then 1 s each.
    times = [5.0, 10.0, 15.0] + [15.0 + k for k in range(1, 20)]
    s = steady_state(times, start=0.0, n_full=200)
    assert s["interval_s"] == pytest.approx(1.0)
    assert s["est_s"] == pytest.approx(15.0 + (200 - 3) * 1.0, rel=0.01)


def test_the_interval_is_the_mean_of_the_intervals_its_ci_describes():
    """Cloud-only over a 600 ms RTT with 1% loss up (measured 2026-12-06): four slow starts,
    then 0.144 s steps. The batch-means CI keeps the latest whole blocks; the interval, fill
    and estimate are taken over those same intervals, so the CI covers the steady rate (the
    mean over every interval past the fixed warm-up read 0.199 s with a 0.004 s CI, and the
    estimate 22.4 s for 16.2 s)."""
    starts = [0.0, 0.726, 1.091, 1.370, 2.209] + [2.209 + 0.1443 * i for i in range(1, 14)]
    done = [t + 0.143 for t in starts]
    out = steady_state(done, 0.0, 100)
    assert out["blocks"] == 6 and out["warmup_batches"] == 6
    assert abs(out["interval_s"] - 0.1443) <= max(out["interval_ci_s"], 1e-6)
    assert out["est_s"] == pytest.approx(done[5] + 94 * out["interval_s"])


def test_ci_covers_the_true_interval_and_shrinks_with_batches():
    covered = 0
    for seed in range(200):
        s = steady_state(pipeline(40, 2.0, 0.5, jitter=0.2, seed=seed), 0.0, 100)
        covered += abs(s["interval_s"] - 0.5) <= s["interval_ci_s"]
    assert covered >= 180                                      # nominal 95% of 200: 190
    short = steady_state(pipeline(12, 2.0, 0.5, jitter=0.2), 0.0, 100)
    long = steady_state(pipeline(60, 2.0, 0.5, jitter=0.2), 0.0, 100)
    assert long["interval_ci_s"] < short["interval_ci_s"]
    assert long["est_ci_s"] == pytest.approx((100 - 1 - (long["warmup_batches"] - 1)) * long["interval_ci_s"])


def test_a_draining_backlog_is_bounded_by_the_source():
    # The 600 ms RTT case as measured: the edge (source) makes a batch every 0.513 s, held to
    # 0.70 s twice by a full send queue during slow start; the first transfer is late, so the
    # cloud (completions) then drains the backlog at the link's 0.44 s per batch.
    edge = [0.513, 1.027, 1.541, 2.055, 2.754, 3.481] + [3.481 + 0.513 * k for k in range(1, 9)]
    cloud = [3.406 + 0.44 * k for k in range(10)]
    s = steady_state(cloud, start=0.0, n_full=100, source=edge)
    assert s["bound"] == "source"
    assert s["interval_s"] == pytest.approx(0.513, rel=1e-3)
    # Edge's batch 99 at 3.481 + 94 x 0.513 = 51.7 s, plus the smallest latency seen (batch
    # 9: 7.366 - 5.533 = 1.83 s); the completions alone said 3.4 + 99 x 0.44 = 47 s.
    assert s["est_s"] == pytest.approx(3.481 + 94 * 0.513 + (3.406 + 9 * 0.44 - 5.533), rel=1e-3)
    # A link-bound pipeline: completions slower than the source, which then does not bind.
    slow = [2.0 + 0.8 * k for k in range(10)]
    assert steady_state(slow, 0.0, 100, source=edge)["bound"] == "completions"



def test_completions_that_catch_up_leave_the_estimate_on_the_source():
    """VGG-16 conv10, hierarchical over 4g (measured 2026-12-07): the paced edge makes a batch
    every 1.608 s; one transfer lands 0.26 s late and the next catches up (completion
    intervals 1.867 s, then 1.349 s). Both estimates agree within milliseconds, but the
    completions' batch means carry the hiccup as if it were the rate. The latency does not
    grow, so the source binds and its CI stands, whichever estimate is a hair larger."""
    edge = [1.608 * (k + 1) for k in range(12)]
    for late in (0.0, 0.003):            # the completions' last one a hair late, or not
        cloud = [t + 0.41 for t in edge]
        cloud[7] += 0.259
        cloud[-1] += late
        s = steady_state(cloud, 0.0, 781, source=edge)
        assert s["bound"] == "source" and s["interval_ci_s"] == pytest.approx(0.0, abs=1e-9)
        assert s["est_s"] == pytest.approx(1.608 * 781 + 0.41, rel=1e-6)
        assert s["latency_slope_s"] - s["latency_slope_ci_s"] <= 0
        alone = steady_state(cloud, 0.0, 781)
        assert alone["est_ci_s"] > 0.05 * alone["est_s"]      # what the completions alone say
        assert s["completions_est_s"] == pytest.approx(alone["est_s"])


def test_a_latency_that_grows_binds_the_completions_even_through_jitter():
    """A cloud 5% slower than a paced edge, with +-30 ms of jitter on each transfer: the
    latency grows by 0.05 s a batch, the completions bind (their estimate is the larger)."""
    rng = random.Random(1)
    edge = [1.0 * (k + 1) for k in range(12)]
    cloud = [1.5 + 1.05 * k + rng.uniform(-0.03, 0.03) for k in range(12)]
    s = steady_state(cloud, 0.0, 500, source=edge)
    assert s["bound"] == "completions"
    assert s["latency_slope_s"] - s["latency_slope_ci_s"] > 0
    assert s["interval_s"] == pytest.approx(1.05, rel=0.02)


def test_a_full_queue_keeps_the_source_s_rate_the_pipeline_s():
    """Cloud-bound with the queue full: the edge waits for room, so the source's intervals are
    the cloud's (0.8 s) and the latency no longer grows. Both say 0.8 s a batch."""
    edge = [0.5 + 0.8 * k for k in range(12)]
    cloud = [t + 2.1 + (0.01 if k % 3 == 0 else 0.0) for k, t in enumerate(edge)]
    s = steady_state(cloud, 0.0, 100, source=edge)
    assert s["bound"] == "source" and s["interval_s"] == pytest.approx(0.8)
    alone = steady_state(cloud, 0.0, 100)
    assert abs(s["est_s"] - alone["est_s"]) <= alone["est_ci_s"]



def test_a_source_without_a_ci_leaves_the_larger_estimate():
    """An edge held up for its first four batches (MSER sets them aside, leaving four steady
    intervals: no CI) and a cloud keeping pace: the latency does not grow, but the source
    has no CI to offer, so the larger estimate stands with its CI, as before the slope rule."""
    edge = [0.7 * (k + 1) for k in range(4)] + [2.8 + 0.5 * k for k in range(1, 6)]
    cloud = [t + 0.3 for t in edge]
    s = steady_state(cloud, 0.0, 100, source=edge)
    assert s["latency_slope_s"] == pytest.approx(0.0, abs=1e-9)
    assert s["bound"] == "completions" and s["interval_ci_s"] > 0

def test_latency_trend_is_a_least_squares_slope_with_its_ci():
    assert latency_trend([1.0, 1.5, 2.0, 2.5]) == (pytest.approx(0.5), pytest.approx(0.0, abs=1e-12))
    slope, half = latency_trend([0.0, 0.1, 0.0, 0.1, 0.0])
    assert slope == pytest.approx(0.0) and half == pytest.approx(3.182 * math.sqrt(0.012 / 3 / 10))
    assert math.isnan(latency_trend([1.0, 2.0])[1]) and math.isnan(latency_trend([1.0])[0])

def test_mser_drops_a_distinct_start_only():
    assert mser_warmup([0.7, 0.73] + [0.513] * 10) == 2
    assert mser_warmup([0.5] * 12) == 0
    assert mser_warmup([0.5, 0.52, 0.49, 0.51] * 3) <= 1


def test_too_few_batches_give_no_ci():
    s = steady_state([1.0, 2.0, 3.0, 4.0], 0.0, 10)
    assert math.isnan(s["interval_ci_s"]) and s["interval_s"] == pytest.approx(1.0)
    assert batch_means([1.0] * 5) == []


def test_completion_is_the_last_compute_of_each_step():
    spans = [(0, 1.0), (0, 1.5), (1, 2.0), (1, 2.7), (2, 3.1), (None, 9.0)]
    assert completion_times(spans) == [1.5, 2.7, 3.1]


def test_t_table_and_ratio_ci():
    assert t95(1) == pytest.approx(12.706) and t95(4) == pytest.approx(2.776) and t95(100) == 1.96
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    # 10% on each of two independent quantities: ~14% on their ratio.
    assert ratio_ci(10.0, 1.0, 20.0, 2.0) == pytest.approx(0.5 * math.hypot(0.1, 0.1))
    assert math.isnan(ratio_ci(10.0, float("nan"), 20.0, 2.0))


def _event(role, step, t_start, t_end, **extra):
    return json.dumps({"v": 1, "role": role, "event": "compute", "step": step,
                       "t_start": t_start, "t_end": t_end, **extra}) + "\n"


def test_window_stops_a_pipeline_once_the_interval_is_known(tmp_path):
    """The edge runs ahead of the cloud: only the cloud's spans complete a hierarchical batch."""
    from harness.run.window import Window
    w = Window(tmp_path, "hierarchical", min_batches=10, ci_target=0.05, n_full=100)
    edge, cloud = open(tmp_path / "edge.jsonl", "w"), open(tmp_path / "cloud.jsonl", "w")
    stopped_at = None
    for k in range(30):
        edge.write(_event("edge", k + 3, 0.1 * k, 0.1 * k + 0.05))      # three batches ahead
        cloud.write(_event("cloud", k, 2.0 + k, 2.0 + k + 0.01 * (k % 3)))
        edge.flush(), cloud.flush()
        if w.poll() and stopped_at is None:
            stopped_at = k
    assert stopped_at is not None and 9 <= stopped_at <= 12
    assert "after 10 batches" in (tmp_path / "STOP").read_text()


def test_window_keeps_going_while_the_interval_is_noisy(tmp_path):
    from harness.run.window import Window
    w = Window(tmp_path, "split", min_batches=10, ci_target=0.05, n_full=100)
    rng = random.Random(0)
    t = 0.0
    with open(tmp_path / "edge.jsonl", "w") as edge:
        for k in range(20):
            t += rng.choice([0.5, 1.5])                                  # +-50% per batch
            edge.write(_event("edge", k, t - 0.1, t - 0.05, phase="forward"))
            edge.write(_event("edge", k, t - 0.02, t, phase="backward"))
    assert not w.poll() and not (tmp_path / "STOP").exists()


def test_window_stops_on_time_only_once_the_interval_has_a_ci(tmp_path):
    """Past `max_s` with too few steady intervals for batch means, the window goes on: a STOP
    then would leave an estimate without spread (8 batches: 5 steady intervals, 2 groups).
    STOP comes while the 9th is in progress (the next completion is certain to stop an
    edge-only window) and judges 9 batches, the 9th named as the last step."""
    from harness.run.window import Window
    w = Window(tmp_path, "edge", min_batches=8, ci_target=0.01, n_full=100, max_s=1.0)
    rng = random.Random(1)
    t, stops = 0.0, []
    with open(tmp_path / "edge.jsonl", "w") as edge:
        for k in range(12):
            t += rng.choice([0.5, 1.5])
            edge.write(_event("edge", k, t - 0.1, t))
            edge.flush()
            stops.append(w.poll())
    assert stops.index(True) == 7 and w.judged == 9       # the 9th batch gives 3 groups of 2
    text = (tmp_path / "STOP").read_text()
    assert text.startswith("time budget reached") and "last step 8" in text



def test_the_estimate_uses_the_batches_the_window_judged(tmp_path):
    """Batches completing after STOP (a pipeline draining) do not enter the estimate."""
    from harness.analysis.totals import load_events, steady
    with open(tmp_path / "edge.jsonl", "w") as edge:
        for k in range(12):                  # steady 1 s batches, then one 1.5 s straggler
            end = k + 1.0 + (0.5 if k == 11 else 0.0)
            edge.write(_event("edge", k, end - 0.5, end))
    df = load_events(tmp_path)
    judged = steady(df, 100, "edge", judged=11)
    assert judged["interval_s"] == pytest.approx(1.0) and judged["measured_batches"] == 11
    assert steady(df, 100, "edge")["interval_s"] > 1.0


def test_a_varying_links_time_zero_is_set_once_the_edges_first_step_begins(tmp_path):
    """The link's schedule restarts when the edge logs the end of its clock sync (its first
    step follows at once), not when a first step is logged complete; schedule.json says how
    far after that step's start the origin fell."""
    from harness.run.window import LinkClock

    class Launcher:
        restarts = 0

        def restart_schedule(self):
            self.restarts += 1
            return {"origin_monotonic": 10.02}
    launcher = Launcher()
    clock = LinkClock(launcher, tmp_path, "split")
    clock.tick()                                             # no events yet
    with open(tmp_path / "edge.jsonl", "w") as edge:
        edge.write(json.dumps({"role": "edge", "event": "clock", "t": 10.0, "phase": "start"}) + "\n")
        edge.flush()
        clock.tick(), clock.tick()
        edge.write(_event("edge", 0, 10.001, 10.1, phase="forward"))
    clock.tick()
    assert launcher.restarts == 1
    clock.write(tmp_path)
    record = json.loads((tmp_path / "schedule.json").read_text())
    assert record["first_step_monotonic"] == 10.001
    assert record["origin_after_first_step_s"] == pytest.approx(0.019)
