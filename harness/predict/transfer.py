"""How long a message takes on a shaped link under TCP: rates, window growth, restart after
idle, loss recovery and BBR's pacing (the runtime model's link terms, harness.predict.runtime).

    python -c "from harness.predict.transfer import LinkRates"

Assumptions (each one a term the emulation may show to be missing):
- A transfer of b payload bytes takes (b + framing) / (rate x 1448/1514 x (1 - loss)) s (HTB
  shapes 1514-byte frames carrying 1448 payload bytes; each lost segment is sent again) and
  pays the one-way delay once.
- Loss also costs time where nothing overlaps it: a stop-and-wait message (split learning)
  completes when its last lost segment has been sent again. A segment sent at t (of the
  message's send time T) with three more behind it is found lost when their SACKs return
  (RACK), about t + RTT + 3 segment times, and resent: the message ends that much after T,
  if later; a loss among the last three waits out RACK's reordering window (t + 1.25 RTT),
  the last segment the tail loss probe (T + 2 RTT). The expectation runs over the position
  of the last lost segment: on a short path a loss found while the rest is still being sent
  costs nothing (4g_loss1's 262 kB activations: 0.40-0.47 s, 0.41 s without a loss), on a
  long one up to a round trip. Streams hide it.
- A fresh TCP connection starts with a 10-segment window: the first message pays one round
  trip per doubling until the window covers min(message, bandwidth-delay product).
- A fresh connection's pipelined stream (hierarchical, cloud-only) is carried at the rate its
  window allows while it grows: the window doubles each round trip from 10 segments until it
  covers the bandwidth-delay product, so batch k arrives when that curve has delivered k + 1
  messages (never before it was made and sent at the link's rate), taken in order (600 ms
  RTT, 5 Mbit/s: the first five 51 kB uploads took 2.8-3.4 s, not one message's 1.5 s). A
  start-up round with a lost segment costs a round trip more (resent a round trip later, what
  is behind it waits, BBR in recovery holds the window a round): 1 - (1 - p)^segments round
  trips per round in expectation (geo_lossy, 13 hierarchical and 15 cloud-only repetitions:
  median error -4.1% and -8.1% without the term, -2.8% and -3.4% with).
- Restart after idle, BBR (this kernel's default; tcp_slow_start_after_idle does not apply):
  a stop-and-wait message (split learning, both ways) follows an idle gap and every rate
  sample of its flow is app-limited, so BBR never leaves STARTUP (pacing gain g = 2/ln 2)
  and its bandwidth estimate settles where a message's sample, b / (RTT + b / (g x bw)),
  equals bw: bw = b (1 - 1/g) / RTT. Paced at g x bw, a message takes
  max(b / rate, RTT / (g - 1)) (262 kB bursts, 600 ms RTT, 20 Mbit/s: estimate 2.27 Mbit/s,
  2.29 from this; 0.316 s each, 0.318). On a lossy direction BBR leaves STARTUP within a few
  messages: a retransmission follows the message's first acknowledgement, so its rate sample
  is not app-limited and counts what its round trip delivered, at most b / RTT; three rounds
  without growth end STARTUP. In PROBE_BW a flow restarting from idle is paced at that
  estimate, so a message takes max(b / rate, RTT) (geo_lossy: 262 kB gradients 0.63 s
  without a loss from the tenth on, not 0.32 s; ss: estimate 2.95-3.12 Mbit/s, b / RTT =
  3.5); the first messages, before STARTUP ends, at that pace too.
- Restart after idle, cubic/reno (Linux's tcp_slow_start_after_idle, on by default): a
  message sent after more than an RTO of silence (RTT + rto_min's 200 ms) finds its window
  halved once per RTO of the gap, down to the 10-segment initial window (tcp_cwnd_restart);
  it was min(twice the message, bandwidth-delay product + queue) when the message before
  ended (slow start grows it while it is in use; a loss caps it near what the path holds).
  Below the bandwidth-delay product, the window doubles each round trip until it covers it;
  then the rate carries the rest. Split learning's messages, both ways, pay it every batch
  where the rest of the batch lasts several RTOs (a time-dilated run uses reno). Measured:
  VGG-16 conv13 over 4g at x1.3 (virtual seconds, gaps of seconds): 131.7 kB activations up
  in 0.274 s (modelled 0.276, the rate alone 0.218), 131 kB gradients down in 0.232 s (0.229,
  0.115); VGG-16/4 conv7 at x1, 262 kB each way: over 3g (gaps of 5-7 RTOs) 3.80 s a batch,
  3.64 at the rates alone, over wifi (2 RTOs) at the rates alone.
- BBR's PROBE_RTT: a flow whose minimum-RTT estimate is 10 s old holds 4 packets in flight
  for 200 ms plus a round trip. Every transfer time is stretched by 1 + (0.2 s + RTT) / 10 s
  (measured on a busy flow: 0.31 s lost per 10 s on 3g, 0.26 s on 4g; modelled 0.35, 0.26).
  An app-limited flow that sees its true RTT between messages may skip the probe: the term
  is then slightly pessimistic, in proportion to transfer time only.
- Still ignored: queueing behind one's own earlier messages beyond the rate term, BBR's
  probing and a STARTUP ended early by loss, a stream's head-of-line waits after start-up,
  PROBE_RTT entered while a message is still being sent (about 2 round trips), timeouts, a lost
  retransmission, ACK loss, jitter, the kernel's network work, Python outside the blocks.
Times are seconds, sizes bytes, rates bytes/s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.emulation.links import INITIAL_WINDOW_B, MSS_B, WIRE_EFFICIENCY

BBR_PROBE_RTT_S = 0.2             # BBR's PROBE_RTT lasts this long (and at least one RTT) ...
BBR_MIN_RTT_WINDOW_S = 10.0       # ... once its min-RTT estimate is this old
BBR_STARTUP_GAIN = 2 / math.log(2)  # BBR's STARTUP pacing gain (Linux: 2885/1000)
DUPTHRESH = 3                     # SACKed segments behind a hole that mark it lost at once
RACK_REORDER_RTTS = 0.25          # RACK's reordering window with fewer behind it (min_rtt / 4)
TLP_RTTS = 2.0                    # the tail loss probe fires 2 SRTT after the last segment
RTO_MIN_S = 0.2                   # Linux's rto_min: the RTO is at least RTT + this


@dataclass(frozen=True)
class LinkRates:
    up_Bps: float            # payload goodput after framing and retransmissions, bytes/s
    down_Bps: float
    d_up_s: float
    d_down_s: float
    loss_up: float = 0.0     # fraction of packets lost edge -> cloud
    loss_down: float = 0.0
    probe_rtt_s: float = 0.0  # seconds a busy BBR flow loses per 10 s (0: not modelled)
    bbr: bool = False         # BBR: a message after idle is paced (message_s)
    restart: bool = False     # loss-based (cubic, reno): a message after idle restarts slow start
    queue_b: float = 0.0      # the bottleneck queue, payload bytes (caps the window: restart)

    @property
    def rtt_s(self) -> float:
        return self.d_up_s + self.d_down_s

    @property
    def stretch(self) -> float:
        """Factor on every transfer time for BBR's PROBE_RTT (1 when not modelled)."""
        return 1 + self.probe_rtt_s / BBR_MIN_RTT_WINDOW_S

    def start_up_s(self, first_message_b: float) -> float:
        """Extra seconds the first message on a fresh connection spends growing the window."""
        need = min(first_message_b, self.up_Bps * self.rtt_s)
        if need <= INITIAL_WINDOW_B:
            return 0.0
        return (math.ceil(math.log2(need / INITIAL_WINDOW_B + 1)) - 1) * self.rtt_s

    def delivered_by_s(self, total_b: float) -> float:
        """Seconds from a fresh connection's first send until `total_b` bytes have arrived:
        the window doubles each round trip from INITIAL_WINDOW_B until it covers the
        bandwidth-delay product, a round with a lost segment taking one more (in expectation:
        P(a loss among its segments), module docstring), then the link's rate carries the rest."""
        t, sent = self._growing(total_b, self.up_Bps, INITIAL_WINDOW_B, self.loss_up)
        return t + max(0.0, total_b - sent) / self.up_Bps * self.stretch + self.d_up_s

    def _growing(self, total_b: float, rate_Bps: float, window: float,
                 loss: float = 0.0) -> tuple[float, float]:
        """(seconds, bytes sent) while a window starting at `window` doubles each round trip
        below the bandwidth-delay product and `total_b` is not yet sent; a round that loses a
        segment takes one more, in expectation P(a loss among its segments)."""
        bdp, sent, t = rate_Bps * self.rtt_s, 0.0, 0.0
        while window < bdp and sent + window < total_b:
            again = 1 - (1 - loss) ** (window / MSS_B)
            sent, t, window = sent + window * (1 + again), t + self.rtt_s * (1 + again), window * 2
        return t, sent

    def idle_restarts(self, idle_s: float) -> bool:
        """True when a message after `idle_s` of silence starts again from the initial window:
        a loss-based congestion control and a gap longer than the RTO (module docstring)."""
        return self.restart and idle_s > self.rtt_s + RTO_MIN_S

    def restart_s(self, message_b: float, rate_Bps: float, idle_s: float = math.inf) -> float:
        """Seconds a message spends being sent after `idle_s` of silence: from the window the
        gap left (module docstring), a round trip per doubling while it is below the
        bandwidth-delay product, then the rate."""
        halvings = min(64.0, idle_s // (self.rtt_s + RTO_MIN_S)) if idle_s < math.inf else 64.0
        left = min(2 * message_b, rate_Bps * self.rtt_s + self.queue_b) / 2 ** halvings
        t, sent = self._growing(message_b, rate_Bps, max(INITIAL_WINDOW_B, left))
        return t + (message_b - sent) / rate_Bps

    def message_s(self, message_b: float, rate_Bps: float, loss: float = 0.0,
                  idle_s: float = 0.0) -> float:
        """Seconds a stop-and-wait message sent after `idle_s` of silence on its direction
        spends being sent: its size at the rate, stretched for PROBE_RTT; under cubic/reno
        after a gap beyond the RTO, slow start from the window it left (restart_s); under BBR
        at least the paced time after idle: RTT / (g - 1) while STARTUP lasts, one round trip
        once a lossy direction has ended it (module docstring)."""
        t = message_b / rate_Bps * self.stretch
        if self.idle_restarts(idle_s):
            return max(t, self.restart_s(message_b, rate_Bps, idle_s))
        if not self.bbr:
            return t
        return max(t, self.rtt_s if loss > 0 else self.rtt_s / (BBR_STARTUP_GAIN - 1))

    def recovery_s(self, message_b: float, loss: float, send_s: float) -> float:
        """Expected extra seconds a stop-and-wait message sent over `send_s` spends waiting for
        its last lost segment to be found and sent again (module docstring)."""
        if loss <= 0:
            return 0.0
        n = max(1, math.ceil(message_b / MSS_B))
        gap, rtt, extra = send_s / n, self.rtt_s, 0.0
        for j in range(n):                  # j: the last segment lost
            sent = j * gap
            found = (sent + rtt + DUPTHRESH * gap if j < n - DUPTHRESH else
                     sent + (1 + RACK_REORDER_RTTS) * rtt if j < n - 1 else send_s + TLP_RTTS * rtt)
            extra += loss * (1 - loss) ** (n - 1 - j) * max(0.0, found - send_s)
        return extra

    @classmethod
    def from_profile(cls, p, bbr: bool = True) -> "LinkRates":
        """A profile's rates; `bbr`: the workers' congestion control is BBR (PROBE_RTT, pacing
        after idle), else a loss-based one (restart after idle)."""
        up, down = p.loss_pct / 100, getattr(p, "down_loss_pct", 0.0) / 100
        rtt_s = (p.up_delay_ms + p.down_delay_ms) / 1e3
        return cls(p.up_mbps * 1e6 / 8 * WIRE_EFFICIENCY * (1 - up),
                   p.down_mbps * 1e6 / 8 * WIRE_EFFICIENCY * (1 - down),
                   p.up_delay_ms / 1e3, p.down_delay_ms / 1e3, up, down,
                   BBR_PROBE_RTT_S + rtt_s if bbr else 0.0, bbr, not bbr,
                   getattr(p, "queue_packets", 0) * MSS_B)
