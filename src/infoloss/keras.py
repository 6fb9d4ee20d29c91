"""Keras 3 losses computed by infoloss: switch a model's loss by changing one import.

.. code-block:: python

    from infoloss.keras import CategoricalCrossentropy  # was: from keras.losses import ...

    model.compile(optimizer="adam", loss=CategoricalCrossentropy(from_logits=True))

:class:`CategoricalCrossentropy`, :class:`SparseCategoricalCrossentropy`,
:class:`BinaryCrossentropy` and :class:`KLDivergence` are :class:`keras.losses.Loss` subclasses
with Keras's argument names and defaults (``from_logits``, ``label_smoothing``, ``axis``,
``reduction``, ``ignore_class``, ``name``, ``dtype``) and infoloss's extras (``class_weights``,
``z_loss``, ``pos_weight``). They run on every Keras backend (``KERAS_BACKEND=tensorflow``,
``jax`` or ``torch``): the per-example losses come from :func:`infoloss.softmax_cross_entropy`,
:func:`infoloss.sparse_softmax_cross_entropy`, :func:`infoloss.sigmoid_cross_entropy` and
:func:`infoloss.kl_divergence` on that backend's tensors, and Keras's own ``Loss.__call__``
applies ``sample_weight``, masks and the reduction, so that the numbers are Keras's.

Probabilities (``from_logits=False``, Keras's default) are taken as Keras takes them: a softmax
output is divided by its sum along ``axis`` and clipped to ``[ε, 1 − ε]`` with
``ε = keras.backend.epsilon()`` (1e-7), a sigmoid output clipped to ``[ε, 1 − ε]``; their
logarithms are the logits of the fused loss. On the TensorFlow backend Keras reads the logits of
an output made by a softmax/sigmoid activation instead of its probabilities, and so do these
losses. docs/tensorflow.md lists every difference from Keras's losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from .errors import InfolossError
from .losses import sigmoid_cross_entropy, softmax_cross_entropy, sparse_softmax_cross_entropy
from .measures import kl_divergence

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "KLDivergence",
    "SparseCategoricalCrossentropy",
]

_REGISTER = keras.saving.register_keras_serializable(package="infoloss")


def _keras_logits(y_pred: Any, op_type: str) -> Any:
    """The logits behind a softmax/sigmoid output where Keras's TensorFlow backend reads them
    (the ``_keras_logits`` a Keras activation attaches, or the input of a ``Softmax``/``Sigmoid``
    op in a traced graph); ``None`` elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return None
    logits = getattr(y_pred, "_keras_logits", None)
    if logits is not None:
        return logits
    import tensorflow as tf

    if isinstance(y_pred, (tf.__internal__.EagerTensor, tf.Variable)) or not hasattr(y_pred, "op"):
        return None
    op = y_pred.op
    if op.type == op_type and len(op.inputs) == 1:
        return op.inputs[0]
    return None


def _same_rank(y_true: Any, y_pred: Any) -> Any:
    """``y_true`` with a trailing axis of 1 dropped or added to match ``y_pred``'s rank (as
    Keras's loss wrappers do)."""
    dt, dp = len(y_true.shape), len(y_pred.shape)
    if dt == dp + 1 and y_true.shape[-1] == 1:
        return ops.squeeze(y_true, axis=-1)
    if dp == dt + 1 and y_pred.shape[-1] == 1:
        return ops.expand_dims(y_true, axis=-1)
    return y_true


def _weights(values: Sequence[float] | None, like: Any) -> Any:
    return None if values is None else ops.convert_to_tensor(values, dtype=like.dtype)


def _check_logits_only(from_logits: bool, z_loss: float) -> None:
    if z_loss and not from_logits:
        raise InfolossError(
            f"`z_loss`={z_loss} needs logits (`from_logits=True`): the log-partition of "
            "probabilities is 0"
        )


class _Loss(keras.losses.Loss):
    """Shared ``get_config``: every constructor argument, with ``class_weights`` as a list."""

    _options: tuple[str, ...] = ()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({k: getattr(self, k) for k in self._options})
        return config


