"""Scenarios: YAML in, validated frozen dataclasses out, sweeps expanded into cases.

    python run_bench.py run scenarios/quick.yaml --set training.lr=0.01

A scenario is one YAML file; `--set key=value` overrides a dotted key before validation; any
error names the field. `model.arch`, `model.split`, `codec`, `methods` and `links` may be lists
(a sweep); `Scenario.cases()` expands the matrix into `Case`s, one per worker pair.
It is longer than 300 lines: the whole scenario schema and its validation, read together.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.catalog import (ARCHS, CODECS, DATASETS, EXIT_HEADS, METHODS, OPTIMIZERS,
                             SCHEDULES, SHAPEABLE_TEST_SAMPLES, split_points)
from harness.errors import HarnessError
from harness.fields import check_type, section, str_list, top_mapping


# Names that become a path component (scenario, profile, case label): what METRIC@LINK takes.
NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")
MAX_NAME_CHARS = 64


def check_name(value: Any, where: str) -> str:
    """A name that becomes one path component: no '/', no '..', no leading '.', no NUL."""
    if not isinstance(value, str) or not value:
        raise HarnessError(f"{where}: expected a non-empty name, got {value!r}")
    shown, bad = repr(value if len(value) <= 40 else value[:40] + "..."), set(value) - NAME_CHARS
    problem = (f"longer than {MAX_NAME_CHARS} characters" if len(value) > MAX_NAME_CHARS else
               f"only letters, digits, '-', '_' and '.' allowed (not {''.join(sorted(bad))!r})"
               if bad else "must not start with '.' or contain '..'"
               if value.startswith(".") or ".." in value else None)
    if problem:
        raise HarnessError(f"{where}: {shown}: {problem}")
    return value


def link_is_path(entry: str) -> bool:
    """A `links` entry naming a profile file (`/some/dir/sat.yaml`) rather than a profile."""
    return entry.endswith((".yaml", ".yml")) or "/" in entry


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "fashion_mnist"
    root: str | None = None           # None: the Debian package (Fashion-MNIST only)
    subset: int | None = None         # training samples kept (seeded); None: all
    test_subset: int | None = None    # test samples kept; None: all
    missing: str = "refuse"           # no root: refuse, or shaped (generated, timing only)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "vgg16"
    width: float = 0.25
    split: str = "conv4"
    exit_head: str = "dgl"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    max_batches: int | None = None    # stop each epoch after this many batches
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    queue_size: int = 2               # hierarchical/cloud in-flight batches on the edge
    nesterov: bool = False            # SGD with Nesterov momentum
    schedule: str = "constant"        # learning rate: constant, cosine, onecycle (train.recipe)
    warmup: float = 0.0               # share of all steps spent ramping the rate up linearly
    augment: bool | None = None       # random crop + flip; None: the dataset's default


@dataclass(frozen=True)
class ComputeConfig:
    edge_cores: float = 1.0           # CPU cores (not a fraction of the machine)
    cloud_cores: float = 1.0
    edge_threads: int = 1             # torch intra-op threads per worker
    cloud_threads: int = 1
    edge_device: str | None = None    # device profile: its share is calibrated, not *_cores
    cloud_device: str | None = None
    # Where a worker trains (harness.workers.placement): cpu (emulated speed), or cuda / cuda:N,
    # a real GPU whose speed is its own (not paced, shared out or dilated).
    edge_backend: str = "cpu"
    cloud_backend: str = "cpu"
    # Time dilation k (DESIGN.md section 9): link rates / k, delays x k, CPU shares / k, times
    # reported / k. None ("auto" in YAML): the smallest k (in tenths) that fits this machine's
    # cores, chosen by the runner; a case carries the k it ran under.
    dilation: float | None = None
    max_dilation: float = 8.0         # a device that would need more dilation is ...
    # ... "model" (default, paced compute only): its steps wait their modelled time with no
    # real compute (harness.workers.modelled); "refuse": the scenario is refused; "cap": runs
    # at max_dilation with the device's steps no faster than this machine holds there. Said
    # in the run and its summary. Without pacing a device beyond the ceiling is refused.
    over_ceiling: str = "model"
    # Paced compute (harness.run.pacing): each training step runs at full speed, then waits
    # until the runtime model's time for that step on the virtual device has passed, so the
    # host machine's own speed drift does not reach the measurement. False: CPU shares.
    pace: bool = False
    # Per-step targets in real seconds, {role: {phase: s}}: set by the runner for each case
    # it runs paced (never in a scenario); None: compute is not paced.
    pace_s: dict | None = None
    # The roles whose steps are modelled, not computed (set by the runner, never in a
    # scenario: harness.run.virtual decides it from the device and this machine).
    modelled: tuple = ()

    def host_cores(self, role: str) -> float:
        """The `role` host's virtual speed in this machine's cores under the dilation: its
        cores / k (what the runtime model's compute costs assume)."""
        return getattr(self, f"{role}_cores") / dilation_of(self)

    def pace_for(self, role: str, phase: str = "step") -> float | None:
        """Seconds a paced compute step of `role` lasts (harness.run.pacing), None when not
        paced (or the role trains on a real GPU); a malformed target in a case file is
        refused by name."""
        if self.pace_s is None or getattr(self, f"{role}_backend") != "cpu":
            return None
        value = (self.pace_s.get(role) or {}).get(phase)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 3600:
            raise HarnessError(f"case file: compute.pace_s.{role}.{phase}: expected seconds in "
                               f"[0, 3600), got {value!r}")
        return float(value)

    def source(self, role: str) -> str:
        """How the `role` host's step times arise: real-gpu (its own speed), modelled (waits
        the device's modelled time, no compute), paced (real compute waits out its target) or
        shares (real compute under a CPU share)."""
        if getattr(self, f"{role}_backend") != "cpu":
            return "real-gpu"
        if role in self.modelled:
            return "modelled"
        return "paced" if self.pace else "shares"

    def cgroup_cores(self, role: str) -> float:
        """The CPU share the `role` host's cgroup gets: its virtual speed (host_cores), or one
        core per torch thread when compute is paced (real steps run at full speed and the
        pacing, not the share, sets their time)."""
        if self.pace:
            return float(getattr(self, f"{role}_threads"))
        return self.host_cores(role)


def dilation_of(compute: ComputeConfig) -> float:
    """The time dilation factor a case runs under (1 while still 'auto', or unshaped)."""
    return compute.dilation or 1.0


@dataclass(frozen=True)
class Tolerances:
    goodput_ratio: float = 0.90       # measured / configured, per direction, at least
    rtt_rel: float = 0.10             # |measured - profile| <= rtt_rel * profile + rtt_abs_ms
    rtt_abs_ms: float = 1.0
    loss_abs_pct: float = 0.3         # |measured - configured| loss, percentage points
    jitter_rel: float = 0.3           # |measured - expected| <= jitter_rel * expected + abs
    # 2 ms: the delay daemon's wake-ups on a busy 2-core VM gave 0.53-0.91 ms of jitter on an
    # unjittered 3g link (CI, 5-9% CPU steal); 2 ms is 10% of the shortest shipped RTT (wifi,
    # 20 ms), the share rtt_rel already allows, so it moves no runtime term by more than that.
    jitter_abs_ms: float = 2.0
    compute_rel: float = 0.10         # |measured / device target - 1| per batch, at most
    trace_rel: float = 0.10           # |saturated delivery / trace's window mean - 1|, at most


@dataclass(frozen=True)
class MeasureConfig:
    """How the benchmark spends its time.

    timing_batches: when set, runtime is measured under emulation on at most this many batches
    per case, and stops earlier once at least `min_batches` have completed and the steady
    per-batch interval is known to `ci_target` (95% CI, relative) or `max_seconds` have been
    measured; the full-budget runtime is
    then estimated as fill + (N-1) x interval (harness.analysis.steady). Accuracy comes from
    an unshaped run of the full training budget (valid because the update sequence does not
    depend on the link; a test checks it). When None, every emulated case trains the full
    budget and both come from the same run.
    """
    timing_batches: int | None = None
    min_batches: int = 10              # floor of a timing window, batches
    ci_target: float = 0.05            # stop once the interval's 95% CI is within this fraction
    max_seconds: float = 60.0          # or once this much is measured (past the floor)
    calibrate_seconds: float = 3.0     # iperf3 seconds per direction measured, at least
    curve_every: int = 10              # accuracy pass: both exits evaluated every this many
                                       # batches, off the clock (0: at the end only)


@dataclass(frozen=True)
class Case:
    """One fully resolved run: what a pair of workers receives."""
    dataset: DatasetConfig
    model: ModelConfig
    training: TrainConfig
    compute: ComputeConfig
    method: str
    codec: str = "fp32"
    link: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        return f"{self.model.arch}-{self.model.split}-{self.codec}-{self.link or 'none'}-{self.method}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    archs: tuple[str, ...] = ("vgg16",)
    splits: tuple[str, ...] = ("conv4",)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    methods: tuple[str, ...] = ("hierarchical", "split", "cloud", "edge")
    links: tuple[str, ...] = ("3g",)
    codecs: tuple[str, ...] = ("fp32",)
    repetitions: int = 1
    tolerances: Tolerances = field(default_factory=Tolerances)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    checks: tuple[str, ...] = ()
    tcp_cc: str | None = None       # workers' TCP congestion control; None: the kernel's default
    accuracy_targets: tuple[float, ...] = ()   # time-to-accuracy targets (test accuracy)
    kind: str = "benchmark"         # benchmark (timed cases) or accuracy (a study: trainings)
    heads: tuple[str, ...] = ("dgl",)          # exit-head designs (model.exit_head)
    seeds: tuple[int, ...] = (0,)              # training seeds (training.seeds or .seed)
    # model.split: auto (beside fixed splits or alone) -- selection {max_accuracy_drop: share}
    # or {by: runtime}; the split is picked per (arch, link) by harness.study.select, which
    # fills picked_splits ((arch, link, split), ...) and chosen_splits, every (arch, link,
    # split) to run: the pick and the fixed splits.
    selection: dict = field(default_factory=dict)
    chosen_splits: tuple[tuple[str, str, str], ...] = ()
    picked_splits: tuple[tuple[str, str, str], ...] = ()

    def cases(self) -> list[Case]:
        """The sweep matrix, model-major; each arch takes only the split points it has."""
        out = []
        chosen = set(self.chosen_splits)
        for arch, split, codec, link, method in itertools.product(
                self.archs, self.splits, self.codecs, self.links, self.methods):
            if split not in split_points(arch) or (chosen and (arch, link, split) not in chosen):
                continue
            model = dataclasses.replace(self.model, arch=arch, split=split)
            out.append(Case(self.dataset, model, self.training, self.compute, method, codec, link))
        return out


# Keys older scenarios may carry, and why they are gone.
REMOVED_KEYS = {"training.data_mode": "no longer a key: it was validated but never changed a "
                                      "run (delete the line)"}
SECTIONS = {"dataset": DatasetConfig, "training": TrainConfig, "compute": ComputeConfig,
            "tolerances": Tolerances, "measure": MeasureConfig}
TOP_KEYS = {"name", "description", "dataset", "model", "training", "compute", "methods",
            "links", "codec", "repetitions", "tolerances", "measure", "checks", "tcp_cc",
            "accuracy_targets", "kind", "selection"}
SCENARIO_KINDS = ("benchmark", "accuracy")


def parse_scenario(raw: Any, source: str = "scenario") -> Scenario:
    """Validate a scenario mapping; every error names the offending field."""
    top_mapping(raw, source, sorted(TOP_KEYS))
    if not isinstance(raw.get("name"), str) or not raw["name"].strip():
        raise HarnessError(f"{source}: name: required, a non-empty string")
    name = check_name(raw["name"], f"{source}: name")
    training_raw = raw.get("training")
    seeds = None
    if isinstance(training_raw, dict) and "seeds" in training_raw:
        training_raw = dict(training_raw)
        seeds = _seeds(training_raw.pop("seeds"))
        training_raw["seed"] = seeds[0]
    sections = {key: section(cls, _auto(training_raw if key == "training" else raw.get(key),
                                        key), key, REMOVED_KEYS)
                for key, cls in SECTIONS.items()}
    model_raw = dict(raw.get("model") or {})
    if not isinstance(raw.get("model", {}), (dict, type(None))):
        raise HarnessError("model: expected a mapping")
    archs = str_list(model_raw.pop("arch", "vgg16"), "model.arch", ARCHS)
    splits = _splits(model_raw.pop("split", "conv4"), archs)
    selection = _selection(raw.get("selection"), splits)
    heads = str_list(model_raw.pop("exit_head", "dgl"), "model.exit_head", EXIT_HEADS)
    model = section(ModelConfig, {**model_raw, "exit_head": heads[0]}, "model")
    for split in (s for s in splits if s != "auto"):
        if not any(split in split_points(arch) for arch in archs):
            valid = "; ".join(f"{a}: {', '.join(split_points(a))}" for a in archs)
            raise HarnessError(f"model.split: unknown split point {split!r} ({valid})")
    for arch in (() if "auto" in splits else archs):
        if not any(s in split_points(arch) for s in splits):
            raise HarnessError(f"model.split: none of {list(splits)} is a split point of {arch}")
    scenario = Scenario(
        name=name, description=str(raw.get("description", "")), archs=archs, splits=splits,
        model=model, methods=str_list(raw.get("methods", list(METHODS)), "methods", METHODS),
        links=_links(raw.get("links", "3g")),
        codecs=str_list(raw.get("codec", "fp32"), "codec", CODECS),
        repetitions=check_type("repetitions", raw.get("repetitions", 1), "int"),
        checks=str_list(raw["checks"], "checks") if raw.get("checks") else (),
        tcp_cc=_tcp_cc(raw.get("tcp_cc")),
        accuracy_targets=_targets(raw.get("accuracy_targets")), kind=_kind(raw.get("kind")),
        heads=heads, seeds=seeds or (sections["training"].seed,),
        selection=selection, **sections)
    _validate_values(scenario, DATASETS, OPTIMIZERS)
    return scenario


def _kind(raw: Any) -> str:
    if raw is None:
        return "benchmark"
    if raw not in SCENARIO_KINDS:
        raise HarnessError(f"kind: expected one of {', '.join(SCENARIO_KINDS)}, got {str(raw)[:40]!r}")
    return raw


def _splits(raw: Any, archs: tuple[str, ...]) -> tuple[str, ...]:
    """model.split: a point, a list, or `all` (every point of every arch, input side first)."""
    if raw == "all":
        return tuple(dict.fromkeys(p for arch in archs for p in split_points(arch)))
    return str_list(raw, "model.split")


def _selection(raw: Any, splits: tuple[str, ...]) -> dict:
    """selection: {max_accuracy_drop: a share in (0, 1)} or {by: runtime}, with model.split:
    auto only (alone, or beside fixed splits that then run on every link too)."""
    auto = "auto" in splits
    if raw is None:
        if auto:
            raise HarnessError("selection: required with model.split: auto, e.g. "
                               "{max_accuracy_drop: 0.01} or {by: runtime}")
        return {}
    if not auto:
        raise HarnessError("selection: only with model.split: auto")
    top_mapping(raw, "selection", ["max_accuracy_drop", "by"], [])
    if "by" in raw:
        if raw["by"] != "runtime" or "max_accuracy_drop" in raw:
            raise HarnessError(f"selection.by: expected runtime alone (the split the runtime "
                               f"model predicts fastest), got {str(raw)[:60]!r}")
        return {"by": "runtime"}
    if "max_accuracy_drop" not in raw:
        raise HarnessError("selection: expected max_accuracy_drop or by: runtime")
    drop = raw["max_accuracy_drop"]
    if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop < 1:
        raise HarnessError(f"selection.max_accuracy_drop: expected a share in [0, 1) such as "
                           f"0.01 (one point), got {str(drop)[:40]!r}")
    return {"max_accuracy_drop": float(drop)}


def _seeds(raw: Any) -> tuple[int, ...]:
    """training.seeds: distinct non-negative integers, in the order given."""
    items = raw if isinstance(raw, list) else [raw]
    if not items or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in items):
        raise HarnessError(f"training.seeds: expected non-negative integers such as [0, 1, 2], "
                           f"got {str(raw)[:40]!r}")
    if len(set(items)) != len(items):
        raise HarnessError(f"training.seeds: duplicate entries in {items}")
    return tuple(items)

