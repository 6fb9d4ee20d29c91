r"""Losses past one device on JAX: explicit vocabulary parallelism and the global mean, for
code inside ``jax.experimental.shard_map.shard_map`` (or ``jax.pmap``) over a named mesh axis.

Under plain ``jax.jit`` with sharded inputs nothing is needed: the generic losses
(:func:`infoloss.sparse_softmax_cross_entropy` & co.) are traced into XLA, whose SPMD
partitioner splits them along a vocabulary- or batch-sharded logits array with per-row
collectives only (no all-gather of the ``N × V`` logits: ``docs/distributed.md`` shows the HLO
check). These functions are for the explicit style, where each device holds its block:

- :func:`vocab_parallel_cross_entropy`: the device's columns ``[vocab_start, vocab_start +
  V_local)`` of the logits; one ``pmax`` and one ``psum`` of ``O(N)`` values;
- :func:`global_mean`: the mean over a data-parallel axis, ``psum(loss_sum) / psum(weight_total)``.

Both are differentiable by ``jax.grad`` and traceable; labels cannot be range-checked while
tracing (as for the single-device losses under ``jit``): validate them outside.
"""

from __future__ import annotations

from typing import Any

from ._frameworks import jax_sharding
from ._specs import CEOptions
from ._utils import check_index, check_nonnegative, check_reduction, check_unit_interval
from .errors import InfolossError

__all__ = ["global_mean", "vocab_parallel_cross_entropy"]


def vocab_parallel_cross_entropy(
    logits_shard: Any,
    labels: Any,
    vocab_start: Any,
    *,
    axis_name: Any,
    num_classes: int,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
) -> Any:
    r"""Sparse softmax cross-entropy of this device's vocabulary shard, inside ``shard_map``.

    The value of :func:`infoloss.sparse_softmax_cross_entropy` over the full ``(N, V)`` logits
    (label smoothing over all :math:`V` classes), from :math:`m = \operatorname{pmax}(\max_c x)`
    and one ``psum`` of the per-row sums (``docs/distributed.md``), the same on every device of
    the axis.

    Parameters
    ----------
    logits_shard : jax.Array, shape (..., V_local)
        This device's columns of the logits (classes last).
    labels : integer jax.Array, shape (...)
        Global class indices in ``[0, V)`` or ``ignore_index``, replicated over the axis.
    vocab_start : int or traced int
        The shard's first column, e.g. ``jax.lax.axis_index("tp") * V_local``.
    axis_name : hashable
        The mesh axis the vocabulary is sharded over.
    num_classes : int
        :math:`V`, the global vocabulary size (the smoothing's denominator).
    class_weights : jax.Array, shape (V,), optional
        The global class weights (replicated).
    sample_weights, ignore_index, label_smoothing, z_loss, reduction
        As in :func:`infoloss.sparse_softmax_cross_entropy`; ``reduction`` defaults to "mean".

    Returns
    -------
    jax.Array
        0-d, or the labels' shape for ``"none"``.

    Examples
    --------
    On a mesh of one device (``XLA_FLAGS=--xla_force_host_platform_device_count=4`` gives four
    CPU devices; ``docs/distributed.md`` has the full recipe):

    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jax.sharding import Mesh, PartitionSpec as P
    >>> from infoloss import sparse_softmax_cross_entropy
    >>> from infoloss.distributed_jax import vocab_parallel_cross_entropy
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("tp",))
    >>> x = jnp.array([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0]])
    >>> y = jnp.array([2, 1])
    >>> def local(xl, yl):
    ...     start = jax.lax.axis_index("tp") * xl.shape[-1]
    ...     return vocab_parallel_cross_entropy(xl, yl, start, axis_name="tp", num_classes=3)
    >>> f = jax.shard_map(local, mesh=mesh, in_specs=(P(None, "tp"), P()), out_specs=P())
    >>> bool(jnp.isclose(f(x, y), sparse_softmax_cross_entropy(x, y, reduction="mean")))
    True
    """
    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    z = check_nonnegative(z_loss, "z_loss")
    ii = check_index(ignore_index, "ignore_index")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InfolossError(f"`num_classes` must be a positive integer; got {num_classes!r}")
    import jax.numpy as jnp

    x = jnp.asarray(logits_shard)
    y = jnp.asarray(labels)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise InfolossError(f"`logits_shard` must have a real floating dtype; got {x.dtype}")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise InfolossError(f"`labels` must hold integer class indices; got dtype {y.dtype}")
    batch = tuple(x.shape[:-1])
    if tuple(y.shape) != batch:
        raise InfolossError(
            f"`labels` must have the shape {batch} of `logits_shard` without its last axis; got {tuple(y.shape)}"
        )
    cd = jnp.float32 if jnp.finfo(x.dtype).bits < 32 else x.dtype
    cw = None if class_weights is None else jnp.asarray(class_weights, dtype=cd)
    if cw is not None and tuple(cw.shape) != (num_classes,):
        raise InfolossError(
            f"`class_weights` must have shape ({num_classes},) (global, replicated); got {tuple(cw.shape)}"
        )
    sw = None
    if sample_weights is not None:
        sw = jnp.broadcast_to(jnp.asarray(sample_weights, dtype=cd), batch).reshape(-1)
    out = jax_sharding.vocab_parallel_ce(
        x.astype(cd).reshape(-1, x.shape[-1]),
        y.reshape(-1),
        vocab_start,
        axis_name=axis_name,
        num_classes=num_classes,
        class_weights=cw,
        sample_weights=sw,
        options=CEOptions(sparse=True, label_smoothing=eps, z_loss=z, ignore_index=ii),
        reduction=reduction,
    )
    if reduction == "none":
        out = out.reshape(batch)
    return out.astype(x.dtype)


def global_mean(loss_sum: Any, weight_total: Any, *, axis_name: Any) -> Any:
    r"""The mean over a data-parallel mesh axis: :math:`\sum_d S_d / \sum_d \mathcal{W}_d`.

    ``loss_sum`` is the device's loss with ``reduction="sum"``, ``weight_total`` its
    :func:`infoloss.weight_total` (a constant for differentiation); the result is the
    full-batch mean on every device, and ``jax.grad`` of it the full-batch gradient.

    Parameters
    ----------
    loss_sum : jax.Array, 0-d
    weight_total : jax.Array, 0-d
    axis_name : hashable
        The data-parallel mesh axis.

    Returns
    -------
    jax.Array
        0-d; 0.0 when the total weight is 0.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jax.sharding import Mesh, PartitionSpec as P
    >>> from infoloss import sparse_softmax_cross_entropy, weight_total
    >>> from infoloss.distributed_jax import global_mean
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("dp",))
    >>> def local(xl, yl):
    ...     s = sparse_softmax_cross_entropy(xl, yl, ignore_index=-100, reduction="sum")
    ...     return global_mean(s, weight_total(yl, ignore_index=-100), axis_name="dp")
    >>> f = jax.shard_map(local, mesh=mesh, in_specs=(P("dp"), P("dp")), out_specs=P())
    >>> x = jnp.array([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0]])
    >>> float(f(x, jnp.array([2, -100])))
    2.317030...
    """
    return jax_sharding.global_mean_psum(loss_sum, weight_total, axis_name)
