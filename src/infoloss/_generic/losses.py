"""Generic softmax and sigmoid cross-entropies, value and analytic gradient (``docs/semantics.md``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import device, is_torch_namespace

from .. import _reduce
from .._specs import CEOptions, LMMeasure, SigmoidCE, SoftmaxCE
from .._utils import Array, Namespace, moveaxis_back, moveaxis_last, size, upcast
from .activations import lse, lse_parts, softcap, softplus

__all__ = ["ce_lse", "lm_measure", "sigmoid_ce", "softmax_ce", "softmax_ce_rows"]

_INF = float("inf")
_LOG_HALF = -0.6931471805599453

Grad = Array | None


def _nonzero(z: Any) -> bool:
    """True unless ``z`` is the Python number 0 (an array coefficient always counts)."""
    return not (isinstance(z, (int, float)) and z == 0)


def _unmasked(xp: Namespace, x: Array, coef: Array) -> Array:
    """``x`` with 0 where it is ``-inf`` and its coefficient is 0 (a masked class with no target
    mass): keeps 0·inf out of the value without touching the derivative anywhere else (the
    derivative with respect to a zero label or weight stays what the formula says)."""
    return xp.where((x == -_INF) & (coef == 0), xp.zeros_like(x), x)


def softmax_ce(spec: SoftmaxCE, want_grad: bool) -> tuple[Array, Grad]:
    """Value (reduced) and gradient with respect to the logits, in the compute dtype."""
    xp = spec.xp
    x = upcast(xp, spec.logits, spec.compute_dtype)
    loss, w, g = softmax_ce_rows(
        xp,
        moveaxis_last(xp, x, spec.axis),
        spec.labels if spec.options.sparse else moveaxis_last(xp, spec.labels, spec.axis),
        class_weights=spec.class_weights,
        sample_weights=spec.sample_weights,
        options=spec.options,
        want_grad=want_grad,
    )
    total = xp.sum(w) if spec.reduction == "mean" else None
    value = _reduce.reduce(xp, loss, total, spec.reduction)
    if g is None:
        return value, None
    g = _reduce.scale_gradient(xp, g, total, spec.reduction)
    return value, moveaxis_back(xp, g, spec.axis)


def softmax_ce_rows(
    xp: Namespace,
    x: Array,
    y: Array,
    *,
    class_weights: Array | None,
    sample_weights: Array | None,
    options: CEOptions,
    want_grad: bool,
    parts: tuple[Array, Array] | None = None,
) -> tuple[Array, Array, Grad]:
    """Per-example losses, their weights in a mean, and the gradient of their sum.

    ``x`` is ``(..., C)`` (classes last), ``y`` ``(...)`` indices or ``(..., C)`` masses.
    ``parts`` are ``lse_parts(xp, x, -1)[:2]`` when the caller has them already (a custom VJP
    keeps them from its forward pass, so the backward needs no reduction over the classes).
    """
    cw, sw, o = class_weights, sample_weights, options
    eps, z = o.label_smoothing, o.z_loss
    c = int(x.shape[-1])
    d_cap = None
    if o.softcap is not None:  # the loss of the capped logits; chain rule at the end
        x, d_cap = softcap(xp, x, o.softcap)
    # logsumexp = m + ls, kept apart so that (m - x) + ls loses nothing at |x| ~ 1e30;
    # both are 0 for a row with no distribution (all -inf); m is nan for a row with nan or +inf
    m, ls = lse_parts(xp, x, -1)[:2] if parts is None else parts
    m0, ls0 = m[..., 0], ls[..., 0]
    valid = None
    if o.sparse:
        valid = (y != o.ignore_index) if o.ignore_index is not None else None
        idx = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
        if is_torch_namespace(xp) and idx.dtype != xp.int64:  # torch's gather wants int64
            idx = xp.astype(idx, xp.int64)
        x_y = xp.take_along_axis(x, idx[..., None], axis=-1)[..., 0]
        cw_y = None if cw is None else xp.reshape(xp.take(cw, xp.reshape(idx, (-1,))), idx.shape)
        coef = (1 - eps) if cw_y is None else (1 - eps) * cw_y
        if cw_y is None:
            ce = coef * ((m0 - x_y) + ls0) if eps < 1 else 0 * ls0
        else:  # a zero weight times a -inf logit is 0, not nan
            ce = coef * ((m0 - _unmasked(xp, x_y, coef)) + ls0)
        if eps > 0:
            if cw is None:
                ce = ce + (eps / c) * xp.sum((m - x) + ls, axis=-1)
            else:
                ce = ce + (eps / c) * xp.sum(cw * ((m - _unmasked(xp, x, cw)) + ls), axis=-1)
        # weight of each example in the mean, and total target mass Σ_k cw_k t_k for the gradient
        w = xp.ones_like(ce) if cw_y is None else cw_y
        mass = (1 - eps) * w + (eps if cw is None else eps / c * xp.sum(cw))
    else:
        t = y if eps == 0 else (1 - eps) * y + eps / c
        wt = t if cw is None else t * cw
        ce = xp.sum(wt * ((m - _unmasked(xp, x, wt)) + ls), axis=-1)
        w = xp.ones_like(ce) if cw is None else xp.sum(y * cw, axis=-1)
        mass = xp.sum(wt, axis=-1)
    lse0 = m0 + ls0
    loss = ce + z * lse0 * lse0 if _nonzero(z) else ce
    if sw is not None:
        loss, w = loss * sw, w * sw
    if valid is not None:
        loss = xp.where(valid, loss, xp.zeros_like(loss))
        w = xp.where(valid, w, xp.zeros_like(w))
    if not want_grad:
        return loss, w, None
    lq = (x - m) - ls  # log-probabilities
    rowf = (mass + 2 * z * lse0 if _nonzero(z) else mass)[..., None]
    if o.sparse:
        onehot = idx[..., None] == xp.arange(c, device=device(x))
        cy = (1 - eps) * (xp.ones_like(lse0) if cw_y is None else cw_y)
        g = rowf * xp.exp(lq) - xp.astype(onehot, x.dtype) * cy[..., None]
        # the target's rowf·q_y − cy as rowf·(q_y − 1) + (rowf − cy): q_y − 1 = expm1(log q_y)
        # keeps its relative accuracy for a confident prediction (q_y ≈ 1)
        g_y = rowf[..., 0] * xp.expm1((x_y - m0) - ls0) + (rowf[..., 0] - cy)
        g = xp.where(onehot, g_y[..., None], g)
        if eps > 0:
            g = g - (eps / c) * (xp.ones_like(x) if cw is None else cw)
    else:
        # near the mode (q > 1/2) rowf·q − wt = rowf·expm1(lq) + (rowf − wt) keeps full accuracy
        near = lq > _LOG_HALF
        g = xp.where(
            near,
            rowf * xp.expm1(xp.where(near, lq, xp.zeros_like(lq))) + (rowf - wt),
            rowf * xp.exp(lq) - wt,
        )
    if d_cap is not None:
        g = g * d_cap
    if sw is not None:
        g = g * sw[..., None]
    if valid is not None:
        g = xp.where(valid[..., None], g, xp.zeros_like(g))
    return loss, w, g


def sigmoid_ce(spec: SigmoidCE, want_grad: bool) -> tuple[Array, Grad]:
    """Value (reduced) and gradient with respect to the logits, in the compute dtype."""
    xp, eps, sw, pw = spec.xp, spec.label_smoothing, spec.sample_weights, spec.pos_weight
    x = upcast(xp, spec.logits, spec.compute_dtype)
    d_cap = None
    if spec.softcap is not None:
        x, d_cap = softcap(xp, x, spec.softcap)
    y = spec.labels
    yp = y if eps == 0 else y * (1 - eps) + eps / 2
    a = yp if pw is None else pw * yp  # coefficient of softplus(-x) = -log σ(x)
    b = 1 - yp  # coefficient of softplus(x) = -log(1 - σ(x))
    # keep 0·inf out of the value (x = ∓inf where its term's coefficient is 0) without changing
    # the derivative anywhere else, in particular with respect to a label of exactly 0 or 1
    xa = _unmasked(xp, x, a)
    xb = -_unmasked(xp, -x, b)
    loss = a * softplus(xp, -xa) + b * softplus(xp, xb)
    if sw is not None:
        loss = loss * sw
    total = None
    if spec.reduction == "mean":
        count = size(loss)  # None: a dimension unknown while tracing (tf.function)
        if sw is not None:
            total = xp.sum(sw)
        elif count is None:
            total = xp.sum(xp.ones_like(loss))
        else:
            total = xp.asarray(float(count), dtype=loss.dtype, device=device(loss))
    value = _reduce.reduce(xp, loss, total, spec.reduction)
    if not want_grad:
        return value, None
    # (a + b) σ(x) − a, written as (b − a t)/(1 + t) (x > 0) or (b t − a)/(1 + t) with
    # t = exp(−|x|), so that the rounding of σ ≈ 1 does not leak into a small result
    pos = x > 0
    t = xp.exp(xp.where(pos, -x, x))
    g = xp.where(pos, b - a * t, b * t - a) / (1 + t)
    if d_cap is not None:
        g = g * d_cap
    if sw is not None:
        g = g * sw
    return value, _reduce.scale_gradient(xp, g, total, spec.reduction)


def lm_measure(spec: LMMeasure, ce: Array, grad: Grad) -> tuple[Array, Grad]:
    """perplexity ``exp(mean CE)`` or bits per byte ``Σ CE / (ln 2 · Σ bytes)`` from the
    cross-entropy's mean (perplexity) or sum (bits per byte) and its gradient.

    The tokens counted in the bytes are those the sum counts: not ignored, each weighted by its
    sample weight; a total of 0 bytes gives 0.
    """
    c = spec.ce
    xp, cd = c.xp, c.compute_dtype
    dtype = ce.dtype
    v = upcast(xp, ce, cd)
    if spec.op == "perplexity":
        out = xp.exp(v)
        g = None if grad is None else grad * upcast(xp, out, grad.dtype)
        return _as_array(upcast(xp, out, dtype)), g
    nb = spec.num_bytes
    assert nb is not None
    if c.sample_weights is not None:
        nb = nb * c.sample_weights
    ii = c.options.ignore_index
    if ii is not None:
        nb = xp.where(c.labels != ii, nb, xp.zeros_like(nb))
    total = xp.sum(nb) * math.log(2.0)
    out = _reduce.safe_divide(xp, v, total)
    g = None
    if grad is not None:
        g = _reduce.safe_divide(xp, grad, xp.astype(xp.broadcast_to(total, grad.shape), grad.dtype))
    return _as_array(upcast(xp, out, dtype)), g


def _as_array(x: Array) -> Array:
    """A NumPy scalar as a 0-d array (every path returns 0-d arrays)."""
    return np.asarray(x) if isinstance(x, np.generic) else x


def ce_lse(spec: SoftmaxCE) -> Array:
    """The log-sum-exp of each example's (soft-capped) logits, the batch shape, compute dtype."""
    xp = spec.xp
    x = moveaxis_last(xp, upcast(xp, spec.logits, spec.compute_dtype), spec.axis)
    if spec.options.softcap is not None:
        x = softcap(xp, x, spec.options.softcap)[0]
    return lse(xp, x, -1)[..., 0]


