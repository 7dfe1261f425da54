"""Suite-wide hooks (the fixtures live in pykeepalived.testing.pytest_plugin)."""

from __future__ import annotations

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the IPVS VM session (tests/test_ipvs.py) as soon as it is known to
    be wanted, so that its emulated VM runs beside the other tests."""
    if any(item.name == "test_ipvs_in_vm" for item in session.items):
        import test_ipvs

        test_ipvs.start_vm_session()


def pytest_sessionfinish(session: pytest.Session) -> None:
    import sys

    module = sys.modules.get("test_ipvs")
    if module is not None:
        module.stop_vm_session()
