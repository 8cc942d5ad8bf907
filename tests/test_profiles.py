"""Link profiles: loading, validation, and the one conversion to per-interface parameters."""
import dataclasses

import pytest
import yaml

from harness.errors import HarnessError
from harness.emulation.links import LinkProfile, link_params, list_profiles, load_profile, parse_profile

# DESIGN.md section 4: (up Mbit/s, down Mbit/s, RTT ms)
TABLE = {"3g": (1.1, 2.0, 150), "4g": (5.85, 13, 60), "wifi": (18.88, 30, 20)}


def raw(**changes):
    base = {"name": "t", "up_mbps": 5.0, "down_mbps": 10.0, "up_delay_ms": 10, "down_delay_ms": 30,
            "jitter_ms": 2, "loss_pct": 1.5, "queue_packets": 50, "source": {"up_mbps": "test"}}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_shipped_profiles_match_design_table():
    assert set(TABLE) <= set(list_profiles())
    for name, (up, down, rtt) in TABLE.items():
        p = load_profile(name)
        assert (p.name, p.up_mbps, p.down_mbps, p.rtt_ms, p.loss_pct) == (name, up, down, rtt, 0)
        assert p.queue_packets >= 1 and isinstance(p.queue_packets, int)


def test_every_number_in_shipped_profiles_names_its_source():
    for name in TABLE:
        p = load_profile(name)
        for key in ("up_mbps", "down_mbps", "up_delay_ms", "down_delay_ms", "jitter_ms", "loss_pct",
                    "queue_packets", "rtt_ms"):
            assert isinstance(p.source.get(key), str) and p.source[key].strip(), (name, key)


def test_load_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw(name="mine")))
    p = load_profile(str(path))
    assert p == LinkProfile("mine", 5.0, 10.0, 10.0, 30.0, 2.0, 1.5, 50)
    assert p.rtt_ms == 40.0 and p.to_dict()["rtt_ms"] == 40.0


