"""An accuracy study's trainings as Ray tasks: `run scenarios/accuracy.yaml --cluster ADDRESS`.

Each training the cache lacks is one task asking for the scenario's thread count in CPUs
(`num_cpus`), so Ray runs as many side by side on a node as its cores allow. The head keeps
the cache: the moment a task returns, its entry is written there (as a local study's would
be), with the node that trained it as its provenance, so a study killed at any point resumes
from the head's cache like a local one. A node trains with its own copy of the code: it
reports the hash of its training code, and a result from other code is refused, not cached.
A task whose worker dies is retried once by Ray; a training that fails is reported with its
reason and the others go on.

Trainings ask for CPUs, not for the `hierbench_node` resource of a timed sweep: they time
nothing, so they may share a node with each other; do not run them on a cluster that is
running a timed sweep at the same time. Ray moves arguments and results with pickle between
the cluster's own processes: run a cluster only on machines and a network you trust.
"""
from __future__ import annotations

import math
from typing import Callable

from harness.run.cluster import connect, node_identity, ray_module, task_failure
from harness.study import cache


def training_task(case_raw: dict, threads: int, curve_every: int) -> dict:
    """On a node: one training; its result, the node and the node's training-code hash."""
    from harness.run.accuracy import train_once
    return {"result": train_once(case_raw, threads, curve_every), "node": node_identity(),
            "code": cache.code_version()}


def _checked(reply, code: str) -> str | None:
    """Why a node's reply cannot be cached, or None."""
    if not isinstance(reply, dict) or not isinstance(reply.get("result"), dict):
        return "the node sent no result"
    if reply.get("code") != code:
        return (f"the node runs other training code (hash {str(reply.get('code'))[:12]}, "
                f"here {code[:12]}): install the same commit on every node")
    acc = reply["result"].get("final_acc")
    if not isinstance(acc, float) or not math.isfinite(acc) or not 0.0 <= acc <= 1.0:
        return f"the node sent an accuracy that is not one: {acc!r}"
    return None


def train_on_cluster(cases: dict[int, dict], threads: int, curve_every: int, opts,
                     keep: Callable[[int, dict, dict], None]) -> list[tuple[int, str]]:
    """Train `cases` (index -> case as a dict) as Ray tasks; `keep(i, result, node)` for each
    that finishes; returns [(index, reason)] for those that failed."""
    ray = ray_module()
    nodes = connect(opts.cluster)
    opts.echo(f"cluster {opts.cluster}: {len(nodes)} node(s): "
              + ", ".join(n.get("NodeManagerHostname", "?") for n in nodes)
              + f"; each training asks for {threads} CPU(s)")
    task = ray.remote(training_task).options(num_cpus=threads, max_retries=1,
                                             retry_exceptions=False)
    code = cache.code_version()
    pending = {task.remote(case, threads, curve_every): i for i, case in cases.items()}
    failed: list[tuple[int, str]] = []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                reply = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                failed.append((i, task_failure(ray, exc)))
                continue
            reason = _checked(reply, code)
            if reason:
                failed.append((i, reason))
                continue
            keep(i, reply["result"], reply["node"])
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)     # a killed study must not leave trainings running
        raise
    finally:
        ray.shutdown()
    return failed
