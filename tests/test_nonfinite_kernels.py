"""Non-finite inputs in the numba kernels (issue 11, items 2 and 3).

The rules (docs/semantics.md; the generic array-API path follows the same ones):

- a row with a nan or a +inf logit has nan values and an all-nan gradient row, in every kernel
  and with every option (label smoothing, class weights including zero weights, z-loss, sample
  weights including zero); logsumexp is nan for a nan row and +inf for a row with +inf and no nan;
- an ignored row (``ignore_index``) gives 0 and a zero gradient whatever its logits;
- −inf is a masked class; an all −inf row keeps its meaning (no distribution);
- nan in dense labels or in a row's weights makes that row nan;
- sigmoid cross-entropy is elementwise: a nan logit or label gives nan for that element, ±inf
  logits keep their finite limits.

Every case also checks that the other rows are untouched: bit for bit the same as in a call where
the non-finite values were replaced by finite ones (same shape, so the same kernel and the same
threads), and close to a call with the bad rows removed. Kernels are called directly (the short
row tile kernel, the direct kernel, the streaming gradient kernel with ``out=`` in place or with
its size thresholds lowered, the threaded path at 2000 × 4000), then through the public functions.
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pytest

pytest.importorskip("numba")
from _helpers import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import infoloss
from infoloss import _config, _router
from infoloss._fast import kernels as K

NAN, INF = np.nan, np.inf
NEG_NAN = -np.abs(np.float64(np.nan))  # sign bit set, like x86's default nan from 0 · inf
DTYPES = [np.float32, np.float64]
IGNORE = -100
# value kinds placed at a position: nan, nan with the sign bit, +inf; nan with a +inf elsewhere;
# +inf or nan in an otherwise all −inf row; two +inf
VALUES = ["nan", "-nan", "+inf", "nan&+inf", "+inf,-inf rest", "nan,-inf rest", "+inf&+inf"]
PLACES = ["first", "last", "middle", "target", "non-target", "all"]


# --------------------------------------------------------------------------- building cases


def _positions(place, c, label):
    return {
        "first": [0],
        "last": [c - 1],
        "middle": [c // 2],
        "target": [label],
        "non-target": [(label + 1) % c] if c > 1 else None,
        "all": list(range(c)),
    }[place]


def _spoil_row(xr, pos, kind):
    c = xr.shape[0]
    other = (pos[0] + c // 3 + 1) % c
    if kind.endswith("-inf rest"):
        xr[:] = -INF
    v = {"nan": NAN, "-nan": NEG_NAN, "+inf": INF}[kind.split("&")[0].split(",")[0]]
    xr[pos] = v
    if "&" in kind and c > 1 and other not in pos:
        xr[other] = INF


def spoil(rng, x, labels):
    """Put every (place, value) combination into its own row of ``x`` (in place): the first and
    last rows and two adjacent rows among them. Returns the boolean mask of the spoiled rows."""
    n, c = x.shape
    order = [0, n - 1, 1, 2, *rng.permutation(np.arange(3, n - 1))]
    combos = [
        (p, v)
        for p, v in itertools.product(PLACES, VALUES)
        if _positions(p, c, int(labels[0])) is not None
    ]
    combos = combos[: max(1, (2 * n) // 3)]  # leave good rows
    bad = np.zeros(n, bool)
    for r, (p, v) in zip(order, combos, strict=False):  # (more rows than combos)
        _spoil_row(x[r], _positions(p, c, int(labels[r])), v)
        bad[r] = True
    return bad


def good_extras(x, labels, bad):
    """Good rows of their own among the remaining ones: all −inf (no distribution) and a masked
    (−inf) non-target class."""
    free = np.flatnonzero(~bad)
    c = x.shape[1]
    x[free[0]] = -INF
    if c > 1:
        x[free[1], (labels[free[1]] + 1) % c] = -INF
    return free


def cleaned(x):
    """``x`` with every nan and +inf replaced by a finite number (−inf kept)."""
    xc = x.copy()
    xc[np.isnan(xc) | (xc == INF)] = 0.5
    return xc


def has_bad(x):
    return np.any(np.isnan(x) | (x == INF), axis=-1)


def assert_rows(got, clean, nan_rows, what, zero_rows=None):
    """nan exactly in ``nan_rows``; 0 in ``zero_rows``; elsewhere bit for bit ``clean``."""
    got = np.asarray(got)
    clean = np.asarray(clean)
    assert got.shape == clean.shape, what
    zero_rows = np.zeros(got.shape[0], bool) if zero_rows is None else zero_rows
    nan_rows = nan_rows & ~zero_rows
    assert np.isnan(got[nan_rows]).all(), f"{what}: not nan where a row has nan or +inf"
    assert np.all(got[zero_rows] == 0), f"{what}: ignored rows not 0"
    rest = ~nan_rows & ~zero_rows
    np.testing.assert_array_equal(got[rest], clean[rest], err_msg=f"{what}: other rows changed")


def assert_no_nan(a, what):
    assert not np.isnan(np.asarray(a)).any(), f"{what}: nan in a row without nan or +inf"


def assert_close_rows(got, ref, dtype, what):
    """Equal up to a few roundings (the same rows computed in a call of another size): within
    16 eps of the dtype, relative to each value and to the largest finite |ref|."""
    tol = 16 * np.finfo(dtype).eps
    assert_close(got, ref, rtol=tol, atol=tol, scale="all", check_type=False, err_msg=what)


@contextlib.contextmanager
def kernel_path(path, monkeypatch):
    """``streamed``: the streaming sizes lowered to 0, so even small calls split their rows
    between threads and write with streaming stores (rows > 16 classes)."""
    if path == "streamed":
        monkeypatch.setattr(K._tunables, "_STREAM_MIN_BYTES", 0)
        monkeypatch.setattr(K._tunables, "_PARALLEL_MIN_ELEMENTS", 0)
    yield


def _sparse(x, labels, cw, sw, ignore, eps, z, gs, path):
    if path == "inplace":
        xi = x.copy()
        loss, g = K.sparse_softmax_ce(xi, labels, cw, sw, ignore, eps, z, gs, out=xi)
        assert g is xi
        return loss, g
    if path == "out":
        buf = np.full_like(x, 7.0)
        loss, g = K.sparse_softmax_ce(x, labels, cw, sw, ignore, eps, z, gs, out=buf)
        assert g is buf
        return loss, g
    return K.sparse_softmax_ce(x, labels, cw, sw, ignore, eps, z, gs)


def _options(rng, n, c, use_cw, use_sw, labels, bad):
    cw = sw = None
    if use_cw:
        cw = rng.uniform(0.2, 2.0, c)
        cw[labels[np.flatnonzero(bad)[0]]] = 0.0  # a zero weight on a bad row's target
        if c > 2:
            cw[c // 2] = 0.0  # and on a class spoiled in some rows
    if use_sw:
        sw = rng.uniform(0.1, 2.0, n)
        sw[np.flatnonzero(bad)[:3]] = 0.0  # zero sample weights on bad rows: still nan
    return cw, sw


# --------------------------------------------------------------------------- sparse CE

SPARSE_GRID = list(
    itertools.product(
        [False, True],  # class weights (with zeros)
        [False, True],  # sample weights (with zeros)
        [False, True],  # ignore_index
        [0.0, 0.1],  # label smoothing
        [0.0, 1e-3],  # z-loss
        [None, 1.0, 0.25],  # grad scale
    )
)
# C = 1, 2, 10, 16: the short-row tile kernel; 17, 41, 600 (two blocks): the row kernel
SHAPES = [(70, 1), (80, 2), (150, 10), (150, 16), (97, 17), (97, 41), (70, 600)]


def _check_sparse(rng, x0, labels0, dtype, opts, path, delete=True):
    use_cw, use_sw, use_ignore, eps, z, gs = opts
    n, c = x0.shape
    x = x0.copy()
    bad = spoil(rng, x, labels0)
    free = good_extras(x, labels0, bad)
    labels = labels0.copy()
    ign = np.zeros(n, bool)
    if use_ignore:
        ign[np.flatnonzero(bad)[1::5]] = True  # ignored rows with nan / +inf logits
        ign[free[2]] = True
        labels[ign] = IGNORE
    cw, sw = _options(rng, n, c, use_cw, use_sw, labels0, bad)
    ignore = IGNORE if use_ignore else None
    args = (cw, sw, ignore, eps, z, gs, path)
    loss, g = _sparse(x, labels, *args)
    xc = cleaned(x)
    loss_c, g_c = _sparse(xc, labels, *args)
    what = f"{path} {x.dtype} {x.shape} {opts}"
    assert_rows(loss, loss_c, bad, f"loss {what}", ign)
    assert_no_nan(loss_c[~bad], f"clean loss {what}")
    if gs is not None:
        assert_rows(g, g_c, bad, f"grad {what}", ign)
        assert_no_nan(g_c[~bad], f"clean grad {what}")
    if delete:  # the same rows without the bad ones
        keep = ~bad
        loss_d, g_d = _sparse(
            np.ascontiguousarray(x[keep]),
            labels[keep],
            cw,
            None if sw is None else sw[keep],
            ignore,
            eps,
            z,
            gs,
            path,
        )
        assert_close_rows(loss[keep], loss_d, dtype, f"deleted rows loss {what}")
        if gs is not None:
            assert_close_rows(g[keep], g_d, dtype, f"deleted rows grad {what}")
    return loss, g


@pytest.mark.parametrize("path", ["direct", "inplace", "out", "streamed"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{c}" for n, c in SHAPES])
def test_sparse_ce_nan_and_inf_rows(shape, dtype, path, monkeypatch):
    rng = np.random.default_rng(11)
    n, c = shape
    x0 = (rng.standard_normal((n, c)) * 3).astype(dtype)
    labels0 = rng.integers(0, c, n)
    with kernel_path(path, monkeypatch):
        for opts in SPARSE_GRID:
            if path in ("inplace", "out") and opts[-1] is None:
                continue
            _check_sparse(rng, x0, labels0, dtype, opts, path)


@pytest.mark.parametrize("path", ["direct", "inplace"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_ce_threaded_rows(dtype, path):
    """2000 × 4000: the threaded kernels (float32 direct: 32 MB gradient, just below the
    streaming size; float64 and in place: the streaming kernel)."""
    rng = np.random.default_rng(12)
    n, c = 2000, 4000
    x0 = (rng.standard_normal((n, c)) * 3).astype(dtype)
    labels0 = rng.integers(0, c, n)
    for opts in [
        (False, False, False, 0.0, 0.0, 1.0),
        (True, True, True, 0.1, 1e-3, 0.25),
        (False, True, True, 0.0, 1e-3, None),
    ]:
        if path == "inplace" and opts[-1] is None:
            continue
        _check_sparse(rng, x0, labels0, dtype, opts, path)


def test_sparse_ce_known_values():
    """The examples of issue 11: nan, never a finite (or negative) number."""
    for dtype in DTYPES:
        for c in (2, 40):  # tile kernel and row kernel
            x = np.zeros((3, c), dtype)
            x[0, :2] = [NAN, 1.0]  # nan on a non-target class: was −1
            x[1, :2] = [INF, 0.0]  # +inf, label 1: was −inf (label 0 gave 0)
            x[2, :2] = [INF, 0.0]
            for gs in (None, 1.0):
                loss, g = K.sparse_softmax_ce(
                    x, np.array([1, 1, 0]), None, None, None, 0.0, 0.0, gs
                )
                assert np.isnan(loss).all()
                assert gs is None or np.isnan(g).all()


def test_sparse_ce_nan_weights():
    """nan in a row's sample weight or its target's class weight: that row is nan (value and
    gradient); other rows unchanged. With label smoothing every class weight enters every row."""
    rng = np.random.default_rng(13)
    for dtype, (n, c), path in itertools.product(
        DTYPES, [(150, 10), (97, 41)], ["direct", "inplace"]
    ):
        x = (rng.standard_normal((n, c)) * 3).astype(dtype)
        labels = rng.integers(0, c, n)
        labels[:3] = 2
        labels[3] = IGNORE  # an ignored row stays 0
        cw = rng.uniform(0.2, 2.0, c)
        sw = rng.uniform(0.1, 2.0, n)
        for eps in (0.0, 0.1):
            cw_n, sw_n = cw.copy(), sw.copy()
            cw_n[2] = NAN
            sw_n[[5, n - 1]] = NAN
            loss, g = _sparse(x, labels, cw_n, sw_n, IGNORE, eps, 1e-3, 0.5, path)
            loss_c, _ = _sparse(x, labels, cw, sw, IGNORE, eps, 1e-3, 0.5, path)
            ign = labels == IGNORE
            if eps > 0:
                nan_rows = ~ign
            else:
                nan_rows = (labels == 2) | np.isin(np.arange(n), [5, n - 1])
            assert_rows(loss, loss_c, nan_rows, f"loss {dtype} {c} {eps}", ign)
            assert np.isnan(g[nan_rows]).all() and np.all(g[ign] == 0)


def test_ignored_rows_with_nan_logits_are_zero():
    for dtype, c, path in itertools.product(DTYPES, [3, 41], ["direct", "inplace", "streamed"]):
        x = np.array([[NAN] * c, [INF] * c, [-INF] * c, [0.0] * c], dtype)
        labels = np.array([IGNORE, IGNORE, IGNORE, 1])
        with pytest.MonkeyPatch.context() as mp, kernel_path(path, mp):
            loss, g = _sparse(x, labels, None, np.full(4, NAN), IGNORE, 0.1, 0.1, 1.0, path)
        assert np.all(loss[:3] == 0) and np.all(g[:3] == 0)
        assert np.isnan(loss[3]) and np.isnan(g[3]).all()  # a nan sample weight


# --------------------------------------------------------------------------- dense CE

DENSE_GRID = list(
    itertools.product([False, True], [False, True], [0.0, 0.1], [0.0, 1e-3], [None, 1.0, 0.25])
)


def _dense_labels(rng, n, c, dtype):
    y = rng.dirichlet(np.full(c, 0.5), n)
    y[::4] = np.eye(c)[rng.integers(0, c, len(y[::4]))]  # one-hot rows
    return y.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(80, 2), (150, 10), (97, 41), (70, 600)], ids=str)
def test_dense_ce_nan_and_inf_rows(shape, dtype):
    rng = np.random.default_rng(14)
    n, c = shape
    x0 = (rng.standard_normal((n, c)) * 3).astype(dtype)
    y = _dense_labels(rng, n, c, dtype)
    target = np.argmax(y, axis=1)
    for use_cw, use_sw, eps, z, gs in DENSE_GRID:
        x = x0.copy()
        bad = spoil(rng, x, target)
        free = good_extras(x, target, bad)
        yv = y.copy()
        yv[free[1], (target[free[1]] + 1) % c] = 0.0  # no target mass on the masked class
        cw, sw = _options(rng, n, c, use_cw, use_sw, target, bad)
        loss, g = K.softmax_ce(x, yv, cw, sw, eps, z, gs)
        loss_c, g_c = K.softmax_ce(cleaned(x), yv, cw, sw, eps, z, gs)
        what = f"dense {dtype} {shape} {(use_cw, use_sw, eps, z, gs)}"
        assert_rows(loss, loss_c, bad, f"loss {what}")
        assert_no_nan(loss_c[~bad], what)
        if gs is not None:
            assert_rows(g, g_c, bad, f"grad {what}")
            assert_no_nan(g_c[~bad], what)
        keep = ~bad
        loss_d, g_d = K.softmax_ce(
            np.ascontiguousarray(x[keep]),
            yv[keep],
            cw,
            None if sw is None else sw[keep],
            eps,
            z,
            gs,
        )
        assert_close_rows(loss[keep], loss_d, dtype, what)
        if gs is not None:
            assert_close_rows(g[keep], g_d, dtype, what)


def test_dense_ce_threaded_rows():
    rng = np.random.default_rng(15)
    for dtype in DTYPES:
        n, c = 2000, 4000
        x = (rng.standard_normal((n, c)) * 3).astype(dtype)
        y = _dense_labels(rng, n, c, dtype)
        bad = spoil(rng, x, np.argmax(y, axis=1))
        loss, g = K.softmax_ce(x, y, None, None, 0.1, 1e-3, 1.0)
        loss_c, g_c = K.softmax_ce(cleaned(x), y, None, None, 0.1, 1e-3, 1.0)
        assert_rows(loss, loss_c, bad, "loss")
        assert_rows(g, g_c, bad, "grad")


def test_dense_ce_nan_labels_and_weights():
    rng = np.random.default_rng(16)
    for dtype, c in itertools.product(DTYPES, [10, 41]):
        n = 30
        x = (rng.standard_normal((n, c)) * 3).astype(dtype)
        x[7, 3] = -INF  # a nan label on a masked class is nan too
        y = _dense_labels(rng, n, c, dtype)
        yn = y.copy()
        yn[[2, 7], 3] = NAN
        yn[n - 1, 0] = NAN
        sw = rng.uniform(0.1, 2.0, n)
        swn = sw.copy()
        swn[11] = NAN
        for eps, cw in itertools.product((0.0, 0.1), (None, rng.uniform(0.5, 2.0, c))):
            loss, g = K.softmax_ce(x, yn, cw, swn, eps, 1e-3, 1.0)
            loss_c, g_c = K.softmax_ce(x, y, cw, sw, eps, 1e-3, 1.0)
            nan_rows = np.isin(np.arange(n), [2, 7, 11, n - 1])
            assert_rows(loss, loss_c, nan_rows, "loss")
            assert_rows(g, g_c, nan_rows, "grad")
        cwn = np.ones(c)
        cwn[4] = NAN  # a class weight multiplies every row's target there (0 · nan = nan)
        loss, g = K.softmax_ce(x, y, cwn, None, 0.0, 0.0, 1.0)
        assert np.isnan(loss).all() and np.isnan(g).all()


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 10, 17, 41, 600, 1100])
def test_activations_nan_and_inf_rows(dtype, c):
    rng = np.random.default_rng(17)
    n = 70
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    bad = spoil(rng, x, rng.integers(0, c, n))
    good_extras(x, rng.integers(0, c, n), bad)
    xc = cleaned(x)
    anynan = np.isnan(x).any(axis=1)
    pinf = (x == INF).any(axis=1) & ~anynan
    allneg = (x == -INF).all(axis=1)
    lse, lse_c = K.logsumexp_rows(x), K.logsumexp_rows(xc)
    assert np.isnan(lse[anynan]).all()
    assert np.all(lse[pinf] == INF)
    assert np.all(lse[allneg] == -INF)
    np.testing.assert_array_equal(lse[~bad], lse_c[~bad])
    assert np.isfinite(lse[~bad & ~allneg]).all()
    for f in (K.softmax_rows, K.log_softmax_rows):
        out, out_c = f(x), f(xc)
        assert_rows(out, out_c, bad, f.__name__)
        assert_no_nan(out_c, f.__name__)
    assert np.all(K.softmax_rows(x)[allneg] == 0)
    assert np.all(K.log_softmax_rows(x)[allneg] == -INF)


def test_activations_known_values():
    x = np.array([[NAN, 1.0], [INF, 0.0], [1.0, INF], [-INF, -INF], [NAN, INF], [-INF, INF]])
    np.testing.assert_array_equal(K.logsumexp_rows(x), [NAN, INF, INF, -INF, NAN, INF])
    sm = K.softmax_rows(x)
    assert np.isnan(sm[[0, 1, 2, 4, 5]]).all() and np.all(sm[3] == 0)  # was [nan, 2.718]
    lsm = K.log_softmax_rows(x)
    assert np.isnan(lsm[[0, 1, 2, 4, 5]]).all() and np.all(lsm[3] == -INF)


def test_row_max_propagates_nan_everywhere():
    """The max pass (llvm.maximum, vectorized) reports a nan wherever it is, for every length
    around the vector widths and the 512-element blocks, with either sign of nan."""
    for dtype in DTYPES:
        for c in [*range(1, 40), 511, 512, 513, 1024, 1500]:
            for j in sorted({0, c // 2, c - 1, max(c - 9, 0)}):
                for v in (NAN, NEG_NAN):
                    x = np.zeros((1, c), dtype)
                    x[0, j] = v
                    assert np.isnan(K.logsumexp_rows(x)[0]), (dtype, c, j)
                    h, _ = K.softmax_entropy_rows(x, None)
                    assert np.isnan(h[0]), (dtype, c, j)
                    if c > 1:  # with a +inf elsewhere (before or after the nan)
                        x[0, (j + 1) % c] = INF
                        assert np.isnan(K.logsumexp_rows(x)[0]), (dtype, c, j)


# --------------------------------------------------------------------------- entropy and KL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(70, 1), (80, 2), (97, 41), (70, 600)], ids=str)
def test_entropy_nan_and_inf_rows(shape, dtype):
    rng = np.random.default_rng(18)
    n, c = shape
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    bad = spoil(rng, x, rng.integers(0, c, n))
    good_extras(x, rng.integers(0, c, n), bad)
    for gs in (None, 1.0, 0.5):
        h, g = K.softmax_entropy_rows(x, gs)
        h_c, g_c = K.softmax_entropy_rows(cleaned(x), gs)
        assert_rows(h, h_c, bad, "entropy")
        assert_no_nan(h_c, "entropy")
        if gs is not None:
            assert_rows(g, g_c, bad, "entropy grad")
            assert_no_nan(g_c, "entropy grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(70, 1), (80, 2), (97, 41), (70, 600)], ids=str)
def test_kl_nan_and_inf_rows(shape, dtype):
    rng = np.random.default_rng(19)
    n, c = shape
    a = (rng.standard_normal((n, c)) * 3).astype(dtype)
    b = (rng.standard_normal((n, c)) * 3).astype(dtype)
    bad_a = spoil(rng, a, rng.integers(0, c, n))
    bad_b = np.zeros(n, bool)
    b[n // 2 :] = b[n // 2 :][::-1]
    for r in np.flatnonzero(~bad_a)[:10]:  # bad rows in b only
        _spoil_row(b[r], [r % c], VALUES[r % len(VALUES)])
        bad_b[r] = True
    b[np.flatnonzero(bad_a)[:4]] = a[np.flatnonzero(bad_a)[:4]]  # both bad
    bad_b = has_bad(b)
    bad = bad_a | bad_b
    free = np.flatnonzero(~bad)
    a[free[0]] = -INF  # no distribution in p: 0
    if c > 1:
        a[free[1], 0] = -INF  # p = 0 there: contributes 0
        b[free[2], 0] = -INF  # q = 0 where p > 0: +inf
    for gs in (None, 1.0, 0.5):
        kl, ga, gb = K.softmax_kl_rows(a, b, gs)
        kl_c, ga_c, gb_c = K.softmax_kl_rows(cleaned(a), cleaned(b), gs)
        assert_rows(kl, kl_c, bad, "kl")
        assert_no_nan(kl_c, "kl")
        assert kl[free[0]] == 0.0
        if c > 1:
            assert kl[free[2]] == INF and np.isfinite(kl[free[1]])
        if gs is not None:
            assert_rows(ga, ga_c, bad, "kl grad a")
            assert_rows(gb, gb_c, bad, "kl grad b")
            assert_no_nan(gb_c, "kl grad b")
            assert_no_nan(ga_c[np.isfinite(kl_c)], "kl grad a")


# --------------------------------------------------------------------------- sigmoid CE


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [3, 29, 700])
def test_sigmoid_ce_nan_elements(dtype, c):
    rng = np.random.default_rng(20)
    n = 23
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    y = (rng.uniform(size=(n, c)) < 0.5).astype(dtype)
    y[1] = rng.uniform(size=c).astype(dtype)  # soft labels
    nan_x = rng.uniform(size=(n, c)) < 0.05
    nan_x[0, 0] = True
    x[nan_x] = np.where(rng.uniform(size=nan_x.sum()) < 0.5, NAN, NEG_NAN)
    nan_y = (rng.uniform(size=(n, c)) < 0.05) & ~nan_x
    yn = y.copy()
    yn[nan_y] = NAN
    inf_at = (rng.uniform(size=(n, c)) < 0.05) & ~nan_x
    x[inf_at] = np.where(rng.uniform(size=inf_at.sum()) < 0.5, INF, -INF)
    nan_at = nan_x | nan_y
    pw = rng.uniform(0.5, 2.0, c)
    pw[0] = 0.0  # with y = 1 both coefficients are 0: a nan logit still gives nan
    y[0, 0] = yn[0, 0] = 1.0
    xc = x.copy()
    xc[nan_x] = 0.5
    for use_pw, eps, gs, swkind in itertools.product(
        (False, True), (0.0, 0.2), (None, 1.0), ("none", "full", "row")
    ):
        p = pw if use_pw else None
        sw = {
            "none": None,
            "full": rng.uniform(0.0, 2.0, (n, c)),
            "row": np.broadcast_to(rng.uniform(0.0, 2.0, (n, 1)), (n, c)),
        }[swkind]
        le, g = K.sigmoid_ce(x, yn, p, sw, eps, gs, True)
        le_c, g_c = K.sigmoid_ce(xc, y, p, sw, eps, gs, True)
        what = f"sigmoid {dtype} {c} {use_pw} {eps} {gs} {swkind}"
        assert np.isnan(le[nan_at]).all(), what
        np.testing.assert_array_equal(le[~nan_at], le_c[~nan_at], err_msg=what)
        assert_no_nan(le_c, what)
        if gs is not None:
            assert np.isnan(g[nan_at]).all(), what
            np.testing.assert_array_equal(g[~nan_at], g_c[~nan_at], err_msg=what)
            assert np.isfinite(g_c).all(), what  # ±inf logits: finite gradients
        rows, _ = K.sigmoid_ce(x, yn, p, sw, eps, None, False)
        rows_c, _ = K.sigmoid_ce(xc, y, p, sw, eps, None, False)
        has = nan_at.any(axis=1)
        assert np.isnan(rows[has]).all()
        np.testing.assert_array_equal(rows[~has], rows_c[~has])


def test_sigmoid_ce_infinite_limits():
    """x = +inf, y = 1: loss 0, gradient 0; x = +inf, y = 0: +inf, gradient 1 (and mirrored for
    −inf); the formula s [(p y' + 1 − y') σ(x) − p y']."""
    for dtype in DTYPES:
        x = np.array([[INF, INF, -INF, -INF, NAN, NAN]], dtype)
        y = np.array([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]], dtype)
        le, g = K.sigmoid_ce(x, y, None, None, 0.0, 1.0, True)
        np.testing.assert_array_equal(le[0, :4], [0.0, INF, 0.0, INF])
        np.testing.assert_array_equal(g[0, :4], [0.0, 1.0, 0.0, -1.0])
        assert np.isnan(le[0, 4:]).all() and np.isnan(g[0, 4:]).all()
        pw = np.array([0.0, 2.0, 2.0, 2.0, 0.0, 2.0])  # p = 0, y = 1: both coefficients 0
        le, g = K.sigmoid_ce(x, y, pw, None, 0.0, 1.0, True)
        np.testing.assert_array_equal(le[0, :4], [0.0, INF, 0.0, INF])
        np.testing.assert_array_equal(g[0, :4], [0.0, 1.0, 0.0, -2.0])
        assert np.isnan(le[0, 4:]).all() and np.isnan(g[0, 4:]).all()