def _auto(raw: Any, where: str) -> Any:
    """compute.dilation: 'auto' is the default (None); any other string is refused by name.
    compute.pace_s is the runner's, per case: a scenario cannot set it."""
    if where == "compute" and isinstance(raw, dict) and "pace_s" in raw:
        raise HarnessError("compute.pace_s: set by the runner for each paced case, not a "
                           "scenario key (use compute.pace: true)")
    if where == "compute" and isinstance(raw, dict) and "modelled" in raw:
        raise HarnessError("compute.modelled: decided by the runner for a device this machine "
                           "cannot pace, not a scenario key (see compute.over_ceiling)")
    if where == "compute" and isinstance(raw, dict) and raw.get("dilation") == "auto":
        return {**raw, "dilation": None}
    return raw


def _tcp_cc(raw: Any) -> str | None:
    """A congestion control's name (the kernel's list is checked when a link starts)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,15}", raw):
        raise HarnessError(f"tcp_cc: expected a congestion control's name such as bbr, cubic "
                           f"or reno, got {str(raw)[:40]!r}")
    return raw


def _targets(raw: Any) -> tuple[float, ...]:
    """Test accuracies to time: numbers in (0, 1), distinct, kept in increasing order."""
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item < 1:
            raise HarnessError(f"accuracy_targets: expected accuracies in (0, 1) such as "
                               f"[0.7, 0.8], got {str(item)[:40]!r}")
    if len(set(items)) != len(items):
        raise HarnessError(f"accuracy_targets: duplicate entries in {items}")
    return tuple(sorted(float(i) for i in items))


def _links(raw: Any) -> tuple[str, ...]:
    """Profile names or profile files' paths; a profile's results go under its own `name`
    field, checked when it is loaded (harness.emulation.links)."""
    links = str_list(raw, "links")
    for entry in (e for e in links if not link_is_path(e) or "\0" in e):
        check_name(entry, "links")
    return links


def _validate_values(s: Scenario, datasets, optimizers) -> None:
    t, c, d = s.training, s.compute, s.dataset
    rules = [
        (d.name in datasets, "dataset.name", f"unknown dataset '{d.name}' (known: {', '.join(datasets)})"),
        (d.subset is None or d.subset > 0, "dataset.subset", "must be > 0"),
        (d.test_subset is None or d.test_subset > 0, "dataset.test_subset", "must be > 0"),
        (d.missing in ("refuse", "shaped"), "dataset.missing",
         f"expected refuse or shaped, got {d.missing!r}"),
        (d.missing != "shaped" or d.name in SHAPEABLE_TEST_SAMPLES, "dataset.missing",
         f"shaped: '{d.name}' has no fixed shape to generate (shapeable: {', '.join(SHAPEABLE_TEST_SAMPLES)})"),
        (s.model.width > 0, "model.width", f"must be > 0, got {s.model.width}"),
        (t.schedule in SCHEDULES, "training.schedule",
         f"unknown schedule '{t.schedule}' (known: {', '.join(SCHEDULES)})"),
        (0 <= t.warmup < 1, "training.warmup", "must be in [0, 1) (a share of all steps)"),
        (s.kind == "accuracy" or len(s.heads) == 1, "model.exit_head",
         "a benchmark times one exit head; compare heads in a study (kind: accuracy)"),
        (s.kind == "benchmark" or not s.selection, "model.split",
         "auto is a benchmark's (a study trains the splits it lists)"),
        (s.kind == "accuracy" or len(s.seeds) == 1, "training.seeds",
         "a benchmark trains one seed; seeds are a study's (kind: accuracy)"),
        (t.epochs >= 1, "training.epochs", "must be >= 1"),
        (t.max_batches is None or t.max_batches >= 1, "training.max_batches", "must be >= 1"),
        (t.batch_size >= 2, "training.batch_size", "must be >= 2 (BatchNorm needs 2 samples)"),
        (t.optimizer in optimizers, "training.optimizer", f"unknown optimizer '{t.optimizer}'"),
        (t.lr > 0, "training.lr", "must be > 0"),
        (0 <= t.momentum < 1, "training.momentum", "must be in [0, 1)"),
        (t.weight_decay >= 0, "training.weight_decay", "must be >= 0"),
        (t.queue_size >= 1, "training.queue_size", "must be >= 1"),
        (c.edge_cores > 0, "compute.edge_cores", "must be > 0"),
        (c.cloud_cores > 0, "compute.cloud_cores", "must be > 0"),
        (c.edge_threads >= 1, "compute.edge_threads", "must be >= 1"),
        (c.cloud_threads >= 1, "compute.cloud_threads", "must be >= 1"),
        (c.max_dilation >= 1, "compute.max_dilation", "must be >= 1"),
        (c.over_ceiling in ("model", "refuse", "cap"), "compute.over_ceiling",
         f"expected model, refuse or cap, got {c.over_ceiling!r}"),
        (c.over_ceiling != "cap" or c.pace, "compute.over_ceiling",
         "cap needs compute.pace: true (a capped device's steps are paced to what this "
         "machine holds)"),
        (backend_ok(c.edge_backend), "compute.edge_backend",
         f"expected cpu, cuda or cuda:N, got {c.edge_backend!r}"),
        (backend_ok(c.cloud_backend), "compute.cloud_backend",
         f"expected cpu, cuda or cuda:N, got {c.cloud_backend!r}"),
        (c.dilation == 1 or c.edge_backend == c.cloud_backend == "cpu", "compute.dilation",
         "must be 1 with a cuda backend (a real GPU cannot be slowed down with the link)"),
        (c.dilation is None or 1 <= c.dilation <= c.max_dilation, "compute.dilation",
         f"must be 'auto' or a number in [1, compute.max_dilation = {c.max_dilation:g}]"),
        (s.repetitions >= 1, "repetitions", "must be >= 1"),
        (0 < s.tolerances.goodput_ratio <= 1, "tolerances.goodput_ratio", "must be in (0, 1]"),
        (s.tolerances.rtt_rel >= 0, "tolerances.rtt_rel", "must be >= 0"),
        (0 < s.tolerances.compute_rel < 1, "tolerances.compute_rel", "must be in (0, 1)"),
        (0 < s.tolerances.trace_rel < 1, "tolerances.trace_rel", "must be in (0, 1)"),
        (s.measure.timing_batches is None or s.measure.timing_batches >= 2,
         "measure.timing_batches", "must be >= 2"),
        (s.measure.min_batches >= 2, "measure.min_batches", "must be >= 2"),
        (0 < s.measure.ci_target < 1, "measure.ci_target", "must be in (0, 1)"),
        (s.measure.max_seconds > 0, "measure.max_seconds", "must be > 0"),
        (s.measure.calibrate_seconds > 0, "measure.calibrate_seconds", "must be > 0"),
        (s.measure.curve_every >= 0, "measure.curve_every", "must be >= 0 (0: the end only)"),
    ]
    for ok, where, message in rules:
        if not ok:
            raise HarnessError(f"{where}: {message}")


def backend_ok(value) -> bool:
    """cpu, cuda or cuda:N (harness.workers.placement checks the machine has it)."""
    return isinstance(value, str) and re.fullmatch(r"cpu|cuda(:\d{1,2})?", value) is not None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a raw scenario mapping."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise HarnessError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise HarnessError(f"--set {item!r}: value is not valid YAML") from None
        node, parts = raw, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise HarnessError(f"--set {key}: '{part}' is not a section")
        node[parts[-1]] = value
    return raw


def load_scenario(path: str | Path, overrides: list[str] = ()) -> tuple[Scenario, dict]:
    """Read, override and validate a scenario file; returns it and the resolved raw mapping."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"scenario file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise HarnessError(f"{path}: not valid YAML{where}") from None
    raw = apply_overrides(raw if isinstance(raw, dict) else {}, list(overrides)) \
        if isinstance(raw, dict) else raw
    return parse_scenario(raw, str(path)), raw


def _compute(raw: dict) -> ComputeConfig:
    """A case file's compute section; JSON gives `modelled` as a list, the runner a tuple."""
    return ComputeConfig(**{**raw, "modelled": tuple(raw.get("modelled") or ())})


def case_from_dict(raw: dict) -> Case:
    """Rebuild a Case saved with `Case.to_dict` (what workers read)."""
    try:
        return Case(dataset=DatasetConfig(**raw["dataset"]), model=ModelConfig(**raw["model"]),
                    training=TrainConfig(**{k: v for k, v in raw["training"].items()
                                            if f"training.{k}" not in REMOVED_KEYS}),
                    compute=_compute(raw["compute"]), method=raw["method"],
                    codec=raw.get("codec", "fp32"), link=raw.get("link"))
    except (KeyError, TypeError) as exc:
        raise HarnessError(f"case file is malformed: {exc}") from None
