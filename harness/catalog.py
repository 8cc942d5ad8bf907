"""The names a scenario may use, without importing torch: methods, models, split points, codecs.

    python -c "from harness.catalog import split_points; print(split_points('resnet18'))"

`config` validates against these; `train.models` builds networks whose block names a test
holds equal to `SPLIT_POINTS`, so the two cannot drift apart.
"""
from __future__ import annotations

from harness.errors import HarnessError

METHODS = ("hierarchical", "split", "cloud", "edge")
BASELINES = ("split", "cloud", "edge")          # what hierarchical's gains are measured against
# The hosts that train in each method (harness.run.pacing paces their steps; the summary
# says how each one's compute arose).
COMPUTE_ROLES = {"hierarchical": ("edge", "cloud"), "split": ("edge", "cloud"),
                 "cloud": ("cloud",), "edge": ("edge",)}
KEEPS_DATA = ("hierarchical", "split", "edge")  # methods whose raw inputs never leave the edge
OPTIMIZERS = ("sgd", "adam")
DATASETS = ("fashion_mnist", "cifar10", "tiny_imagenet", "fake")
# Datasets a timing pass can run without (dataset.missing: shaped): their standard test
# split's size; the training split's is train.data.SPECS' train_samples.
SHAPEABLE_TEST_SAMPLES = {"cifar10": 10_000, "tiny_imagenet": 10_000}
CODECS = ("fp32", "fp16", "int8")               # activation encodings on the wire
EXIT_HEADS = ("dgl", "linear", "mlp")           # early-exit designs (harness.train.heads)
SCHEDULES = ("constant", "cosine", "onecycle")  # learning-rate schedules (harness.train.recipe)
ARCHS = ("vgg16", "resnet18")
# The paper's reported training-runtime change of hierarchical training on CIFAR-10 over 3G /
# a low-rate channel, T(hierarchical) / T(baseline) - 1, baseline not named in its abstract.
PAPER_CHANGE = {"vgg16": -0.29, "resnet18": -0.61}
# A separation point is named after the last block kept on the edge (input side first).
SPLIT_POINTS = {
    "vgg16": tuple(f"conv{i}" for i in range(1, 14)),
    "resnet18": ("stem",) + tuple(f"layer{s}.{b}" for s in range(1, 5) for b in range(2)),
}
DEFAULT_SPLIT = {"vgg16": "conv4", "resnet18": "layer2.1"}
# The compute step that completes a batch, per method: (role, phase or None). A batch is done
# when this span ends; until then a later stage of it may still be running.
FINAL_STAGE = {"hierarchical": ("cloud", None), "split": ("edge", "backward"),
               "cloud": ("cloud", None), "edge": ("edge", None)}
# The first stage of a pipelined method, whose rate bounds the whole pipeline's: a backlog
# that built up at start-up drains faster than it (harness.analysis.steady.steady_state).
SOURCE_STAGE = {"hierarchical": ("edge", None)}


def head_key(split: str, design: str = "dgl") -> str:
    """Where a cost profile keeps the exit head of `design` at `split` (`dgl`: the split's own
    name, as profiles always had it; other designs: `split@design`)."""
    return split if design == "dgl" else f"{split}@{design}"


def split_points(arch: str) -> list[str]:
    """Valid separation points of an architecture, input side first."""
    if arch not in SPLIT_POINTS:
        raise HarnessError(f"unknown model '{arch}' (known: {', '.join(ARCHS)})")
    return list(SPLIT_POINTS[arch])
