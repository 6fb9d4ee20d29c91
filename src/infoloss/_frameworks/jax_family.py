"""The JAX adapter for the rest of the cross-entropy family: the focal and poly losses (sparse
and dense labels), the sigmoid focal loss, and the logit divergences with sample weights or a
row mask, as ``jax.custom_vjp`` functions.

As in :mod:`infoloss._frameworks.jax` (whose helpers this module imports): the forward evaluates
the generic definition's value and keeps only the inputs as residuals; the backward evaluates
the definition's analytic gradient from them and scales it by the cotangent, so ``jit``,
``grad``, ``vmap`` and the special values behave as the definition. Labels, weights (and, for
the divergences, the sample weights) that are themselves differentiated fall back to
``jax.vjp`` of the definition for that call, which gives every cotangent.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax

from .._generic import focal as g_focal
from .._generic import measures as g_measures
from .._specs import SigmoidFocal, SoftmaxFocal, SoftmaxMeasure
from .._utils import upcast
from .jax import _class_axis_ct, _is_zero, _unwrap

__all__ = ["sigmoid_focal", "softmax_focal", "softmax_measure"]


# --------------------------------------------------------------------------- softmax focal / poly


def _sf_spec(st: SoftmaxFocal, x: Any, y: Any, cw: Any, sw: Any) -> SoftmaxFocal:
    ce = dataclasses.replace(st.ce, logits=x, labels=y, class_weights=cw, sample_weights=sw)
    return dataclasses.replace(st, ce=ce)


def _sf_value(st: SoftmaxFocal, *args: Any) -> Any:
    spec = _sf_spec(st, *args)
    value = g_focal.softmax_focal(spec, False)[0]
    return upcast(spec.ce.xp, value, spec.ce.logits.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _sf(st: SoftmaxFocal, x: Any, y: Any, cw: Any, sw: Any) -> Any:
    return _sf_value(st, x, y, cw, sw)


def _sf_fwd(st: SoftmaxFocal, *args: Any) -> tuple[Any, Any]:
    vals, pert = _unwrap(args)
    if any(pert[1:]):  # labels or weights differentiated too: the definition's VJP
        value, vjp = jax.vjp(lambda *a: _sf_value(st, *a), *vals)
        return value, (vjp,)
    return _sf_value(st, *vals), (vals, None)


def _sf_bwd(st: SoftmaxFocal, res: Any, ct: Any) -> tuple[Any, ...]:
    if _is_zero(ct):
        return (None,) * 4
    if len(res) == 1:
        return tuple(res[0](ct))
    spec = _sf_spec(st, *res[0])
    ce = spec.ce
    g = g_focal.softmax_focal(spec, True)[1]
    g = g * _class_axis_ct(ct, ce.axis if ce.reduction == "none" else None)
    return (upcast(ce.xp, g, ce.logits.dtype), None, None, None)


_sf.defvjp(_sf_fwd, _sf_bwd, symbolic_zeros=True)


def softmax_focal(spec: SoftmaxFocal) -> Any:
    """The softmax focal and poly losses of JAX arrays through the custom VJP."""
    ce = spec.ce
    st = _sf_spec(spec, None, None, None, None)
    return _sf(st, ce.logits, ce.labels, ce.class_weights, ce.sample_weights)


# --------------------------------------------------------------------------- sigmoid focal


def _sig_spec(st: SigmoidFocal, x: Any, y: Any, sw: Any) -> SigmoidFocal:
    ce = dataclasses.replace(st.ce, logits=x, labels=y, sample_weights=sw)
    return dataclasses.replace(st, ce=ce)


def _sig_value(st: SigmoidFocal, *args: Any) -> Any:
    spec = _sig_spec(st, *args)
    return upcast(spec.ce.xp, g_focal.sigmoid_focal(spec, False)[0], spec.ce.logits.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _sig(st: SigmoidFocal, x: Any, y: Any, sw: Any) -> Any:
    return _sig_value(st, x, y, sw)


def _sig_fwd(st: SigmoidFocal, *args: Any) -> tuple[Any, Any]:
    vals, pert = _unwrap(args)
    if any(pert[1:]):
        value, vjp = jax.vjp(lambda *a: _sig_value(st, *a), *vals)
        return value, (vjp,)
    return _sig_value(st, *vals), (vals, None)


def _sig_bwd(st: SigmoidFocal, res: Any, ct: Any) -> tuple[Any, ...]:
    if _is_zero(ct):
        return (None,) * 3
    if len(res) == 1:
        return tuple(res[0](ct))
    spec = _sig_spec(st, *res[0])
    g = g_focal.sigmoid_focal(spec, True)[1] * ct
    return (upcast(spec.ce.xp, g, spec.ce.logits.dtype), None, None)


_sig.defvjp(_sig_fwd, _sig_bwd, symbolic_zeros=True)


def sigmoid_focal(spec: SigmoidFocal) -> Any:
    """``sigmoid_focal_loss`` of JAX arrays through the custom VJP."""
    ce = spec.ce
    return _sig(_sig_spec(spec, None, None, None), ce.logits, ce.labels, ce.sample_weights)


# --------------------------------------------------------------------------- weighted divergences


def _m_spec(st: SoftmaxMeasure, a: Any, b: Any, sw: Any, mask: Any) -> SoftmaxMeasure:
    return dataclasses.replace(st, a=a, b=b, sample_weights=sw, mask=mask)


def _m_value(st: SoftmaxMeasure, *args: Any) -> Any:
    return g_measures.softmax_measure(_m_spec(st, *args), False)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _m(st: SoftmaxMeasure, a: Any, b: Any, sw: Any, mask: Any) -> Any:
    return _m_value(st, a, b, sw, mask)


def _m_fwd(st: SoftmaxMeasure, *args: Any) -> tuple[Any, Any]:
    vals, pert = _unwrap(args)
    if pert[2]:  # the sample weights differentiated: the definition's VJP
        value, vjp = jax.vjp(lambda *a: _m_value(st, *a), *vals)
        return value, (vjp,)
    return _m_value(st, *vals), (vals, None)


def _m_bwd(st: SoftmaxMeasure, res: Any, ct: Any) -> tuple[Any, ...]:
    if _is_zero(ct):
        return (None,) * 4
    if len(res) == 1:
        return tuple(res[0](ct))
    pair: Any = g_measures.softmax_measure(_m_spec(st, *res[0]), True)[1]
    ctb = _class_axis_ct(ct, None if st.keepdims or st.reduction != "none" else st.axis)
    return (pair[0] * ctb, pair[1] * ctb, None, None)


_m.defvjp(_m_fwd, _m_bwd, symbolic_zeros=True)


def softmax_measure(spec: SoftmaxMeasure) -> Any:
    """``softmax_kl_divergence`` / ``softmax_js_divergence`` of JAX arrays with sample weights or
    a row mask, through the custom VJP."""
    st = _m_spec(spec, None, None, None, None)
    return _m(st, spec.a, spec.b, spec.sample_weights, spec.mask)
