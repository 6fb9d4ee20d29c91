"""The router: the one place that chooses how a validated call is computed.

Every public function validates its arguments into a spec (:mod:`infoloss._specs`) and hands it
to one function here, which picks, in one visible ``if``/``elif``, between

1. a framework adapter — :mod:`infoloss._frameworks.torch`: CPU torch tensors run the fused
   kernels inside a ``torch.autograd.Function`` (zero-copy NumPy views);
   :mod:`infoloss._frameworks.tensorflow`: TensorFlow tensors run the generic definitions
   under a ``tf.custom_gradient`` (eagerly, in ``tf.function`` and under XLA alike);
2. the fused NumPy kernels — :mod:`infoloss._fast` (NumPy float16/bfloat16/float32/float64);
3. the lean framework adapters (issue 13) — :mod:`infoloss._frameworks.torch_lean` (torch
   tensors on any device, and CPU with the fast path off: analytic gradients in torch ops inside
   an autograd Function) and :mod:`infoloss._frameworks.jax` (JAX arrays: ``jax.custom_vjp``
   around the definition); for the focal and poly losses and the two logit divergences with
   either argument requiring grad, :mod:`infoloss._frameworks.torch_lean_family` and
   :mod:`infoloss._frameworks.jax_family` (the same machinery);
4. the generic definition — :mod:`infoloss._generic` (any Array API library, any device;
   ``torch.func`` transforms, labels or weights requiring grad).

While ``torch.compile`` traces, the torch calls that a custom op covers go first to
:mod:`infoloss._frameworks.torch_ops` (:func:`compiled_torch`): one ``torch.library`` op per call,
no graph break, the fused kernels or the lean code running inside it.

Routes 1 and 2 need numba and are skipped under :func:`infoloss._config.generic_only` or with
``INFOLOSS_DISABLE_FAST=1``; route 2 also for NumPy problems below
:data:`infoloss._config.FAST_MIN_ELEMENTS` elements (unless :func:`infoloss._config.always_fast`). Nothing below this module decides the route again. The router
also finishes every call the same way: results are cast back to the caller's dtype and a
gradient is copied into the caller's ``out`` buffer unless the kernel already wrote it there.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from . import _config
from ._generic import activations as g_act
from ._generic import focal as g_focal
from ._generic import linear as g_linear
from ._generic import losses as g_losses
from ._generic import measures as g_measures
from ._specs import (
    CrossEntropyAux,
    JointMeasure,
    LinearCE,
    LMMeasure,
    ProbMeasure,
    RowOp,
    SigmoidCE,
    SigmoidFocal,
    SoftmaxCE,
    SoftmaxFocal,
    SoftmaxMeasure,
)
from ._utils import Array, check_label_values, upcast

__all__ = [
    "fast_numpy",
    "fast_torch",
    "joint_measure",
    "linear_ce",
    "lm_measure",
    "probability_measure",
    "row_op",
    "sigmoid_ce",
    "sigmoid_focal",
    "softmax_ce",
    "softmax_ce_aux",
    "softmax_focal",
    "softmax_measure",
    "tensorflow",
    "vocab_parallel_ce",
]

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------- route predicates


def _kernels_available() -> bool:
    from ._fast import get_kernels

    return get_kernels() is not None


def fast_numpy(*arrays: Any, compute_dtype: Any = None) -> bool:
    """True when the fused kernels take these NumPy arrays (``None`` entries ignored): plain
    ``np.ndarray`` s, the first one floating, computed in float32 or float64, and large enough
    (:func:`infoloss._config.fast_size` of the first one's size: tiny problems take the generic
    code, so that they never wait for a kernel to compile, and numba is not even imported)."""
    first = arrays[0]
    if any(a is not None and type(a) is not np.ndarray for a in arrays):
        return False
    if not _config.fast_allowed():
        return False
    cd = np.dtype(compute_dtype) if compute_dtype is not None else first.dtype
    if cd not in _FAST_DTYPES:
        return False
    if not _config.fast_size(first.size):
        return False
    return _kernels_available()


def fast_torch(logits: Any, *others: Any) -> bool:
    """True when ``logits`` can take the fused kernels through the torch adapter.

    ``logits`` must be a plain (not subclassed, not functorch-wrapped) strided CPU torch tensor
    of a floating dtype (float16/bfloat16 are computed in float32); every other argument must be
    ``None``, a non-array value or such a CPU tensor that does not require grad (so autograd
    needs no gradient with respect to it). While ``torch.compile`` traces (the calls that no
    custom op covers, :func:`compiled_torch`), only the static properties (type, device, dtype,
    requires_grad) are checked: the call then becomes a graph break that runs the fused path
    eagerly (the adapter is ``torch.compiler.disable`` d).
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(logits, torch.Tensor):
        return False
    if logits.device.type != "cpu" or logits.dtype not in (
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
    ):
        return False
    for t in others:
        if t is None:
            continue
        if isinstance(t, torch.Tensor):
            if t.device.type != "cpu" or t.requires_grad:
                return False
        elif hasattr(t, "__array_namespace__") or isinstance(t, np.ndarray):
            return False  # another array library: validation reports the mix
    if not _config.fast_allowed():  # (after the static checks: dynamo cannot read it)
        return False
    if not torch.compiler.is_compiling():
        for t in (logits, *others):
            if isinstance(t, torch.Tensor) and not _plain_cpu_tensor(torch, t):
                return False
    return _kernels_available()


