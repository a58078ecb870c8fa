# dnsfleet: `make run` starts the dashboard, `make test` runs the whole suite. Both are idempotent.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PORT    ?= 8501
STAMP   := $(VENV)/.installed

.PHONY: run test install system-deps lint fmt bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# System packages and servers the tests need (Prometheus, Chromium, kube-apiserver + etcd built from Go modules).
system-deps:
	bash tests/fleet/install-system-deps.sh
	bash tests/fleet/build.sh all

run: install
	$(PY) -m dashboard.serve --server.address 127.0.0.1 --server.port $(PORT) \
	  --server.headless true --browser.gatherUsageStats false

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install system-deps lint
	$(PY) -m pytest -q

bench: install system-deps
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts
