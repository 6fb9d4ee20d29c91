r"""Losses past one device: vocabulary-parallel cross-entropy and the global mean (PyTorch).

- :func:`vocab_parallel_cross_entropy`: each rank of a process group holds some columns of the
  logits (tensor parallelism over the vocabulary); the loss of the whole vocabulary, with every
  option of :func:`infoloss.sparse_softmax_cross_entropy`, without gathering the ``N × V``
  logits: two all-reduces of ``O(N)`` values in the forward, none in the backward.
- :func:`vocab_parallel_linear_cross_entropy`: the same from the output layer's weight sharded by
  rows, chunked over the examples as :func:`infoloss.linear_cross_entropy`.
- :func:`global_weight_total` and :func:`global_mean`: the mean over a data-parallel group and
  over gradient-accumulation steps with the right denominator (the weight total of the whole
  global batch, known before any backward pass), so that DDP training gives exactly the
  gradient of single-process full-batch training.

Everything runs on ``torch.distributed`` (any backend). With ``group=None`` and no initialised
process group, the functions act on a world of one process (no collective): they then equal the
single-device losses. The math, the communication volume and runnable ``torchrun`` recipes are in
``docs/distributed.md``.
"""

from __future__ import annotations

from typing import Any

from . import _router
from ._utils import quiet_overflow
from ._validate_sharded import (
    check_group,
    group_meta,
    local_spec,
    weight_total_args,
    weight_total_of,
)
from .errors import InfolossError
from .losses import weight_total

__all__ = [
    "global_mean",
    "global_weight_total",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
    "weight_total",
]


@quiet_overflow
def _vocab_parallel(logits: Any, labels: Any, *, group: Any, **options: Any) -> Any:
    comm = _router.process_group(group)
    spec, error = None, None
    try:
        spec = local_spec(logits, labels, group=comm, **options)
    except InfolossError as e:  # raised after the exchange, so that no rank waits forever
        error = e
    first = logits if logits is not None else options.get("hidden")
    table = comm.gather_ints(group_meta(spec), device=getattr(first, "device", None))
    spec = check_group(spec, error, table, comm.rank)
    return _router.vocab_parallel_ce(spec)


