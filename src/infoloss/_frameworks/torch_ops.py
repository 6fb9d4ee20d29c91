"""The torch entry points as ``torch.library`` custom ops, for ``torch.compile`` (issue 13).

While ``torch.compile`` traces a call, :mod:`infoloss._router` sends the three cross-entropies,
the softmax measures (``softmax_entropy``, ``softmax_kl_divergence``, ``softmax_js_divergence``)
and ``linear_cross_entropy`` (``"sum"``/``"mean"``) here. Each is one op of the namespace
``infoloss`` (``torch.ops.infoloss.softmax_ce`` & co.), so that dynamo records a single graph node
instead of a graph break (``fullgraph=True`` works):

- the op's **schema** holds the spec's tensors (optional ones as ``Tensor?``) and its options as
  scalars; everything that does not depend on data was validated in Python before the op;
- its **real implementation** runs eagerly inside the compiled graph on real tensors: on CPU
  tensors with the fast path allowed (:func:`infoloss._config.fast_allowed`, read at each call,
  and numba importable) the fused numba kernels (through zero-copy NumPy views, as
  :mod:`infoloss._frameworks.torch` does), otherwise the lean torch code of
  :mod:`infoloss._frameworks.torch_lean` (any device). The checks that read data (label
  range, label values) run there too, raising the same :class:`~infoloss.InfolossError`;
- its **fake implementation** gives shapes, dtypes and strides only (no data access);
- its **autograd** formula: the forward returns the value and, when it is needed (an input
  requires grad, or ``value_and_grad``), the analytic gradient computed in the same sweep (an
  empty tensor otherwise; in the compute dtype, float32 for float16/bfloat16 logits, as the eager
  adapters keep it); the backward is one multiplication of that gradient by the incoming one
  (and a cast for half-precision logits). The gradient output is non-differentiable.

Double backward: with ``create_graph=True`` in eager mode the backward differentiates the
generic definition again (as the eager adapters do); inside a compiled graph PyTorch's
AOTAutograd does not support double backward at all and raises its own error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import array_api_compat.torch as _XP
import torch

from .. import _config
from .._fast import get_kernels
from .._generic import linear as g_linear
from .._generic import losses as g_losses
from .._generic import measures as g_measures
from .._specs import CEOptions, LinearCE, SigmoidCE, SoftmaxCE, SoftmaxMeasure
from .._utils import check_data, check_label_values
from ..errors import InfolossError
from . import torch_lean

__all__ = ["linear_ce", "sigmoid_ce", "softmax_ce", "softmax_measure"]

_HALF = (torch.float16, torch.bfloat16)
_FAST = (torch.float32, torch.float64, *_HALF)


# --------------------------------------------------------------------------- shared pieces


def _cd(dtype: torch.dtype) -> torch.dtype:
    """The compute dtype (float16/bfloat16 are computed in float32)."""
    return torch.float32 if dtype in _HALF else dtype


def _fused(*ts: Any) -> bool:
    """True when the fused CPU kernels run (CPU tensors of a float dtype, fast path allowed)."""
    if any(t is not None and t.device.type != "cpu" for t in ts):
        return False
    if ts[0].dtype not in _FAST or not _config.fast_allowed():
        return False
    return get_kernels() is not None


def _fused_adapter() -> Any:
    from . import torch as adapter

    return adapter


def _grad_strides(shape: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    """Strides of a gradient of ``shape`` whose class ``axis`` is innermost (contiguous when it
    is the last one): the layout both the kernels and the lean code produce."""
    nd = len(shape)
    if axis is None or axis == nd - 1 or nd == 0:
        order = list(range(nd))
    else:
        order = [d for d in range(nd) if d != axis] + [axis]
    strides = [0] * nd
    s = 1
    for d in reversed(order):
        strides[d] = s
        s *= max(int(shape[d]), 1)
    return tuple(strides)


def _empty(like: torch.Tensor, shape: Any, dtype: Any, axis: int | None = None) -> torch.Tensor:
    """A new tensor in the layout of :func:`_grad_strides` (symbolic sizes allowed: no ``int``)."""
    shape = tuple(shape)
    if axis is None or axis == len(shape) - 1 or not shape:
        return like.new_empty(shape, dtype=dtype)
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    return like.new_empty(moved, dtype=dtype).movedim(-1, axis)


def _fit(t: torch.Tensor, like: torch.Tensor, shape: Any, dtype: Any, axis: Any = None) -> Any:
    """``t`` in the shape, dtype and strides the fake implementation promises (a copy only when
    the computation produced another layout)."""
    shape = tuple(shape)
    if t.dtype != dtype:
        t = t.to(dtype)
    if tuple(t.shape) != shape:
        t = t.reshape(shape)
    if t.stride() != _grad_strides(shape, axis):
        t = _empty(like, shape, dtype, axis).copy_(t)
    return t


def _none(like: torch.Tensor) -> torch.Tensor:
    """The gradient output when no gradient was asked for."""
    return like.new_empty((0,))


def _check_range(labels: torch.Tensor, c: int, ignore_index: int | None) -> None:
    """Class indices in [0, c) or ``ignore_index`` (the validation's message, read here because
    the values cannot be read while the call is traced)."""
    extra = f" or `ignore_index`={ignore_index}" if ignore_index is not None else ""

    def bad(y: Any) -> Any:
        b = (y < 0) | (y >= c)
        return b if ignore_index is None else b & (y != ignore_index)

    check_data(_XP, labels, bad, "labels", f"class indices in [0, {c}){extra}")


def _z(z_loss: float, z_loss_t: Any) -> Any:
    """The z-loss coefficient: a float, or the 0-d tensor a traced mean's rescaling made."""
    return z_loss if z_loss_t is None else float(z_loss_t)


