"""The JAX adapter: the losses and logit measures as ``jax.custom_vjp`` functions.

Without it ``jax.grad`` differentiates the generic definition operation by operation, and XLA
keeps the N × C intermediates of the forward pass for the backward one. Here each call is one
custom VJP whose

- **forward** evaluates the generic definition's value and keeps as residuals only the inputs and,
  for the softmax cross-entropies, the per-row log-sum-exp parts ``(m, log s)`` (O(N));
- **backward** evaluates the definition's analytic gradient from them (no reduction over the
  classes left for the softmax cross-entropies: one elementwise pass that XLA fuses) and scales
  it by the incoming cotangent.

Values and gradients are the definition's (:mod:`infoloss._generic`), so ``jit``, ``grad``,
``vmap`` and every special value behave as there. Labels, class/sample weights, ``pos_weight`` or
a traced ``z_loss`` that are themselves differentiated (``perturbed`` in JAX's terms, seen
through ``symbolic_zeros``) make that call fall back to ``jax.vjp`` of the definition, which
gives every cotangent. ``value_and_grad`` on JAX arrays does not come here: the router computes
value and gradient with the definition directly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from .. import _reduce
from .._generic import linear as g_linear
from .._generic import losses as g_losses
from .._generic import measures as g_measures
from .._specs import LinearCE, SigmoidCE, SoftmaxCE, SoftmaxMeasure
from .._utils import moveaxis_back, moveaxis_last, upcast

__all__ = ["linear_ce", "sigmoid_ce", "softmax_ce", "softmax_measure"]


def _unwrap(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[bool, ...]]:
    """Values and ``perturbed`` flags of a ``symbolic_zeros`` forward's arguments."""
    vals = tuple(a.value if isinstance(a, CustomVJPPrimal) else a for a in args)
    pert = tuple(isinstance(a, CustomVJPPrimal) and bool(a.perturbed) for a in args)
    return vals, pert


def _is_zero(ct: Any) -> bool:
    return isinstance(ct, SymbolicZero)


def _class_axis_ct(ct: Any, axis: int | None) -> Any:
    """The cotangent of a value without the class axis, broadcastable against the logits."""
    return ct if axis is None or ct.ndim == 0 else jax.numpy.expand_dims(ct, axis)


# --------------------------------------------------------------------------- softmax CE


def _ce_spec(st: SoftmaxCE, x: Any, y: Any, cw: Any, sw: Any, z: Any) -> SoftmaxCE:
    options = st.options if z is None else dataclasses.replace(st.options, z_loss=z)
    return dataclasses.replace(
        st, logits=x, labels=y, class_weights=cw, sample_weights=sw, options=options
    )


def _ce_rows(spec: SoftmaxCE) -> tuple[Any, Any]:
    xp = spec.xp
    x = moveaxis_last(xp, upcast(xp, spec.logits, spec.compute_dtype), spec.axis)
    y = spec.labels if spec.options.sparse else moveaxis_last(xp, spec.labels, spec.axis)
    return x, y


def _parts(x: Any) -> tuple[Any, Any]:
    """``lse_parts(x, -1)[:2]`` with the same special values (an all ``-inf`` row gives 0, a row
    with nan or ``+inf`` nan), in the form XLA's CPU backend runs fastest.

    XLA vectorizes a row reduction of plain arithmetic, but not one holding a select, an
    ``argmax``, or two reductions fused into one loop (measured at 2048 × 32000 float32: the
    ``argmax`` form ran 5× slower than the two reductions here). So:

    - ``r = Σ exp(d)·min(1, −2d)``, ``d = x − m``: the maxima (``d = 0``) are left out by
      arithmetic, and every term with ``d ≤ −1/2`` counts in full;
    - ``s = Σ exp(d)``, kept from fusing with ``r`` by an optimization barrier;
    - ``log s = log1p(r)`` where ``s < 1.5``, ``log(s)`` elsewhere. Below 1.5 there is one
      maximum and every other term is below 1/2, so ``d < −log 2`` there and ``r`` is exactly
      their sum: ``log1p`` keeps its relative accuracy (a confident row's small loss). At 1.5 and
      above (two or more maxima, or terms near the maximum, which ``r`` may count in part)
      ``log s ≥ log 1.5`` is accurate as it is.
    """
    jnp = jax.numpy
    m = jnp.max(x, axis=-1, keepdims=True)
    m = jnp.where(m == -jnp.inf, jnp.zeros_like(m), jnp.where(m == jnp.inf, jnp.nan, m))
    d = x - m
    rest = jnp.sum(jnp.exp(d) * jnp.minimum(1, -2 * d), axis=-1, keepdims=True)
    rest, x, m = jax.lax.optimization_barrier((rest, x, m))
    s = jnp.sum(jnp.exp(x - m), axis=-1, keepdims=True)
    return m, jnp.where(s < 1.5, jnp.log1p(rest), jnp.log(s))


