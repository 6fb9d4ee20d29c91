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
    "JointMeasure",
    "LMMeasure",
    "LinearCE",
    "ProbMeasure",
    "RowOp",
    "SigmoidCE",
    "SigmoidFocal",
    "SoftmaxCE",
    "SoftmaxFocal",
    "SoftmaxMeasure",
    "VocabParallelCE",
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
    beta: float = 0.5  # js_divergence: the weight of P
    #: the shapes of ``p`` and ``q`` before broadcasting (their gradients are summed back to them)
    shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None


@dataclass(frozen=True)
class SoftmaxMeasure:
    """``softmax_entropy`` (``b`` is None), ``softmax_kl_divergence`` (``op`` "kl") or
    ``softmax_js_divergence`` (``op`` "js") of logits ``a``, ``b``.

    The divergences' options: both logits are divided by ``temperature`` (inside the
    definition, so that autodiff sees it); each row's divergence is multiplied by ``scale``
    (``temperature**2`` or 1) and by its sample weight; rows where ``mask`` is False give exactly
    0 (value, weight and gradient), then ``reduction`` applies (:func:`infoloss._reduce.weigh_rows`).
    """

    xp: Any
    a: Array
    b: Array | None
    axis: int
    keepdims: bool
    #: log(base) to divide by, or None for nats
    log_base: float | None
    dtype: Any  # the result dtype
    compute_dtype: Any
    op: str = "kl"  # "kl" | "js" (ignored for the entropy)
    beta: float = 0.5  # the JS divergence's weight of P
    temperature: float = 1.0
    scale: float = 1.0
    sample_weights: Array | None = None  # the batch shape, in the compute dtype
    mask: Array | None = None  # bool, the batch shape
    reduction: str = "none"

    @property
    def plain(self) -> bool:
        """True when the divergence has none of the row options (the original call)."""
        return (
            self.temperature == 1.0
            and self.scale == 1.0
            and self.sample_weights is None
            and self.mask is None
            and self.reduction == "none"
        )


@dataclass(frozen=True)
class LMMeasure:
    """``perplexity`` or ``bits_per_byte``: a sparse cross-entropy spec (reduction "sum") with
    the token weights (sample weights, 0 for ignored tokens) and the bytes per token."""

    op: str  # "perplexity" | "bits_per_byte"
    ce: SoftmaxCE
    num_bytes: Array | None  # the labels' shape, compute dtype (bits_per_byte only)


@dataclass(frozen=True)
class JointMeasure:
    """``mutual_information`` or ``conditional_entropy`` of joint tables ``(..., X, Y)`` (the
    table's axes moved last), in the compute dtype."""

    xp: Any
    op: str  # "mutual_information" | "conditional_entropy"
    joint: Array
    given: int  # conditional_entropy: 0 for H(Y|X), 1 for H(X|Y)
    keepdims: bool
    log_base: float | None
    dtype: Any
    checked: bool


@dataclass(frozen=True)
class VocabParallelCE:
    """``vocab_parallel_cross_entropy`` (``logits`` given) or ``vocab_parallel_linear_cross_entropy``
    (``hidden`` and ``weight`` given) on one rank of a process group; rows flattened to ``(N, ·)``.

    ``vocab_start``, ``num_classes`` and ``sharded_weights`` are known once the group's shard
    widths have been gathered (:mod:`infoloss._validate_sharded`).
    """

    xp: Any
    labels: Array  # (N,) global class indices
    class_weights: Array | None  # (V_local,) or (V,), compute dtype
    sample_weights: Array | None  # (N,), compute dtype
    options: CEOptions
    reduction: str
    compute_dtype: Any
    width: int  # V_local
    batch_shape: tuple[int, ...]
    group: Any  # the transport (``infoloss._frameworks.torch_distributed.Group``)
    logits: Array | None = None  # (N, V_local), the caller's tensor
    hidden: Array | None = None  # (N, H), the caller's tensor
    weight: Array | None = None  # (V_local, H)
    bias: Array | None = None  # (V_local,)
    hidden_shape: tuple[int, ...] = ()
    chunk_rows: int = 0
    reduce_hidden_grad: bool = True
    vocab_start: int | None = None
    num_classes: int = 0
    sharded_weights: bool = False


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
