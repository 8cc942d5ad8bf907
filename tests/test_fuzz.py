"""A reduced run of scripts/fuzz_cloud.py (the full one is 10,000+ live cases): hostile
connections against one live cloud, which must reject each for the expected reason and then
serve a real edge; mutated post-handshake frames in-process; bad frames against live workers."""
import importlib.util
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fuzz_cloud.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_cloud", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_cloud"] = module           # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_reduced_fuzz_finds_nothing(fuzz, tmp_path, capsys, monkeypatch):
    for name in ("HIERBENCH_SECRET", "HIERBENCH_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    start = time.monotonic()
    args = fuzz.parse_args(["--cases", "300", "--frames", "800", "--live", "2", "--slow", "4",
                            "--floods", "1", "--seed", "7", "--work-dir", str(tmp_path)])
    report = fuzz.run(args)
    elapsed = time.monotonic() - start
    with capsys.disabled():
        print("\n" + fuzz.summary(report, args) + f"\n(test: {elapsed:.1f} s)")
    assert report.failures == []
    live = sum(v for k, v in report.counts.items() if k in fuzz.CATEGORIES or k in ("slow", "flood"))
    assert live == 300
    assert all(report.counts[k] > 0 for k in fuzz.CATEGORIES if k != "pickle")
    assert sum(v for k, v in report.counts.items() if "mutated" in k) > 400
    assert report.counts["live bad frames"] == 3          # two clouds and one edge
    assert not (tmp_path / "pwned").exists(), "a payload was unpickled"


def test_probes_are_reproducible_from_the_seed(fuzz):
    """The same seed draws the same cases (a failure can be replayed)."""
    import random

    def draw(seed):
        ctx = fuzz.Ctx(random.Random(seed), "0123456789abcdef", Path("/nonexistent"))
        return [fuzz.gen_header(ctx).send for _ in range(50)]
    assert draw(3) == draw(3) != draw(4)