# --------------------------------------------------------------------------- small terms (item 3)

TINY = np.log1p(np.exp(-40.0))  # 4.248354255291589e-18


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [2, 41])
@pytest.mark.parametrize("path", ["direct", "inplace", "streamed"])
def test_small_terms_kept(dtype, c, path, monkeypatch):
    """A nearly certain prediction (logits 40 and 0, the rest −inf) keeps its tiny loss
    log1p(e^-40) and the target gradient −4.2e-18 (not 0), in the sparse and dense kernels;
    logsumexp([0, −40]) = 4.25e-18."""
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    x = np.full((3, c), -INF, dtype)
    x[:, :2] = [40.0, 0.0]
    with kernel_path(path, monkeypatch):
        loss, g = _sparse(x, np.zeros(3, np.int64), None, None, None, 0.0, 0.0, 1.0, path)
    np.testing.assert_allclose(loss, TINY, rtol=rtol)
    np.testing.assert_allclose(g[:, 0], -TINY, rtol=rtol)
    np.testing.assert_allclose(g[:, 1], TINY, rtol=rtol)
    assert np.all(g[:, 2:] == 0)
    y = np.zeros((3, c), dtype)
    y[:, 0] = 1.0
    loss, g = K.softmax_ce(x, y, None, None, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(loss, TINY, rtol=rtol)
    np.testing.assert_allclose(g[:, 0], -TINY, rtol=rtol)
    np.testing.assert_allclose(g[:, 1], TINY, rtol=rtol)
    xl = np.full((1, c), -INF, dtype)
    xl[0, :2] = [0.0, -40.0]
    np.testing.assert_allclose(K.logsumexp_rows(xl), TINY, rtol=rtol)
    assert K.log_softmax_rows(xl)[0, 0] == pytest.approx(-TINY, rel=rtol)


def test_small_terms_public_functions():
    for dtype in DTYPES:
        rtol = 1e-6 if dtype == np.float32 else 1e-14
        x = np.array([[40.0, 0.0]], dtype)
        v, g = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)(x, np.array([0]))
        np.testing.assert_allclose(v, TINY, rtol=rtol)
        np.testing.assert_allclose(g[0], [-TINY, TINY], rtol=rtol)
        v, g = infoloss.value_and_grad(infoloss.softmax_cross_entropy)(
            x, np.array([[1.0, 0.0]], dtype)
        )
        np.testing.assert_allclose(v, TINY, rtol=rtol)
        np.testing.assert_allclose(g[0], [-TINY, TINY], rtol=rtol)
        np.testing.assert_allclose(
            infoloss.logsumexp(np.array([0.0, -40.0], dtype)), TINY, rtol=rtol
        )