@_REGISTER
class CategoricalCrossentropy(_Loss):
    r"""Softmax cross-entropy of one-hot or soft labels, as ``keras.losses.CategoricalCrossentropy``.

    Per example, :math:`\ell = \sum_c w_c t_c (\operatorname{lse}(x) - x_c) + z \operatorname{lse}(x)^2`
    with :math:`t = (1 - \varepsilon) y + \varepsilon / C` (see
    :func:`infoloss.softmax_cross_entropy`); Keras then applies ``sample_weight`` and
    ``reduction``.

    Parameters
    ----------
    from_logits : bool, default False
        ``y_pred`` holds logits; else probabilities (normalised along ``axis``, clipped to
        ``[ε, 1 − ε]``, as Keras does).
    label_smoothing : float in [0, 1], default 0
    axis : int, default -1
        The class axis.
    reduction : str or None, default "sum_over_batch_size"
        Keras's reductions ("sum", "sum_over_batch_size", "mean", "mean_with_sample_weight",
        "none"/None).
    name : str, default "categorical_crossentropy"
    dtype : str, optional
        The dtype Keras computes the loss in (its float policy by default).
    class_weights : sequence of C floats, optional
        infoloss's extra: :math:`w_c` (the reduction still divides by the batch size, as Keras
        does for ``fit(class_weight=...)``).
    z_loss : float ≥ 0, default 0
        infoloss's extra (``from_logits=True`` only).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss.keras import CategoricalCrossentropy
    >>> loss = CategoricalCrossentropy(from_logits=True)
    >>> y_true = np.array([[0.0, 0.0, 1.0]]); y_pred = np.array([[2.0, 1.0, 0.1]])
    >>> round(float(loss(y_true, y_pred)), 5)
    2.31703
    """

    _options = ("from_logits", "label_smoothing", "axis", "class_weights", "z_loss")

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
        *,
        class_weights: Sequence[float] | None = None,
        z_loss: float = 0.0,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_logits_only(from_logits, z_loss)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.z_loss = z_loss

    def call(self, y_true: Any, y_pred: Any) -> Any:
        logits = y_pred if self.from_logits else _keras_logits(y_pred, "Softmax")
        if logits is None:
            p = y_pred / ops.sum(y_pred, axis=self.axis, keepdims=True)
            eps = keras.backend.epsilon()
            logits = ops.log(ops.clip(p, eps, 1.0 - eps))
        y_true = ops.cast(_same_rank(y_true, logits), logits.dtype)
        return softmax_cross_entropy(
            logits,
            y_true,
            axis=self.axis,
            class_weights=_weights(self.class_weights, logits),
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
        )


@_REGISTER
class SparseCategoricalCrossentropy(_Loss):
    r"""Softmax cross-entropy of integer labels, as ``keras.losses.SparseCategoricalCrossentropy``.

    Per example, :math:`\ell = w_y (\operatorname{lse}(x) - x_y) + z \operatorname{lse}(x)^2`
    (see :func:`infoloss.sparse_softmax_cross_entropy`), 0 for a label equal to ``ignore_class``,
    which Keras's reductions also leave out of the batch size (as Keras's own loss does).

    Parameters
    ----------
    from_logits : bool, default False
    ignore_class : int, optional
        A label value that contributes nothing (Keras's name for ``ignore_index``).
    reduction : str or None, default "sum_over_batch_size"
    axis : int, default -1
    name : str, default "sparse_categorical_crossentropy"
    dtype : str, optional
    class_weights : sequence of C floats, optional
        infoloss's extra.
    label_smoothing : float in [0, 1], default 0
        infoloss's extra (Keras's sparse loss has none).
    z_loss : float ≥ 0, default 0
        infoloss's extra (``from_logits=True`` only).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss.keras import SparseCategoricalCrossentropy
    >>> loss = SparseCategoricalCrossentropy(from_logits=True)
    >>> round(float(loss(np.array([2]), np.array([[2.0, 1.0, 0.1]]))), 5)
    2.31703
    """

    _options = (
        "from_logits",
        "ignore_class",
        "axis",
        "class_weights",
        "label_smoothing",
        "z_loss",
    )

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
        *,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_logits_only(from_logits, z_loss)
        self.from_logits, self.ignore_class, self.axis = from_logits, ignore_class, axis
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.label_smoothing, self.z_loss = label_smoothing, z_loss

    def call(self, y_true: Any, y_pred: Any) -> Any:
        logits = y_pred if self.from_logits else _keras_logits(y_pred, "Softmax")
        if logits is None:
            p = y_pred / ops.sum(y_pred, axis=self.axis, keepdims=True)
            eps = keras.backend.epsilon()
            logits = ops.log(ops.clip(p, eps, 1.0 - eps))
        if len(y_true.shape) == len(logits.shape) and y_true.shape[self.axis] == 1:
            y_true = ops.squeeze(y_true, axis=self.axis)
        labels = ops.cast(y_true, "int32")
        loss = sparse_softmax_cross_entropy(
            logits,
            labels,
            axis=self.axis,
            class_weights=_weights(self.class_weights, logits),
            ignore_index=self.ignore_class,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
        )
        if self.ignore_class is not None:
            from keras.src.backend import set_keras_mask  # the mask Keras's reductions read

            set_keras_mask(loss, mask=ops.not_equal(labels, self.ignore_class))
        return loss