def _plain_cpu_tensor(torch: Any, t: Any) -> bool:
    if type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
        return False
    if t.layout is not torch.strided:
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(t)


def tensorflow(xp: Any) -> bool:
    """True when the spec's namespace is TensorFlow's (:mod:`infoloss._tf_namespace`, which
    :func:`infoloss._utils.namespace` imports only for TensorFlow arguments)."""
    mod = sys.modules.get("infoloss._tf_namespace")
    return mod is not None and xp is mod.xp


def _tf_adapter() -> Any:
    from ._frameworks import tensorflow as adapter

    return adapter


def _torch_adapter() -> Any:
    from ._frameworks import torch as adapter

    return adapter


# --- issue 13: lean torch autograd on any device (analytic gradients in torch ops) ---------


def lean_torch(logits: Any, *others: Any) -> bool:
    """True when a call runs :mod:`infoloss._frameworks.torch_lean` (analytic gradients under
    autograd, in torch ops, on any device): ``logits`` a plain (not subclassed, not
    functorch-wrapped) strided floating torch tensor, every other argument ``None``, a non-array
    value or a tensor that does not require grad, and no ``torch.compile`` tracing (which traces
    the generic definition). Otherwise the generic definition runs and autograd differentiates it.
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(logits, torch.Tensor):
        return False
    if not logits.dtype.is_floating_point or torch.compiler.is_compiling():
        return False
    for t in (logits, *others):
        if isinstance(t, torch.Tensor):
            if t is not logits and t.requires_grad:
                return False
            if type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
                return False
            if t.layout is not torch.strided or torch._C._functorch.is_functorch_wrapped_tensor(t):
                return False
        elif t is not None and (hasattr(t, "__array_namespace__") or isinstance(t, np.ndarray)):
            return False
    return True


def _lean_torch() -> Any:
    from ._frameworks import torch_lean as adapter

    return adapter


def compiled_torch(logits: Any, *others: Any) -> bool:
    """True while ``torch.compile`` traces a call on floating torch ``logits`` whose other
    arguments do not require grad: the call becomes one ``torch.library`` custom op
    (:mod:`infoloss._frameworks.torch_ops`; no graph break; the op picks the fused kernels or
    the lean code when it runs). Checked first, since the switches cannot be read while tracing."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(logits, torch.Tensor) or not torch.compiler.is_compiling():
        return False
    if not logits.dtype.is_floating_point:
        return False
    for t in others:
        if isinstance(t, torch.Tensor):
            if t.requires_grad:
                return False
        elif t is not None and (hasattr(t, "__array_namespace__") or isinstance(t, np.ndarray)):
            return False
    return True


def _torch_ops() -> Any:
    from ._frameworks import torch_ops as adapter

    return adapter


# --- issue 13: JAX custom VJPs ----------------------------------------------------------------


