"""Records other processes read while they are written: replace them atomically.

    python -c "from harness.files import read_json, write_json; write_json('/tmp/x.json', {'a': 1})"

A reader polling `status.json` (a test, `run --resume`, a second harness) must never see half
a file: the text goes to a hidden sibling first and `os.replace` swaps it in (atomic on POSIX
within one filesystem).
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def read_json(path: Path | str) -> dict:
    """A JSON record written by write_json (or any JSON file)."""
    return json.loads(Path(path).read_text())


def write_json(path: Path | str, doc, indent: int | None = None, sort_keys: bool = False) -> None:
    """Write `doc` as JSON to `path` so that a reader sees the old file or the new, never part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=indent, sort_keys=sort_keys) + "\n")
    os.replace(tmp, path)
