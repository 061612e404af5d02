# vllm-fleet: `make demo` deploys to a local sandbox host, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INVENTORY ?= inventories/sandbox.py
HOSTS ?= 1
GATEWAYS ?= 0
MONITORS ?= 0
# CLUSTER=1: the sandbox's hosts serve one model together (a cluster; HOSTS=2 or more).
CLUSTER ?=
ENGINE ?=
JOBS ?= 4
REPORTS := reports
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: checkers setup nix-tools demo test test-unit test-planning test-integration lint docs verify sandbox-up sandbox-down clean graphs \
	bench-rollout bench-engine mutation

# The virtual environment, rebuilt when the pinned dependencies change.
$(VENV)/.installed: pyproject.toml
	@# Debian and Ubuntu ship venv's pip in a separate package: install it when venv fails.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "installing python3-venv"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed

# Debian's Nix, for the tests that parse and evaluate the flake (nix/ and the stand-in's).
nix-tools:
	@command -v nix-instantiate >/dev/null || { echo "installing Debian's nix-bin"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nix-bin; }

# The formats' own checkers the tests run (haproxy -c, nft -c, systemd-analyze verify, promtool,
# amtool): Debian's packages, installed without starting their services (policy-rc.d refuses them).
CHECKERS := haproxy nftables systemd prometheus prometheus-alertmanager
checkers:
	@command -v haproxy >/dev/null && command -v nft >/dev/null && command -v systemd-analyze >/dev/null \
		&& command -v promtool >/dev/null && command -v amtool >/dev/null || { \
		echo "installing $(CHECKERS) (not started)"; \
		printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; $(SUDO) chmod +x /usr/sbin/policy-rc.d; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $(CHECKERS); \
		status=$$?; $(SUDO) rm -f /usr/sbin/policy-rc.d; exit $$status; }

sandbox-up: setup
	$(BIN)/python -m sandbox.sandbox up --hosts $(HOSTS) --gateways $(GATEWAYS) --monitors $(MONITORS) $(if $(ENGINE),--engine $(ENGINE)) $(if $(CLUSTER),--cluster)

sandbox-down: setup
	$(BIN)/python -m sandbox.sandbox down

demo: sandbox-up
	$(BIN)/vllm-fleet deploy -y inventories/sandbox.py
	$(BIN)/vllm-fleet verify inventories/sandbox.py -n $(JOBS)
	$(BIN)/python -m sandbox.sandbox endpoint

verify: setup
	@mkdir -p $(REPORTS)
	$(BIN)/vllm-fleet verify $(INVENTORY) -n $(JOBS) --junit-xml $(REPORTS)/verify.xml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (docs/, mkdocs.yml) into reports/site; broken links fail it.
docs: setup
	$(BIN)/mkdocs build --strict --quiet

# Unit tests only: no Docker, no hosts, about a minute.
test-unit: setup nix-tools checkers
	$(BIN)/pytest -n 2 tests/unit -q

# Deploys planned against hand-written facts of GPU hosts (pyinfra's @fake connector): no hosts, no Docker.
test-planning: setup
	$(BIN)/pytest -n 2 --dist loadscope tests/planning

# Sandbox integration tests only (starts Docker and the sandbox fleets): two workers, one for the
# modules sharing the session's fleet, one for those with fleets of their own (conftest.py).
test-integration: setup
	$(BIN)/pytest -n 2 --dist loadgroup tests/integration

# Everything: lint and types, the docs, unit and planning tests, and the sandbox integration
# tests (starts Docker if needed).
test: lint docs nix-tools checkers
	@mkdir -p $(REPORTS)
	@# Unit tests on both cores: none imports pyinfra's CLI package, whose gevent patching an xdist
	@# worker does not survive (inventories are read with its loader alone: vllm_fleet/inventory.py).
	$(BIN)/pytest -n 2 tests/unit --junit-xml $(REPORTS)/tests-unit.xml
	@# The planning tests (pyinfra against recorded facts: CPU, no hosts) run beside the integration
	@# tests at a lower priority, on the cores the sandbox's hosts leave idle while they install, pull
	@# and wait; their output is shown once both are done, and either failing fails the target.
	@nice -n 10 $(BIN)/pytest -n 2 --dist loadscope tests/planning --junit-xml $(REPORTS)/tests-planning.xml \
		> $(REPORTS)/tests-planning.log 2>&1 & planning=$$!; trap 'kill $$planning 2>/dev/null' INT TERM; \
	$(BIN)/pytest -n 2 --dist loadgroup tests/integration --durations=25 --junit-xml $(REPORTS)/tests.xml; \
	integration=$$?; wait $$planning; planned=$$?; \
	echo "--- planning tests (beside the integration tests; log: $(REPORTS)/tests-planning.log)"; \
	tail -n 25 $(REPORTS)/tests-planning.log; \
	[ $$integration -eq 0 ] && [ $$planned -eq 0 ]

# Mutation testing ([tool.mutmut] in pyproject.toml; not part of `make test`, it takes long): mutmut
# mutates settings, rules (with exposure, secret_checks, machines), sizing, launch, haproxy,
# firewall, checks, monitoring, rollout and facts, runs the unit tests against each mutant, then
# tests/mutation_report.py prints the kill rate per module, over the gated modules (all but
# rollout and facts) and over all, and fails when the gated rate is below 85%. A surviving mutant is a missing test. mutmut keeps its results in
# mutants/ and checks only the mutants of new or changed code: the survivors of earlier runs are
# saved first and checked again after it (--recheck), so a test written since counts.
MUTATION_JOBS ?= 1
mutation: setup nix-tools checkers
	@mkdir -p $(REPORTS)
	$(BIN)/python -m tests.mutation_report --save-survivors $(REPORTS)/mutation-survivors.txt
	@# Its progress (a spinner, long lines) goes to the log.
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS) > $(REPORTS)/mutmut.log 2>&1 \
		|| { tail -c 3000 $(REPORTS)/mutmut.log; exit 1; }
	$(BIN)/python -m tests.mutation_report --recheck $(REPORTS)/mutation-survivors.txt \
		--max-children $(MUTATION_JOBS) --log $(REPORTS)/mutmut.log

# Rollout benchmark: 4 then 8 sandbox hosts behind a gateway, under load (about 10 minutes).
bench-rollout: setup
	$(BIN)/python -m bench.rollout

# Real vLLM's start, with an empty compile cache and then with the cache kept (about 6 minutes).
bench-engine: setup
	$(BIN)/python -m bench.engine_start

# The README's picture of the fleet's graphs, from a sandbox with a monitoring host: six minutes
# of traffic and one stopped vLLM, as the sandbox's Prometheus recorded them.
graphs: setup
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[graphs]'
	$(MAKE) sandbox-up HOSTS=2 MONITORS=1
	$(BIN)/vllm-fleet deploy -y inventories/sandbox.py
	$(BIN)/python -m sandbox.graphs

clean: sandbox-down
	rm -rf $(VENV) $(REPORTS) sandbox/.state
