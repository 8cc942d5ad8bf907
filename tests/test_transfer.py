"""A message's time on a link under a loss-based TCP: restart after idle (pure: no network)."""
import dataclasses

import pytest

from harness.emulation.links import INITIAL_WINDOW_B, load_profile
from harness.predict.runtime import Costs, Sizes, predict
from harness.predict.transfer import RTO_MIN_S, LinkRates

C = Costs(edge_fwd_s=0.5, edge_bwd_s=1.0, head_s=0.0, cloud_s=0.01, full_edge_s=2.0,
          full_cloud_s=0.1)


def test_a_message_after_idle_restarts_from_the_initial_window_under_reno():
    """4g (5.85 Mbit/s up, 60 ms RTT: a 42 kB bandwidth-delay product): 131,752 B of VGG-16
    conv13 activations go 14,480 B in the first round trip, 28,960 B in the second, then the
    window covers the product and the rate carries the other 88,312 B. Measured in a dilated
    (reno) run: 0.274 s; at the rate alone 0.188 s."""
    link = LinkRates.from_profile(load_profile("4g"), bbr=False)
    assert link.restart and not link.bbr
    rest = 131_752 - INITIAL_WINDOW_B * 3
    assert link.restart_s(131_752, link.up_Bps) == pytest.approx(2 * 0.06 + rest / link.up_Bps)
    assert link.message_s(131_752, link.up_Bps, idle_s=2.0) == pytest.approx(0.2463, abs=1e-4)
    # a gap within the RTO (RTT + rto_min) keeps the window: the rate alone
    assert link.message_s(131_752, link.up_Bps, idle_s=0.06 + RTO_MIN_S - 0.01) == \
        pytest.approx(131_752 / link.up_Bps)
    # two RTOs halve the last message's window twice: 263.5 kB / 4 still covers the 42 kB
    # product (measured: 262 kB messages over wifi after two-RTO gaps went at the rate)
    assert link.message_s(131_752, link.up_Bps, idle_s=2 * 0.26 + 0.01) == \
        pytest.approx(131_752 / link.up_Bps)
    # seven halve it below the initial window: slow start from 10 segments, as above
    assert link.restart_s(131_752, link.up_Bps, 7 * 0.26 + 0.01) == \
        pytest.approx(link.restart_s(131_752, link.up_Bps))
    # in between, slow start from what is left: 263.5 kB / 2^4 = 16.5 kB, 33 kB, then the rate
    assert link.restart_s(131_752, link.up_Bps, 4 * 0.26 + 0.01) == pytest.approx(
        2 * 0.06 + (131_752 - 3 * 131_752 * 2 / 16) / link.up_Bps)
    # a message that fits the first windows pays their round trips only
    assert link.restart_s(INITIAL_WINDOW_B, link.up_Bps) == pytest.approx(
        INITIAL_WINDOW_B / link.up_Bps)
    # BBR paces instead (its own term), never restarts
    bbr = LinkRates.from_profile(load_profile("4g"), bbr=True)
    assert not bbr.restart and not bbr.idle_restarts(100.0)


def test_split_learning_pays_the_restart_both_ways_every_batch_and_no_extra_start_up():
    """1 MB/s both ways, 100 ms RTT (a 100 kB product), 200 kB each way: rounds of 14,480,
    28,960 and 57,920 B (0.3 s), then 98,640 B at the rate: 0.39864 s, not 0.2 s. The
    edge's 1.5 s of compute keeps each direction idle past the RTO every batch."""
    plain = LinkRates(up_Bps=1e6, down_Bps=1e6, d_up_s=0.05, d_down_s=0.05)
    reno = dataclasses.replace(plain, restart=True)
    s = Sizes(act_b=200_000, grad_b=200_000, raw_b=0)
    msg = 0.3 + (200_000 - 7 * INITIAL_WINDOW_B) / 1e6
    assert reno.restart_s(200_000, 1e6) == pytest.approx(msg)
    per = 1.5 + 0.01 + 0.1
    n = 20
    assert predict("split", C, s, reno, n).total_s == pytest.approx(n * (per + 2 * msg))
    # without the restart: the rates, and one start-up on the fresh connection
    assert predict("split", C, s, plain, n).total_s == pytest.approx(
        n * (per + 0.4) + plain.start_up_s(200_000))
    # pipelined methods keep their stream model (no idle gaps while link-bound)
    for method in ("hierarchical", "cloud", "edge"):
        assert predict(method, C, s, reno, n).total_s == predict(method, C, s, plain, n).total_s


def test_the_links_timeline_pays_the_restart_like_the_closed_form():
    """Split learning laid on a fixed-rate link's timeline (served by the link daemon) under
    reno: within the opportunities' granularity of the closed form, restart included, and
    longer than the same timeline without it."""
    from harness.predict.varying import predict_varying
    fixed = load_profile("4g")
    via_daemon = dataclasses.replace(fixed, outages=((0.0, 1e-9, "up"), (0.0, 1e-9, "down")))
    s = Sizes(act_b=131_752, grad_b=131_183, raw_b=0)
    closed = predict("split", C, s, LinkRates.from_profile(fixed, bbr=False), 30)
    timeline = predict_varying(via_daemon, "split", C, s, 30, bbr=False)
    assert timeline.total_s == pytest.approx(closed.total_s, rel=0.01)
    plain = predict("split", C, s, dataclasses.replace(
        LinkRates.from_profile(fixed, bbr=False), restart=False), 30)
    assert closed.total_s - plain.total_s > 30 * 0.15      # 0.058 s up + 0.115 s down a batch
