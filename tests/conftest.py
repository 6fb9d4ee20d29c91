"""Test configuration: JAX in float64, one ``backend`` fixture over the four array libraries."""

from __future__ import annotations

import pytest
from _helpers import BACKEND_NAMES, Backend, installed

if installed("jax"):
    import jax

    jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="session", params=BACKEND_NAMES)
def backend(request) -> Backend:
    """Each array library; skipped only when it is not installed."""
    name = request.param
    pytest.importorskip(name)
    return Backend(name)


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def jax_mod():
    jax = pytest.importorskip("jax")
    return jax
