"""Scenario validation: every malformed scenario names the field at fault."""
import pytest
import yaml

from harness.config import apply_overrides, load_scenario, parse_scenario
from harness.errors import HarnessError

BASE = {"name": "t", "dataset": {"name": "fake"}, "model": {"arch": "vgg16", "split": "conv4"}}


def with_(path, value):
    raw = apply_overrides(BASE, [])
    node = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return raw


@pytest.mark.parametrize("path,value,field", [
    ("name", "", "name"), ("name", "a b", "name"), ("bogus", 1, "bogus"),
    ("dataset.name", "imagenet", "dataset.name"), ("dataset.subset", 0, "dataset.subset"),
    ("dataset.subset", "many", "dataset.subset"), ("dataset.colour", "red", "dataset.colour"),
    ("model.arch", "alexnet", "model.arch"), ("model.split", "conv99", "model.split"),
    ("model.width", 0, "model.width"), ("model.width", "wide", "model.width"),
    ("model.exit_head", "big", "model.exit_head"), ("training.epochs", 0, "training.epochs"),
    ("training.batch_size", 1, "training.batch_size"), ("training.lr", -1, "training.lr"),
    ("training.optimizer", "lion", "training.optimizer"), ("training.momentum", 1.5, "training.momentum"),
    ("training.data_mode", "stream", "training.data_mode"), ("training.queue_size", 0, "training.queue_size"),
    ("training.epochs", True, "training.epochs"), ("compute.edge_cores", 0, "compute.edge_cores"),
    ("compute.cloud_threads", 0, "compute.cloud_threads"), ("methods", ["teleport"], "methods"),
    ("methods", [], "methods"), ("methods", ["split", "split"], "methods"),
    ("codec", "bf16", "codec"), ("repetitions", 0, "repetitions"), ("training", [1, 2], "training"),
    ("tolerances.goodput_ratio", 1.5, "tolerances.goodput_ratio"),
    # Names that become paths: one component, a safe charset, a sane length.
    ("name", "../up", "name"), ("name", ".hidden", "name"), ("name", "x" * 65, "name"),
    ("name", "a\0b", "name"), ("links", [".."], "links"), ("links", [".3g"], "links"),
    ("links", ["a b"], "links"), ("links", ["a..b"], "links"), ("links", ["sat\0.yaml"], "links"),
])
def test_malformed_scenarios_name_the_field(path, value, field):
    with pytest.raises(HarnessError) as err:
        parse_scenario(with_(path, value))
    assert field in str(err.value) and "\n" not in str(err.value)


def test_sweep_expands_to_cases():
    raw = with_("model.arch", ["vgg16", "resnet18"])
    raw["model"]["split"] = ["conv4", "layer2.1"]
    raw["links"] = ["3g", "wifi"]
    raw["methods"] = ["hierarchical", "split"]
    cases = parse_scenario(raw).cases()
    # Each arch keeps only its own split points: 2 archs x 1 split x 2 links x 2 methods.
    assert len(cases) == 8
    assert {(c.model.arch, c.model.split) for c in cases} == {("vgg16", "conv4"), ("resnet18", "layer2.1")}


def test_overrides_and_file_errors(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(BASE))
    scenario, raw = load_scenario(path, ["training.lr=0.01", "methods=[split]"])
    assert scenario.training.lr == 0.01 and scenario.methods == ("split",)
    assert raw["training"]["lr"] == 0.01
    with pytest.raises(HarnessError, match="key=value"):
        load_scenario(path, ["training.lr"])
    with pytest.raises(HarnessError, match="not found"):
        load_scenario(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(HarnessError, match="not valid YAML"):
        load_scenario(tmp_path / "bad.yaml")


def test_links_take_profile_names_or_profile_paths():
    raw = with_("links", ["3g", "/some/dir/sat.yaml", "mine/sat2.yml"])
    assert parse_scenario(raw).links == ("3g", "/some/dir/sat.yaml", "mine/sat2.yml")
