"""The timing window's STOP: what it says, what the workers skip, and that nothing judged changes."""
import json
import threading

import pytest

from harness.run.window import Window
from harness.workers.common import Sender
from harness.workers.stop import STOP_FILE, StopSignal, write_stop


def _event(role, step, t_start, t_end, **extra):
    return json.dumps({"v": 1, "role": role, "event": "compute", "step": step,
                       "t_start": t_start, "t_end": t_end, **extra}) + "\n"


def test_stop_names_the_last_step_it_judges_and_appears_whole(tmp_path):
    signal = StopSignal(tmp_path)
    assert not signal.check() and not signal.past(100)
    write_stop(tmp_path, "CI reached: steady interval 1.0 s", 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == [STOP_FILE]
    assert signal.check() and signal.last == 7 and signal.reason.startswith("CI reached")
    assert not signal.past(7) and signal.past(8) and not signal.past(None)


def test_a_stop_without_a_last_step_stops_every_step(tmp_path):
    (tmp_path / STOP_FILE).write_text("stopped by hand\n")
    signal = StopSignal(tmp_path)
    assert signal.past(0) and signal.last is None and signal.reason == "stopped by hand"


class HeldLink:
    """A link whose sends wait until the test releases them, recording what was sent and logged."""

    def __init__(self):
        self.sent, self.points, self.log = [], [], self
        self.release = threading.Event()

    def send(self, kind, step, tensors=None, info=None, raw_bytes=0):
        self.release.wait(10)
        self.sent.append(step)

    def write(self, event, **fields):
        pass

    def point(self, event, **fields):
        self.points.append((event, fields))


def test_the_sender_drops_frames_past_the_stop_and_stops_waiting_for_room(tmp_path):
    """A hierarchical edge runs queue_size + 1 batches ahead of a slow uplink; once STOP says
    step 1 is the last judged, the frames queued after it are not sent and a put waiting for
    room returns while the uplink is still held (no room ever came: nothing was sent)."""
    link, signal = HeldLink(), StopSignal(tmp_path)
    sender = Sender(link, 2, signal.past)
    for step in range(3):
        sender.put(step, {}, {})               # 0 held on the wire, 1 and 2 queued
    write_stop(tmp_path, "CI reached", 1)
    done = threading.Thread(target=sender.put, args=(3, {}, {}))   # the queue is full
    done.start()
    done.join(5)
    assert not done.is_alive() and link.sent == []
    link.release.set()
    sender.close()
    assert link.sent == [0, 1]
    assert link.points == [("dropped", {"steps": [2, 3]})]


def _split_batches(path, first, n, every=1.0):
    with open(path, "a") as edge:
        for k in range(first, first + n):
            t = every * (k + 1)
            edge.write(_event("edge", k, t - 0.5, t - 0.3, phase="forward"))
            edge.write(_event("edge", k, t - 0.1, t, phase="backward"))


def test_split_learning_is_stopped_one_batch_early_when_the_next_stop_is_certain(tmp_path):
    """Floor 9, time budget long spent: at 8 completions the 9th is certain to stop the window
    with a CI, so STOP names the batch in progress (step 8) as the last; the window judges
    the same 9 batches it would have judged after them."""
    w = Window(tmp_path, "split", min_batches=9, ci_target=0.0, n_full=100, max_s=2.0)
    _split_batches(tmp_path / "edge.jsonl", 0, 7)
    assert not w.poll()                                   # the floor is two batches away
    _split_batches(tmp_path / "edge.jsonl", 7, 1)
    assert w.poll() and w.judged == 9
    text = (tmp_path / STOP_FILE).read_text()
    assert text.startswith("time budget reached") and "last step 8" in text
    assert StopSignal(tmp_path).past(9) and not StopSignal(tmp_path).past(8)


def test_no_early_stop_while_the_time_budget_is_not_spent(tmp_path):
    w = Window(tmp_path, "split", min_batches=9, ci_target=0.0, n_full=100, max_s=8.5)
    _split_batches(tmp_path / "edge.jsonl", 0, 8)            # 7.5 s measured: the 9th might not end it
    assert not w.poll() and not (tmp_path / STOP_FILE).exists()


def test_a_pipeline_with_a_source_is_never_stopped_early(tmp_path):
    """Hierarchical training's estimate may rest on the edge's rate, whose CI depends on values
    still to come: STOP comes only once the floor is reached, naming the last completed step."""
    w = Window(tmp_path, "hierarchical", min_batches=9, ci_target=1.0, n_full=100, max_s=0.0)
    with open(tmp_path / "edge.jsonl", "w") as edge, open(tmp_path / "cloud.jsonl", "w") as cloud:
        for k in range(9):
            edge.write(_event("edge", k + 3, 0.1 * k, 0.1 * k + 0.05))
            cloud.write(_event("cloud", k, 2.0 + k, 2.01 + k))
            edge.flush(), cloud.flush()
            assert w.poll() == (k == 8)
    assert w.judged == 9 and "last step 8" in (tmp_path / STOP_FILE).read_text()


@pytest.mark.parametrize("method", ["hierarchical", "split", "cloud"])
def test_workers_train_up_to_the_last_step_judged_and_end_normally(tmp_path, method):
    """Two processes over loopback with STOP naming step 3: both sides train steps 0-3 only,
    the edge logs why, and the case's totals count 4 batches."""
    from harness.analysis.totals import load_events
    from harness.run.case import run_case
    from harness.run.launchers import LocalLauncher
    from test_workers import make_case

    class StopFirst(LocalLauncher):             # STOP is there before the edge starts
        def start(self, role, args, log):
            if role == "edge":
                write_stop(case_dir, "time budget reached (test)", 3)
            return super().start(role, args, log)
    case_dir = tmp_path / "c"
    totals = run_case(make_case(method), case_dir, StopFirst())
    assert totals["steps"] == 4
    df = load_events(case_dir)
    computed = df[df["event"] == "compute"]
    assert set(computed["step"]) == {0, 1, 2, 3}
    stopped = df[(df["role"] == "edge") & (df["event"] == "stopped")].iloc[0]
    assert stopped["before_step"] == 4 and stopped["last_step"] == 3


def test_the_estimate_rests_on_the_source_batches_the_window_saw(tmp_path):
    """A paced edge (1.0 s per batch) and completions that keep pace but hiccup once: the two
    bounds are within a hair, and the estimate rests on the source. The source's batch made
    after STOP (a little early) would move that estimate and its CI (before the source was
    kept whenever the latency does not grow, it turned the estimate to the completions' CI).
    The estimate keeps what the window judged."""
    from harness.analysis.totals import load_events, steady
    src = [0.5 + 1.0 * k for k in range(9)]
    done = [s + 1.5 for s in src]
    done[6] += 0.3
    done[8] -= 0.002
    w = Window(tmp_path, "hierarchical", min_batches=9, ci_target=0.05, n_full=100)
    with open(tmp_path / "edge.jsonl", "w") as edge, open(tmp_path / "cloud.jsonl", "w") as cloud:
        for k in range(9):
            edge.write(_event("edge", k, src[k] - 0.5, src[k]))
            cloud.write(_event("cloud", k, done[k] - 0.001, done[k]))
    assert w.poll() and w.judged == 9 and w.judged_source == 9
    assert (tmp_path / STOP_FILE).read_text().startswith("CI reached")
    with open(tmp_path / "edge.jsonl", "a") as edge:
        edge.write(_event("edge", 9, 9.0, 9.49))             # made before the edge read STOP
    df = load_events(tmp_path)
    judged = steady(df, 100, "hierarchical", judged=w.judged, judged_source=w.judged_source)
    assert judged["bound"] == "source" and judged["interval_ci_s"] == pytest.approx(0.0, abs=1e-9)
    assert judged["interval_s"] == pytest.approx(1.0, abs=1e-9)
    later = steady(df, 100, "hierarchical", judged=w.judged)
    assert later["bound"] == "source" and later["interval_s"] < 1.0 - 1e-3
    assert later["interval_ci_s"] > 1e-3


def test_a_dropped_edge_step_counts_neither_as_a_batch_nor_in_the_wall_time(tmp_path):
    """An edge-bound hierarchical pipeline past STOP: the edge finishes step 9 (dropped, never
    sent) after the cloud's step 8, the last judged. The window's wall time and batch count
    are the cloud's, which the runtime model predicts (it once read 10 batches' wall for 9)."""
    from harness.analysis.totals import load_events, totals
    with open(tmp_path / "edge.jsonl", "w") as edge, open(tmp_path / "cloud.jsonl", "w") as cloud:
        for k in range(10):
            edge.write(_event("edge", k, 1.7 * k, 1.7 * (k + 1)))
            if k < 9:
                cloud.write(_event("cloud", k, 1.7 * (k + 1) + 0.8, 1.7 * (k + 1) + 0.81))
    t = totals(load_events(tmp_path))
    assert t["steps"] == 9 and t["wall_s"] == pytest.approx(1.7 * 9 + 0.81)
