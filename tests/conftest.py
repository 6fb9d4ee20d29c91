"""Test configuration: JAX in float64 and the one ``backend`` fixture over every execution variant.

``backend`` runs a test on each variant of ``_helpers.VARIANTS``: NumPy and CPU torch with the
fused numba kernels (``numpy-fast``, ``torch-fast``) and with the generic array-API code
(``numpy-generic``, ``torch-generic``: what CUDA/MPS users run, switched on with
``infoloss._config.generic_only()`` for the whole test), array-api-strict and JAX. The value is a
``_helpers.Backend``: ``backend.name`` is the array library (for ``asarray``/``xp``),
``backend.variant`` the variant, ``backend.fast`` / ``backend.generic`` / ``backend.autodiff``
say what it runs, so a test that must leave a variant out says so explicitly.

``@pytest.mark.variants("numpy-fast", ..., reason="...")`` runs a test on the named variants only
(heavy parametrizations, or tests about one framework); the reason is required. ``path`` is the
same fixture under its older name (tests/test_measures_edges.py reads it from
``request.node.callspec.params["path"]``).

The whole session (its threads and child processes too) runs with ``INFOLOSS_FAST_MIN_ELEMENTS=0``
unless it is set already: NumPy inputs of every size reach the kernels, as the tests were written
for; tests/test_small_route.py checks the size threshold itself with the variable removed.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("INFOLOSS_FAST_MIN_ELEMENTS", "0")

from _helpers import VARIANTS, Backend, installed

if installed("jax"):
    import jax

    jax.config.update("jax_enable_x64", True)

_VARIANT_FIXTURES = ("backend", "path")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "variants(*names, reason): run the test on these backend variants only "
        f"(of {', '.join(VARIANTS)})",
    )


def _direct_params(metafunc) -> set[str]:
    names = set()
    for mark in metafunc.definition.iter_markers(name="parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs["argnames"]
        if isinstance(argnames, str):
            argnames = [a.strip() for a in argnames.split(",")]
        names.update(argnames)
    return names


def pytest_generate_tests(metafunc):
    wanted = [f for f in _VARIANT_FIXTURES if f in metafunc.fixturenames]
    wanted = [f for f in wanted if f not in _direct_params(metafunc)]
    if not wanted:
        return
    if len(wanted) > 1:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: use `backend` or `path`, not both")
    variants = VARIANTS
    mark = metafunc.definition.get_closest_marker("variants")
    if mark is not None:
        variants = mark.args
        unknown = set(variants) - set(VARIANTS)
        if unknown or not variants or not mark.kwargs.get("reason"):
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: variants() takes names of {VARIANTS} and a reason"
            )
    metafunc.parametrize(wanted[0], variants, indirect=True)


def _enter(request):
    b = Backend.of(request.param)
    pytest.importorskip(b.name)
    if b.fast:
        from infoloss import _fast

        if _fast.get_kernels() is None or os.environ.get("INFOLOSS_DISABLE_FAST", "") not in (
            "",
            "0",
        ):
            pytest.skip(f"{b.variant}: numba kernels unavailable or disabled")
    with b.context():
        yield b


@pytest.fixture
def backend(request):
    """Each execution variant (see the module docstring); skipped only when its library (or, for
    the fast variants, numba) is not installed."""
    yield from _enter(request)


@pytest.fixture
def path(request):
    """``backend`` under its older name."""
    yield from _enter(request)


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def jax_mod():
    jax = pytest.importorskip("jax")
    return jax