def jax_vjp(logits: Any, want_grad: bool) -> bool:
    """True when a call runs :mod:`infoloss._frameworks.jax` (a ``jax.custom_vjp`` around the
    definition): JAX arrays (validation has put every argument on one namespace), value only
    (``value_and_grad`` computes both with the definition directly)."""
    jax = sys.modules.get("jax")
    return not want_grad and jax is not None and isinstance(logits, jax.Array)


def _jax_adapter() -> Any:
    from ._frameworks import jax as adapter

    return adapter


def _jax_or_definition(run: Any, definition: Any) -> Any:
    """``run()`` (the custom-VJP adapter), or ``definition()`` where JAX cannot run a custom VJP
    with symbolic zeros: an eager ``shard_map`` body raises ``NotImplementedError`` at the call
    (under ``jit`` and ``grad`` the adapter works inside ``shard_map``)."""
    try:
        return run()
    except NotImplementedError as e:
        if "shard_map" not in str(e):
            raise
        return definition()


def _lean_family() -> Any:
    from ._frameworks import torch_lean_family as adapter

    return adapter


def _jax_family() -> Any:
    from ._frameworks import jax_family as adapter

    return adapter


# --------------------------------------------------------------------------- finishing


def _finish(xp: Any, value: Array, grad: Any, dtype: Any, out: Any) -> tuple[Array, Any]:
    """Cast back to the caller's ``dtype``; put the gradient into ``out`` when one was given."""
    value = upcast(xp, value, dtype)
    if grad is None:
        return value, None
    if out is not None:
        if not (
            grad.__array_interface__["data"][0] == out.__array_interface__["data"][0]
            and grad.strides == out.strides
        ):
            np.copyto(out, grad)
        return value, out
    return value, upcast(xp, grad, dtype)


# --------------------------------------------------------------------------- routes


def softmax_ce(spec: SoftmaxCE, want_grad: bool = False, out: Any = None) -> tuple[Array, Any]:
    """Both softmax cross-entropies: (value, gradient with respect to the logits or None)."""
    x = spec.logits
    if compiled_torch(x, spec.labels, spec.class_weights, spec.sample_weights):
        return _torch_ops().softmax_ce(spec, want_grad)
    elif fast_torch(x, spec.labels, spec.class_weights, spec.sample_weights):
        return _torch_adapter().softmax_ce(spec, want_grad)
    elif tensorflow(spec.xp):
        if not spec.options.sparse:
            check_label_values(spec.xp, spec.labels, None)
        value, grad = _tf_adapter().softmax_ce(spec, want_grad)
    elif fast_numpy(
        x, spec.labels, spec.class_weights, spec.sample_weights, compute_dtype=spec.compute_dtype
    ):
        from ._fast import losses as fast

        value, grad = fast.softmax_ce(spec, want_grad, out)
    elif lean_torch(x, spec.labels, spec.class_weights, spec.sample_weights):
        if not spec.options.sparse:
            check_label_values(spec.xp, spec.labels, None)
        return _lean_torch().softmax_ce(spec, want_grad)
    elif spec.options.softcap is None and jax_vjp(x, want_grad):
        if not spec.options.sparse:
            check_label_values(spec.xp, spec.labels, None)
        return _jax_or_definition(
            lambda: (_jax_adapter().softmax_ce(spec), None),
            lambda: _finish(spec.xp, *g_losses.softmax_ce(spec, False), x.dtype, None),
        )
    else:
        if not spec.options.sparse:  # the fused kernels check the label values in their sweep
            check_label_values(spec.xp, spec.labels, None)
        value, grad = g_losses.softmax_ce(spec, want_grad)
    return _finish(spec.xp, value, grad, x.dtype, out)


def softmax_ce_aux(spec: SoftmaxCE) -> tuple[Array, Array]:
    """``return_aux``'s (z-loss term, per-example log-sum-exp) in the logits' dtype: the
    log-sum-exp from the row kernel on the NumPy fast path, else from the generic code."""
    x = spec.logits
    if fast_numpy(x, compute_dtype=spec.compute_dtype):
        from ._fast import losses as fast

        lse_rows = fast.ce_lse(spec)
    else:
        lse_rows = g_losses.ce_lse(spec)
    z, lse_rows = g_losses.ce_aux(spec, lse_rows)
    return upcast(spec.xp, z, x.dtype), upcast(spec.xp, lse_rows, x.dtype)


