# hierbench: `make bench` runs the default benchmark, `make test` the test suite.
# Both first install what they need (scripts/bootstrap.sh; idempotent, Debian packages as root).
PY := .venv/bin/python

.PHONY: setup setup-cluster bench test clean
setup:
	scripts/bootstrap.sh

setup-cluster:
	HIERBENCH_CLUSTER=1 scripts/bootstrap.sh

bench: setup
	$(PY) run_bench.py run scenarios/quick.yaml

test: setup
	$(PY) -m pytest

clean:
	rm -rf .venv .pytest_cache