def vocab_parallel_cross_entropy(
    logits_shard: Any,
    labels: Any,
    *,
    group: Any = None,
    vocab_start: int | None = None,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
) -> Any:
    r"""Sparse softmax cross-entropy of logits sharded along the vocabulary over a process group.

    Rank :math:`r` holds the columns :math:`[s_r, s_r + V_r)` of the logits :math:`x` of
    :math:`V = \sum_r V_r` classes; the result is, on every rank,

    .. math::

        \ell_i = s_i \Big[(1-\varepsilon)\, w_{y_i} \big(\operatorname{lse}(x_i) - x_{i y_i}\big)
                 + \frac{\varepsilon}{V} \sum_{c<V} w_c \big(\operatorname{lse}(x_i) - x_{ic}\big)
                 + z\,\operatorname{lse}(x_i)^2\Big],
        \qquad \operatorname{lse}(x_i) = m_i + \log \sum_r \sum_{c \in r} e^{x_{ic} - m_i},
        \quad m_i = \max_r \max_{c \in r} x_{ic}

    exactly :func:`infoloss.sparse_softmax_cross_entropy` of the full ``(N, V)`` logits (label
    smoothing over the global vocabulary), from one ``all_reduce(MAX)`` of the row maxima and
    one ``all_reduce(SUM)`` of the stacked per-row sums (exponentials, target logit, smoothing
    term, and the target's class weight when the weights are sharded): ``O(N)`` values, never
    ``O(N·V)``. Differentiable: the backward pass computes this rank's gradient
    :math:`s_i[(\sum_k w_k t_{ik} + 2z\operatorname{lse}_i)\operatorname{softmax}(x_i)_c - w_c t_{ic}]`
    locally, with no communication.

    Parameters
    ----------
    logits_shard : torch.Tensor, shape (..., V_local)
        This rank's columns of the logits (classes last). Shards may be uneven, even empty.
    labels : integer torch.Tensor, shape (...)
        Global class indices in ``[0, V)`` or ``ignore_index``; the same on every rank.
    group : torch.distributed.ProcessGroup, optional
        The ranks that share the vocabulary (default: the whole world).
    vocab_start : int, optional
        :math:`s_r`, this rank's first column. By default the prefix sum of the shard widths
        in group-rank order (exchanged in one small ``all_gather``, with the checks below).
    class_weights : torch.Tensor, shape (V_local,) or (V,), optional
        Class weights :math:`w`, sharded like the logits (``(V_local,)`` on every rank) or the
        global vector (``(V,)`` on every rank).
    sample_weights : torch.Tensor, broadcastable to the labels' shape, optional
        :math:`s_i`, the same on every rank.
    ignore_index, label_smoothing, z_loss
        As in :func:`infoloss.sparse_softmax_cross_entropy`; ``label_smoothing`` spreads
        :math:`\varepsilon` over all :math:`V` classes of the group.
    reduction : {"none", "sum", "mean"}, default "mean"
        ``"mean"`` divides by :math:`\sum_i s_i w_{y_i}` over the examples not ignored (0.0 for
        none). For a mean over data-parallel ranks as well, take ``"sum"`` and
        :func:`global_mean`.

    Returns
    -------
    torch.Tensor
        The same value on every rank: 0-d, or the labels' shape for ``"none"``; the logits'
        dtype (float16/bfloat16 computed in float32).

    Raises
    ------
    InfolossError
        On every rank of the group at once when any rank's input is bad: shards that do not
        tile ``[0, V)`` (with ``vocab_start``), labels outside the global vocabulary, labels,
        options or dtypes that differ between ranks, and each rank's own checks (those of
        :func:`infoloss.sparse_softmax_cross_entropy`).

    Notes
    -----
    Class weights that require grad get their gradient (sharded weights on their rank; the
    global vector, the same on every rank, after one extra ``all_reduce`` of :math:`V` values
    in the backward). A second derivative (``create_graph=True``, then differentiating the
    gradient, e.g. a Hessian-vector product; ``torch.autograd.gradgradcheck``) is supported with
    constant class weights: it is that of :math:`\sum_r` (rank :math:`r`'s objective), so every
    rank must differentiate (one ``all_reduce`` of ``O(N)`` values per differentiation); with
    class weights that require grad it raises :class:`~infoloss.InfolossError`. Sample weights
    are constants. Runs eagerly (a graph break under ``torch.compile``). On CPU tensors the two
    sweeps over the shard (its statistics, its gradient) are fused numba kernels unless the
    fast path is switched off (``INFOLOSS_DISABLE_FAST``, :func:`infoloss._config.generic_only`);
    elsewhere, and for the second derivatives, they are torch operations (the same values).
    Each call runs three collectives: the ``all_gather`` of 11 integers per rank, and the two
    all-reduces of :math:`N` and :math:`(3 + [\varepsilon>0] + [\text{sharded } w] +
    [\varepsilon>0 \wedge \text{sharded } w])N` values of the compute dtype.

    Examples
    --------
    Without an initialised process group it runs on a world of one process:

    >>> import torch
    >>> from infoloss import sparse_softmax_cross_entropy
    >>> from infoloss.distributed import vocab_parallel_cross_entropy
    >>> x = torch.tensor([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0]], dtype=torch.float64)
    >>> y = torch.tensor([2, 1])
    >>> vocab_parallel_cross_entropy(x, y, label_smoothing=0.1)
    tensor(1.2852, dtype=torch.float64)
    >>> sparse_softmax_cross_entropy(x, y, label_smoothing=0.1, reduction="mean")
    tensor(1.2852, dtype=torch.float64)

    On two ranks of ``torchrun --nproc-per-node 2``, rank ``r`` passes its columns
    ``x[:, 2 * r : 2 * r + 2]`` of a 4-class problem and gets the same value on both.
    """
    return _vocab_parallel(
        logits_shard,
        labels,
        group=group,
        vocab_start=vocab_start,
        class_weights=class_weights,
        sample_weights=sample_weights,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        reduction=reduction,
    )


