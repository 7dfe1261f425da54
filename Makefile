# The README's two commands: `make demo` and `make test`.  Both set up
# everything they need (apt packages, .venv) on a fresh Debian 12 as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := keepalived tshark nftables ipvsadm iproute2 procps psmisc haproxy
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

$(STAMP_VENV): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

apt: $(STAMP_APT)
venv: $(STAMP_VENV)
setup: apt venv

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy needs the package under its import name: a link tree maps the repo
# root onto `pykeepalived/` without copying anything.
typecheck: setup
	@rm -rf .build/typecheck && mkdir -p .build/typecheck/pykeepalived
	@for f in __init__.py py.typed core plugins; do ln -s ../../../$$f .build/typecheck/pykeepalived/$$f; done
	cd .build/typecheck && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p pykeepalived

pytest: setup
	$(VENV)/bin/pytest

test: lint typecheck pytest

demo: setup
	$(PY) -m pykeepalived.core.demo

clean:
	rm -rf $(VENV) .build build *.egg-info
