"""Device profiles: the shipped ones, loading by name and path, validation that names the field."""
import dataclasses
import re

import pytest
import yaml

from harness.emulation.devices import (DEVICES, DeviceProfile, all_devices, device_names, load_device,
                             parse_device)
from harness.errors import HarnessError

SHIPPED = {"rpi4", "rpi5", "jetson_nano", "laptop", "v100", "a100"}


def raw(**changes):
    base = {"name": "t", "kind": "edge", "accelerator": "cpu", "peak_gflops": 24.0,
            "efficiency": 0.2, "source": {"peak_gflops": "test", "efficiency": "test"}}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def write(tmp_path, data, stem="t"):
    path = tmp_path / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_shipped_profile_loads_and_sources_each_number():
    assert set(device_names()) == SHIPPED
    devices = all_devices()
    assert list(devices) == sorted(SHIPPED)
    for name, d in devices.items():
        assert d.name == name and d.kind in ("edge", "cloud", "any")
        assert d.accelerator in ("cpu", "gpu") and d.peak_gflops > 0 and 0 < d.efficiency <= 1
        for key in ("peak_gflops", "efficiency"):
            assert isinstance(d.source.get(key), str) and d.source[key].strip(), (name, key)
        assert (DEVICES / f"{name}.yaml").read_text().startswith("# ")


def test_shipped_numbers_follow_their_arithmetic():
    d = all_devices()
    assert d["rpi4"].peak_gflops == pytest.approx(4 * 1.5 * 8)
    assert d["rpi5"].peak_gflops == pytest.approx(4 * 2.4 * 16)
    assert d["jetson_nano"].peak_gflops == pytest.approx(128 * 2 * 0.9216, abs=0.05)
    assert d["laptop"].peak_gflops == pytest.approx(4 * 2.8 * 32)
    assert (d["v100"].peak_gflops, d["a100"].peak_gflops) == (15700, 19500)
    assert [d[n].kind for n in ("rpi4", "jetson_nano", "laptop", "v100", "a100")] == \
        ["edge", "edge", "any", "cloud", "cloud"]


def test_sustained_is_peak_times_efficiency():
    d = parse_device(raw(peak_gflops=48, efficiency=0.1))
    assert d.sustained_gflops == pytest.approx(4.8, rel=1e-12)
    assert d.to_dict()["sustained_gflops"] == pytest.approx(4.8, rel=1e-12)
    assert d.to_dict()["peak_gflops"] == 48.0 and d.to_dict()["source"]["efficiency"] == "test"
    for device in all_devices().values():
        assert device.sustained_gflops == pytest.approx(device.peak_gflops * device.efficiency)


def test_describe_one_line():
    d = parse_device(raw(name="rpi4", peak_gflops=24, efficiency=0.2))
    assert d.describe() == ("rpi4         edge  cpu   peak 24 GFLOP/s x 0.20 = 4.8 GFLOP/s "
                            "sustained  (efficiency ASSUMED, not measured)")
    assert load_device("v100").describe() == \
        ("v100         cloud gpu   peak 15700 GFLOP/s x 0.35 = 5495 GFLOP/s sustained  "
         "(efficiency ASSUMED, not measured)")


def test_load_by_path(tmp_path):
    path = write(tmp_path, raw(name="mine"), "mine")
    d = load_device(str(path))
    assert d == DeviceProfile("mine", "edge", "cpu", 24.0, 0.2)
    assert load_device(path) == d
    assert isinstance(d.peak_gflops, float)


def test_profile_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_device("rpi4").efficiency = 1.0


def test_name_must_match_file_stem(tmp_path):
    path = write(tmp_path, raw(name="other"), "mine")
    with pytest.raises(HarnessError, match=r"mine\.yaml: name: must equal the file name 'mine', "
                                           r"got 'other'"):
        load_device(str(path))