def _ce_value(st: SoftmaxCE, *args: Any) -> tuple[Any, Any]:
    spec = _ce_spec(st, *args)
    xp = spec.xp
    x, y = _ce_rows(spec)
    m, ls = _parts(x)
    loss, w, _ = g_losses.softmax_ce_rows(
        xp,
        x,
        y,
        class_weights=spec.class_weights,
        sample_weights=spec.sample_weights,
        options=spec.options,
        want_grad=False,
        parts=(m, ls),
    )
    total = xp.sum(w) if spec.reduction == "mean" else None
    value = _reduce.reduce(xp, loss, total, spec.reduction)
    return upcast(xp, value, spec.logits.dtype), (m, ls)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _ce(st: SoftmaxCE, x: Any, y: Any, cw: Any, sw: Any, z: Any) -> Any:
    return _ce_value(st, x, y, cw, sw, z)[0]


def _ce_fwd(st: SoftmaxCE, *args: Any) -> tuple[Any, Any]:
    vals, pert = _unwrap(args)
    if any(pert[1:]):  # labels or weights are differentiated too: the definition's VJP
        value, vjp = jax.vjp(lambda *a: _ce_value(st, *a)[0], *vals)
        return value, (vjp,)
    value, parts = _ce_value(st, *vals)
    return value, (vals, parts)


def _ce_bwd(st: SoftmaxCE, res: Any, ct: Any) -> tuple[Any, ...]:
    if _is_zero(ct):
        return (None,) * 5
    if len(res) == 1:
        return tuple(res[0](ct))
    vals, parts = res
    spec = _ce_spec(st, *vals)
    xp = spec.xp
    x, y = _ce_rows(spec)
    _, w, g = g_losses.softmax_ce_rows(
        xp,
        x,
        y,
        class_weights=spec.class_weights,
        sample_weights=spec.sample_weights,
        options=spec.options,
        want_grad=True,
        parts=parts,
    )
    total = xp.sum(w) if spec.reduction == "mean" else None
    g = _reduce.scale_gradient(xp, g, total, spec.reduction)
    g = moveaxis_back(xp, g, spec.axis)
    g = g * _class_axis_ct(ct, spec.axis if spec.reduction == "none" else None)
    return (upcast(xp, g, spec.logits.dtype), None, None, None, None)


_ce.defvjp(_ce_fwd, _ce_bwd, symbolic_zeros=True)


def softmax_ce(spec: SoftmaxCE) -> Any:
    """Both softmax cross-entropies of JAX arrays: the value, differentiable through the custom
    VJP."""
    z = spec.options.z_loss
    z_arr = None if isinstance(z, (int, float)) else z
    st = _ce_spec(spec, None, None, None, None, None)
    if z_arr is not None:
        st = dataclasses.replace(st, options=dataclasses.replace(st.options, z_loss=0.0))
    return _ce(st, spec.logits, spec.labels, spec.class_weights, spec.sample_weights, z_arr)


# --------------------------------------------------------------------------- sigmoid CE


def _sig_spec(st: SigmoidCE, x: Any, y: Any, pw: Any, sw: Any) -> SigmoidCE:
    return dataclasses.replace(st, logits=x, labels=y, pos_weight=pw, sample_weights=sw)


