"""The package's layering rules, checked on the code itself (fresh interpreters, and the AST).

    .venv/bin/python -m pytest tests/test_layout.py

- `config` and `analysis` import no torch (a scenario parses and a run directory is analysed
  on a laptop without it); analysis imports no runner, workers' code or mininet.
- Only `harness.emulation.topology` imports mininet (statically: lazy imports count too).
- Workers import no pandas or matplotlib.
- Every UPPER_CASE constant has one home; modules stay under 300 lines unless their docstring
  says why.
"""
import ast
import collections
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "harness"
MAX_LINES = 300
PER_MODULE_CONTRACTS = {"COMMANDS", "PROTOCOLS"}   # each module's own table, by design


def loaded_after(*modules: str) -> set[str]:
    """The modules present in sys.modules after importing `modules` in a fresh interpreter."""
    code = (f"import sys, json; import {', '.join(modules)}; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return set(json.loads(out.stdout))


def top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_config_imports_no_torch():
    loaded = loaded_after("harness.config", "harness.catalog", "harness.emulation.links")
    assert not {"torch", "torchvision", "mininet", "pandas"} & top(loaded)


def test_analysis_imports_no_torch_runner_or_mininet():
    loaded = loaded_after("harness.analysis.totals", "harness.analysis.summary",
                          "harness.analysis.compare", "harness.analysis.plots")
    assert not {"torch", "torchvision", "mininet"} & top(loaded)
    assert not {m for m in loaded if m.startswith(("harness.run", "harness.train",
                                                   "harness.emulation", "harness.predict"))}
    workers = {m for m in loaded if m.startswith("harness.workers.")}
    assert workers <= {"harness.workers.events"}, "analysis reads the event format, nothing else"


def test_workers_import_no_pandas_or_matplotlib():
    loaded = loaded_after("harness.workers.edge", "harness.workers.cloud")
    assert not {"pandas", "matplotlib", "mininet"} & top(loaded)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text())


def _imported(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_topology_imports_mininet():
    importers = [str(p.relative_to(ROOT)) for p, tree in _modules()
                 if any(n.split(".")[0] == "mininet" for n in _imported(tree))]
    assert importers == ["harness/emulation/topology.py"]


def test_every_constant_has_one_home():
    homes = collections.defaultdict(list)
    for path, tree in _modules():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.isupper():
                    homes[t.id].append(str(path.relative_to(ROOT)))
    twice = {k: v for k, v in homes.items() if len(v) > 1 and k not in PER_MODULE_CONTRACTS}
    assert twice == {}


def test_modules_stay_small_or_say_why():
    long = []
    for path, tree in _modules():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(tree) or ""
        if lines > MAX_LINES and "longer than" not in doc:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long == []


def test_no_two_modules_differ_by_one_letter():
    stems = sorted({p.stem for p, _ in _modules() if p.stem != "__init__"})
    close = [(a, b) for i, a in enumerate(stems) for b in stems[i + 1:]
             if abs(len(a) - len(b)) == 1 and (a.startswith(b) or b.startswith(a))]
    assert close == []


def test_split_point_catalog_matches_the_models():
    from harness.catalog import SPLIT_POINTS
    from harness.train.models import blocks
    for arch, points in SPLIT_POINTS.items():
        assert tuple(name for name, _ in blocks(arch, 0.25, 3, 10))[:-1] == points


def test_every_harness_import_resolves():
    """Function-level imports too: a moved module must not leave a lazy import behind."""
    import importlib.util
    missing = sorted({f"{p.relative_to(ROOT)}: {name}" for p, tree in _modules()
                      for name in _imported(tree)
                      if name.startswith("harness") and importlib.util.find_spec(name) is None})
    assert missing == []


def test_every_python_dash_m_shown_exists():
    """Docstrings and the README show `python -m harness...`: each such module must exist."""
    import importlib.util
    import re
    texts = [ROOT / "README.md", *PACKAGE.rglob("*.py")]
    shown = {m for path in texts for m in re.findall(r"python -m (harness(?:\.\w+)+)", path.read_text())}
    assert shown, "the docs show how to run at least the workers"
    missing = sorted(m for m in shown if importlib.util.find_spec(m) is None)
    assert missing == []
