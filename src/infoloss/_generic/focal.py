"""Generic focal and poly losses, value and analytic gradient (``docs/semantics.md``).

Every softmax loss here has the form ℓ = Σ_c a_c φ(q_c) with a_c = w_c t_c (class weight times
target mass) and q = softmax(x); its gradient is ∂ℓ/∂x_j = b_j − q_j Σ_c b_c with
b_c = a_c q_c φ'(q_c):

- focal: φ(q) = −(1 − q)^γ log q, b = −a (1 − q)^γ (1 + γ q h), h = −log q / (1 − q) ∈ [1, ∞);
- poly-1: φ(q) = −log q + ε (1 − q), b = −a (1 + ε q).

log(1 − q) is computed in log space: for a class with q ≤ ½ as log(−expm1(log q)); for the one
class of a row with q > ½ as the log-sum-exp of the *other* logits minus that of the row, which
stays exact when 1 − q underflows (logits of ±1e4: log(1 − q) = −2e4, not −inf).
"""

from __future__ import annotations

import math

from array_api_compat import device, is_torch_namespace

from .. import _reduce
from .._specs import SigmoidFocal, SoftmaxFocal
from .._utils import Array, Namespace, moveaxis_back, moveaxis_last, upcast
from .activations import lse_parts, sigmoid, softplus

__all__ = ["log1m_softmax", "sigmoid_focal", "softmax_focal"]

_INF = float("inf")
_LOG_HALF = -0.6931471805599453

Grad = Array | None


def log1m_softmax(xp: Namespace, x: Array) -> tuple[Array, Array, Array]:
    """``(log q, log(1 − q), near)`` along the last axis of ``x``; ``near`` marks the class of
    a row with q > ½ (at most one per row), whose log(1 − q) comes from the other logits."""
    m, ls, _ = lse_parts(xp, x, -1)
    lq = (x - m) - ls
    near = lq > _LOG_HALF
    m2, ls2, has2 = lse_parts(xp, xp.where(near, xp.full_like(x, -_INF), x), -1)
    lo = xp.where(has2, (m2 - m) + (ls2 - ls), xp.full_like(ls2, -_INF))
    far = xp.where(near, xp.full_like(lq, -1.0), lq)  # the double where: finite derivatives
    return lq, xp.where(near, lo, xp.log(-xp.expm1(far))), near


def _masked(xp: Namespace, lq: Array, x: Array, coef: Array) -> Array:
    """``lq`` with 0 where the logit is −inf and its coefficient is 0 (no 0·inf)."""
    return xp.where((x == -_INF) & (coef == 0), xp.zeros_like(lq), lq)


def _phi(kind: str, p: float, xp: Namespace, lq: Array, l1m: Array) -> Array:
    """φ(q) of the loss from log q and log(1 − q)."""
    if kind == "poly":
        return -lq + p * xp.exp(l1m)
    if p == 0:
        return -lq
    return -xp.exp(p * l1m) * lq


def _dphi(kind: str, p: float, xp: Namespace, lq: Array, l1m: Array) -> Array:
    """−q φ'(q) ≥ 0 (so that b = −a · this)."""
    q = xp.exp(lq)
    if kind == "poly":
        return 1 + p * q
    if p == 0:
        return xp.ones_like(lq)
    s = xp.exp(l1m)  # 1 − q, exact near q = 1
    pos = s > 0
    lq0 = xp.where(lq == -_INF, xp.zeros_like(lq), lq)
    h = xp.where(pos, -lq0 / xp.where(pos, s, xp.ones_like(s)), xp.ones_like(s))
    return xp.exp(p * l1m) * (1 + p * q * h)