def _sig_value(st: SigmoidCE, *args: Any) -> Any:
    spec = _sig_spec(st, *args)
    return upcast(spec.xp, g_losses.sigmoid_ce(spec, False)[0], spec.logits.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _sig(st: SigmoidCE, x: Any, y: Any, pw: Any, sw: Any) -> Any:
    return _sig_value(st, x, y, pw, sw)


def _sig_fwd(st: SigmoidCE, *args: Any) -> tuple[Any, Any]:
    vals, pert = _unwrap(args)
    if any(pert[1:]):
        value, vjp = jax.vjp(lambda *a: _sig_value(st, *a), *vals)
        return value, (vjp,)
    return _sig_value(st, *vals), (vals, None)


def _sig_bwd(st: SigmoidCE, res: Any, ct: Any) -> tuple[Any, ...]:
    if _is_zero(ct):
        return (None,) * 4
    if len(res) == 1:
        return tuple(res[0](ct))
    spec = _sig_spec(st, *res[0])
    g = g_losses.sigmoid_ce(spec, True)[1] * ct
    return (upcast(spec.xp, g, spec.logits.dtype), None, None, None)


_sig.defvjp(_sig_fwd, _sig_bwd, symbolic_zeros=True)


def sigmoid_ce(spec: SigmoidCE) -> Any:
    """Sigmoid cross-entropy of JAX arrays through the custom VJP."""
    st = _sig_spec(spec, None, None, None, None)
    return _sig(st, spec.logits, spec.labels, spec.pos_weight, spec.sample_weights)


# --------------------------------------------------------------------------- measures


def _measure_spec(st: SoftmaxMeasure, a: Any, b: Any) -> SoftmaxMeasure:
    return dataclasses.replace(st, a=a, b=b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _measure(st: SoftmaxMeasure, a: Any, b: Any) -> Any:
    return g_measures.softmax_measure(_measure_spec(st, a, b), False)[0]


def _measure_fwd(st: SoftmaxMeasure, a: Any, b: Any) -> tuple[Any, Any]:
    (a, b), _ = _unwrap((a, b))
    return _measure(st, a, b), (a, b)


def _measure_bwd(st: SoftmaxMeasure, res: Any, ct: Any) -> tuple[Any, ...]:
    if _is_zero(ct):
        return (None, None)
    a, b = res
    grads = g_measures.softmax_measure(_measure_spec(st, a, b), True)[1]
    ctb = _class_axis_ct(ct, None if st.keepdims or st.reduction != "none" else st.axis)
    if b is None:
        return (grads * ctb, None)
    pair: Any = grads
    return (pair[0] * ctb, pair[1] * ctb)


_measure.defvjp(_measure_fwd, _measure_bwd, symbolic_zeros=True)


def softmax_measure(spec: SoftmaxMeasure) -> Any:
    """softmax_entropy / softmax_kl_divergence of JAX arrays through the custom VJP."""
    return _measure(_measure_spec(spec, None, None), spec.a, spec.b)


# --------------------------------------------------------------------------- linear layer


def _lin_spec(st: LinearCE, h: Any, w: Any, b: Any, y: Any, cw: Any) -> LinearCE:
    return dataclasses.replace(st, hidden=h, weight=w, bias=b, labels=y, class_weights=cw)


def _lin_value(st: LinearCE, *args: Any) -> Any:
    return g_linear.linear_ce(_lin_spec(st, *args), False)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lin(st: LinearCE, h: Any, w: Any, b: Any, y: Any, cw: Any) -> Any:
    return _lin_value(st, h, w, b, y, cw)


def _lin_fwd(st: LinearCE, *args: Any) -> tuple[Any, Any]:
    vals, pert = _unwrap(args)
    if any(pert[3:]):  # class weights differentiated: the definition's VJP
        value, vjp = jax.vjp(lambda *a: _lin_value(st, *a), *vals)
        return value, (vjp,)
    value, grads = _lin_sweep(_lin_spec(st, *vals))
    return value, (grads,)


def _lin_sweep(spec: LinearCE) -> tuple[Any, tuple[Any, Any, Any]]:
    """The loss and the three gradients in one ``lax.scan`` over chunks of rows (Liger-style):
    the scan makes XLA hold one chunk of logits at a time (an unrolled loop lets it keep them
    all). Rows are padded to a whole number of chunks; padded rows have sample weight 0."""
    jnp = jax.numpy
    xp = spec.xp
    h, w, b, y, cw, o = (
        spec.hidden,
        spec.weight,
        spec.bias,
        spec.labels,
        spec.class_weights,
        spec.options,
    )
    n, hd = h.shape
    chunk = min(spec.chunk_rows, max(n, 1))
    k = -(-n // chunk)
    pad = k * chunk - n
    mean = spec.reduction == "mean"
    total = g_linear.weight_total(xp, y, cw, o.ignore_index, h.dtype) if mean else None
    scale = (
        1.0 if total is None else jnp.where(total == 0, 0.0, 1 / jnp.where(total == 0, 1.0, total))
    )
    hp = jnp.pad(h, ((0, pad), (0, 0))).reshape(k, chunk, hd)
    yp = jnp.pad(y, (0, pad)).reshape(k, chunk)
    mp = jnp.pad(jnp.ones((n,), h.dtype), (0, pad)).reshape(k, chunk)

    wt: Any = w

    def body(carry: Any, xs: Any) -> Any:
        dw, db, loss = carry
        hk, yk, mk = xs
        logits = hk @ wt.T if b is None else hk @ wt.T + b
        rows: Any = g_losses.softmax_ce_rows(
            xp, logits, yk, class_weights=cw, sample_weights=mk, options=o, want_grad=True
        )
        loss_k, g = rows[0], rows[2] * scale
        dw = dw + g.T @ hk
        db = None if db is None else db + jnp.sum(g, axis=0)
        return (dw, db, loss + jnp.sum(loss_k)), g @ wt

    init = (jnp.zeros_like(w), None if b is None else jnp.zeros_like(b), jnp.zeros((), h.dtype))
    (dw, db, loss), dh = jax.lax.scan(body, init, (hp, yp, mp))
    dh = dh.reshape(k * chunk, hd)[:n]
    return loss * scale, (dh, dw, db)


def _lin_bwd(st: LinearCE, res: Any, ct: Any) -> tuple[Any, ...]:
    if _is_zero(ct):
        return (None,) * 5
    if not isinstance(res[0], tuple):
        return tuple(res[0](ct))
    dh, dw, db = res[0]
    return (dh * ct, dw * ct, None if db is None else db * ct, None, None)


_lin.defvjp(_lin_fwd, _lin_bwd, symbolic_zeros=True)


def linear_ce(spec: LinearCE) -> Any:
    """``linear_cross_entropy`` ("sum"/"mean") of JAX arrays through the custom VJP: the value
    (flattened rows, compute dtype), differentiable with respect to hidden, weight and bias."""
    st = dataclasses.replace(
        _lin_spec(spec, None, None, None, None, None), originals=(None, None, None)
    )
    return _lin(st, spec.hidden, spec.weight, spec.bias, spec.labels, spec.class_weights)