def _z_args(z: Any) -> tuple[float, Any]:
    """``(z_loss, z_loss_t)`` of the schema for a coefficient that may be a traced tensor."""
    return (0.0, z) if isinstance(z, torch.Tensor) else (float(z), None)


def _grad_scale(gv: torch.Tensor, axis: int | None) -> torch.Tensor:
    """The incoming gradient broadcastable against the saved one."""
    return gv if gv.ndim == 0 or axis is None else gv.unsqueeze(axis)


def _want(t: Any, want_grad: bool) -> bool:
    return t is not None and (want_grad or (torch.is_grad_enabled() and t.requires_grad))


def _saved(g: Any, t: torch.Tensor) -> Any:
    """The saved gradient of input ``t``; the op must have been asked for it."""
    if g is not None and g.ndim == 1 and g.shape[0] == 0 and t.shape != g.shape:
        raise InfolossError(
            "an infoloss custom op was called without asking for the gradient of an input "
            "that requires grad (pass its want_grad/grad_* flag as True)"
        )
    return g


def _differentiable(g: Any, like: torch.Tensor) -> torch.Tensor:
    """The definition's gradient (computed with autograd recording) in the compute dtype."""
    assert g is not None
    return g.to(_cd(like.dtype))


def _out(g: torch.Tensor) -> Any:
    return None if g.numel() == 0 and g.ndim == 1 else g


# --------------------------------------------------------------------------- softmax CE

_CE_SCHEMA = (
    "(Tensor logits, Tensor labels, Tensor? class_weights, Tensor? sample_weights, "
    "Tensor? z_loss_t, bool sparse, float label_smoothing, float z_loss, int? ignore_index, "
    "float? softcap, int axis, str reduction, bool want_grad) -> (Tensor, Tensor)"
)


def _ce_spec(args: tuple[Any, ...]) -> SoftmaxCE:
    x, y, cw, sw, zt, sparse, eps, z, ii, cap, axis, reduction, _ = args
    return SoftmaxCE(
        xp=_XP,
        logits=x,
        labels=y,
        class_weights=cw,
        sample_weights=sw,
        axis=axis,
        options=CEOptions(sparse, eps, _z(z, zt), ii, cap),
        reduction=reduction,
        compute_dtype=_cd(x.dtype),
    )


