"""The gradient-buffer cache (``infoloss._fast.pool``): reuse only when nothing refers to a buffer."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import run_in_threads

import infoloss
from infoloss import _config, _fast
from infoloss._fast import pool as _pool

pytestmark = pytest.mark.skipif(_fast.get_kernels() is None, reason="numba unavailable")

vg = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)
RNG = np.random.default_rng(3)
N, C = 64, 300


@pytest.fixture(autouse=True)
def small_pool(monkeypatch):
    """Serve every gradient of this module's tests from the cache; start and end empty."""
    monkeypatch.setattr(_pool, "MIN_BYTES", 1024)
    monkeypatch.setattr(_pool, "_enabled", True)
    _pool.empty_gradient_cache()
    yield
    _pool.empty_gradient_cache()


def _ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _data():
    return RNG.standard_normal((N, C)).astype(np.float32), RNG.integers(0, C, N)


def test_buffer_reused_once_the_gradient_is_dropped():
    x, y = _data()
    _, g = vg(x, y)
    p = _ptr(g)
    del g
    _, g2 = vg(x, y)
    assert _ptr(g2) == p


def test_no_reuse_while_the_gradient_or_a_view_of_it_lives():
    x, y = _data()
    _, g1 = vg(x, y)
    keep = g1[5:, ::2]  # a view keeps the buffer in use
    expected = g1.copy()
    del g1
    x2, y2 = _data()
    _, g2 = vg(x2, y2)
    assert not np.shares_memory(g2, keep)
    np.testing.assert_array_equal(keep, expected[5:, ::2])  # not overwritten by the 2nd call
    _, fresh = vg(x2, y2)
    np.testing.assert_array_equal(g2, fresh)


def test_many_live_gradients_are_all_distinct_and_right():
    xs = [_data() for _ in range(5)]
    grads = [vg(x, y)[1] for x, y in xs]  # more than MAX_BUFFERS alive at once
    for (x, y), g in zip(xs, grads, strict=True):
        with _config.generic_only():
            _, ref = vg(x, y)
        np.testing.assert_allclose(g, ref, rtol=2e-6, atol=1e-9)
    ptrs = [_ptr(g) for g in grads]
    assert len(set(ptrs)) == len(ptrs)
    assert len(_pool._buffers) <= _pool.MAX_BUFFERS


def test_torch_tensor_keeps_the_buffer_in_use():
    torch = pytest.importorskip("torch")
    x, y = _data()
    _, g = vg(x, y)
    t = torch.from_numpy(g)
    saved = t.clone()
    del g
    vg(*_data())
    torch.testing.assert_close(t, saved, rtol=0, atol=0)


def test_torch_route_gradients_reuse_after_grad_reset():
    torch = pytest.importorskip("torch")
    x = torch.randn(N, C, requires_grad=True)
    y = torch.randint(0, C, (N,))
    infoloss.sparse_softmax_cross_entropy(x, y, reduction="mean").backward()
    first = x.grad.clone()
    p = x.grad.data_ptr()
    x.grad = None
    infoloss.sparse_softmax_cross_entropy(x, y, reduction="mean").backward()
    assert x.grad.data_ptr() == p
    torch.testing.assert_close(x.grad, first, rtol=0, atol=0)


def test_disabled_cache_never_reuses_and_releases():
    x, y = _data()
    _, g = vg(x, y)
    del g
    assert _pool._buffers
    previous = infoloss.set_gradient_cache(False)
    assert previous is True
    assert not _pool._buffers  # free buffers released
    _, g2 = vg(x, y)
    assert not _pool._buffers and g2.shape == x.shape
    assert infoloss.set_gradient_cache(True) is False
    with pytest.raises(infoloss.InfolossTypeError, match="`enabled` must be True or False; got 1"):
        infoloss.set_gradient_cache(1)


def test_empty_cache_keeps_buffers_in_use():
    x, y = _data()
    _, g = vg(x, y)
    _, h = vg(*_data())
    del h
    freed = infoloss.empty_gradient_cache()
    assert freed == g.nbytes
    assert len(_pool._buffers) == 1
    np.testing.assert_array_equal(g, vg(x, y)[1])


def test_threads_get_distinct_buffers():
    data = [_data() for _ in range(8)]
    with _config.generic_only():
        refs = [vg(x, y)[1] for x, y in data]
    results: list = [None] * len(data)

    def work(i: int) -> None:
        for _ in range(20):
            _, g = vg(*data[i])
            results[i] = g.copy()
            if not np.allclose(g, refs[i], rtol=2e-6, atol=1e-9):
                results[i] = None
                return

    run_in_threads(work, len(data))
    for r, ref in zip(results, refs, strict=True):
        assert r is not None
        np.testing.assert_allclose(r, ref, rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("fn", [infoloss.softmax, infoloss.log_softmax])
def test_softmax_outputs_come_from_the_cache_and_live_ones_are_kept(fn):
    """softmax/log_softmax outputs share the gradients' cache: a dropped output's buffer serves
    the next call (no first-touch cost), while a live output (or a view of it) is never handed
    out again, neither to another output nor to a gradient."""
    x, y = _data()
    out = fn(x)
    p = _ptr(out)
    del out
    again = fn(x)
    assert _ptr(again) == p
    keep = again[3:, ::3]
    expected = np.array(keep)
    del again
    x2, _ = _data()
    others = [fn(x2), vg(x2, y)[1], fn(x)]
    for o in others:
        assert not np.shares_memory(o, keep)
    np.testing.assert_array_equal(keep, expected)  # not overwritten by the later calls
    with _config.generic_only():
        ref = fn(x2.astype(np.float64))
    np.testing.assert_allclose(others[0], ref, rtol=2e-6, atol=1e-6)
