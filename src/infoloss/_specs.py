"""The validated form of one call: a small frozen object per operation.

A public function checks its arguments once (:mod:`infoloss._utils` holds the checks) and
builds one of these; the router (:mod:`infoloss._router`) and every implementation below it
read their inputs from it and never validate again. Arrays are the caller's (already converted
from lists and scalars, on one namespace ``xp``, weights in the compute dtype and broadcast);
``axis`` is normalised; ``compute_dtype`` is float32 for float16/bfloat16 inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

Array = Any

__all__ = [
    "CEOptions",
    "CrossEntropyAux",
    "LinearCE",
    "ProbMeasure",
    "RowOp",
    "SigmoidCE",
    "SigmoidFocal",
    "SoftmaxCE",
    "SoftmaxFocal",
    "SoftmaxMeasure",
]


class CrossEntropyAux(NamedTuple):
    """What a softmax cross-entropy returns with ``return_aux=True``.

    ``loss`` is the usual result (z-loss included); ``z_loss`` the z-loss part of it, weighted
    and reduced in the same way (so ``loss - z_loss`` is the cross-entropy alone); ``lse`` the
    log-sum-exp of each example's (soft-capped) logits, shape ``(...)``, 0 for ignored examples.
    """

    loss: Any
    z_loss: Any
    lse: Any


@dataclass(frozen=True)
class CEOptions:
    """The per-example options of a softmax cross-entropy (shared with the linear layer)."""

    sparse: bool
    label_smoothing: float = 0.0
    #: a float, or a 0-d array when the mean's rescaling of class weights was traced
    z_loss: Any = 0.0
    ignore_index: int | None = None
    #: c of the logit soft-capping x → c·tanh(x/c) (Gemma 2), or None
    softcap: float | None = None


@dataclass(frozen=True)
class SoftmaxCE:
    """``softmax_cross_entropy`` (dense labels) or ``sparse_softmax_cross_entropy``."""

    xp: Any
    logits: Array
    labels: Array  # integer indices (sparse) or target masses in the compute dtype (dense)
    class_weights: Array | None
    sample_weights: Array | None  # broadcast to the batch shape
    axis: int
    options: CEOptions
    reduction: str
    compute_dtype: Any


@dataclass(frozen=True)
class SigmoidCE:
    """``sigmoid_cross_entropy``."""

    xp: Any
    logits: Array
    labels: Array  # in the compute dtype
    pos_weight: Array | None
    sample_weights: Array | None  # broadcast to the logits' shape
    label_smoothing: float
    reduction: str
    compute_dtype: Any
    #: c of the logit soft-capping x → c·tanh(x/c), or None
    softcap: float | None = None

    @property
    def per_class_pos_weight(self) -> bool:
        """True when ``pos_weight`` is absent or one weight per class of the last axis (the
        layout the fused kernel takes)."""
        pw, x = self.pos_weight, self.logits
        return pw is None or (x.ndim >= 1 and tuple(pw.shape) == (x.shape[-1],))


@dataclass(frozen=True)
class LinearCE:
    """``linear_cross_entropy``: inputs flattened to ``hidden (N, H)`` and ``labels (N,)``."""

    xp: Any
    hidden: Array  # (N, H) in the compute dtype
    weight: Array  # (V, H) in the compute dtype
    labels: Array  # (N,)
    bias: Array | None
    class_weights: Array | None
    sample_weights: Array | None  # (N,) in the compute dtype
    options: CEOptions
    reduction: str
    chunk_rows: int
    #: also return the per-token log-sum-exp (for ``return_aux``)
    want_lse: bool
    #: the caller's dtypes of hidden, weight and bias, and the shapes to return
    dtypes: tuple[Any, Any, Any]
    hidden_shape: tuple[int, ...]
    batch_shape: tuple[int, ...]
    #: the caller's arrays (for the torch adapter, whose autograd needs the originals)
    originals: tuple[Array, Array, Array | None]


@dataclass(frozen=True)
class RowOp:
    """``logsumexp``, ``softmax`` or ``log_softmax`` along ``axis``."""

    xp: Any
    x: Array
    op: str  # "logsumexp" | "softmax" | "log_softmax"
    axis: int
    keepdims: bool
    compute_dtype: Any


@dataclass(frozen=True)
class ProbMeasure:
    """``information``, ``entropy`` (``q`` None), ``cross_entropy``, ``kl_divergence`` or
    ``js_divergence`` of probability arrays (broadcast, in the compute dtype)."""

    xp: Any
    op: str
    p: Array
    q: Array | None
    axis: int | None  # None for the elementwise information
    keepdims: bool
    log_base: float | None  # log(base) to divide by, None for nats
    dtype: Any  # the result dtype
    checked: bool  # False when the values could not be checked (tracing): invalid slices give nan


@dataclass(frozen=True)
class SoftmaxMeasure:
    """``softmax_entropy`` (``b`` is None) or ``softmax_kl_divergence`` of logits ``a``, ``b``."""

    xp: Any
    a: Array
    b: Array | None
    axis: int
    keepdims: bool
    #: log(base) to divide by, or None for nats
    log_base: float | None
    dtype: Any  # the result dtype
    compute_dtype: Any


@dataclass(frozen=True)
class SoftmaxFocal:
    """``softmax_focal_loss`` / ``sparse_softmax_focal_loss`` (``kind`` "focal", ``param`` γ) or
    ``poly_cross_entropy`` / ``sparse_poly_cross_entropy`` (``kind`` "poly", ``param`` ε).

    ``ce`` holds everything else, validated as for the plain cross-entropy (no smoothing, no
    z-loss): with ``param`` 0 the loss *is* that cross-entropy.
    """

    ce: SoftmaxCE
    kind: str  # "focal" | "poly"
    param: float


@dataclass(frozen=True)
class SigmoidFocal:
    """``sigmoid_focal_loss``: ``ce`` is the plain sigmoid cross-entropy's spec (no
    ``pos_weight``, no smoothing); ``alpha`` None means no balancing."""

    ce: SigmoidCE
    alpha: float | None
    gamma: float
