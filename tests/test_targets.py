"""Device profiles as per-batch compute: FLOPs / sustained rate, this machine's cores for a
device, and block costs the runtime model reads unchanged (no timing: synthetic host costs)."""
import pytest

from harness.emulation.devices import load_device
from harness.predict.flops import block_flops, part_flops
from harness.predict.runtime import costs_from_profile
from harness.predict.targets import cores_needed, device_costs, host_gflops, part_targets

ARGS = ("vgg16", 0.25, "fashion_mnist", 32)
HOST_GFLOPS = 20.0


def synthetic_host(threads=1):
    """Block costs as if this machine trained at exactly HOST_GFLOPS per core."""
    counted = block_flops(*ARGS)
    rate = HOST_GFLOPS * 1e9 * threads
    return {"arch": ARGS[0], "width": ARGS[1], "dataset": ARGS[2], "batch_size": ARGS[3],
            "threads": threads, "preprocess_s": 0.01,
            "blocks": [{"block": b["block"], "forward_s": b["fwd"] / rate,
                        "backward_step_s": b["bwd"] / rate, "out_bytes_per_sample": 4}
                       for b in counted["blocks"]],
            "heads": {k: {"forward_s": 1.0, "backward_step_s": 1.0} for k in counted["heads"]}}


def test_targets_are_flops_over_the_sustained_rate():
    rpi = load_device("rpi4")
    t = part_targets(rpi, *ARGS, "conv4")
    flops = part_flops(*ARGS, "conv4")
    for part in ("edge", "head", "cloud"):
        assert t[part]["target_s"] == pytest.approx(flops[part]["total_train"] / 4.8e9)
    assert t["edge"]["target_s"] < t["cloud"]["target_s"]       # conv4 leaves most FLOPs up


def test_host_rate_and_cores_a_device_needs():
    host = synthetic_host()
    assert host_gflops(host) == pytest.approx(HOST_GFLOPS)
    assert cores_needed(load_device("rpi4"), host) == pytest.approx(4.8 / HOST_GFLOPS)
    assert cores_needed(load_device("v100"), host) == pytest.approx(5495 / HOST_GFLOPS)
    two = synthetic_host(threads=2)                            # timed at 2 threads: per core
    assert cores_needed(load_device("rpi4"), two) == pytest.approx(4.8 / HOST_GFLOPS)


def test_device_costs_feed_the_runtime_model_with_the_devices_times():
    host = synthetic_host()
    rpi, gpu = load_device("rpi4"), load_device("v100")
    edge, cloud = device_costs(host, rpi), device_costs(host, gpu)
    assert edge["statistic"] == "modelled" and "rpi4" in edge["machine"]
    assert edge["preprocess_s"] == pytest.approx(0.01 * HOST_GFLOPS / 4.8)
    costs = costs_from_profile(edge, cloud, "conv4", 1.0, 1.0)
    flops = part_flops(*ARGS, "conv4")
    assert costs.edge_fwd_s + costs.edge_bwd_s == pytest.approx(
        0.01 * HOST_GFLOPS / 4.8 + flops["edge"]["total_train"] / 4.8e9)
    assert costs.head_s == pytest.approx(flops["head"]["total_train"] / 4.8e9)
    assert costs.cloud_s == pytest.approx(flops["cloud"]["total_train"] / 5495e9)
    assert host["heads"]["conv4"]["forward_s"] == 1.0           # the input is not changed


def test_a_capped_device_runs_no_faster_than_this_machine_holds_a_paced_step():
    from harness.predict.targets import capped_costs
    host = synthetic_host()
    gpu = device_costs(host, load_device("v100"))             # 275x this host's core
    capped = capped_costs(gpu, host, k=2.0, margin=1.5)
    for dev, cap, timed in zip(gpu["blocks"], capped["blocks"], host["blocks"]):
        for key in ("forward_s", "backward_step_s"):
            assert dev[key] < 1.5 * timed[key] / 2                # the GPU: faster than held
            assert cap[key] == pytest.approx(1.5 * timed[key] / 2)
    assert capped["preprocess_s"] == pytest.approx(1.5 * 0.01 / 2)
    assert capped["capped_by"] == pytest.approx(
        (0.01 + sum(b["forward_s"] + b["backward_step_s"] for b in host["blocks"]))
        / (gpu["preprocess_s"] + sum(b["forward_s"] + b["backward_step_s"]
                                     for b in gpu["blocks"])) * 0.75)
    assert "capped" in capped["machine"] and gpu["blocks"][0] is not capped["blocks"][0]
    # a device slower than the floor keeps its own times: capping never speeds a device up
    rpi = device_costs(host, load_device("rpi4"))
    same = capped_costs(rpi, host, k=2.0, margin=1.5)
    assert [b["forward_s"] for b in same["blocks"]] == [b["forward_s"] for b in rpi["blocks"]]
    assert same["capped_by"] == pytest.approx(1.0)