def _batch(x: Any, axis: int) -> tuple[int, ...]:
    return tuple(x.shape[:axis]) + tuple(x.shape[axis + 1 :])


def _ce_impl(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    spec = _ce_spec(args)
    x, want, o, ax = spec.logits, args[-1], spec.options, spec.axis
    if o.sparse:
        _check_range(spec.labels, int(x.shape[ax]), o.ignore_index)
    else:
        check_label_values(_XP, spec.labels, None)
    if _fused(x, spec.labels):
        a = _fused_adapter()
        xn = a._np(x)
        value, g = a.fast_losses.softmax_ce(
            dataclasses.replace(a._numpy_spec(spec), logits=xn), want
        )
        value, g = a._tensor(value), (None if g is None else a._tensor(g))
    else:
        value, (g,) = torch_lean._ce_compute(spec, x)((want,))
    batch = _batch(x, ax) if spec.reduction == "none" else ()
    value = _fit(value, x, batch, x.dtype)
    return value, (_none(x) if g is None else _fit(g, x, x.shape, _cd(x.dtype), ax))


def _ce_fake(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, axis, reduction, want = args[0], args[10], args[11], args[12]
    value = _empty(x, _batch(x, axis) if reduction == "none" else (), x.dtype)
    return value, (_empty(x, x.shape, _cd(x.dtype), axis) if want else _none(x))


def _ce_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1], *inputs[:5])
    ctx.args = inputs[5:]


def _ce_backward(ctx: Any, gv: torch.Tensor, _: Any) -> tuple[Any, ...]:
    g, *tensors = ctx.saved_tensors
    axis, reduction = ctx.args[5], ctx.args[6]
    gvb = _grad_scale(gv, axis if reduction == "none" else None)
    if torch.is_grad_enabled():  # create_graph=True: the definition's gradient, differentiable
        spec = _ce_spec((*tensors, *ctx.args))
        g = _differentiable(g_losses.softmax_ce(spec, True)[1], tensors[0])
    return ((_saved(g, tensors[0]) * gvb).to(tensors[0].dtype), *([None] * 12))


_softmax_ce_op = torch.library.custom_op(
    "infoloss::softmax_ce", _ce_impl, mutates_args=(), schema=_CE_SCHEMA
)
_softmax_ce_op.register_fake(_ce_fake)
_softmax_ce_op.register_autograd(_ce_backward, setup_context=_ce_setup)


def softmax_ce(spec: SoftmaxCE, want_grad: bool = False) -> tuple[Any, Any]:
    """Both softmax cross-entropies of torch tensors through ``torch.ops.infoloss.softmax_ce``."""
    o, x = spec.options, spec.logits
    z, zt = _z_args(o.z_loss)
    value, g = torch.ops.infoloss.softmax_ce(
        x,
        spec.labels,
        spec.class_weights,
        spec.sample_weights,
        zt,
        o.sparse,
        float(o.label_smoothing),
        z,
        o.ignore_index,
        o.softcap,
        spec.axis,
        spec.reduction,
        _want(x, want_grad),
    )
    return value, (_out(g.to(x.dtype)) if want_grad else None)


# --------------------------------------------------------------------------- sigmoid CE

_SIGMOID_SCHEMA = (
    "(Tensor logits, Tensor labels, Tensor? pos_weight, Tensor? sample_weights, "
    "float label_smoothing, float? softcap, str reduction, bool want_grad) -> (Tensor, Tensor)"
)


def _sigmoid_spec(args: tuple[Any, ...]) -> SigmoidCE:
    x, y, pw, sw, eps, cap, reduction, _ = args
    return SigmoidCE(
        xp=_XP,
        logits=x,
        labels=y,
        pos_weight=pw,
        sample_weights=sw,
        label_smoothing=eps,
        reduction=reduction,
        compute_dtype=_cd(x.dtype),
        softcap=cap,
    )