def softmax_focal(spec: SoftmaxFocal, want_grad: bool) -> tuple[Array, Grad]:
    """Value (reduced) and gradient with respect to the logits, in the compute dtype."""
    ce = spec.ce
    xp, o, cw, sw = ce.xp, ce.options, ce.class_weights, ce.sample_weights
    kind, p = spec.kind, spec.param
    x = moveaxis_last(xp, upcast(xp, ce.logits, ce.compute_dtype), ce.axis)
    c = int(x.shape[-1])
    lq, l1m, near = log1m_softmax(xp, x)
    valid = None
    if o.sparse:
        y = ce.labels
        valid = (y != o.ignore_index) if o.ignore_index is not None else None
        idx = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
        if is_torch_namespace(xp) and idx.dtype != xp.int64:
            idx = xp.astype(idx, xp.int64)
        pick = idx[..., None]
        x_y = xp.take_along_axis(x, pick, axis=-1)[..., 0]
        lq_y = xp.take_along_axis(lq, pick, axis=-1)[..., 0]
        l1m_y = xp.take_along_axis(l1m, pick, axis=-1)[..., 0]
        if cw is None:
            a = xp.ones_like(lq_y)
        else:
            a = xp.reshape(xp.take(cw, xp.reshape(idx, (-1,))), idx.shape)
        loss = a * _phi(kind, p, xp, _masked(xp, lq_y, x_y, a), l1m_y)
        w = a
    else:
        yt = moveaxis_last(xp, ce.labels, ce.axis)
        a = yt if cw is None else yt * cw
        loss = xp.sum(a * _phi(kind, p, xp, _masked(xp, lq, x, a), l1m), axis=-1)
        w = xp.ones_like(loss) if cw is None else xp.sum(yt * cw, axis=-1)
    if sw is not None:
        loss, w = loss * sw, w * sw
    if valid is not None:
        loss = xp.where(valid, loss, xp.zeros_like(loss))
        w = xp.where(valid, w, xp.zeros_like(w))
    total = xp.sum(w) if ce.reduction == "mean" else None
    value = _reduce.reduce(xp, loss, total, ce.reduction)
    if not want_grad:
        return value, None
    q = xp.exp(lq)
    if o.sparse:
        big_b = a * _dphi(kind, p, xp, lq_y, l1m_y)  # −b_y ≥ 0: the gradient is B (q − onehot)
        onehot = pick == xp.arange(c, device=device(x))
        g_y = -big_b * xp.exp(l1m_y)  # B (q_y − 1), with 1 − q_y exact
        g = xp.where(onehot, g_y[..., None], big_b[..., None] * q)
    else:
        b = -a * _dphi(kind, p, xp, lq, l1m)
        b = xp.where(a == 0, xp.zeros_like(b), b)
        sb = xp.sum(b, axis=-1, keepdims=True)
        # the q > ½ class: b_j (1 − q_j) − q_j Σ_{c≠j} b_c, with 1 − q_j exact
        rest = xp.sum(xp.where(near, xp.zeros_like(b), b), axis=-1, keepdims=True)
        g = xp.where(near, b * xp.exp(l1m) - q * rest, b - q * sb)
    if sw is not None:
        g = g * sw[..., None]
    if valid is not None:
        g = xp.where(valid[..., None], g, xp.zeros_like(g))
    g = _reduce.scale_gradient(xp, g, total, ce.reduction)
    return value, moveaxis_back(xp, g, ce.axis)


def _log1m_pt(xp: Namespace, x: Array, y: Array) -> Array:
    """log(1 − p_t) = log(y σ(−x) + (1 − y) σ(x)), by log-sum-exp of the two log terms."""
    one = xp.ones_like(y)
    la = xp.where(y > 0, xp.log(xp.where(y > 0, y, one)) - softplus(xp, x), -_INF * one)
    lb = xp.where(
        y < 1, xp.log1p(-xp.where(y < 1, y, xp.zeros_like(y))) - softplus(xp, -x), -_INF * one
    )
    hi, lo = xp.maximum(la, lb), xp.minimum(la, lb)
    empty = hi == -_INF
    hi0 = xp.where(empty, xp.zeros_like(hi), hi)
    lo0 = xp.where(empty, xp.zeros_like(lo), lo)
    return xp.where(empty, hi, hi0 + xp.log1p(xp.exp(lo0 - hi0)))


def sigmoid_focal(spec: SigmoidFocal, want_grad: bool) -> tuple[Array, Grad]:
    """Value (reduced) and gradient with respect to the logits, in the compute dtype."""
    ce = spec.ce
    xp, sw, gamma, alpha = ce.xp, ce.sample_weights, spec.gamma, spec.alpha
    x = upcast(xp, ce.logits, ce.compute_dtype)
    y = ce.labels
    # the binary cross-entropy, 0·inf kept out as in sigmoid_cross_entropy
    xa = xp.where((x == -_INF) & (y == 0), xp.zeros_like(x), x)
    xb = xp.where((x == _INF) & (y == 1), xp.zeros_like(x), x)
    bce = y * softplus(xp, -xa) + (1 - y) * softplus(xp, xb)
    u = _log1m_pt(xp, x, y) if gamma != 0 else None
    f = xp.ones_like(x) if u is None else xp.exp(gamma * u)
    wgt = None if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    if sw is not None:
        wgt = sw if wgt is None else wgt * sw
    loss = f * bce if wgt is None else wgt * (f * bce)
    total = None
    if ce.reduction == "mean":
        count = float(math.prod(tuple(loss.shape)))
        total = (
            xp.sum(sw)
            if sw is not None
            else xp.asarray(count, dtype=loss.dtype, device=device(loss))
        )
    value = _reduce.reduce(xp, loss, total, ce.reduction)
    if not want_grad:
        return value, None
    g = sigmoid(xp, x) - y
    if u is not None:
        # d log(1 − p_t)/dx = (1 − 2y) σ(x) σ(−x) / (1 − p_t), at most 1 in magnitude
        fin = u > -_INF
        du = (1 - 2 * y) * xp.exp(
            xp.where(fin, -softplus(xp, x) - softplus(xp, -x) - u, xp.zeros_like(u))
        )
        du = xp.where(fin, du, xp.zeros_like(du))
        g = f * (g + gamma * bce * du)
    if wgt is not None:
        g = g * wgt
    return value, _reduce.scale_gradient(xp, g, total, ce.reduction)
