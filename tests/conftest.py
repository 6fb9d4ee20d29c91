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


PATHS = ("numpy-fast", "numpy-generic", "torch-fast", "torch-generic", "array_api_strict", "jax")


@pytest.fixture(params=PATHS)
def path(request):
    """Each execution path a user can get: the fused kernels and the generic array-API code on
    NumPy and on (CPU) torch tensors — the generic torch code is what CUDA users run — plus
    array-api-strict and JAX. Yields the ``Backend``; the generic variants run with the fast path
    switched off."""
    name = request.param
    lib = name.split("-")[0]
    pytest.importorskip(lib)
    from infoloss import _config

    if name.endswith("-generic"):
        with _config.generic_only():
            yield Backend(lib)
    else:
        yield Backend(lib)