def _sigmoid_impl(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    spec = _sigmoid_spec(args)
    x, want = spec.logits, args[-1]
    if _fused(x, spec.labels):
        a = _fused_adapter()
        value, g = a.fast_losses.sigmoid_ce(a._numpy_spec(spec, logits=a._np(x)), want)
        value, g = a._tensor(value), (None if g is None else a._tensor(g))
    else:
        check_label_values(_XP, spec.labels, 1.0)
        value, g = g_losses.sigmoid_ce(spec, want)
    value = _fit(value, x, x.shape if spec.reduction == "none" else (), x.dtype)
    return value, (_none(x) if g is None else _fit(g, x, x.shape, _cd(x.dtype)))


def _sigmoid_fake(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, reduction, want = args[0], args[6], args[7]
    value = _empty(x, x.shape if reduction == "none" else (), x.dtype)
    return value, (_empty(x, x.shape, _cd(x.dtype)) if want else _none(x))


def _sigmoid_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1], *inputs[:4])
    ctx.args = inputs[4:]


def _sigmoid_backward(ctx: Any, gv: torch.Tensor, _: Any) -> tuple[Any, ...]:
    g, *tensors = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: the definition's gradient, differentiable
        spec = _sigmoid_spec((*tensors, *ctx.args))
        g = _differentiable(g_losses.sigmoid_ce(spec, True)[1], tensors[0])
    return ((_saved(g, tensors[0]) * gv).to(tensors[0].dtype), *([None] * 7))


_sigmoid_ce_op = torch.library.custom_op(
    "infoloss::sigmoid_ce", _sigmoid_impl, mutates_args=(), schema=_SIGMOID_SCHEMA
)
_sigmoid_ce_op.register_fake(_sigmoid_fake)
_sigmoid_ce_op.register_autograd(_sigmoid_backward, setup_context=_sigmoid_setup)


def sigmoid_ce(spec: SigmoidCE, want_grad: bool = False) -> tuple[Any, Any]:
    """Sigmoid cross-entropy of torch tensors through ``torch.ops.infoloss.sigmoid_ce``."""
    x = spec.logits
    value, g = torch.ops.infoloss.sigmoid_ce(
        x,
        spec.labels,
        spec.pos_weight,
        spec.sample_weights,
        float(spec.label_smoothing),
        spec.softcap,
        spec.reduction,
        _want(x, want_grad),
    )
    return value, (_out(g.to(x.dtype)) if want_grad else None)


# --------------------------------------------------------------------------- softmax measures

_MEASURE_SCHEMA = (
    "(Tensor a, Tensor? b, Tensor? sample_weights, Tensor? mask, str op, int axis, "
    "bool keepdims, float? log_base, float beta, float temperature, float scale, str reduction, "
    "ScalarType dtype, bool grad_a, bool grad_b) -> (Tensor, Tensor, Tensor)"
)


def _measure_spec(args: tuple[Any, ...]) -> SoftmaxMeasure:
    a, b, sw, mk, op, axis, kd, lb, beta, t, scale, reduction, dtype = args[:13]
    return SoftmaxMeasure(
        xp=_XP,
        a=a,
        b=b,
        axis=axis,
        keepdims=kd,
        log_base=lb,
        dtype=dtype,
        compute_dtype=_cd(dtype),
        op=op,
        beta=beta,
        temperature=t,
        scale=scale,
        sample_weights=sw,
        mask=mk,
        reduction=reduction,
    )


def _measure_shape(a: Any, b: Any, axis: int, kd: bool, reduction: str) -> tuple[int, ...]:
    if b is not None and reduction != "none":
        return ()
    shape = list(a.shape)
    if kd:
        shape[axis] = 1
        return tuple(shape)
    return _batch(a, axis)