def vocab_parallel_linear_cross_entropy(
    hidden: Any,
    weight_shard: Any,
    labels: Any,
    *,
    group: Any = None,
    bias_shard: Any = None,
    vocab_start: int | None = None,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
    reduce_hidden_grad: bool = True,
) -> Any:
    r"""Vocabulary-parallel cross-entropy of a linear layer whose weight is sharded by rows.

    .. math::

        \ell_i = \operatorname{CE}\big(h_i W^\top + b,\; y_i\big), \qquad
        W = \begin{bmatrix} W_0 \\ W_1 \\ \vdots \end{bmatrix}

    with rank :math:`r` holding the rows :math:`W_r` (``weight_shard``, shape ``(V_local, H)``)
    and :math:`b_r` of the output layer: :func:`vocab_parallel_cross_entropy` of the logits
    ``hidden @ weight_shard.T + bias_shard``, computed chunk by chunk of rows (as
    :func:`infoloss.linear_cross_entropy`), so the local ``N × V_local`` logits never exist at
    once: the forward keeps only per-row statistics, the backward recomputes each chunk's logits
    and turns them into ``d_hidden``, ``d_weight_shard`` and ``d_bias_shard``.

    Parameters
    ----------
    hidden : torch.Tensor, shape (..., H)
        Hidden states, the same on every rank of the group (replicated).
    weight_shard : torch.Tensor, shape (V_local, H)
        This rank's rows of the output layer's weight (``torch.nn.Linear.weight`` layout).
    labels : integer torch.Tensor, shape (...)
        Global class indices in ``[0, V)`` or ``ignore_index``; the same on every rank.
    group, vocab_start, class_weights, sample_weights, ignore_index, label_smoothing, z_loss, reduction
        As in :func:`vocab_parallel_cross_entropy`. Ignored rows are dropped before the matrix
        products.
    bias_shard : torch.Tensor, shape (V_local,), optional
        This rank's entries of the output layer's bias.
    chunk_size : int, optional
        Rows per chunk; ``None`` as in :func:`infoloss.linear_cross_entropy` (about 64 MiB of
        local logits, at least 256 rows).
    reduce_hidden_grad : bool, default True
        Sum ``d_hidden`` over the group in the backward pass (one ``all_reduce`` of
        ``N × H`` values: each rank's part comes from its own vocabulary columns). Pass False when
        the caller reduces it, e.g. in a Megatron-style column-parallel layer.

    Returns
    -------
    torch.Tensor
        The same value on every rank: 0-d, or the labels' shape for ``"none"``; the dtype of
        ``hidden``.

    Notes
    -----
    Communication per step: forward as :func:`vocab_parallel_cross_entropy` (``O(N)``),
    backward one all-reduce of ``d_hidden``, ``O(N·H)`` (the only one that grows with ``H``).
    The compute is four matrix products per chunk (the logits twice, ``d_hidden``,
    ``d_weight``) against three for the unfused layer. float16/bfloat16 are computed in
    float32. Errors are raised on every rank at once, as by :func:`vocab_parallel_cross_entropy`.
    Not supported, with an :class:`~infoloss.InfolossError`: class weights that require grad
    (raised by the call) and a second derivative (raised when the gradients, taken with
    ``create_graph=True``, are differentiated).

    Examples
    --------
    >>> import torch
    >>> from infoloss import linear_cross_entropy
    >>> from infoloss.distributed import vocab_parallel_linear_cross_entropy
    >>> g = torch.Generator().manual_seed(0)
    >>> h = torch.randn(6, 4, generator=g, dtype=torch.float64)
    >>> w = torch.randn(10, 4, generator=g, dtype=torch.float64)
    >>> y = torch.tensor([1, 2, 3, 4, 5, 9])
    >>> a = vocab_parallel_linear_cross_entropy(h, w, y, chunk_size=4)
    >>> bool(torch.isclose(a, linear_cross_entropy(h, w, y)))
    True
    """
    return _vocab_parallel(
        None,
        labels,
        group=group,
        hidden=hidden,
        weight=weight_shard,
        bias=bias_shard,
        vocab_start=vocab_start,
        class_weights=class_weights,
        sample_weights=sample_weights,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        reduction=reduction,
        chunk_size=chunk_size,
        reduce_hidden_grad=reduce_hidden_grad,
    )


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def global_weight_total(
    labels: Any,
    *,
    group: Any = None,
    kind: str | None = None,
    axis: int = -1,
    ignore_index: int | None = None,
    class_weights: Any = None,
    sample_weights: Any = None,
) -> Any:
    r"""The weight total :math:`\sum W` of the global batch: over every rank of a data-parallel
    group and every micro-batch of a gradient-accumulation step.

    .. math::

        \mathcal{W} = \sum_{r} \sum_{k} \sum_{i \in B_{rk}} W_i, \qquad
        W_i = s_i\, w_{y_i}\ (0 \text{ for } y_i = \text{ignore\_index})

    (the rule of :func:`infoloss.weight_total`; ``kind="softmax"`` and ``"sigmoid"`` for the
    losses of probability labels), computed from the labels alone, before any
    forward or backward pass: one ``all_reduce`` of two float64 numbers.

    Parameters
    ----------
    labels : integer torch.Tensor, or a sequence of them
        This rank's labels; a list holds the micro-batches of one optimizer step.
    group : torch.distributed.ProcessGroup, optional
        The data-parallel group (default: the whole world; a world of one process when
        ``torch.distributed`` is not initialised).
    kind, axis, ignore_index, class_weights
        As in :func:`infoloss.weight_total` (and the loss).
    sample_weights : torch.Tensor or a sequence of them, optional
        One per micro-batch, as ``labels``.

    Returns
    -------
    torch.Tensor
        0-d float64, the same on every rank.

    Raises
    ------
    InfolossError
        On every rank when the labels or weights of any rank are bad.

    Examples
    --------
    >>> import torch
    >>> from infoloss.distributed import global_weight_total
    >>> micro = [torch.tensor([3, -100, 1]), torch.tensor([-100, -100, 2])]
    >>> global_weight_total(micro, ignore_index=-100)
    tensor(3., dtype=torch.float64)
    """
    import torch

    comm = _router.process_group(group)
    ys = _as_list(labels)
    sws = [None] * len(ys) if sample_weights is None else _as_list(sample_weights)
    error: InfolossError | None = None
    total = 0.0
    try:
        if len(sws) != len(ys):
            raise InfolossError(
                f"`sample_weights` must hold one tensor per micro-batch of `labels` ({len(ys)}); got {len(sws)}"
            )
        for y, sw in zip(ys, sws, strict=True):
            args = weight_total_args(
                y, ignore_index, class_weights, sw, torch.float64, kind=kind, axis=axis
            )
            total += float(weight_total_of(args))
    except InfolossError as e:
        error = e
    device = getattr(ys[0], "device", None) if ys else None
    both = torch.tensor([total, 0.0 if error is None else 1.0], dtype=torch.float64, device=device)
    comm.all_reduce(both, "sum")
    if error is not None:
        raise error
    if float(both[1]) > 0:
        raise InfolossError(
            "invalid labels or weights on another rank of the group (see its error)"
        )
    return both[0]


