"""A sweep across a Ray cluster: each link's cases run on one whole node, under its own Mininet.

    python run_bench.py run scenarios/ci.yaml --cluster local          # a one-machine cluster
    python run_bench.py run scenarios/ci.yaml --cluster HEAD_IP:6379   # nodes already started

Every node offers one unit of the custom resource `hierbench_node` (`ray start ...
--resources='{"hierbench_node": 1}'`) and each task asks for it, so no two timed groups ever
share a machine. A task is one link's cases of the sweep (every method and repetition on
that link: a method comparison never spans two nodes): on its node it builds the topology,
calibrates the link and the compute, runs the cases in a scratch run directory and ships
the files back; the head writes them where a local run would have, with `node.json` (the
node's host, CPU and Ray id) in each case. The accuracy pass runs on the head first; each
node measures edge-only and cloud-only itself (harness.run.reuse stays within a node). A task whose
worker process dies is retried once by Ray (`max_retries=1`) on any node with the resource
free; the retry's topology start removes the dead one's Mininet leftovers first. A task that
fails (twice, or with an error) fails its cases with the reason; the sweep goes on.

Ray moves task arguments and results with pickle between the cluster's own processes: run a
cluster only on machines and a network you trust, as Ray's own documentation says.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.emulation.netclean import SCRATCH_PREFIX
from harness.files import write_json

NODE_RESOURCE = "hierbench_node"
TOKEN_FILE = Path.home() / ".ray" / "auth_token"     # Ray's default place for the cluster's token
INSTALL_HINT = ("Ray is not installed: make setup-cluster (or .venv/bin/pip install "
                "'.[cluster]') on every machine")


def ray_module():
    """The ray package, or a one-line error saying how to install it. With a cluster token at
    hand, token authentication is on (Ray reads RAY_AUTH_MODE when it is imported; clusters
    started by `ray start` since Ray 2.59 ask for the token)."""
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get(
            "RAY_AUTH_TOKEN_PATH") or TOKEN_FILE.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:
        raise HarnessError(f"--cluster: {INSTALL_HINT}") from None
    return ray


def connect(address: str) -> list[dict]:
    """Join the cluster at ADDRESS ('local': start a one-machine cluster in this process);
    the nodes that offer the resource, or a one-line error."""
    ray = ray_module()
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    try:
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=os.cpu_count(), resources={NODE_RESOURCE: 1},
                         include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise HarnessError(f"--cluster {address}: cannot join ({str(exc).splitlines()[0]}; a "
                           f"cluster with token authentication needs its token in "
                           f"{TOKEN_FILE}: ray get-auth-token on the head)") from None
    nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get(NODE_RESOURCE)]
    if not nodes:
        raise HarnessError(f"--cluster {address}: no node offers '{NODE_RESOURCE}' (start each "
                           f"with ray start ... --resources='{{\"{NODE_RESOURCE}\": 1}}')")
    return nodes


def node_identity() -> dict:
    from harness.machine import cpu_model
    ray = ray_module()
    return {"host": platform.node(), "cpu_model": cpu_model(), "cpus": os.cpu_count(),
            "ray_node_id": ray.get_runtime_context().get_node_id()}


def link_task(raw: dict, names: list[str], accuracy: dict | None, flags: dict) -> dict:
    """On a node: one link's cases (`names` of the plan) in a scratch run directory; returns
    {"files": {relative path: bytes}, "node": identity}."""
    from harness.config import parse_scenario
    from harness.run import rundir
    from harness.run.progress import Progress
    from harness.run.scenario import Options, Run, preflight, timing_pass
    if os.geteuid() != 0:
        raise HarnessError(f"node {platform.node()}: Mininet needs root (start Ray as root)")
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    try:
        opts = Options(quiet=True, plots=False, echo=lambda _line: None, **flags)
        scenario, profiles, train, test = preflight(parse_scenario(raw), opts)
        run = Run(scenario, scratch, opts, train, test, accuracy=accuracy)
        run.progress = Progress(opts, len(names))
        timing_pass(run, profiles, [e for e in rundir.case_plan(scenario) if e[0] in names])
        return {"node": node_identity(),
                "files": {str(p.relative_to(scratch)): p.read_bytes()
                          for p in sorted(scratch.rglob("*")) if p.is_file()}}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_files(run_dir: Path, files: dict[str, bytes]) -> None:
    root = run_dir.resolve()
    for rel, data in files.items():
        path = (run_dir / rel).resolve()
        if root not in path.parents:
            raise HarnessError(f"a node sent a file outside the run directory: {rel!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _failed(run_dir: Path, entries: list, reason: str, node: dict | None) -> None:
    from harness.run.case import write_status
    for name, case, _rep in entries:
        case_dir = run_dir / name
        if (case_dir / "status.json").exists() and json.loads(
                (case_dir / "status.json").read_text()).get("status") == "ok":
            continue
        case_dir.mkdir(parents=True, exist_ok=True)
        write_json(case_dir / "case.json", case.to_dict(), indent=2)
        write_status(case_dir, "failed", reason)
        if node:
            write_json(case_dir / "node.json", node, indent=2)


def task_failure(ray, exc) -> str:
    """Why a Ray task gave no result, in one line: its own error's last line, or its worker's
    death (after Ray's one retry)."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None) or exc
        return f"on the cluster: {str(cause).splitlines()[-1]}"
    return (f"the node's Ray worker died (retried once): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def cluster_pass(run, todo: list) -> None:
    """The timing pass as Ray tasks, one per link with cases left; results land in
    run.run_dir as a local run's would."""
    import yaml
    ray = ray_module()
    nodes = connect(run.opts.cluster)
    run.opts.echo(f"cluster {run.opts.cluster}: {len(nodes)} node(s) offer {NODE_RESOURCE}: "
                  + ", ".join(n.get("NodeManagerHostname", "?") for n in nodes))
    raw = yaml.safe_load((run.run_dir / "scenario.yaml").read_text())
    flags = {"allow_no_delay": run.opts.allow_no_delay, "stop_on_failure": False}
    task = ray.remote(link_task).options(resources={NODE_RESOURCE: 1}, num_cpus=0,
                                         max_retries=1, retry_exceptions=False)
    groups: dict[str, list] = {}
    for entry in todo:
        groups.setdefault(entry[1].link, []).append(entry)
    pending = {task.remote(raw, [e[0] for e in entries], run.accuracy, flags): (link, entries)
               for link, entries in groups.items()}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            link, entries = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                reason = task_failure(ray, exc)
                _failed(run.run_dir, entries, reason, None)
                run.opts.echo(f"link {link}: FAILED: {reason}")
                continue
            _write_files(run.run_dir, result["files"])
            for name, _case, _rep in entries:
                if (run.run_dir / name).is_dir():
                    write_json(run.run_dir / name / "node.json", result["node"], indent=2)
            missing = [e for e in entries if not (run.run_dir / e[0] / "status.json").exists()]
            _failed(run.run_dir, missing, "the node returned no result for this case",
                    result["node"])
            for name, _case, _rep in entries:
                status = json.loads((run.run_dir / name / "status.json").read_text())["status"]
                run.progress.finish(f"{name}: {status} on node {result['node']['host']} "
                                    f"({result['node']['cpu_model']})")
    finally:
        ray.shutdown()