def sigmoid_ce(spec: SigmoidCE, want_grad: bool = False, out: Any = None) -> tuple[Array, Any]:
    """Sigmoid cross-entropy: (value, gradient with respect to the logits or None)."""
    x = spec.logits
    if compiled_torch(x, spec.labels, spec.pos_weight, spec.sample_weights):
        return _torch_ops().sigmoid_ce(spec, want_grad)
    elif fast_torch(x, spec.labels, spec.pos_weight, spec.sample_weights):
        return _torch_adapter().sigmoid_ce(spec, want_grad)
    elif tensorflow(spec.xp):
        check_label_values(spec.xp, spec.labels, 1.0)
        value, grad = _tf_adapter().sigmoid_ce(spec, want_grad)
    elif spec.per_class_pos_weight and fast_numpy(
        x, spec.labels, spec.pos_weight, spec.sample_weights, compute_dtype=spec.compute_dtype
    ):
        from ._fast import losses as fast

        value, grad = fast.sigmoid_ce(spec, want_grad, out)
    elif lean_torch(x, spec.labels, spec.pos_weight, spec.sample_weights):
        check_label_values(spec.xp, spec.labels, 1.0)
        return _lean_torch().sigmoid_ce(spec, want_grad)
    elif jax_vjp(x, want_grad):
        check_label_values(spec.xp, spec.labels, 1.0)
        return _jax_or_definition(
            lambda: (_jax_adapter().sigmoid_ce(spec), None),
            lambda: _finish(spec.xp, *g_losses.sigmoid_ce(spec, False), x.dtype, None),
        )
    else:
        check_label_values(spec.xp, spec.labels, 1.0)
        value, grad = g_losses.sigmoid_ce(spec, want_grad)
    return _finish(spec.xp, value, grad, x.dtype, out)


def softmax_focal(
    spec: SoftmaxFocal, want_grad: bool = False, out: Any = None
) -> tuple[Array, Any]:
    """Softmax focal and poly losses: (value, gradient with respect to the logits or None).

    With γ = 0 (focal) or ε = 0 (poly) the loss is the plain cross-entropy and takes its route,
    so that the two agree exactly on every path. NumPy arrays take the fused kernels (sparse
    and dense labels, :mod:`infoloss._fast.focal`); torch tensors and JAX arrays the lean
    adapters (:mod:`infoloss._frameworks.torch_lean_family`, ``jax_family``); everything else
    (and torch.func / torch.compile tracing, labels or weights requiring grad) the definition.
    """
    ce = spec.ce
    if spec.param == 0:
        return softmax_ce(ce, want_grad, out)
    if fast_numpy(
        ce.logits, ce.labels, ce.class_weights, ce.sample_weights, compute_dtype=ce.compute_dtype
    ):
        from ._fast import focal as fast

        run = fast.sparse_focal if ce.options.sparse else fast.dense_focal
        value, grad = run(spec, want_grad, out)
    elif lean_torch(ce.logits, ce.labels, ce.class_weights, ce.sample_weights):
        if not ce.options.sparse:
            check_label_values(ce.xp, ce.labels, None)
        return _lean_family().softmax_focal(spec, want_grad)
    elif jax_vjp(ce.logits, want_grad):
        if not ce.options.sparse:
            check_label_values(ce.xp, ce.labels, None)
        return _jax_or_definition(
            lambda: (_jax_family().softmax_focal(spec), None),
            lambda: _finish(ce.xp, *g_focal.softmax_focal(spec, False), ce.logits.dtype, None),
        )
    else:
        if not ce.options.sparse:
            check_label_values(ce.xp, ce.labels, None)
        value, grad = g_focal.softmax_focal(spec, want_grad)
    return _finish(ce.xp, value, grad, ce.logits.dtype, out)