@_REGISTER
class BinaryCrossentropy(_Loss):
    r"""Sigmoid cross-entropy, as ``keras.losses.BinaryCrossentropy``: the mean over ``axis`` of
    :math:`p\,y'\,\operatorname{softplus}(-x) + (1 - y')\operatorname{softplus}(x)` with
    :math:`y' = (1 - \varepsilon) y + \varepsilon / 2` (see :func:`infoloss.sigmoid_cross_entropy`).

    Parameters
    ----------
    from_logits : bool, default False
        ``y_pred`` holds logits; else probabilities, clipped to ``[ε, 1 − ε]`` as Keras does.
    label_smoothing : float in [0, 1], default 0
    axis : int, default -1
        The axis the elementwise losses are averaged over.
    reduction : str or None, default "sum_over_batch_size"
    name : str, default "binary_crossentropy"
    dtype : str, optional
    pos_weight : sequence of floats or float, optional
        infoloss's extra: the weight :math:`p` of positive targets (per class of the last axis).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss.keras import BinaryCrossentropy
    >>> loss = BinaryCrossentropy(from_logits=True)
    >>> round(float(loss(np.array([[1.0, 0.0]]), np.array([[0.5, -1.0]]))), 5)
    0.39367
    """

    _options = ("from_logits", "label_smoothing", "axis", "pos_weight")

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_crossentropy",
        dtype: Any = None,
        *,
        pos_weight: Sequence[float] | float | None = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis
        if pos_weight is not None and not isinstance(pos_weight, (int, float)):
            pos_weight = [float(w) for w in pos_weight]
        self.pos_weight = pos_weight

    def call(self, y_true: Any, y_pred: Any) -> Any:
        logits = y_pred if self.from_logits else _keras_logits(y_pred, "Sigmoid")
        if logits is None:
            eps = keras.backend.epsilon()
            p = ops.clip(y_pred, eps, 1.0 - eps)
            logits = ops.log(p) - ops.log1p(-p)
        y_true = ops.cast(_same_rank(y_true, logits), logits.dtype)
        pw = self.pos_weight
        loss = sigmoid_cross_entropy(
            logits,
            y_true,
            pos_weight=None if pw is None else ops.convert_to_tensor(pw, dtype=logits.dtype),
            label_smoothing=self.label_smoothing,
        )
        return ops.mean(loss, axis=self.axis)


@_REGISTER
class KLDivergence(_Loss):
    r"""Kullback–Leibler divergence of probabilities, as ``keras.losses.KLDivergence``:
    :math:`\sum_c p_c \log(p_c / q_c)` along the last axis, both clipped to ``[ε, 1]`` as Keras
    does, computed as :func:`infoloss.kl_divergence` (the generalised KL
    :math:`\sum_c p_c \log(p_c/q_c) - p_c + q_c`, accurate when :math:`p \approx q`) plus
    :math:`\sum_c (p_c - q_c)`.

    Parameters
    ----------
    reduction : str or None, default "sum_over_batch_size"
    name : str, default "kl_divergence"
    dtype : str, optional

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss.keras import KLDivergence
    >>> p = np.array([[0.5, 0.5]]); q = np.array([[0.9, 0.1]])
    >>> round(float(KLDivergence()(p, q)), 5)
    0.51083
    """

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "kl_divergence",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        eps = keras.backend.epsilon()
        q = ops.clip(y_pred, eps, 1.0)
        p = ops.clip(ops.cast(_same_rank(y_true, y_pred), q.dtype), eps, 1.0)
        return kl_divergence(p, q, axis=-1) + ops.sum(p - q, axis=-1)
