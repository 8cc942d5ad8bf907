"""Calibration probes: a transient iperf3 failure is retried (bounded, each try recorded); a
real failure is not (no root needed: the single run is replaced)."""
import pytest

from harness.emulation import probes
from harness.errors import HarnessError

REPORT = {"end": {"sum_received": {"bits_per_second": 5e6}}, "intervals": []}


def scripted(monkeypatch, outcomes):
    calls = []

    def once(link, direction, extra, timeout_s, on_start=None):
        calls.append(direction)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    monkeypatch.setattr(probes, "_iperf3_once", once)
    return calls


class Link:
    emulation = {}


def test_a_transient_failure_is_retried_and_recorded(monkeypatch):
    flaky = probes.TransientProbeError("linkcheck: iperf3 down: unable to read from stream socket")
    calls = scripted(monkeypatch, [flaky, REPORT])
    got = probes.measure_goodput(Link(), "down", 3, 1)
    assert len(calls) == 2 and got["mean_mbps"] == 5.0
    assert got["failed_tries"] == ["linkcheck: iperf3 down: unable to read from stream socket"]
    calls = scripted(monkeypatch, [REPORT])
    assert probes.measure_goodput(Link(), "up", 3, 1)["failed_tries"] == [] and len(calls) == 1


def test_three_transient_failures_stop_with_every_reason(monkeypatch):
    errors = [probes.TransientProbeError(f"linkcheck: iperf3 up: failure {i}") for i in range(3)]
    calls = scripted(monkeypatch, errors + [REPORT])
    with pytest.raises(HarnessError, match=r"failure 2 \(3 tries failed: .*failure 0; .*failure 1\)"):
        probes.measure_goodput(Link(), "up", 3, 1)
    assert len(calls) == probes.PROBE_TRIES == 3


def test_a_real_failure_is_not_retried(monkeypatch):
    calls = scripted(monkeypatch, [HarnessError("linkcheck: the link's delay daemon died"), REPORT])
    with pytest.raises(HarnessError, match="delay daemon died"):
        probes.measure_goodput(Link(), "up", 3, 1)
    assert len(calls) == 1
