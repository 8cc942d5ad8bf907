"""Cases whose measurement an earlier case of the same run already made: copied, not rerun.

    python -c "from harness.run.reuse import reuse_key, reuse_case"

Edge-only trains the whole network on the edge and sends nothing, so its timing does not
depend on the link, the split point, the codec or the exit head: one measurement per model,
device and repetition serves every link and split. Cloud-only uploads raw images and trains the
whole network in the cloud: its timing depends on the link (so it is reused only within one
topology, after that link's calibration) but not on the split point, the codec or the exit
head. Everything else in the case (dataset, model, training, compute, repetition) must match.

A reused case directory holds the first case's files, its own case.json and status, its own
accuracy-pass result where the run has one, and case_info.json saying where the measurement came
from and why (`reused_from`, `reused_why`: the summary's runtime_source repeats the reason). The
trained parts are copied only from a case with the same split: they are that split's two halves.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.config import Case
from harness.files import read_json as _json, write_json
from harness.run.twohosts import PART_FILES

# What a method's timing does not depend on: (case fields, model fields).
IGNORED = {"edge": (("link", "codec"), ("split", "exit_head")),
           "cloud": (("codec",), ("split", "exit_head"))}
REASONS = {"edge": "edge-only measured once per model, on the first link and split it ran with "
               "(it trains the whole network and sends nothing over the link)",
       "cloud": "cloud-only measured once per model and link, at the first split it ran with "
                "(it uploads raw images and trains the whole network in the cloud)"}
OWN_FILES = ("case.json", "case_info.json", "status.json", "accuracy.json")


def reuse_key(case: Case, rep: int) -> str | None:
    """What identifies a case's measurement for reuse, or None for a method never reused."""
    if case.method not in IGNORED:
        return None
    fields, model_fields = IGNORED[case.method]
    d = case.to_dict()
    for name in fields:
        d.pop(name, None)
    d["model"] = {k: v for k, v in d["model"].items() if k not in model_fields}
    return json.dumps([d, rep], sort_keys=True)


def reuse_case(source: Path, case_dir: Path, case: Case, accuracy: dict | None = None) -> dict:
    """Fill `case_dir` (which must not exist) from `source`'s measurement of the same thing;
    `accuracy`: this case's own accuracy-pass result (else the source's, the same training).
    Returns the totals."""
    recorded = _json(source / "case.json")
    same_split = recorded["model"]["split"] == case.model.split
    case_dir.mkdir(parents=True, exist_ok=False)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in OWN_FILES and (same_split or
                                                              path.name not in PART_FILES):
            shutil.copy2(path, case_dir / path.name)
    model = {**recorded["model"], "split": case.model.split, "exit_head": case.model.exit_head}
    write_json(case_dir / "case.json", {**recorded, "link": case.link, "codec": case.codec,
                                        "model": model}, indent=2)
    info = {**_json(source / "case_info.json"), "reused_from": source.name,
            "reused_why": REASONS[case.method]}
    if not same_split:
        info["parts_not_copied"] = (f"trained with the network cut at {recorded['model']['split']}"
                                    f", not {case.model.split}")
    write_json(case_dir / "case_info.json", info)
    write_json(case_dir / "accuracy.json",
               accuracy if accuracy is not None else _json(source / "accuracy.json"))
    write_json(case_dir / "status.json", {"status": "ok", "reason": ""})
    return _json(case_dir / "totals.json")
