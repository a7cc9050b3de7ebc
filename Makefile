# riskloop: the two commands.
#   make demo   creates .venv, installs riskloop, runs the whole loop on the bundled scenario,
#               then serves the risk console over it until Ctrl-C (SERVE=0 or CI=1: do not serve)
#   make test   creates .venv with dev extras, prepares services, runs ruff and the test suite
SHELL := /bin/bash
VENV := .venv

.PHONY: demo test venv venv-dev lint bench clean

venv:
	@bash scripts/venv.sh run

venv-dev:
	@bash scripts/venv.sh dev

SERVE ?= 1

demo: venv
	$(VENV)/bin/riskloop demo --workspace riskloop-demo
	@if [ "$(SERVE)" = 1 ] && [ -z "$${CI:-}" ]; then bash scripts/demo-console.sh riskloop-demo; \
	else echo "console not started (SERVE=$(SERVE)$${CI:+, CI}): bash scripts/demo-console.sh riskloop-demo"; fi

test: venv-dev
	@bash scripts/test.sh

lint: venv-dev
	$(VENV)/bin/ruff check src tests bench

bench: venv-dev
	@for b in bench/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) riskloop-demo .pytest_cache
