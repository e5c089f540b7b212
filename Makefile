# The two commands of the README. Both install what they need, idempotently.
SHELL := /bin/bash
PY ?= /usr/bin/python3.11
VENV := .venv
UV := $(VENV)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: serve test lint typecheck unit bench deps clean

$(VENV)/.debs: Makefile
	@command -v apt-get >/dev/null && { \
	  dpkg -s python3.11-venv python3-seccomp nftables runsc iproute2 curl zip unzip >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-venv python3-seccomp nftables runsc iproute2 curl zip unzip); } || true
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	@touch $@

# The test path only: the engines the tests start themselves (tests/engines.py):
# PostgreSQL for the store, redis-server for counting in Redis (ADR 0019); and
# systemd for systemd-analyze, which checks deploy/systemd/ (tests/deploy/).
TEST_DEBS := postgresql redis-server systemd rabbitmq-server
$(VENV)/.debs-test: Makefile
	@command -v apt-get >/dev/null && { \
	  dpkg -s $(TEST_DEBS) >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_DEBS)); } || true
	@mkdir -p $(VENV) && touch $@

$(VENV)/.synced: $(VENV)/.debs pyproject.toml uv.lock
	@test -x $(UV) || $(VENV)/bin/pip install -q uv==0.13.9
	@$(UV) sync --frozen --inexact --python $(VENV)/bin/python -q
	@touch $@

deps: $(VENV)/.synced

serve: deps
	$(VENV)/bin/kindling serve

lint: deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: deps
	$(VENV)/bin/mypy

unit: deps $(VENV)/.debs-test
	$(VENV)/bin/pytest -q

test: lint typecheck unit

bench: deps
	$(VENV)/bin/kindling bench
	$(VENV)/bin/kindling bench coldstart
	$(VENV)/bin/kindling bench heavy
	$(VENV)/bin/kindling bench density
	$(VENV)/bin/kindling bench burst
	$(VENV)/bin/python -m bench.load

clean:
	rm -rf $(VENV) .kindling