def sigmoid_focal(
    spec: SigmoidFocal, want_grad: bool = False, out: Any = None
) -> tuple[Array, Any]:
    """Sigmoid focal loss: (value, gradient with respect to the logits or None); γ = 0 without
    ``alpha`` is the sigmoid cross-entropy and takes its route."""
    ce = spec.ce
    if spec.gamma == 0 and spec.alpha is None:
        return sigmoid_ce(ce, want_grad, out)
    check_label_values(ce.xp, ce.labels, 1.0)
    if fast_numpy(ce.logits, ce.labels, ce.sample_weights, compute_dtype=ce.compute_dtype):
        from ._fast import focal as fast

        value, grad = fast.sigmoid_focal(spec, want_grad, out)
    elif lean_torch(ce.logits, ce.labels, ce.sample_weights):
        return _lean_family().sigmoid_focal(spec, want_grad)
    elif jax_vjp(ce.logits, want_grad):
        return _jax_or_definition(
            lambda: (_jax_family().sigmoid_focal(spec), None),
            lambda: _finish(ce.xp, *g_focal.sigmoid_focal(spec, False), ce.logits.dtype, None),
        )
    else:
        value, grad = g_focal.sigmoid_focal(spec, want_grad)
    return _finish(ce.xp, value, grad, ce.logits.dtype, out)


def row_op(spec: RowOp) -> Array:
    """logsumexp, softmax or log_softmax along an axis."""
    if fast_numpy(spec.x):
        from ._fast import activations as fast

        return fast.row_op(spec)
    return g_act.row_op(spec)


def softmax_measure(spec: SoftmaxMeasure, want_grad: bool = False) -> tuple[Array, Any]:
    """softmax_entropy (``spec.b`` None), softmax_kl_divergence or softmax_js_divergence:
    (value, gradient(s) or None)."""
    same_dtype = spec.b is None or spec.a.dtype == spec.b.dtype
    if compiled_torch(spec.a, spec.sample_weights, spec.mask) and (
        spec.b is None or compiled_torch(spec.b)
    ):
        return _torch_ops().softmax_measure(spec, want_grad)
    elif tensorflow(spec.xp):
        return _tf_adapter().softmax_measure(spec, want_grad)
    elif same_dtype and fast_numpy(spec.a, spec.b, spec.sample_weights, spec.mask):
        from ._fast import measures as fast

        return fast.softmax_measure(spec, want_grad)
    elif spec.b is None and lean_torch(spec.a):
        return _lean_torch().softmax_measure(spec, want_grad)
    elif (
        spec.b is not None
        and lean_torch(spec.a, spec.sample_weights, spec.mask)
        and lean_torch(spec.b, spec.sample_weights, spec.mask)
    ):  # either or both logits may require grad
        return _lean_family().softmax_measure(spec, want_grad)
    elif jax_vjp(spec.a, want_grad):
        # (sample weights and a mask are arguments of the family's custom VJP)
        plain = spec.sample_weights is None and spec.mask is None
        adapter = _jax_adapter() if plain else _jax_family()
        return _jax_or_definition(
            lambda: (adapter.softmax_measure(spec), None),
            lambda: g_measures.softmax_measure(spec, False),
        )
    return g_measures.softmax_measure(spec, want_grad)


def probability_measure(spec: ProbMeasure, want_grad: bool = False) -> Any:
    """A measure of probability arrays (no faster route: the generic definition); with
    ``want_grad`` (js_divergence), ``(value, (d/dp, d/dq))``."""
    value = g_measures.probability_measure(spec)
    if not want_grad:
        return value
    return value, g_measures.js_gradients(spec)


def joint_measure(spec: JointMeasure) -> Array:
    """mutual_information or conditional_entropy of a joint table (the generic definition)."""
    return g_measures.joint_measure(spec)


def lm_measure(spec: LMMeasure, want_grad: bool = False) -> tuple[Array, Any]:
    """perplexity or bits_per_byte: the sparse cross-entropy by its own route, then the
    measure's definition on its sum or mean (value, gradient with respect to the logits)."""
    value, grad = softmax_ce(spec.ce, want_grad)
    return g_losses.lm_measure(spec, value, grad)


def _lean_linear_options(spec: LinearCE) -> bool:
    """The JAX linear layer covers the options of issue 13; per-token weights, soft-capping and
    ``return_aux`` take the generic definition (autodiff) instead (the lean torch layer covers
    all but ``return_aux``)."""
    return spec.sample_weights is None and spec.options.softcap is None and not spec.want_lse