def ce_aux(spec: SoftmaxCE, lse_rows: Array) -> tuple[Array, Array]:
    """``(z-loss term, lse)`` of ``return_aux``: the z-loss part of the loss, weighted and
    reduced as the loss is, and the per-example log-sum-exp ``lse_rows`` (compute dtype, the
    batch shape) with 0 for ignored examples. O(N) work (O(NC) for dense labels with class
    weights, for the mean's weights)."""
    xp, o, cw, sw = spec.xp, spec.options, spec.class_weights, spec.sample_weights
    valid = None
    if o.sparse and o.ignore_index is not None:
        valid = spec.labels != o.ignore_index
    total = None
    if spec.reduction == "mean":
        if cw is None:
            w = xp.ones_like(lse_rows)
        elif o.sparse:
            y = (
                spec.labels
                if valid is None
                else xp.where(valid, spec.labels, xp.zeros_like(spec.labels))
            )
            if is_torch_namespace(xp) and y.dtype != xp.int64:
                y = xp.astype(y, xp.int64)
            w = xp.reshape(xp.take(cw, xp.reshape(y, (-1,))), y.shape)
        else:
            w = xp.sum(moveaxis_last(xp, spec.labels, spec.axis) * cw, axis=-1)
        w = w if sw is None else w * sw
        total = xp.sum(w if valid is None else xp.where(valid, w, xp.zeros_like(w)))
    l0 = xp.where(lse_rows > -_INF, lse_rows, xp.zeros_like(lse_rows))
    zt = o.z_loss * (l0 * l0)
    if sw is not None:
        zt = zt * sw
    if valid is not None:
        zt = xp.where(valid, zt, xp.zeros_like(zt))
        lse_rows = xp.where(valid, lse_rows, xp.zeros_like(lse_rows))
    return _reduce.reduce(xp, zt, total, spec.reduction), lse_rows
