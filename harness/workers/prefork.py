"""A worker fork server: torch imported once per host, each case's worker forked from it.

    python -m harness.workers.prefork        (started by harness.run.launchers.Preforked)

Starting a worker process costs ~4 s on this class of machine before its first batch, all
of it the same every time: importing torch (1.7-1.8 s) and the lazy import behind the first
optimizer step (torch._dynamo, 1.5-1.7 s), on both hosts at once on two cores. A run of the
default benchmark starts 36 of them. This server pays that once per emulated link: it
imports the worker modules, takes one optimizer step on a throwaway layer (one thread, so no
thread pool exists to be forked), prints READY, then reads one JSON request per line on
stdin:

    {"role": "edge", "argv": [...], "stdout": FIFO, "stderr": LOG, "env": {...}}

and forks a child that starts its own session (pid = process group, like `mnexec -d`;
answered only once it has, so a kill of the group reaches it),
points fd 0/1/2 at /dev/null, the FIFO and the log, sets the environment and runs the
worker's `main(argv)` to its exit; it never returns into this loop. The server answers
`PID <pid>`, and `EXIT <pid> <code>` when the child ends (negative: killed by that signal,
as subprocess reports it). It is single-threaded (a fork copies only the calling thread, so
no other thread may hold a lock then): it waits on stdin with a short timeout and reaps
children between requests. It exits when stdin closes; a child outlives it only until the
launcher kills that child's process group.
"""
from __future__ import annotations

import importlib
import json
import os
import select
import sys

REAP_S = 0.02          # how often children are reaped while no request comes


def warm() -> None:
    """Pay every one-time import a worker would pay before its first batch."""
    import torch
    importlib.import_module("harness.workers.edge")
    importlib.import_module("harness.workers.cloud")
    torch.set_num_threads(1)
    layer = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.0, momentum=0.9)
    layer(torch.zeros(1, 2)).sum().backward()
    opt.step()


def child(req: dict, started: int) -> None:
    """In the forked child: become the worker; never return. `started`: a pipe's write end,
    closed once this child leads its own process group (so a kill of it reaches it)."""
    code = 1
    try:
        os.setsid()
        os.close(started)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(req["stdout"], os.O_WRONLY)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.update(req.get("env", {}))
        module = importlib.import_module(f"harness.workers.{req['role']}")
        sys.argv = [module.__name__, *req["argv"]]
        code = module.main(req["argv"])
    except SystemExit as exc:            # argparse's --help and usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BaseException as exc:         # noqa: BLE001 - the child must end here, whatever
        print(f"error: worker fork failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def reap(say) -> None:
    """Report every child that has ended (without waiting for the others)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        say(f"EXIT {pid} {os.waitstatus_to_exitcode(status)}")


def serve(stdin, say) -> None:
    """The request loop: fork per request, report exits; returns when stdin closes."""
    buf = b""
    while True:
        ready, _, _ = select.select([stdin], [], [], REAP_S)
        reap(say)
        if not ready:
            continue
        chunk = os.read(stdin.fileno(), 65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                req = json.loads(line)
                if req.get("role") not in ("edge", "cloud") or not isinstance(req.get("argv"), list):
                    raise ValueError("a request needs role edge|cloud and an argv list")
            except ValueError as exc:
                say(f"BAD {exc}")
                continue
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                child(req, write_end)
            os.close(write_end)
            os.read(read_end, 1)          # EOF once the child has called setsid (or died)
            os.close(read_end)
            say(f"PID {pid}")


def main() -> int:
    def say(line: str) -> None:
        os.write(1, (line + "\n").encode())

    try:
        warm()
    except Exception as exc:              # noqa: BLE001 - reported to the launcher, then out
        say(f"BAD could not import the workers: {type(exc).__name__}: {exc}")
        return 1
    say("READY")
    serve(sys.stdin.buffer, say)
    reap(say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
