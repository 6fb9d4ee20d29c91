"""Generic information measures: probability measures and softmax measures from logits.

The definitions of ``docs/semantics.md`` ("Probability measures", "Measures from logits"),
written against the Array API with masks only on the inputs of unsafe operations, so that
every framework's autodiff gives the textbook derivative wherever it is finite.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import device

from .._reduce import weigh_rows
from .._specs import JointMeasure, ProbMeasure, SoftmaxMeasure
from .._utils import Array, Namespace, in_base, upcast
from .activations import log_softmax

__all__ = ["joint_measure", "js_gradients", "probability_measure", "softmax_measure"]

_INF = float("inf")
_NAN = float("nan")


def _invalid(p: Array) -> Array:
    """Entries that are not probabilities (negative, ±inf), elementwise; nan is not flagged."""
    return (p < 0) | (p == _INF)


def _result(xp: Namespace, out: Array, lb: float | None, dtype: object) -> Array:
    """``out`` in ``base``, cast to ``dtype``; a NumPy scalar becomes a 0-d array."""
    out = upcast(xp, in_base(out, lb), dtype)
    if isinstance(out, np.generic):
        out = np.asarray(out)
    return out


def _log_or_zero(xp: Namespace, p: Array) -> Array:
    """log p, with 0 where p = 0 (masked input: no warning, and a zero derivative there)."""
    return xp.log(xp.where(p == 0, xp.ones_like(p), p))


def _log_q(xp: Namespace, p: Array, q: Array) -> Array:
    """log q_c as the cross-entropy and KL terms use it: ``-inf`` where ``q_c = 0 < p_c``, 0 where
    ``p_c = q_c = 0`` (so that ``p_c · log q_c`` is 0 there) and nan where ``p_c`` is nan.

    Only the input of the logarithm is masked: the derivative of ``p · _log_q`` with respect to
    ``p`` is ``log q_c`` wherever that is finite, also at ``p_c = 0``, and with respect to ``q``
    it is ``p_c / q_c`` (0 at ``p_c = 0``) — never ``0 · inf``.
    """
    qz = q == 0
    at_zero = xp.where(p == 0, xp.zeros_like(q), xp.full_like(q, -_INF))
    return xp.where(qz, at_zero, xp.log(xp.where(qz, xp.ones_like(q), q)))


# Coefficients of f(u) = (1 + u) log1p(u) - u = Σ_{k≥2} (-1)^k u^k / (k (k - 1)), |u| < 0.05.
_SERIES = [(-1) ** k / (k * (k - 1)) for k in range(2, 14)]
_SMALL = 0.05


def _gen_kl_terms(xp: Namespace, p: Array, q: Array) -> Array:
    """Generalized KL terms ``p log(p/q) − p + q`` (``scipy.special.kl_div``), elementwise.

    Each term is mathematically ≥ 0 for any non-negative ``p``, ``q``; computed terms below 0
    (rounding) are set to 0, nan stays nan. Where ``q > 0`` and ``u = (p − q)/q`` is small the
    term is exactly ``q f(u)`` with ``f(u) = (1+u) log1p(u) − u`` from its series, so ``p ≈ q``
    keeps full relative accuracy (the textbook ``p log(p/q)`` loses every digit there).
    Elsewhere it is ``p log(p/q) + (q − p)``: ``q`` where ``p = 0``, ``+inf`` where
    ``q = 0 < p``; ``log(p/q)`` is the log of the quotient where that is a normal number (so tiny
    ``p`` and ``q`` keep full accuracy) and ``log p − log q`` where it would overflow. Only logarithm inputs are masked (see :func:`_log_q`), so autodiff gives
    ``∂/∂q = 1 − p/q`` (1 at ``p = 0``) and ``∂/∂p = log(p/q)`` where finite; at ``p = 0`` the
    derivative of ``p log p`` (``−inf``) is returned as 0, so ``∂/∂p = −log q − 1`` there.
    """
    pz, qz = p == 0, q == 0
    small = ~pz & ~qz & (xp.abs(p - q) < _SMALL * q)  # nan is never small
    zero, one = xp.zeros_like(p), xp.ones_like(q)
    us = xp.where(small, p - q, zero) / xp.where(small, q, one)  # u where small, else 0
    f = xp.zeros_like(us) + _SERIES[-1]
    for c in reversed(_SERIES[:-1]):
        f = f * us + c
    series = q * (f * us * us)
    log_ratio = _log_or_zero(xp, p) - _log_q(xp, p, q)  # +inf where q = 0 < p
    # where p/q is a normal number, log(p/q) of the (correctly rounded) quotient is accurate to an
    # ulp, while log p - log q of tiny numbers carries errors of ulp(log p); both inputs of the
    # division are masked, so no overflow and no inf in its derivative
    bound = 0.9 * math.log(float(xp.finfo(p.dtype).max))
    fair = ~pz & ~qz & (xp.abs(log_ratio) < bound)  # nan: not fair
    quotient = xp.where(fair, p, one) / xp.where(fair, q, one)
    log_ratio = xp.where(fair, xp.log(quotient), log_ratio)
    direct = p * log_ratio + (q - p)
    t = xp.where(small, series, direct)
    return xp.where(t < 0, xp.zeros_like(t), t)  # each term is >= 0: only rounding is clipped


def _nan_if_invalid(
    xp: Namespace, out: Array, arrays: tuple[Array, ...], axis: int | None, keepdims: bool
) -> Array:
    """nan for the slices holding a value that is not a probability (used when the values could
    not be checked, under tracing, where raising is impossible)."""
    bad = _invalid(arrays[0])
    for a in arrays[1:]:
        bad = bad | _invalid(a)
    if axis is not None:
        bad = xp.any(bad, axis=axis, keepdims=keepdims)
    return xp.where(bad, xp.full_like(out, _NAN), out)


def probability_measure(spec: ProbMeasure) -> Array:
    """information, entropy, cross_entropy, kl_divergence or js_divergence of ``spec``."""
    xp, p, q, ax, kd = spec.xp, spec.p, spec.q, spec.axis, spec.keepdims
    if spec.op == "information":
        out = xp.where(p == 0, xp.full_like(p, _INF), -_log_or_zero(xp, p)) + 0.0  # no -0.0
    elif spec.op == "entropy":
        out = xp.sum(-p * _log_or_zero(xp, p), axis=ax, keepdims=kd) + 0.0  # -0.0 -> 0.0
    elif spec.op == "cross_entropy":
        out = xp.sum(-p * _log_q(xp, p, q), axis=ax, keepdims=kd) + 0.0
    elif spec.op == "kl_divergence":
        out = xp.sum(_gen_kl_terms(xp, p, q), axis=ax, keepdims=kd)
    elif spec.beta == 0.5:  # js_divergence
        m = (p + q) / 2
        out = xp.sum(_gen_kl_terms(xp, p, m) + _gen_kl_terms(xp, q, m), axis=ax, keepdims=kd) / 2
    else:  # the generalized JS divergence: beta KL(P || M) + (1 - beta) KL(Q || M)
        assert q is not None
        bt = spec.beta
        m = bt * p + (1 - bt) * q
        out = bt * xp.sum(_gen_kl_terms(xp, p, m), axis=ax, keepdims=kd) + (1 - bt) * xp.sum(
            _gen_kl_terms(xp, q, m), axis=ax, keepdims=kd
        )
    if not spec.checked:
        out = _nan_if_invalid(xp, out, (p,) if q is None else (p, q), ax, kd)
    return _result(xp, out, spec.log_base, spec.dtype)


def softmax_measure(spec: SoftmaxMeasure, want_grad: bool) -> tuple[Array, object]:
    """softmax_entropy (``spec.b`` None) or softmax_kl_divergence, and the gradient(s)."""
    xp, ax, lb, dtype = spec.xp, spec.axis, spec.log_base, spec.dtype
    a = upcast(xp, spec.a, spec.compute_dtype)
    if spec.b is None:
        h, grad = _softmax_entropy(xp, a, ax, want_grad)
        if grad is not None:
            grad = upcast(xp, in_base(grad, lb), dtype)
        if not spec.keepdims:
            h = xp.squeeze(h, axis=ax)
        return _result(xp, h, lb, dtype), grad
    b = upcast(xp, spec.b, spec.compute_dtype)
    if spec.mask is not None:  # masked rows are computed on zeros: no nan/inf in their autodiff
        keep = xp.expand_dims(spec.mask, axis=ax)
        a = xp.where(keep, a, xp.zeros_like(a))
        b = xp.where(keep, b, xp.zeros_like(b))
    t = spec.temperature
    if t != 1.0:
        a, b = a / t, b / t
    if spec.op == "js":
        d, grads = _softmax_js_generic(xp, a, b, spec.beta, ax, want_grad)
    else:
        d, grads = _softmax_kl_generic(xp, a, b, ax, want_grad)
    d, grads = weigh_rows(
        xp,
        d,
        grads,
        axis=ax,
        keepdims=spec.keepdims,
        reduction=spec.reduction,
        scale=spec.scale,
        grad_scale=spec.scale / t,
        sample_weights=spec.sample_weights,
        mask=spec.mask,
    )
    if grads is not None:
        grads = (upcast(xp, in_base(grads[0], lb), dtype), upcast(xp, in_base(grads[1], lb), dtype))
    return _result(xp, d, lb, dtype), grads


def _softmax_entropy(
    xp: Namespace, x: Array, ax: int, want_grad: bool
) -> tuple[Array, Array | None]:
    """H(softmax(x)) with keepdims and, optionally, its gradient −q (log q + H).

    A row with nan or +inf has nan log-probabilities: nan value and gradient (the masks keep
    nan: q == 0 is False for nan).
    """
    logq = log_softmax(xp, x, ax)
    q = xp.exp(logq)
    logq_s = xp.where(q == 0, xp.zeros_like(logq), logq)
    h = -xp.sum(q * logq_s, axis=ax, keepdims=True) + 0.0
    grad = -q * (logq_s + h) if want_grad else None
    return h, grad


def _first_argmax(xp: Namespace, x: Array, ax: int) -> Array:
    """Boolean mask of the first maximum of ``x`` along ``ax`` (one True per slice)."""
    idx = xp.argmax(x, axis=ax, keepdims=True)
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    pos = xp.reshape(xp.arange(x.shape[ax], device=device(x)), tuple(shape))
    return pos == idx


def _at(xp: Namespace, hot: Array, v: Array, ax: int) -> Array:
    """``v`` at the True position of ``hot`` (keepdims), by a masked sum (differentiable)."""
    return xp.sum(xp.where(hot, v, xp.zeros_like(v)), axis=ax, keepdims=True)


def _softmax_kl_generic(
    xp: Namespace, a: Array, b: Array, ax: int, want_grad: bool
) -> tuple[Array, tuple[Array, Array] | None]:
    """KL(softmax(a) ‖ softmax(b)) with keepdims, and optionally its gradients.

    With ``d = log p − log q`` and ``*`` the most probable class of ``p`` (the first maximum of
    ``a``), ``KL = Σ p d = d* + Σ p (d − d*)`` (as Σ p = 1) and ``∂KL/∂a = p (d − KL) =
    p ((d − d*) − Σ p (d − d*))``. The differences ``d_c − d* = (a_c − a*) − (b_c − b*)`` are
    formed from the logits, never from log-probabilities: with logits spread over 1e4 in float32,
    log-probabilities of size 1e4 carry absolute errors of 1e-3, and ``d − KL`` for the dominant
    class (where p ≈ 1 and d ≈ KL) would keep only those errors (the former ``p (d − raw)`` was
    2% off). Here ``d* − d*`` is exactly 0 and the other differences are accurate to a few ulps
    of the logit differences.

    Special values: a row with nan or ``+inf`` in ``a`` or ``b`` has nan log-probabilities
    (contract of :func:`infoloss._generic.activations.lse_parts`), so nan flows into the value; a zero-valued
    carrier term makes the autodiff gradients of such a row nan for every logit of ``a`` and
    ``b``, and the analytic gradients are set to nan there. ``q_c = 0 < p_c`` gives ``+inf``
    (the ``a`` gradient of such a row is nan, ``b``'s is ``q − p``). Classes with ``p_c = 0``
    contribute 0; a row with no distribution in ``a`` gives 0. Only masked inputs enter the
    arithmetic: no ``inf − inf``, no warnings, no ``0 · inf`` in autodiff.
    """
    lp = log_softmax(xp, a, ax)
    lq = log_softmax(xp, b, ax)
    p = xp.exp(lp)
    zero = xp.zeros_like(a)
    bad = xp.any(~(a < _INF), axis=ax, keepdims=True) | xp.any(~(b < _INF), axis=ax, keepdims=True)
    a0, b0 = xp.where(bad, zero, a), xp.where(bad, zero, b)  # finite or -inf from here on
    hot = _first_argmax(xp, a0, ax)
    a_star = xp.max(a0, axis=ax, keepdims=True)
    a_star = xp.where(a_star == -_INF, xp.zeros_like(a_star), a_star)  # no distribution in a
    b_star = _at(xp, hot, b0, ax)
    b_star = xp.where(b_star == -_INF, xp.zeros_like(b_star), b_star)  # then d* = +inf below
    live = p > 0  # False for nan (bad rows)
    da = xp.where(live, a0, a_star) - a_star  # a_c - a*, 0 where p_c = 0
    db = xp.where(live, b0, b_star) - b_star  # b_c - b*, -inf where q_c = 0 < p_c
    dd = da - db  # d_c - d*: finite, or +inf where q_c = 0 < p_c
    rest = xp.sum(p * dd, axis=ax, keepdims=True)  # Σ p (d - d*): >= 0 or +inf (nan in bad rows)
    lp_star, lq_star = _at(xp, hot, lp, ax), _at(xp, hot, lq, ax)
    has_p = ~(xp.exp(lp_star) == 0)  # p* > 0, or nan
    d_star = xp.where(has_p, lp_star, xp.zeros_like(lp_star)) - xp.where(
        has_p, lq_star, xp.zeros_like(lq_star)
    )  # +inf where q* = 0 < p*; 0 for a row with no distribution in a
    kl = d_star + rest
    # 0 in good rows, nan in bad ones, with a nan derivative with respect to every logit of a bad
    # row: the sanitising where() above cut the bad rows out of autodiff, this puts them back
    carrier = xp.where(bad, xp.full_like(kl, _NAN), xp.zeros_like(kl))
    a_f = xp.where((a == -_INF) & ~bad, zero, a)  # masked classes of good rows: 0 * 0
    b_f = xp.where((b == -_INF) & ~bad, zero, b)
    kl = kl + xp.sum((a_f + b_f) * carrier, axis=ax, keepdims=True)
    kl = xp.where(kl < 0, xp.zeros_like(kl), kl)  # rounding only; nan stays nan
    if not want_grad:
        return kl, None
    inf_row = (d_star == _INF) | (rest == _INF)
    no_a = inf_row | bad
    dd_s = xp.where(no_a, zero, dd)
    rest_s = xp.where(no_a, xp.zeros_like(rest), rest)
    ga = xp.where(no_a, xp.full_like(a, _NAN), p * (dd_s - rest_s))
    # q - p; where either is >= 1/2 as (q - 1) - (p - 1) = expm1(log q) - expm1(log p), so that
    # p ≈ q ≈ 1 does not cancel to the rounding of p and q (float32: 600 ulps of a 1e-3 gradient)
    q = xp.exp(lq)
    big = (p >= 0.5) | (q >= 0.5)
    lp_b = xp.where(big, lp, zero)
    lq_b = xp.where(big, lq, zero)
    gb = xp.where(big, xp.expm1(lq_b) - xp.expm1(lp_b), q - p)
    gb = xp.where(bad, xp.full_like(b, _NAN), gb)
    return kl, (ga, gb)


def _softmax_js_generic(
    xp: Namespace, a: Array, b: Array, beta: float, ax: int, want_grad: bool
) -> tuple[Array, tuple[Array, Array] | None]:
    """JSD_β(softmax(a) ‖ softmax(b)) with keepdims, and optionally its gradients.

    ``log m = logaddexp(log β + log p, log(1 − β) + log q)``, evaluated as
    ``max + log1p(exp(−|u − v|))`` on masked inputs (a class with ``p_c = q_c = 0`` gets 0
    there and contributes nothing). With ``d^P = log p − log m`` (0 where ``p = 0``),
    ``KL(P‖M) = Σ p d^P`` and ``∂JSD/∂a_j = β p_j (d^P_j − KL(P‖M))``, formed as
    ``β p_j ((d^P_j − d^P_*) − Σ p (d^P − d^P_*))`` with ``*`` the most probable class of ``p``
    (no cancellation for the dominant class); the same for ``b`` with ``1 − β`` and ``q``.
    Every ``d`` is bounded above (``d^P ≤ −log β``), so the differences are accurate.
    A row with nan or ``+inf`` gives nan (value and gradients).
    """
    lp = log_softmax(xp, a, ax)
    lq = log_softmax(xp, b, ax)
    p, q = xp.exp(lp), xp.exp(lq)
    u = lp + math.log(beta)
    v = lq + math.log1p(-beta)
    none = (u == -_INF) & (v == -_INF)  # p_c = q_c = 0 (nan: False)
    zero = xp.zeros_like(u)
    u0, v0 = xp.where(none, zero, u), xp.where(none, zero, v)
    lm = xp.maximum(u0, v0) + xp.log1p(xp.exp(-xp.abs(u0 - v0)))
    live_p, live_q = ~(p == 0), ~(q == 0)  # nan counts as live: nan flows on
    dp = xp.where(live_p, lp, zero) - xp.where(live_p, lm, zero)
    dq = xp.where(live_q, lq, zero) - xp.where(live_q, lm, zero)
    kl_p = xp.sum(p * dp, axis=ax, keepdims=True)
    kl_q = xp.sum(q * dq, axis=ax, keepdims=True)
    js = beta * kl_p + (1 - beta) * kl_q
    js = xp.where(js < 0, xp.zeros_like(js), js) + 0.0  # rounding only; nan stays nan
    if not want_grad:
        return js, None

    def grad(w: float, pr: Array, d: Array, x: Array) -> Array:
        hot = _first_argmax(xp, xp.where(xp.isnan(x), zero, x), ax)
        dd = d - _at(xp, hot, d, ax)
        return w * pr * (dd - xp.sum(pr * dd, axis=ax, keepdims=True)) + 0.0

    return js, (grad(beta, p, dp, a), grad(1 - beta, q, dq, b))


def _unbroadcast(xp: Namespace, g: Array, shape: tuple[int, ...]) -> Array:
    """``g`` summed over the axes that broadcasting added to an array of ``shape``."""
    lead = g.ndim - len(shape)
    if lead:
        g = xp.sum(g, axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = xp.sum(g, axis=axes, keepdims=True)
    return g


def js_gradients(spec: ProbMeasure) -> tuple[Array, Array]:
    """The gradients of :func:`infoloss.js_divergence` with respect to ``p`` and ``q``.

    ``∂JSD_β/∂p_c = β log(p_c / m_c)`` and ``∂/∂q_c = (1 − β) log(q_c / m_c)``; at ``p_c = 0``
    the derivative of ``p log p`` is counted as 0 (as for :func:`infoloss.kl_divergence`), which
    gives ``−β (log m_c + 1)``, and 0 where ``m_c = 0`` (the class is in neither
    distribution). nan where ``p`` or ``q`` holds a nan (or the slice is invalid).
    """
    xp, p, q, bt, ax = spec.xp, spec.p, spec.q, spec.beta, spec.axis
    assert q is not None
    m = bt * p + (1 - bt) * q

    def one(w: float, r: Array) -> Array:
        lm = _log_or_zero(xp, m)
        g = xp.where(r == 0, -lm - 1, _log_or_zero(xp, r) - lm)
        return w * xp.where(m == 0, xp.zeros_like(g), g)

    gp, gq = one(bt, p), one(1 - bt, q)
    if not spec.checked:
        bad = xp.any(_invalid(p) | _invalid(q), axis=ax, keepdims=True)
        gp = xp.where(bad, xp.full_like(gp, _NAN), gp)
        gq = xp.where(bad, xp.full_like(gq, _NAN), gq)
    if spec.log_base is not None:
        gp, gq = gp / spec.log_base, gq / spec.log_base
    shapes = spec.shapes if spec.shapes is not None else (tuple(p.shape), tuple(q.shape))
    gp, gq = _unbroadcast(xp, gp, shapes[0]), _unbroadcast(xp, gq, shapes[1])
    return upcast(xp, gp, spec.dtype), upcast(xp, gq, spec.dtype)


def joint_measure(spec: JointMeasure) -> Array:
    """mutual_information or conditional_entropy of joint tables ``(..., X, Y)``.

    ``I(X;Y) = Σ_{x,y} [p log(p / (p_x p_y)) − p + p_x p_y]``, the generalized KL divergence of
    the joint from the product of its marginals (:func:`_gen_kl_terms`): every term is ≥ 0 and a
    table close to independence keeps full relative accuracy (the mass terms cancel for a table
    summing to 1). ``H(Y|X) = −Σ p(x, y) log(p(x, y) / p(x))`` with 0 log 0 = 0; each term is
    ≥ 0 as ``p(x, y) ≤ p(x)``.
    """
    xp, j, kd = spec.xp, spec.joint, spec.keepdims
    px = xp.sum(j, axis=-1, keepdims=True)
    py = xp.sum(j, axis=-2, keepdims=True)
    if spec.op == "mutual_information":
        out = xp.sum(_gen_kl_terms(xp, j, px * py), axis=(-2, -1), keepdims=kd)
    else:
        marg = px if spec.given == 0 else py
        t = -j * (_log_or_zero(xp, j) - _log_q(xp, j, marg))
        t = xp.where(t < 0, xp.zeros_like(t), t)
        out = xp.sum(t, axis=(-2, -1), keepdims=kd) + 0.0
    if not spec.checked:
        bad = xp.any(_invalid(j), axis=(-2, -1), keepdims=kd)
        out = xp.where(bad, xp.full_like(out, _NAN), out)
    return _result(xp, out, spec.log_base, spec.dtype)