def linear_ce(spec: LinearCE, want_grad: bool = False) -> tuple[Array, Any]:
    """Linear layer + sparse softmax cross-entropy: (value, (d_hidden, d_weight, d_bias) or None)."""
    h, w, b = spec.originals
    if (
        spec.reduction in ("sum", "mean")
        and not spec.want_lse
        and compiled_torch(h, spec.labels, spec.class_weights, spec.sample_weights)
        and compiled_torch(w)
        and (b is None or compiled_torch(b))
    ):
        return _torch_ops().linear_ce(spec, want_grad)
    elif (
        spec.reduction in ("sum", "mean")
        and fast_torch(h, spec.labels, spec.class_weights, spec.sample_weights)
        and fast_torch(w)
        and (b is None or fast_torch(b))
    ):
        value, grads, lse_rows = _torch_adapter().linear_ce(spec, want_grad)
        return _linear_aux(spec, value, lse_rows), grads
    elif tensorflow(spec.xp):
        value, grads, lse_rows = _tf_adapter().linear_ce(spec, want_grad)
    elif (
        spec.reduction in ("sum", "mean")
        and not spec.want_lse
        and lean_torch(h, spec.labels, spec.class_weights, spec.sample_weights)
        and lean_torch(w)
        and (b is None or lean_torch(b))
    ):
        return _lean_torch().linear_ce(spec, want_grad)
    elif (
        spec.reduction in ("sum", "mean")
        and _lean_linear_options(spec)
        and jax_vjp(spec.hidden, want_grad)
    ):
        return _jax_or_definition(
            lambda: finish_linear(spec, _jax_adapter().linear_ce(spec), None),
            lambda: finish_linear(spec, *g_linear.linear_ce(spec, False)[:2]),
        )
    elif fast_numpy(spec.hidden, spec.weight, spec.bias, spec.sample_weights):
        from ._fast import linear as fast

        value, grads, lse_rows = fast.linear_ce(spec, want_grad)
    else:
        value, grads, lse_rows = g_linear.linear_ce(spec, want_grad)
    value, grads = finish_linear(spec, value, grads)
    return _linear_aux(spec, value, lse_rows), grads


def _linear_aux(spec: LinearCE, value: Array, lse_rows: Any) -> Any:
    """``value``, or with ``return_aux`` the :class:`CrossEntropyAux` of the linear layer."""
    if not spec.want_lse:
        return value
    xp, h_dtype = spec.xp, spec.dtypes[0]
    z, lse_rows = g_linear.linear_aux(spec, lse_rows)
    if spec.reduction == "none":
        z = xp.reshape(z, spec.batch_shape)
    lse_rows = upcast(xp, xp.reshape(lse_rows, spec.batch_shape), h_dtype)
    return CrossEntropyAux(value, upcast(xp, z, h_dtype), lse_rows)


def finish_linear(spec: LinearCE, value: Array, grads: Any) -> tuple[Array, Any]:
    """The linear layer's results in the caller's shapes and dtypes."""
    xp = spec.xp
    h_dtype, w_dtype, b_dtype = spec.dtypes
    if spec.reduction == "none":
        value = xp.reshape(value, spec.batch_shape)
    value = upcast(xp, value, h_dtype)
    if grads is None:
        return value, None
    dh, dw, db = grads
    dh = upcast(xp, xp.reshape(dh, spec.hidden_shape), h_dtype)
    dw = upcast(xp, dw, w_dtype)
    db = None if db is None else upcast(xp, db, b_dtype)
    return value, (dh, dw, db)


# --------------------------------------------------------------------------- distributed


def process_group(group: Any) -> Any:
    """The transport of :mod:`infoloss.distributed`: a ``torch.distributed`` group (the only one)."""
    from ._frameworks import torch_distributed

    return torch_distributed.Group(group)


def vocab_parallel_ce(spec: Any) -> Any:
    """Vocabulary-parallel cross-entropy of a logits shard, or of a linear layer's weight shard."""
    from ._frameworks import torch_distributed

    if spec.logits is not None:
        return torch_distributed.vocab_parallel_ce(spec)
    return torch_distributed.vocab_parallel_linear_ce(spec)
