# oidc_federation.azure developer workflow. Every target bootstraps what it needs on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Where the collection is importable as oidc_federation.azure: .build/collections, or outside the checkout when the
# checkout itself sits in an ansible_collections tree (scripts/collection-root.sh: where, and why).
COLL_ROOT := $(shell bash scripts/collection-root.sh --print)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export PYTHONPATH := $(COLL_ROOT):$(CURDIR)/sandbox
export ANSIBLE_NOCOLOR := 1
export AZCLI_VENV ?= $(HOME)/.cache/oidc_federation_azure/azcli-venv

.PHONY: help
help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(VENV)/.stamp: requirements/dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	@touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## create .venv with the pinned dev requirements

.PHONY: collection
collection: venv ## make the collection importable (symlink under .build/collections; scripts/collection-root.sh)
	@bash scripts/collection-root.sh >/dev/null

.PHONY: azcli
azcli: ## create (or reuse) the Azure CLI venv used by the az end-to-end tests
	bash sandbox/scripts/azcli-venv.sh

.PHONY: units
units: collection ## unit tests of the collection's core and modules
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

.PHONY: sandbox-tests
sandbox-tests: collection azcli ## contract tests of the sandbox (HTTP, real SDKs, Azure CLI)
	$(PY) -m pytest -q -p no:cacheprovider sandbox/tests

.PHONY: integration
integration: collection ## integration tests: the modules against the sandbox
	bash scripts/integration.sh

.PHONY: e2e
e2e: collection azcli ## end to end: onboard the example projects on the sandbox, log in with GitLab ID tokens, offboard
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e

.PHONY: bench
bench: collection ## benchmark onboarding N projects (BENCH_PROJECTS=100 BENCH_STRATEGY=per_host|bulk BENCH_QUOTAS=off|on BENCH_REPEAT=1); prints JSON
	$(PY) benchmarks/bench_onboard.py --projects $${BENCH_PROJECTS:-100} --strategy $${BENCH_STRATEGY:-per_host} \
		--quotas $${BENCH_QUOTAS:-off} --repeat $${BENCH_REPEAT:-1}

.PHONY: sanity
sanity: collection ## ansible-test sanity, offline, no ignore file
	bash scripts/sanity.sh

.PHONY: lint
lint: collection ## all linters and packaging checks: changelog, ansible-lint, docs, galaxy-importer, EE, sanity
	bash scripts/lint.sh

.PHONY: test
test: units sandbox-tests integration e2e lint ## everything CI runs (lint includes sanity)

.PHONY: compat
compat: ## sanity, integration and e2e on another ansible-core (CORE=2.17.14; venv .venv-core-<CORE>; not part of test)
	@test -n "$(CORE)" || { echo "make compat: give CORE=<ansible-core version>, e.g. make compat CORE=2.17.14" >&2; exit 2; }
	bash scripts/compat.sh $(CORE) $(COMPAT_STEPS)

.PHONY: sandbox
sandbox: venv ## run the sandbox in the foreground (writes .sandbox/env)
	$(PY) -m oidc_sandbox serve

.PHONY: sandbox-start
sandbox-start: venv ## start the sandbox in the background (writes .sandbox/env)
	$(PY) -m oidc_sandbox start

.PHONY: sandbox-stop
sandbox-stop: ## stop the background sandbox
	@test -x $(PY) && $(PY) -m oidc_sandbox stop || true

.PHONY: demo
demo: collection ## start the sandbox, onboard the example projects, print the result, stop
	bash scripts/demo.sh

.PHONY: clean
clean: sandbox-stop ## remove build output (keeps .venv)
	rm -rf .build tests/output .sandbox "$$(bash scripts/collection-root.sh --tree-dir)"
