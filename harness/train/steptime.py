"""Compute probe: time one part's training step per batch, as a worker runs it, and print JSON.

    python -m harness.train.steptime --arch vgg16 --width 0.25 --dataset fashion_mnist \
        --batch 64 --split conv4 --part edge --threads 1 --batches 8

Started inside an emulated host (its CPU cgroup applies) by the compute calibration
(harness.run.computecheck). `edge` is the hierarchical edge's step: preprocessing a stored
uint8 batch, the edge blocks and the exit head forward and backward, the SGD step. `cloud` is
the hierarchical cloud's step on received (detached) activations. `full` is edge-only's and
cloud-only's step: preprocessing and the whole network, no exit head. Inputs are random tensors of
the dataset's shapes: the time of these conv nets does not depend on the pixel values. After
`--warmup` untimed batches, each of `--batches` is timed alone; one JSON line reports them.
With `--serve` it builds the model, prints READY and then answers each `measure N [PART]` line
on stdin (PART defaults to `--part`; another part is built on first use) with one JSON line
(one untimed batch first: the CPU share may have changed since the last round), until stdin
closes: the calibration imports torch once, outside the share, and measures under several
shares and parts.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

PROBE_PARTS = ("edge", "cloud", "full")


def step_fn(arch: str, width: float, dataset: str, batch: int, split: str, part: str):
    """A closure running one training step of `part` on fixed random inputs."""
    import torch
    from harness.train import methods as m
    from harness.train.data import SPECS, preprocess
    from harness.train.models import build_split_model
    spec = SPECS[dataset]
    model = build_split_model(arch, split, width=width, in_channels=spec.channels,
                              num_classes=spec.num_classes, image_size=spec.image_size)
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, spec.num_classes, (batch,), generator=gen)
    cfg = m.OptimConfig("sgd", 0.01, 0.9, 0.0)
    side = spec.stored_side
    stored = torch.randint(0, 256, (batch, spec.channels, side, side), dtype=torch.uint8,
                           generator=gen)
    if part == "edge":
        opt = m.make_optimizer([*model.edge.parameters(), *model.exit_head.parameters()], cfg)
        return lambda: m.hierarchical_edge_step(model.edge, model.exit_head, opt,
                                                preprocess(stored, spec, gen if spec.augment else None), labels)
    if part == "full":
        full = model.full()
        opt = m.make_optimizer(full.parameters(), cfg)
        return lambda: m.full_step(full, opt, preprocess(stored, spec, gen if spec.augment else None), labels)
    acts = torch.randn(batch, *model.activation_shape, generator=gen)
    opt = m.make_optimizer(model.cloud.parameters(), cfg)
    return lambda: m.cloud_step(model.cloud, opt, acts, labels)


def probe(step, batches: int, warmup: int) -> dict:
    """Per-batch seconds of `batches` timed steps after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"per_batch_s": [round(t, 6) for t in times], "median_s": statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: one JSON line on stdout, or one error line and exit 2."""
    ap = argparse.ArgumentParser(prog="python -m harness.train.steptime",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True)
    ap.add_argument("--width", type=float, required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--part", choices=PROBE_PARTS, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--serve", action="store_true", help="answer `measure N` lines on stdin")
    args = ap.parse_args(argv)
    import torch
    from harness.errors import HarnessError
    torch.set_num_threads(args.threads)
    try:
        step = step_fn(args.arch, args.width, args.dataset, args.batch, args.split, args.part)
    except (HarnessError, KeyError) as exc:
        print(f"error: probe: {exc}", file=sys.stderr)
        return 2
    if not args.serve:
        result = probe(step, args.batches, args.warmup)
        print(json.dumps({"part": args.part, "threads": args.threads, **result}), flush=True)
        return 0
    print("READY", flush=True)
    steps = {args.part: step}
    for line in sys.stdin:
        words = line.split()
        if (len(words) not in (2, 3) or words[0] != "measure" or not words[1].isdigit()
                or int(words[1]) < 1 or words[2:] and words[2] not in PROBE_PARTS):
            print(f"error: probe: expected 'measure N [{'|'.join(PROBE_PARTS)}]', got "
                  f"{line.strip()[:40]!r}", file=sys.stderr)
            return 2
        part = words[2] if len(words) == 3 else args.part
        if part not in steps:
            steps[part] = step_fn(args.arch, args.width, args.dataset, args.batch, args.split,
                                  part)
        result = probe(steps[part], int(words[1]), 1)
        print(json.dumps({"part": part, "threads": args.threads, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
