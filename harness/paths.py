"""Where things live: the repository's folders, the user's cache, the Debian dataset.

    python -c "from harness.paths import REPO; print(REPO)"

Every other module asks here instead of computing a path from its own `__file__`.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = REPO / "topologies"        # link profiles (YAML)
SCENARIOS = REPO / "scenarios"
RESULTS = REPO / "results"              # run directories; HIERBENCH_RESULTS overrides
BASELINES_DIR = RESULTS / "baselines"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")   # Debian dataset-fashion-mnist


def cache_dir() -> Path:
    """Per-user cache (un-gzipped data, compute profiles); HIERBENCH_CACHE overrides."""
    return Path(os.environ.get("HIERBENCH_CACHE", Path.home() / ".cache" / "hierbench"))


def results_dir() -> Path:
    """Where run directories go (HIERBENCH_RESULTS overrides the repository's results/)."""
    return Path(os.environ.get("HIERBENCH_RESULTS", RESULTS))
