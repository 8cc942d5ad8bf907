"""Converged accuracy, one JSON file per training, keyed by everything that decides it.

    python -c "from harness.study.cache import code_version; print(code_version())"

The key: dataset (and its subsets), model, width, split and exit head (hierarchical only:
end-to-end weights do not depend on the cut), the recipe (every `training` key but the seed
list), the seed, the torch thread count (floating-point order: DESIGN.md section 8) and the
training code's version, a hash of `harness/train/*.py`: any change to the training code is a
new key, so an old accuracy is never passed off as the current code's. Entries live under
the per-machine cache (`HIERBENCH_CACHE`), never in the repository, and are written
atomically: a killed training leaves no entry and is trained again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from harness.files import write_json
from harness.paths import REPO, cache_dir

TRAIN_CODE = REPO / "harness" / "train"
FORMAT = 1


def code_version() -> str:
    """sha256 (16 hex digits) of the training code: every harness/train/*.py, by name."""
    h = hashlib.sha256()
    for path in sorted(TRAIN_CODE.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def training_key(case, kind: str, threads: int) -> dict:
    """What decides a training's weights, as plain data (a Case from harness.config)."""
    recipe = {k: v for k, v in dataclasses.asdict(case.training).items()
              if k not in ("seed", "queue_size")}
    hier = kind == "hierarchical"
    return {"format": FORMAT, "dataset": dataclasses.asdict(case.dataset),
            "arch": case.model.arch, "width": case.model.width,
            "split": case.model.split if hier else None,
            "exit_head": case.model.exit_head if hier else None, "kind": kind,
            "recipe": recipe, "seed": case.training.seed, "threads": threads,
            "code": code_version()}


def entry_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "accuracy" / f"{key['arch']}-{key['kind']}-{digest}.json"


def lookup(key: dict) -> dict | None:
    """The cached entry for `key` ({key, result, provenance}), or None (absent or unreadable:
    a damaged file is trained again, never trusted)."""
    path = entry_path(key)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or "result" not in entry:
        return None
    return {**entry, "path": str(path)}


def store(key: dict, result: dict, provenance: dict) -> Path:
    """Write one finished training's entry (atomically); returns its path."""
    path = entry_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"key": key, "result": result, "provenance": provenance}, sort_keys=True)
    return path