def global_mean(
    loss_sum: Any, total_weight: Any, *, group: Any = None, grad_average: bool = True
) -> Any:
    r"""A rank's ``"sum"`` loss turned into its share of the global mean.

    .. math::

        L_r = \frac{G \cdot S_r}{\mathcal{W}}, \qquad
        \frac{1}{G}\sum_r \nabla L_r = \nabla \frac{\sum_r S_r}{\mathcal{W}}

    where :math:`S_r` is the rank's (or micro-batch's) loss with ``reduction="sum"``,
    :math:`\mathcal{W}` the global weight total from :func:`global_weight_total` and :math:`G`
    the size of the data-parallel group. ``DistributedDataParallel`` averages the gradients over
    the group (the :math:`1/G`), so backpropagating :math:`L_r` on every rank and micro-batch
    gives exactly the gradient of the full-batch mean, whatever the number of ignored tokens
    per rank. With ``grad_average=False`` (gradients summed, e.g. by a hand-written
    all-reduce) the factor :math:`G` is left out.

    Parameters
    ----------
    loss_sum : torch.Tensor, 0-d
        The loss of this rank's (micro-)batch with ``reduction="sum"``.
    total_weight : torch.Tensor or float
        :math:`\mathcal{W}`; a mean over nothing (0) gives 0.
    group : torch.distributed.ProcessGroup, optional
        The data-parallel group (only its size is used: no communication).
    grad_average : bool, default True
        Whether the gradient reducer averages (DDP, FSDP) rather than sums.

    Returns
    -------
    torch.Tensor
        :math:`L_r`, differentiable. Its value is this rank's share, not the global mean: for
        logging, all-reduce ``loss_sum.detach()`` (summed over micro-batches) and divide by
        :math:`\mathcal{W}`.

    Examples
    --------
    >>> import torch
    >>> from infoloss import sparse_softmax_cross_entropy
    >>> from infoloss.distributed import global_mean, global_weight_total
    >>> x = torch.tensor([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0]], requires_grad=True)
    >>> y = torch.tensor([2, -100])
    >>> total = global_weight_total(y, ignore_index=-100)
    >>> s = sparse_softmax_cross_entropy(x, y, ignore_index=-100, reduction="sum")
    >>> global_mean(s, total)
    tensor(2.3170, grad_fn=<MulBackward0>)
    """
    import torch

    size = _router.process_group(group).size if grad_average else 1
    t = float(total_weight)
    scale = size / t if t != 0 else 0.0
    if not isinstance(loss_sum, torch.Tensor):
        raise InfolossError(f"`loss_sum` must be a torch.Tensor; got {type(loss_sum).__name__}")
    return loss_sum * scale
