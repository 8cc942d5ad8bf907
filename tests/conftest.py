"""Shared fixtures and the `root` marker's skip rule."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (Mininet, iptables, network namespaces)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _threads():
    import torch
    torch.set_num_threads(1)
    yield


@pytest.fixture
def nothing_left():
    """Root tests of whole runs: start clean, and fail if the test left anything behind
    (processes, veths, cgroups, iptables rules); it is removed either way."""
    from harness.emulation.netclean import clean, leftovers
    if leftovers():
        clean()
    assert leftovers() == []
    yield
    left = leftovers()
    clean()
    assert left == [], f"left behind: {left}"