# --------------------------------------------------------------------------- public functions


def _public_cases(rng, dtype):
    n, c = 12, 7
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    x[1, 2] = NAN
    x[3, 0] = INF
    x[4] = -INF
    x[5, 1] = -INF
    x[6, 6] = NAN
    x[6, 0] = INF
    lab = rng.integers(0, c, n)
    lab[6] = IGNORE
    y = rng.dirichlet(np.ones(c), n).astype(dtype)
    yb = (rng.uniform(size=(n, c)) < 0.5).astype(dtype)
    b = (rng.standard_normal((n, c)) * 3).astype(dtype)
    b[8, 3] = NAN
    vg = infoloss.value_and_grad
    nan_sparse = np.isin(np.arange(n), [1, 3])
    nan_rows = np.isin(np.arange(n), [1, 3, 6])
    return x, [
        (
            "sparse",
            lambda r, out=None: vg(infoloss.sparse_softmax_cross_entropy)(
                x,
                lab,
                ignore_index=IGNORE,
                label_smoothing=0.1,
                z_loss=1e-3,
                reduction=r,
                **({} if out is None else {"out": out}),
            ),
            nan_sparse,
        ),
        (
            "sparse-cw-sw",
            lambda r, out=None: vg(infoloss.sparse_softmax_cross_entropy)(
                x,
                lab,
                ignore_index=IGNORE,
                class_weights=np.linspace(0, 2, c),
                sample_weights=np.r_[0.0, 0.0, np.ones(n - 2)],
                reduction=r,
                **({} if out is None else {"out": out}),
            ),
            nan_sparse,
        ),
        (
            "dense",
            lambda r, out=None: vg(infoloss.softmax_cross_entropy)(
                x, y, label_smoothing=0.1, reduction=r, **({} if out is None else {"out": out})
            ),
            nan_rows,
        ),
        ("entropy", lambda r, out=None: vg(infoloss.softmax_entropy)(x), nan_rows),
        (
            "kl",
            lambda r, out=None: vg(infoloss.softmax_kl_divergence)(x, b),
            nan_rows | (np.arange(n) == 8),
        ),
        (
            "sigmoid",
            lambda r, out=None: vg(infoloss.sigmoid_cross_entropy)(
                x, yb, reduction=r, **({} if out is None else {"out": out})
            ),
            np.isnan(x),
        ),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_public_functions_fast_path(dtype):
    """The public functions on NumPy inputs (fused kernels): nan rows as the rules say, nan totals
    under sum / mean, the same nan pattern and values on the generic path."""
    rng = np.random.default_rng(21)
    x, cases = _public_cases(rng, dtype)
    assert _router.fast_numpy(x)
    for name, f, nan_at in cases:
        reductions = ["none", "sum", "mean"] if name not in ("entropy", "kl") else ["none"]
        for r in reductions:
            v, g = f(r)
            with _config.generic_only():
                v_gen, g_gen = f(r)
            if r == "none":
                assert np.isnan(v[nan_at]).all(), (name, r)
                assert not np.isnan(v[~nan_at]).any(), (name, r)
            else:
                assert np.isnan(v), (name, r)
            # generic path: the same nan pattern and the same finite values
            np.testing.assert_array_equal(np.isnan(v), np.isnan(v_gen), err_msg=f"{name} {r}")
            tol = 2e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(v, v_gen, rtol=tol, atol=tol)
            grads = g if isinstance(g, tuple) else (g,)  # (KL: both gradients)
            grads_gen = g_gen if isinstance(g_gen, tuple) else (g_gen,)
            for gi, gi_gen in zip(grads, grads_gen, strict=True):
                gnan = nan_at if nan_at.ndim == 2 else np.broadcast_to(nan_at[:, None], gi.shape)
                assert np.isnan(gi[gnan]).all(), (name, r)
                assert not np.isnan(gi[~gnan]).any(), (name, r)
                np.testing.assert_array_equal(np.isnan(gi), np.isnan(gi_gen), err_msg=name)
                np.testing.assert_allclose(gi, gi_gen, rtol=tol, atol=tol)
            if name in ("sparse", "dense", "sigmoid") and r == "sum":
                buf = np.empty_like(x)
                _, g2 = f(r, out=buf)
                assert g2 is buf
                np.testing.assert_array_equal(g2, g)
    xa = x.copy()
    np.testing.assert_array_equal(
        np.isnan(infoloss.softmax(xa)), np.broadcast_to(has_bad(xa)[:, None], xa.shape)
    )
    np.testing.assert_array_equal(
        np.isnan(infoloss.log_softmax(xa)), np.broadcast_to(has_bad(xa)[:, None], xa.shape)
    )
    lse = infoloss.logsumexp(xa)
    assert np.isnan(lse[[1, 6]]).all() and lse[3] == INF and lse[4] == -INF


# --------------------------------------------------------------------------- hypothesis

SPRINKLE = [NAN, NEG_NAN, INF, -INF]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 12),
    c=st.sampled_from([1, 2, 5, 10, 16, 17, 33, 70, 600]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
    density=st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]),
    eps=st.sampled_from([0.0, 0.2]),
    z=st.sampled_from([0.0, 0.05]),
    weighted=st.booleans(),
    ignore=st.booleans(),
    streamed=st.booleans(),
)
def test_property_nan_in_nan_out(n, c, dtype, seed, density, eps, z, weighted, ignore, streamed):
    """Random rows with nan / ±inf sprinkled in: a nan or +inf in a row ⇒ nan out (values and
    gradient rows); no nan and no +inf in ⇒ no nan out; all finite in ⇒ all finite out."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * rng.uniform(0.1, 20)).astype(dtype)
    spots = rng.uniform(size=(n, c)) < density * rng.uniform(size=(n, 1))
    x[spots] = rng.choice(np.array(SPRINKLE), spots.sum())
    bad = has_bad(x)
    fin = np.isfinite(x).all(axis=1)
    labels = rng.integers(0, c, n)
    ign = (rng.uniform(size=n) < 0.2) if ignore else np.zeros(n, bool)
    labels[ign] = IGNORE
    cw = rng.uniform(0.0, 2.0, c) if weighted else None
    sw = rng.uniform(0.1, 2.0, n) if weighted else None
    with pytest.MonkeyPatch.context() as mp:
        if streamed:
            mp.setattr(K._tunables, "_STREAM_MIN_BYTES", 0)
            mp.setattr(K._tunables, "_PARALLEL_MIN_ELEMENTS", 0)
        for path in ("direct", "inplace"):
            loss, g = _sparse(x, labels, cw, sw, IGNORE if ignore else None, eps, z, 1.0, path)
            nan_rows = bad & ~ign
            assert np.isnan(loss[nan_rows]).all() and np.isnan(g[nan_rows]).all()
            assert np.all(loss[ign] == 0) and np.all(g[ign] == 0)
            assert not np.isnan(loss[~nan_rows]).any() and not np.isnan(g[~nan_rows]).any()
            assert np.isfinite(loss[fin]).all() and np.isfinite(g[fin]).all()
    y = rng.dirichlet(np.ones(c), n).astype(dtype)
    y[y < 0.05] = 0.0
    loss, g = K.softmax_ce(x, y, cw, sw, eps, z, 1.0)
    assert np.isnan(loss[bad]).all() and np.isnan(g[bad]).all()
    assert not np.isnan(loss[~bad]).any() and not np.isnan(g[~bad]).any()
    assert np.isfinite(loss[fin]).all() and np.isfinite(g[fin]).all()
    lse = K.logsumexp_rows(x)
    anynan = np.isnan(x).any(axis=1)
    assert np.isnan(lse[anynan]).all() and not np.isnan(lse[~anynan]).any()
    assert np.all(lse[bad & ~anynan] == INF)
    assert np.isfinite(lse[fin]).all()
    for f in (K.softmax_rows, K.log_softmax_rows):
        out = f(x)
        assert np.isnan(out[bad]).all() and not np.isnan(out[~bad]).any()
        assert np.isfinite(out[fin]).all()
    h, gh = K.softmax_entropy_rows(x, 1.0)
    assert np.isnan(h[bad]).all() and np.isnan(gh[bad]).all()
    assert np.isfinite(h[~bad]).all() and np.isfinite(gh[~bad]).all()
    b = x[rng.permutation(n)]
    bad2 = bad | has_bad(b)
    kl, ga, gb = K.softmax_kl_rows(x, b, 1.0)
    assert np.isnan(kl[bad2]).all() and np.isnan(ga[bad2]).all() and np.isnan(gb[bad2]).all()
    assert not np.isnan(kl[~bad2]).any() and not np.isnan(gb[~bad2]).any()
    assert not np.isnan(ga[~bad2 & np.isfinite(kl)]).any()
    fin2 = fin & np.isfinite(b).all(axis=1)
    assert np.isfinite(kl[fin2]).all() and np.isfinite(ga[fin2]).all()
    yb = rng.uniform(size=(n, c)).astype(dtype)
    yb[rng.uniform(size=(n, c)) < density * 0.2] = NAN
    le, gl = K.sigmoid_ce(x, yb, cw, None, eps, 1.0, True)
    nan_el = np.isnan(x) | np.isnan(yb)
    assert np.isnan(le[nan_el]).all() and np.isnan(gl[nan_el]).all()
    assert not np.isnan(le[~nan_el]).any() and np.isfinite(gl[~nan_el]).all()
    assert np.isfinite(le[np.isfinite(x) & ~nan_el]).all()


def test_mean_over_zero_total_weight_is_zero():
    """A mean over zero total weight is 0.0 with a zero gradient (grad_scale 0), also when a row
    has nan or +inf logits or a nan label; the same on the generic path."""
    rng = np.random.default_rng(22)
    vg = infoloss.value_and_grad
    for dtype, c in itertools.product(DTYPES, [3, 41]):
        x = (rng.standard_normal((6, c)) * 3).astype(dtype)
        x[1, 0] = NAN
        x[2, 1] = INF
        lab = rng.integers(0, c, 6)
        y = rng.dirichlet(np.ones(c), 6).astype(dtype)
        y[3, 0] = NAN
        yb = (rng.uniform(size=(6, c)) < 0.5).astype(dtype)
        sw = np.zeros(6)
        calls = [
            (infoloss.sparse_softmax_cross_entropy, lab, {"sample_weights": sw}),
            (infoloss.softmax_cross_entropy, y, {"sample_weights": sw}),
            (infoloss.sigmoid_cross_entropy, yb, {"sample_weights": np.zeros((6, c))}),
        ]
        for fn, labels, kw in calls:
            v, g = vg(fn)(x, labels, reduction="mean", **kw)
            with _config.generic_only():
                v_gen, g_gen = vg(fn)(x, labels, reduction="mean", **kw)
            assert v == 0.0 and v_gen == 0.0
            np.testing.assert_array_equal(g, 0.0)
            np.testing.assert_array_equal(g_gen, 0.0)
    for c in (3, 41):  # the kernels themselves, in place too
        x = np.full((2, c), NAN)
        _, g = K.sparse_softmax_ce(x, np.zeros(2, np.int64), None, None, None, 0.0, 0.0, 0.0)
        np.testing.assert_array_equal(g, 0.0)
        xi = x.copy()
        _, g = K.sparse_softmax_ce(
            xi, np.zeros(2, np.int64), None, None, None, 0.0, 0.0, 0.0, out=xi
        )
        assert g is xi
        np.testing.assert_array_equal(g, 0.0)
