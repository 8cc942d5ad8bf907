"""The timing window's STOP: the runner says which batches it still needs, the workers train no more.

    python -c "from harness.workers.stop import StopSignal"

The runner (harness.run.window) writes STOP into the case directory once the steady interval
is known: a first line with the reason, then `last step N`, the last batch the estimate
judges. Steps after N are never looked at, so the edge computes no further batch and drops
the ones it has queued but not begun to send (a hierarchical edge runs up to queue_size + 1
batches ahead: over 3g, 4 x 16 s of ResNet-18 activations that nobody would read); a frame
already on the wire is finished, so the peers still end normally. N may be the batch in
progress: the window writes STOP one batch early when it is certain the next completion
stops it (split learning, whose next batch would otherwise be one whole round trip more).
A STOP without a `last step` line stops everything at once. The file appears atomically.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

STOP_FILE = "STOP"
_LAST = re.compile(r"^last step (\d+)$", re.MULTILINE)


def write_stop(case_dir: Path, reason: str, last_step: int) -> None:
    """Write STOP (reason on its first line, then the last step judged), all at once."""
    tmp = case_dir / f"{STOP_FILE}.part"
    tmp.write_text(f"{reason}\nlast step {last_step}\n")
    os.replace(tmp, case_dir / STOP_FILE)


class StopSignal:
    """A worker's view of STOP: read once it appears, then answered from memory."""

    def __init__(self, case_dir: Path):
        self.path = Path(case_dir) / STOP_FILE
        self.seen = False
        self.reason = ""
        self.last: int | None = None          # None: no batch after the one that noticed it

    def check(self) -> bool:
        """True once the runner has written STOP."""
        if not self.seen and self.path.exists():
            text = self.path.read_text()
            found = _LAST.search(text)
            self.reason = text.split("\n", 1)[0].strip()[:200]
            self.last = int(found.group(1)) if found else None
            self.seen = True
        return self.seen

    def past(self, step: int | None) -> bool:
        """True when `step` is beyond what the runner still needs (never for step None, an
        upload that belongs to no batch)."""
        if step is None or not self.check():
            return False
        return self.last is None or step > self.last