def test_unknown_name_lists_known():
    with pytest.raises(HarnessError, match=r"'5g': unknown \(known: .*3g.*wifi"):
        load_profile("5g")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(HarnessError, match="no such file"):
        load_profile(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("up_mbps: [1,\n")
    with pytest.raises(HarnessError, match="not valid YAML"):
        load_profile(str(bad))


@pytest.mark.parametrize("changes, message", [
    ({"bogus": 1}, r"bogus: unknown key"),
    ({"up_mbps": ...}, r"up_mbps: missing"),
    ({"source": ...}, r"source: missing"),
    ({"up_mbps": "fast"}, r"up_mbps: expected a number, got 'fast'"),
    ({"loss_pct": True}, r"loss_pct: expected a number"),
    ({"down_mbps": None}, r"down_mbps: expected a number"),
    ({"up_mbps": 0}, r"up_mbps: must be > 0"),
    ({"down_mbps": -1}, r"down_mbps: must be > 0"),
    ({"up_mbps": 2000}, r"up_mbps: must be > 0 and <= 1000"),
    ({"up_delay_ms": -1}, r"up_delay_ms: must be >= 0"),
    ({"down_delay_ms": -0.5}, r"down_delay_ms: must be >= 0"),
    ({"jitter_ms": -1}, r"jitter_ms: must be >= 0"),
    ({"loss_pct": 100}, r"loss_pct: must be in \[0, 100\)"),
    ({"loss_pct": -1}, r"loss_pct: must be in \[0, 100\)"),
    ({"queue_packets": 0}, r"queue_packets: must be >= 1"),
    ({"queue_packets": 10.5}, r"queue_packets: must be a whole number"),
    ({"name": ""}, r"name: expected a non-empty string"),
    ({"source": "a paper"}, r"source: expected a mapping"),
])
def test_validation_names_the_field(changes, message):
    with pytest.raises(HarnessError, match=message) as info:
        parse_profile(raw(**changes), "x.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("x.yaml: ")


def test_not_a_mapping():
    with pytest.raises(HarnessError, match="expected a mapping"):
        parse_profile([1, 2], "x.yaml")


def test_profile_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_profile("3g").up_mbps = 2


def test_params_without_netem_rates_per_direction_impairments_on_receiver():
    p = parse_profile(raw())
    edge, cloud = link_params(p, netem=False)
    assert edge["tc"]["bw"] == 5.0 and cloud["tc"]["bw"] == 10.0   # egress: up on edge
    for side in (edge, cloud):
        assert not {"delay", "jitter", "loss", "max_queue_size"} & set(side["tc"])
        assert side["pfifo_limit"] == 50
        assert side["tc"]["gro"] is side["tc"]["txo"] is side["tc"]["rxo"] is False
    # up traffic arrives at the cloud: its INPUT chain carries the up delay, jitter and loss
    assert cloud["input"] == {"delay_ms": 10.0, "jitter_ms": 2.0, "loss_pct": 1.5,
                             "link": None}      # a fixed rate: HTB is the link
    assert edge["input"] == {"delay_ms": 30.0, "jitter_ms": 0.0, "loss_pct": 0.0, "link": None}


def test_params_with_netem_each_impairment_once():
    p = parse_profile(raw())
    edge, cloud = link_params(p, netem=True)
    assert edge["tc"] == {"bw": 5.0, "delay": "10ms", "jitter": "2ms", "loss": 1.5,
                          "max_queue_size": 50, "gro": False, "txo": False, "rxo": False}
    assert cloud["tc"] == {"bw": 10.0, "delay": "30ms", "max_queue_size": 50,
                           "gro": False, "txo": False, "rxo": False}
    assert edge["input"] is cloud["input"] is None
    assert edge["pfifo_limit"] is cloud["pfifo_limit"] is None


@pytest.mark.parametrize("netem", [True, False])
def test_delays_sum_to_rtt_nothing_doubles(netem):
    for name in TABLE:
        p = load_profile(name)
        edge, cloud = link_params(p, netem)
        if netem:
            total = sum(float(s["tc"]["delay"].removesuffix("ms")) for s in (edge, cloud))
            losses = [s["tc"].get("loss", 0) for s in (edge, cloud)]
        else:
            total = sum(s["input"]["delay_ms"] for s in (edge, cloud))
            losses = [s["input"]["loss_pct"] for s in (edge, cloud)]
        assert total == pytest.approx(p.rtt_ms)
        assert sum(losses) == p.loss_pct


def test_zero_jitter_and_loss_add_no_netem_args():
    edge, _ = link_params(load_profile("4g"), netem=True)
    assert "jitter" not in edge["tc"] and "loss" not in edge["tc"]


def test_profile_file_name_field_must_be_a_safe_name(tmp_path):
    for bad in ("../evil", "a/b", ".hidden"):
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump(raw(name=bad)))
        with pytest.raises(HarnessError, match=r"p\.yaml: name: ") as info:
            load_profile(str(path))
        assert "\n" not in str(info.value)
    with pytest.raises(HarnessError, match="link profile: '..': must not start with"):
        load_profile("..")


def test_profile_by_path_runs_under_its_own_name(tmp_path):
    """links: [/dir/sat.yaml] gives cases, labels and links/<dir> named 'sat', inside the run."""
    from harness.config import parse_scenario
    from harness.run.rundir import case_plan, link_dir
    from harness.run.scenario import resolve_links
    path = tmp_path / "dir" / "sat.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw(name="sat", up_mbps=2.5)))
    scenario = parse_scenario({"name": "t", "dataset": {"name": "fake"}, "links": [str(path), "3g"],
                               "methods": ["hierarchical", "split"]})
    scenario, profiles = resolve_links(scenario)
    assert scenario.links == ("sat", "3g") and profiles["sat"].up_mbps == 2.5
    assert {c.link for c in scenario.cases()} == {"sat", "3g"}
    names = [name for name, _, _ in case_plan(scenario)]
    assert len(names) == 4 and all("/" not in n for n in names)
    assert [n.split("-")[4] for n in names] == ["sat", "sat", "3g", "3g"]
    run_dir = tmp_path / "run"
    where = link_dir(run_dir, "sat")
    assert where == run_dir / "links" / "sat" and where.is_dir()
    (where / "linkcheck.json").write_text("{}")
    link_dir(run_dir, "sat")                 # a resume calibrates again, keeping the first
    assert [p.name for p in where.iterdir()] == ["linkcheck.before-resume-1.json"]
    with pytest.raises(HarnessError, match="link profile name"):
        link_dir(run_dir, "../out")


def test_two_links_with_one_profile_name_are_refused(tmp_path):
    from harness.config import parse_scenario
    from harness.run.scenario import resolve_links
    copy = tmp_path / "also3g.yaml"
    copy.write_text(yaml.safe_dump(raw(name="3g")))
    scenario = parse_scenario({"name": "t", "dataset": {"name": "fake"},
                               "links": ["3g", str(copy)]})
    with pytest.raises(HarnessError, match=r"^links: '3g' and '.*also3g.yaml' are both profile"):
        resolve_links(scenario)


def test_preflight_checks_profile_paths_over_loopback_too(tmp_path):
    from harness.config import parse_scenario
    from harness.run.scenario import Options, preflight
    scenario = parse_scenario({"name": "t", "dataset": {"name": "fake"},
                               "links": [str(tmp_path / "nope.yaml")]})
    with pytest.raises(HarnessError, match="nope.yaml: no such file"):
        preflight(scenario, Options(emulate=False))
