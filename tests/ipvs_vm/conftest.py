"""Tests that need a kernel with IPVS: they run inside the IPVS VM only.

``tests/test_ipvs.py::test_ipvs_in_vm`` boots the VM once and runs this
directory there with ``PKA_IPVS_VM=1``; anywhere else the directory is not
collected (the host kernel may have no IPVS, and these tests rewrite the
whole IPVS table, which only a throwaway VM can afford).  By hand:
``PKA_IPVS_VM=1 ../shared/tools/ipvs-vm -- .venv/bin/pytest tests/ipvs_vm -q``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmhelp import DUMMY, run

IN_VM = os.environ.get("PKA_IPVS_VM") == "1"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool:
    return not IN_VM


@pytest.fixture(scope="session")
def network() -> Iterator[None]:
    """A dummy interface holding the real servers' addresses, with routes to
    the VIP and real-server ranges (so locally sent packets reach IPVS)."""
    if not Path("/proc/net/ip_vs").exists():
        pytest.fail("no /proc/net/ip_vs: this kernel has no IPVS (run inside ipvs-vm)")
    run("ip", "link", "add", DUMMY, "type", "dummy")
    try:
        run("ip", "link", "set", DUMMY, "up")
        for last in (71, 72, 20, 21, 22, 23, 11):
            run("ip", "addr", "add", f"198.51.100.{last}/32", "dev", DUMMY)
        run("ip", "route", "add", "192.0.2.0/24", "dev", DUMMY)
        run("ip", "route", "add", "198.51.100.0/24", "dev", DUMMY)
        yield
    finally:
        run("ip", "link", "del", DUMMY, check=False)


@pytest.fixture(autouse=True)
def clean_table(network: None) -> Iterator[None]:
    run("ipvsadm", "-C")
    yield
    run("ipvsadm", "-C")