def test_unknown_name_lists_known():
    with pytest.raises(HarnessError, match=r"'tpu': unknown \(known: a100, jetson_nano, laptop, "
                                           r"rpi4, rpi5, v100\)"):
        load_device("tpu")
    with pytest.raises(HarnessError, match="device profile: '..': must not start with"):
        load_device("..")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(HarnessError, match=r"nope\.yaml: no such file \(known: a100, "):
        load_device(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("peak_gflops: [1,\n")
    with pytest.raises(HarnessError, match="bad.yaml: not valid YAML"):
        load_device(str(bad))


@pytest.mark.parametrize("changes, message", [
    ({"kind": "phone"}, r"kind: must be one of edge, cloud, any, got 'phone'"),
    ({"accelerator": "tpu"}, r"accelerator: must be one of cpu, gpu, got 'tpu'"),
    ({"efficiency": 1.5}, r"efficiency: must be in \(0, 1\], got 1.5"),
    ({"efficiency": 0}, r"efficiency: must be in \(0, 1\], got 0"),
    ({"efficiency": float("nan")}, r"efficiency: must be in \(0, 1\], got nan"),
    ({"peak_gflops": -3}, r"peak_gflops: must be > 0, got -3"),
    ({"peak_gflops": 0}, r"peak_gflops: must be > 0, got 0"),
    ({"peak_gflops": float("inf")}, r"peak_gflops: must be > 0, got inf"),
    ({"source": {"peak_gflops": "x"}}, r"source\.efficiency: missing"),
    ({"source": {"peak_gflops": "x", "efficiency": ""}}, r"source\.efficiency: expected a"),
    ({"source": {"peak_gflops": 3, "efficiency": "x"}}, r"source\.peak_gflops: expected a"),
    ({"source": "a datasheet"}, r"source: expected a mapping"),
    ({"source": ...}, r"source: missing"),
    ({"efficiency": ...}, r"efficiency: missing"),
    ({"bogus": 1}, r"bogus: unknown key \(known: name, kind, accelerator, peak_gflops, "),
    ({"peak_gflops": "fast"}, r"peak_gflops: expected a number, got 'fast'"),
    ({"efficiency": True}, r"efficiency: expected a number, got True"),
    ({"kind": 3}, r"kind: expected a string, got 3"),
    ({"name": ""}, r"name: expected a non-empty name"),
    ({"name": "a/b"}, r"name: 'a/b': only letters"),
])
def test_validation_names_the_field(changes, message):
    with pytest.raises(HarnessError, match=message) as info:
        parse_device(raw(**changes), "topologies/devices/x.yaml")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("topologies/devices/x.yaml: ")


def test_not_a_mapping():
    with pytest.raises(HarnessError, match=r"^x\.yaml: expected a mapping"):
        parse_device([1, 2], "x.yaml")


def test_errors_from_files_name_the_file(tmp_path):
    path = write(tmp_path, raw(efficiency=1.5))
    with pytest.raises(HarnessError, match="^" + re.escape(f"{path}: efficiency: must be in")):
        load_device(path)


def test_device_profile_measures_this_machine_and_writes_a_profile_said_measured(tmp_path):
    """run_bench.py device-profile: a profile whose rate is a measurement (its source says
    how), loadable as a device; shipped profiles that rest on assumptions say so in `list`."""
    import subprocess
    import sys

    from harness.emulation.devices import load_device
    from harness.paths import REPO
    out = tmp_path / "this_cpu.yaml"
    args = [sys.executable, "run_bench.py", "device-profile", "--out", str(out), "--width",
            "0.125", "--batch", "8", "--steps", "3", "--warmup", "1"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    device = load_device(out)
    assert device.measured and device.efficiency == 1.0 and device.peak_gflops > 0
    assert device.source["peak_gflops"].startswith("measured ")
    assert "median of 3 training steps" in device.source["peak_gflops"]
    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr, "never overwritten"
    listed = subprocess.run([sys.executable, "run_bench.py", "list"], cwd=REPO,
                            capture_output=True, text=True, timeout=300).stdout
    assert "rpi4" in listed and "(efficiency ASSUMED, not measured)" in listed
    assert not load_device("rpi4").measured
