"""The launcher's side of harness.workers.prefork: one fork server per emulated host, and
Popen-like handles for the workers it forks.

    python -c "from harness.run.prefork import ForkServer"

A `ForkedProcess` answers what the runner asks of a worker (pid, poll, wait, stdout lines,
a process group to kill) although the runner is not its parent: the server reports its exit.
Its stdout is a FIFO the launcher opened for reading before the request, so `READY` and
`JOIN <pid>` reach the runner's StdoutReader as they would from a pipe. A server that dies
fails the case at once (`check_alive`), naming it.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from harness.emulation.netclean import FIFO_PREFIX
from harness.errors import HarnessError
from harness.procs import exit_text, tail

SERVER_READY_TIMEOUT_S = 60.0
FORK_REPLY_TIMEOUT_S = 10.0


class ForkedProcess:
    """A worker forked by a ForkServer: the subset of subprocess.Popen the runner uses."""

    def __init__(self, pid: int, stdout, fifo: Path, hold: int):
        self.pid, self.stdout, self.fifo = pid, stdout, fifo
        self.hold = hold           # our own write end: no EOF before the child has opened it
        self.stdin = self.stderr = None
        self.returncode: int | None = None
        self.ended = threading.Event()
        self.releasing = threading.Lock()

    def _exited(self, code: int) -> None:
        self.release()
        self.returncode = code
        self.ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def release(self) -> None:
        """Close our write end of its FIFO (its reader then sees EOF) and remove the FIFO."""
        with self.releasing:
            hold, self.hold = self.hold, None
        if hold is not None:
            os.close(hold)
        self.fifo.unlink(missing_ok=True)

    def wait(self, timeout: float | None = None) -> int:
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout)
        return self.returncode


class ForkServer:
    """One harness.workers.prefork process in a host (started through `popen`, outside the
    host's CPU cgroup like the workers themselves)."""

    def __init__(self, role: str, popen, python: str, env: dict, log_path: Path):
        self.role = role
        # the harness's pid in the name: netclean removes the directory once that pid is gone
        self.dir = Path(tempfile.mkdtemp(prefix=f"{FIFO_PREFIX}{os.getpid()}-{role}-"))
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = popen(role, [python, "-m", "harness.workers.prefork"], cgroup=False,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
        self.lock = threading.Lock()
        self.replies: list[str] = []
        self.replied = threading.Condition(self.lock)
        self.children: dict[int, ForkedProcess] = {}
        self.exited: dict[int, int] = {}        # EXIT read before the PID reply was handled
        self.count = 0
        threading.Thread(target=self._read, name=f"prefork-{role}", daemon=True).start()

    def wait_ready(self) -> None:
        """Until the server has imported everything (both hosts' servers start at once)."""
        self._reply("READY", SERVER_READY_TIMEOUT_S)

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            with self.lock:
                if line.startswith("EXIT "):
                    _, pid, code = line.split()
                    child = self.children.pop(int(pid), None)
                    if child is not None:
                        child._exited(int(code))
                    else:
                        self.exited[int(pid)] = int(code)
                else:
                    self.replies.append(line)
                    self.replied.notify_all()
        with self.lock:
            self.replied.notify_all()

    def _reply(self, want: str, timeout_s: float) -> str:
        with self.lock:
            ok = self.replied.wait_for(lambda: self.replies or self.proc.poll() is not None,
                                       timeout_s)
            line = self.replies.pop(0) if self.replies else ""
        if not line.startswith(want):
            why = line or (f"{exit_text(self.proc.poll())}: {self._log_tail()}" if ok
                           else f"no answer within {timeout_s:g} s")
            raise HarnessError(f"worker fork server in {self.role}: {why}")
        return line

    def _log_tail(self) -> str:
        try:
            return tail(self.log_path.read_text(errors="replace"), 1)
        except OSError:
            return "(no log)"

    def start(self, args: list[str], log_path: Path, env: dict) -> ForkedProcess:
        """Fork a `role` worker running main(args); its stderr appends to log_path."""
        self.count += 1
        fifo = self.dir / f"{self.count}.stdout"
        os.mkfifo(fifo, 0o600)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)    # open now: the child's open won't block
        os.set_blocking(fd, True)
        hold = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)   # a FIFO without writers reads EOF
        # Unbuffered: closing it (kill_groups does) never waits on a reader thread's lock.
        stdout = os.fdopen(fd, "rb", buffering=0)
        request = {"role": self.role, "argv": args, "stdout": str(fifo),
                   "stderr": str(log_path), "env": env}
        try:
            with self.lock:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
        except OSError as exc:
            os.close(hold)
            stdout.close()
            raise HarnessError(f"worker fork server in {self.role} takes no request ({exc}): "
                               f"{self._log_tail()}") from None
        pid = int(self._reply("PID ", FORK_REPLY_TIMEOUT_S).split()[1])
        child = ForkedProcess(pid, stdout, fifo, hold)
        with self.lock:
            if pid in self.exited:
                child._exited(self.exited.pop(pid))
            else:
                self.children[pid] = child
        return child            # once it has ended: our write end closed (EOF), FIFO gone

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            with self.lock:
                orphans = list(self.children.values())
            for child in orphans:        # no EXIT will come: let their readers see EOF
                child.release()
            raise HarnessError(f"worker fork server (harness.workers.prefork) in {self.role}, "
                               f"pid {self.proc.pid}, died: {exit_text(code)}: {self._log_tail()}")

    def close(self) -> None:
        """Children first (the launcher has killed them), then the directory of FIFOs."""
        for fifo in self.dir.glob("*.stdout"):
            fifo.unlink(missing_ok=True)
        try:
            self.dir.rmdir()
        except OSError:
            pass
