# hierbench: `make bench` runs the default benchmark, `make test` the test suite.
# Both first install what they need (scripts/bootstrap.sh; idempotent, Debian packages as root).
PY := .venv/bin/python

.PHONY: setup bench test clean
setup:
	scripts/bootstrap.sh

bench: setup
	$(PY) run_bench.py train --model vgg16 --split conv4 --subset 12800 --test-subset 2000
	$(PY) run_bench.py train --model resnet18 --split layer2.1 --subset 12800 --test-subset 2000

test: setup
	$(PY) -m pytest

clean:
	rm -rf .venv .pytest_cache
