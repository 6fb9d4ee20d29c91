"""Linear layer + softmax cross-entropy without materialising the logits.

In language models the last layer maps hidden states ``(N, H)`` to vocabulary logits ``(N, V)``
with ``V`` of 32k–256k; the logits and their gradient are the largest memory cost of training.
:func:`linear_cross_entropy` computes ``sparse_softmax_cross_entropy(hidden @ weight.T + bias,
labels)`` and, through :func:`infoloss.value_and_grad`, its gradients with respect to ``hidden``,
``weight`` and ``bias``, one chunk of rows at a time, so that at most one ``chunk × V`` block of
logits exists at any moment.
"""

from __future__ import annotations

from typing import Any

from . import _router
from ._utils import Array, quiet_overflow
from ._validate import linear_ce_spec

__all__ = ["CHUNK_BUDGET_BYTES", "linear_cross_entropy"]

#: Memory budget of one chunk of logits (bytes) when ``chunk_size=None``: the chunk has
#: ``min(max(256, CHUNK_BUDGET_BYTES // (V * itemsize)), max(64, N // 6))`` rows (at most N).
#: Assign a new value to change it.
CHUNK_BUDGET_BYTES = 64 * 2**20


@quiet_overflow
def _linear_ce(
    hidden: Any, weight: Any, labels: Any, *, want_grad: bool = False, **options: Any
) -> tuple[Array, Any]:
    """Value and, with ``want_grad``, (d_hidden, d_weight, d_bias)."""
    spec = linear_ce_spec(hidden, weight, labels, chunk_budget=CHUNK_BUDGET_BYTES, **options)
    return _router.linear_ce(spec, want_grad)


def linear_cross_entropy(
    hidden: Any,
    weight: Any,
    labels: Any,
    *,
    bias: Any = None,
    class_weights: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
    sample_weights: Any = None,
    softcap: float | None = None,
    return_aux: bool = False,
) -> Any:
    r"""Sparse softmax cross-entropy of a linear layer's output, without holding its logits.

    .. math::

        \ell_i = \operatorname{CE}\big(h_i W^\top + b,\; y_i\big)

    exactly as :func:`infoloss.sparse_softmax_cross_entropy` of ``hidden @ weight.T + bias``
    (same smoothing, class weights, ``ignore_index``, z-loss and reductions), computed chunk by
    chunk of rows so that only one ``chunk × V`` block of logits exists at a time.

    Parameters
    ----------
    hidden : array, shape (..., H)
        Hidden states (the last layer's input).
    weight : array, shape (V, H)
        The output layer's weight, laid out as ``torch.nn.Linear.weight``.
    labels : integer array, shape (...)
        Target indices in ``[0, V)`` or ``ignore_index``.
    bias : array, shape (V,), optional
        The output layer's bias.
    class_weights, ignore_index, label_smoothing, z_loss
        As in :func:`infoloss.sparse_softmax_cross_entropy`. Ignored rows are dropped before the
        matrix product.
    reduction : {"none", "sum", "mean"}, default "mean"
        ``"none"`` returns the per-example losses, shape ``(...)``, at the same cost as ``"sum"``.
    chunk_size : int, optional
        Rows per chunk. ``None`` picks ``CHUNK_BUDGET_BYTES // (V · itemsize)`` rows (64 MiB of
        logits by default, at least 256 rows: 128 MiB at V = 131072 float32), but at most an
        sixth of the rows (at least 64), so that the working memory stays within 1/8 of
        the unfused logits and their gradient.
    sample_weights : array, broadcastable to the labels' shape (...), optional
        Per-token weight :math:`s_i`, as in :func:`infoloss.sparse_softmax_cross_entropy`
        (``"mean"`` divides by :math:`\sum_i s_i w_{y_i}`).
    softcap : float > 0, optional
        Soft-capping of the logits, :math:`x \to c \tanh(x / c)` (Gemma 2), applied to each
        chunk after the matrix product; the gradients include :math:`1 - \tanh^2(x / c)`.
    return_aux : bool, default False
        Return a :class:`~infoloss.CrossEntropyAux` ``(loss, z_loss, lse)``: the loss, its
        z-loss part (reduced the same way) and the per-token log-sum-exp of the (capped)
        logits, shape ``(...)`` (0 for ignored tokens), computed chunk by chunk.

    Returns
    -------
    array or CrossEntropyAux
        The loss (0-d, or shape ``(...)`` for ``"none"``), the array type of ``hidden``.

    Notes
    -----
    With :func:`infoloss.value_and_grad`, the gradients ``(d_hidden, d_weight, d_bias)`` are
    formed in the same sweep: each chunk's logits are turned into the loss gradient in place by the
    fused kernel, then ``d_hidden`` for the chunk and the ``d_weight`` accumulation follow, so no
    second pass over the vocabulary is needed (``d_bias`` is ``None`` without ``bias``). For
    ``reduction="none"`` the gradients are those of the sum. float16/bfloat16 inputs are computed
    (and ``d_weight`` accumulated) in float32 and returned in their own dtype.

    On NumPy the chunk buffer is allocated once and filled by ``matmul(..., out=)``;
    ``d_weight`` is accumulated in blocks of 4096 vocabulary rows (a ``4096 × H`` temporary). Torch tensors on other devices (and CPU with the fast path off)
    and JAX arrays (a ``lax.scan`` in a custom VJP) compute the three gradients in the forward
    sweep too, so ``loss.backward()`` and ``jax.grad`` keep one chunk of logits at a time for
    ``"sum"``/``"mean"``; ``"none"`` and other backends run the generic chunked loop, which
    autograd and ``jax.grad`` differentiate (keeping each chunk's logits for their backward).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import linear_cross_entropy, sparse_softmax_cross_entropy, value_and_grad
    >>> rng = np.random.default_rng(0)
    >>> h, w = rng.normal(size=(6, 4)), rng.normal(size=(10, 4))
    >>> y = np.array([1, 2, 3, 4, 5, 9])
    >>> a = linear_cross_entropy(h, w, y, chunk_size=4)
    >>> b = sparse_softmax_cross_entropy(h @ w.T, y, reduction="mean")
    >>> bool(np.isclose(a, b))
    True
    >>> loss, (dh, dw, db) = value_and_grad(linear_cross_entropy)(h, w, y)
    >>> dh.shape, dw.shape, db is None
    ((6, 4), (10, 4), True)

    Per-token weights, Gemma 2's soft-capping, and the z-loss term and log-partition for a log:

    >>> s = np.array([1.0, 1.0, 0.5, 0.5, 0.0, 2.0])
    >>> out = linear_cross_entropy(h, w, y, sample_weights=s, softcap=30.0, z_loss=1e-4,
    ...                            return_aux=True)
    >>> c = 30.0 * np.tanh(h @ w.T / 30.0)
    >>> ref = sparse_softmax_cross_entropy(c, y, sample_weights=s, z_loss=1e-4, reduction="mean")
    >>> bool(np.isclose(out.loss, ref)), out.lse.shape
    (True, (6,))
    """
    return _linear_ce(
        hidden,
        weight,
        labels,
        bias=bias,
        class_weights=class_weights,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        reduction=reduction,
        chunk_size=chunk_size,
        sample_weights=sample_weights,
        softcap=softcap,
        return_aux=return_aux,
    )[0]
