"""Accuracy studies: converged trainings per seed, cached one by one, and what they answer.

    python run_bench.py run scenarios/accuracy.yaml

`plan` expands a `kind: accuracy` scenario into trainings (end-to-end once per model and
seed; hierarchical per split, exit head and seed), `cache` keeps each finished training under
a key of everything that decides its weights, `runner` trains what the cache lacks (resuming
where an interrupted study stopped) and writes the run directory; the tables and plots are
`harness.analysis.study` and `harness.analysis.studyplots` (no torch).
"""
