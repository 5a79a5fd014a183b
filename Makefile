# kubezeek — two commands set everything up: `make demo` and `make test`.
# Both create .venv and install what they need (Debian packages too, when root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the real-component tests use (network namespaces + tc, rsyslog, headless Chromium,
# nft for the sensor's ClusterIP (DNAT) tests).
APT_PACKAGES := iproute2 rsyslog chromium nftables

.PHONY: demo test lint layers venv apt bench clean help

help:
	@echo "make demo   - run kubezeek end to end on a bundled scenario (no cluster, no Zeek needed)"
	@echo "make test   - lint, layer check and the full test suite"
	@echo "make bench  - quick variant of every benchmark (full runs and results: BENCHMARKS.md)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

apt:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian packages ($(APT_PACKAGES)); tests needing them will skip"; fi
	@bash deploy/tools/fetch-kustomize.sh $(VENV) || echo "kustomize unavailable: rendering tests will skip"

demo: $(STAMP)
	$(BIN)/kubezeek demo

lint: $(STAMP)
	$(BIN)/ruff check $(wildcard enrich sensor tests bench pcaps)
	$(BIN)/ruff format --check $(wildcard enrich sensor tests bench)

layers: $(STAMP)
	$(BIN)/lint-imports

test: $(STAMP) apt lint layers
	@rc=0; $(BIN)/python -m pytest -q || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as a failure"; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python bench/bench_inventory.py --quick
	$(BIN)/python bench/bench_enrich.py --quick
	$(BIN)/python bench/bench_filter.py --quick
	$(BIN)/python bench/bench_query.py --records 100000 --repeat 1
	$(BIN)/python bench/bench_sensor.py --pods 50

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
