"""The TensorFlow adapter: the generic definitions on TensorFlow tensors, analytic gradients.

Validation (:mod:`infoloss._validate`) has already run on the tensors with the TensorFlow
namespace of :mod:`infoloss._tf_namespace`; here the generic code computes the value with
TensorFlow ops — eagerly, inside ``tf.function`` and under XLA alike — and a
``tf.custom_gradient`` gives ``tf.GradientTape`` the analytic gradient with respect to the
logits (both logits of :func:`~infoloss.softmax_kl_divergence`; hidden, weight and bias of
:func:`~infoloss.linear_cross_entropy`) instead of differentiating the formula op by op.

Residuals: none beyond the inputs. The backward pass recomputes the gradient from the logits
with the same generic code (one more pass over them), so nothing of the logits' size is kept
between the forward and the backward pass; the backward code is itself TensorFlow ops, so a
persistent tape can differentiate it again. Labels, weights and the other arguments are
constants for the gradient (TensorFlow's gradient with respect to them is ``None``).
float16/bfloat16 tensors are computed in float32 (the spec's compute dtype), results cast back.
:mod:`infoloss._router` sends every TensorFlow spec here (:func:`infoloss._router.tensorflow`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from .._generic import linear as generic_linear
from .._generic import losses as generic_losses
from .._generic import measures as generic_measures
from .._specs import LinearCE, SigmoidCE, SoftmaxCE, SoftmaxMeasure

__all__ = ["linear_ce", "sigmoid_ce", "softmax_ce", "softmax_measure"]


def _scale(g: Any, upstream: Any, axis: int | None) -> Any:
    """``g`` times the incoming gradient (a scalar, one value per example, or elementwise)."""
    up = tf.cast(upstream, g.dtype)
    if axis is not None:
        up = tf.expand_dims(up, axis)
    return g * up


def _with_gradient(
    x: Any, compute: Callable[[Any, bool], tuple[Any, Any]], axis: int | None
) -> Any:
    """The value of ``compute(x, False)`` with ``compute(x, True)[1]`` as its gradient."""

    @tf.custom_gradient
    def fused(logits: Any) -> Any:
        value, _ = compute(logits, False)

        def grad(upstream: Any) -> Any:
            _, g = compute(logits, True)  # recomputed: the inputs are the only residuals
            return tf.cast(_scale(g, upstream, axis), logits.dtype)

        return value, grad

    return fused(x)


def _int64_labels(spec: Any) -> Any:
    """Sparse labels as int64 (TensorFlow compares int32 with int64 only after a cast)."""
    y = spec.labels
    if y.dtype.is_integer and y.dtype != tf.int64:
        return dataclasses.replace(spec, labels=tf.cast(y, tf.int64))
    return spec


def softmax_ce(spec: SoftmaxCE, want_grad: bool = False) -> tuple[Any, Any]:
    """Both softmax cross-entropies: (value, gradient or None), in the compute dtype."""
    spec = _int64_labels(spec) if spec.options.sparse else spec

    def compute(x: Any, grad: bool) -> tuple[Any, Any]:
        return generic_losses.softmax_ce(dataclasses.replace(spec, logits=x), grad)

    if want_grad:
        return compute(spec.logits, True)
    ax = spec.axis if spec.reduction == "none" else None
    return _with_gradient(spec.logits, compute, ax), None


def sigmoid_ce(spec: SigmoidCE, want_grad: bool = False) -> tuple[Any, Any]:
    """Sigmoid cross-entropy: (value, gradient or None), in the compute dtype."""

    def compute(x: Any, grad: bool) -> tuple[Any, Any]:
        return generic_losses.sigmoid_ce(dataclasses.replace(spec, logits=x), grad)

    if want_grad:
        return compute(spec.logits, True)
    return _with_gradient(spec.logits, compute, None), None


def softmax_measure(spec: SoftmaxMeasure, want_grad: bool = False) -> tuple[Any, Any]:
    """softmax_entropy, softmax_kl_divergence or softmax_js_divergence: (value, gradient(s) or
    None)."""
    if want_grad:
        return generic_measures.softmax_measure(spec, True)
    # one incoming gradient per example unless kept dims or a reduction made it a scalar
    ax = None if spec.keepdims or spec.reduction != "none" else spec.axis
    if spec.b is None:

        def compute(a: Any, grad: bool) -> tuple[Any, Any]:
            return generic_measures.softmax_measure(dataclasses.replace(spec, a=a), grad)

        return _with_gradient(spec.a, compute, ax), None

    @tf.custom_gradient
    def kl(a: Any, b: Any) -> Any:
        value, _ = generic_measures.softmax_measure(dataclasses.replace(spec, a=a, b=b), False)

        def grad(upstream: Any) -> Any:
            grads: Any = generic_measures.softmax_measure(
                dataclasses.replace(spec, a=a, b=b), True
            )[1]
            ga, gb = grads
            return (
                tf.cast(_scale(ga, upstream, ax), a.dtype),
                tf.cast(_scale(gb, upstream, ax), b.dtype),
            )

        return value, grad

    return kl(spec.a, spec.b), None


def linear_ce(spec: LinearCE, want_grad: bool = False) -> tuple[Any, Any, Any]:
    """linear_cross_entropy ("sum" or "mean"): (value, (d_hidden, d_weight, d_bias) or None,
    per-row log-sum-exp or None) in the compute dtype and flattened rows, as
    :func:`infoloss._generic.linear.linear_ce`; the custom gradient recomputes the logits chunk
    by chunk in the backward pass, so no ``N × V`` array is ever kept."""
    spec = _int64_labels(spec)

    def compute(h: Any, w: Any, b: Any, grad: bool) -> tuple[Any, Any, Any]:
        return generic_linear.linear_ce(dataclasses.replace(spec, hidden=h, weight=w, bias=b), grad)

    # "none" and return_aux: TensorFlow differentiates the chunks
    if want_grad or spec.reduction == "none" or spec.want_lse:
        return compute(spec.hidden, spec.weight, spec.bias, want_grad)

    @tf.custom_gradient
    def fused(h: Any, w: Any, *bias: Any) -> Any:
        b = bias[0] if bias else None
        value, _, _ = compute(h, w, b, False)

        def grad(upstream: Any) -> Any:
            _, (dh, dw, db), _ = compute(h, w, b, True)
            s = tf.cast(upstream, dh.dtype)
            out = [dh * s, dw * s]
            if b is not None:
                out.append(db * s)
            return tuple(out)

        return value, grad

    args = (spec.hidden, spec.weight) + (() if spec.bias is None else (spec.bias,))
    return fused(*args), None, None