def _measure_impl(*args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    spec = _measure_spec(args)
    a, b, axis, want = spec.a, spec.b, spec.axis, args[13:]
    value, g = g_measures.softmax_measure(spec, any(want))
    grads: Any = (g,) if b is None else (None, None) if g is None else g
    value = _fit(value, a, _measure_shape(a, b, axis, spec.keepdims, spec.reduction), spec.dtype)
    out = [_none(a), _none(a)]
    for i, (t, gi) in enumerate(zip((a, b), grads, strict=False)):
        if want[i] and gi is not None:
            out[i] = _fit(gi, t, t.shape, t.dtype)
    return value, out[0], out[1]


def _measure_fake(*args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a, b, axis, kd, reduction, dtype, ga, gb = (args[i] for i in (0, 1, 5, 6, 11, 12, 13, 14))
    value = _empty(a, _measure_shape(a, b, axis, kd, reduction), dtype)
    da = _empty(a, a.shape, a.dtype) if ga else _none(a)
    db = _empty(b, b.shape, b.dtype) if gb and b is not None else _none(a)
    return value, da, db


def _measure_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.save_for_backward(output[1], output[2], *inputs[:4])
    ctx.args = inputs[4:]


def _measure_backward(ctx: Any, gv: torch.Tensor, *_: Any) -> tuple[Any, ...]:
    da, db, *tensors = ctx.saved_tensors
    args = (*tensors, *ctx.args)
    axis, kd, reduction = args[5], args[6], args[11]
    gvb = _grad_scale(gv, None if kd or reduction != "none" else axis)
    grads: list[Any] = [da, db]
    if torch.is_grad_enabled():  # create_graph=True: the definition's gradient, differentiable
        g: Any = g_measures.softmax_measure(_measure_spec(args), True)[1]
        grads = [g, None] if tensors[1] is None else list(g)
    res = [
        None if not need or gi is None else (_saved(gi, t) * gvb).to(t.dtype)
        for gi, need, t in zip(grads, ctx.needs_input_grad[:2], tensors[:2], strict=True)
    ]
    return (*res, *([None] * 13))


_softmax_measure_op = torch.library.custom_op(
    "infoloss::softmax_measure", _measure_impl, mutates_args=(), schema=_MEASURE_SCHEMA
)
_softmax_measure_op.register_fake(_measure_fake)
_softmax_measure_op.register_autograd(_measure_backward, setup_context=_measure_setup)


def softmax_measure(spec: SoftmaxMeasure, want_grad: bool = False) -> tuple[Any, Any]:
    """softmax_entropy / softmax_kl_divergence / softmax_js_divergence of torch tensors through
    ``torch.ops.infoloss.softmax_measure``."""
    a, b = spec.a, spec.b
    value, da, db = torch.ops.infoloss.softmax_measure(
        a,
        b,
        spec.sample_weights,
        spec.mask,
        spec.op,
        spec.axis,
        spec.keepdims,
        spec.log_base,
        float(spec.beta),
        float(spec.temperature),
        float(spec.scale),
        spec.reduction,
        spec.dtype,
        _want(a, want_grad),
        _want(b, want_grad),
    )
    if not want_grad:
        return value, None
    return value, (da if b is None else (da, db))


# --------------------------------------------------------------------------- linear layer

_LINEAR_SCHEMA = (
    "(Tensor hidden, Tensor weight, Tensor? bias, Tensor labels, Tensor? class_weights, "
    "Tensor? sample_weights, Tensor? z_loss_t, float label_smoothing, float z_loss, "
    "int? ignore_index, float? softcap, str reduction, int chunk_rows, bool grad_hidden, "
    "bool grad_weight, bool grad_bias) -> (Tensor, Tensor, Tensor, Tensor)"
)


def _linear_spec(args: tuple[Any, ...]) -> LinearCE:
    h, w, b, y, cw, sw, zt, eps, z, ii, cap, reduction, chunk = args[:13]
    n = int(h.shape[0])
    return LinearCE(
        xp=_XP,
        hidden=h,
        weight=w,
        labels=y,
        bias=b,
        class_weights=cw,
        sample_weights=sw,
        options=CEOptions(True, eps, _z(z, zt), ii, cap),
        reduction=reduction,
        chunk_rows=chunk,
        want_lse=False,
        dtypes=(h.dtype, w.dtype, None if b is None else b.dtype),
        hidden_shape=tuple(h.shape),
        batch_shape=(n,),
        originals=(h, w, b),
    )


def _linear_impl(*args: Any) -> tuple[torch.Tensor, ...]:
    spec = _linear_spec(args)
    h, w, b, need = spec.hidden, spec.weight, spec.bias, args[13:]
    _check_range(spec.labels, int(w.shape[0]), spec.options.ignore_index)
    want = any(need)
    if _fused(h, w, b, spec.labels):
        a = _fused_adapter()
        np_spec = a._numpy_spec(spec, originals=(None, None, None))
        value, grads, _ = a.fast_linear.linear_ce(np_spec, want)
        value = a._tensor(value)
        grads = (
            (None,) * 3
            if grads is None
            else tuple(None if g is None else a._tensor(g) for g in grads)
        )
    else:
        value, grads = torch_lean._linear_sweep(spec, h, w, b, need)
    out = [
        _fit(g, t, t.shape, t.dtype) if n and g is not None else _none(h)
        for g, t, n in zip(grads, (h, w, b), need, strict=True)
    ]
    return (_fit(value, h, (), h.dtype), *out)


def _linear_fake(*args: Any) -> tuple[torch.Tensor, ...]:
    h, w, b = args[:3]
    need = args[13:]
    out = [
        _empty(t, t.shape, t.dtype) if n and t is not None else _none(h)
        for t, n in zip((h, w, b), need, strict=True)
    ]
    return (_empty(h, (), h.dtype), *out)


def _linear_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(*output[1:], *inputs[:7])
    ctx.args = inputs[7:]


def _linear_backward(ctx: Any, gv: torch.Tensor, *_: Any) -> tuple[Any, ...]:
    saved = ctx.saved_tensors
    grads, tensors = list(saved[:3]), saved[3:]
    if torch.is_grad_enabled():  # create_graph=True: the definition's gradient, differentiable
        _v, dg, _l = g_linear.linear_ce(_linear_spec((*tensors, *ctx.args)), True)
        assert dg is not None
        grads = list(dg)
    res = [
        None if not need or g is None else (_saved(g, t) * gv).to(t.dtype)
        for g, need, t in zip(grads, ctx.needs_input_grad[:3], tensors[:3], strict=True)
    ]
    return (*res, *([None] * 13))


_linear_ce_op = torch.library.custom_op(
    "infoloss::linear_ce", _linear_impl, mutates_args=(), schema=_LINEAR_SCHEMA
)
_linear_ce_op.register_fake(_linear_fake)
_linear_ce_op.register_autograd(_linear_backward, setup_context=_linear_setup)


def linear_ce(spec: LinearCE, want_grad: bool = False) -> tuple[Any, Any]:
    """``linear_cross_entropy`` ("sum"/"mean") of torch tensors through
    ``torch.ops.infoloss.linear_ce``; the op sees the spec's flattened compute-dtype tensors,
    so autograd carries the gradients back through the reshape and the casts."""
    o = spec.options
    h, w, b = spec.hidden, spec.weight, spec.bias
    z, zt = _z_args(o.z_loss)
    value, dh, dw, db = torch.ops.infoloss.linear_ce(
        h,
        w,
        b,
        spec.labels,
        spec.class_weights,
        spec.sample_weights,
        zt,
        float(o.label_smoothing),
        z,
        o.ignore_index,
        o.softcap,
        spec.reduction,
        int(spec.chunk_rows),
        _want(h, want_grad),
        _want(w, want_grad),
        _want(b, want_grad),
    )
    value = value.to(spec.dtypes[0])
    if not want_grad:
        return value, None
    h_dtype, w_dtype, b_dtype = spec.dtypes
    grads = (
        dh.reshape(spec.hidden_shape).to(h_dtype),
        dw.to(w_dtype),
        None if b is None else db.to(b_dtype),
    )
    return value, grads
