# The README's two commands: `make demo` and `make test`.  Both set up
# everything they need (apt packages, .venv) on a fresh Debian 12 as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# dnsmasq-base: the DNS server of tests/test_check_dns.py (the binary only, no service).
APT_PACKAGES := keepalived tshark nftables ipvsadm iproute2 procps psmisc haproxy chromium systemd bird2 dnsmasq-base
STAMP_APT := .venv/.apt-stamp
STAMP_VENV := .venv/.install-stamp

.PHONY: all setup apt venv lint typecheck pytest test demo clean

all: test

$(STAMP_APT):
	@mkdir -p $(VENV)
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@systemctl disable --now keepalived >/dev/null 2>&1 || true
	@touch $@

# The repo root is the package `pykeepalived` (core/ -> pykeepalived.core).  A strict
# editable install (setuptools' link tree under build/, found through a plain .pth
# path) lets pytest, mypy, import-linter, IDEs and `python -m pykeepalived` see a
# normal package.  The link tree holds one link per file, so adding or removing a
# module re-installs: the package folders are prerequisites (their mtime changes).
PKG_DIRS := core $(wildcard core/*/ core/*/*/ plugins plugins/*/ testing)

$(STAMP_VENV): pyproject.toml $(PKG_DIRS)
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@$(PY) -m pip install -q --config-settings editable_mode=strict -e '.[test]'
	@# bytecode for the link tree, as a regular pip install writes it: a daemon started
	@# under PYTHONDONTWRITEBYTECODE would otherwise compile every module at each start
	@# (2 MB more RSS, slower start-up)
	@$(PY) -m compileall -q build/__editable__.*/ >/dev/null
	@touch $@

apt: $(STAMP_APT)
venv: $(STAMP_VENV)
setup: apt venv

# ruff, then the import contracts (the layers of docs/architecture.md, in .importlinter).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy -p pykeepalived

# Our own runs clean up lab namespaces that crashed runs left (opt-in elsewhere).
pytest: setup
	$(VENV)/bin/pytest --pykeepalived-clean-stale

test: lint typecheck pytest

demo: setup
	$(PY) -m pykeepalived.testing.demo

clean:
	rm -rf $(VENV) .build build *.egg-info
