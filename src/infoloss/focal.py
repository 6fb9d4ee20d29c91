"""Focal and poly losses from logits: cross-entropies that re-weight easy and hard examples.

- :func:`sigmoid_focal_loss`: the binary (multi-label) focal loss of RetinaNet (Lin et al. 2017),
  as torchvision's ``sigmoid_focal_loss`` and optax's ``sigmoid_focal_loss``;
- :func:`softmax_focal_loss` / :func:`sparse_softmax_focal_loss`: the multi-class focal loss with
  probability / integer labels (Keras's ``CategoricalFocalCrossentropy`` with ``class_weights``
  as its ``alpha``);
- :func:`poly_cross_entropy` / :func:`sparse_poly_cross_entropy`: Poly-1 (Leng et al. 2022), as
  optax's ``poly_loss_cross_entropy``.

The modulating factor (1 − p_t)^γ is computed in log space, so values and gradients stay finite
for any finite logits. With γ = 0 (ε = 0) each loss *is* the matching cross-entropy of
:mod:`infoloss.losses`, computed by the same code. Gradients come from
:func:`infoloss.value_and_grad`; PyTorch and JAX can also differentiate the functions directly.
"""

from __future__ import annotations

from typing import Any

from . import _router
from ._utils import Array, quiet_overflow
from ._validate import check_grad_out
from ._validate_focal import sigmoid_focal_spec, softmax_focal_spec

__all__ = [
    "poly_cross_entropy",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "sparse_poly_cross_entropy",
    "sparse_softmax_focal_loss",
]


@quiet_overflow
def _softmax_focal(
    logits: Any,
    labels: Any,
    *,
    kind: str,
    sparse: bool,
    want_grad: bool = False,
    grad_out: Any = None,
    **options: Any,
) -> tuple[Array, Any]:
    """Value and, with ``want_grad``, d value / d logits of a softmax focal or poly loss."""
    if grad_out is not None:
        check_grad_out(grad_out, logits)
    spec = softmax_focal_spec(logits, labels, kind=kind, sparse=sparse, **options)
    return _router.softmax_focal(spec, want_grad, grad_out)


@quiet_overflow
def _sigmoid_focal(
    logits: Any, labels: Any, *, want_grad: bool = False, grad_out: Any = None, **options: Any
) -> tuple[Array, Any]:
    """Value and, with ``want_grad``, d value / d logits of the sigmoid focal loss."""
    if grad_out is not None:
        check_grad_out(grad_out, logits)
    return _router.sigmoid_focal(sigmoid_focal_spec(logits, labels, **options), want_grad, grad_out)


def sigmoid_focal_loss(
    logits: Any,
    labels: Any,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    sample_weights: Any = None,
    reduction: str = "none",
) -> Array:
    r"""Sigmoid focal loss from logits, elementwise (Lin et al. 2017, RetinaNet).

    .. math::

        \ell = s\,\alpha_t\,(1 - p_t)^\gamma\,
               \big[y \operatorname{softplus}(-x) + (1 - y)\operatorname{softplus}(x)\big],
        \quad p_t = y\,\sigma(x) + (1 - y)(1 - \sigma(x)),
        \quad \alpha_t = \alpha y + (1 - \alpha)(1 - y)

    the binary cross-entropy of :func:`~infoloss.sigmoid_cross_entropy` scaled down where the
    prediction is already right (:math:`p_t` near 1).

    Parameters
    ----------
    logits : array, any shape
        Unnormalised log-odds.
    labels : array, same shape as ``logits``
        Targets in [0, 1] (0/1 for hard labels).
    alpha : float in [0, 1] or None, default 0.25
        Weight :math:`\alpha` of the positive term (:math:`1 - \alpha` of the negative one);
        ``None`` for no balancing (:math:`\alpha_t = 1`; optax's default).
    gamma : float ≥ 0, default 2
        Focusing exponent :math:`\gamma`; 0 gives the (α-balanced) binary cross-entropy.
    sample_weights : array, broadcastable to ``logits``, optional
        Weight :math:`s` of each element.
    reduction : {"none", "sum", "mean"}, default "none"
        ``"mean"`` is :math:`\sum \ell / \sum s` (the element count without weights), as
        torchvision's ``reduction="mean"``.

    Returns
    -------
    array
        The logits' shape for ``"none"``, else 0-d; the logits' array type and dtype.

    Notes
    -----
    :math:`\log(1 - p_t) = \operatorname{logaddexp}(\log y - \operatorname{softplus}(x),\;
    \log(1-y) - \operatorname{softplus}(-x))` is formed in log space and the factor is
    :math:`\exp(\gamma \log(1 - p_t))`, so logits of ±1e4 in float32 give finite values and
    gradients for every :math:`\gamma \ge 0` (the textbook :math:`(1 - p_t)^{\gamma - 1}` of the
    gradient never appears). The gradient is
    :math:`s\,\alpha_t (1-p_t)^\gamma\,[\sigma(x) - y + \gamma\,\mathrm{BCE}\;
    (1 - 2y)\,\sigma(x)\sigma(-x)/(1 - p_t)]`. With ``gamma=0`` and ``alpha=None`` the result is
    exactly :func:`~infoloss.sigmoid_cross_entropy`. Soft labels follow optax (the same formula
    with :math:`y \in [0, 1]`).

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, "Focal Loss for Dense Object
    Detection", ICCV 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import sigmoid_focal_loss, sigmoid_cross_entropy
    >>> x = np.array([[3.0, -1.0, 0.5]]); y = np.array([[1.0, 0.0, 0.0]])
    >>> sigmoid_focal_loss(x, y)
    array([[2.73208311e-05, 1.69935431e-02, 2.83058701e-01]])
    >>> bool(np.array_equal(sigmoid_focal_loss(x, y, alpha=None, gamma=0.0),
    ...                     sigmoid_cross_entropy(x, y)))
    True
    """
    return _sigmoid_focal(
        logits,
        labels,
        alpha=alpha,
        gamma=gamma,
        sample_weights=sample_weights,
        reduction=reduction,
    )[0]


def softmax_focal_loss(
    logits: Any,
    labels: Any,
    *,
    gamma: float = 2.0,
    axis: int = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    reduction: str = "none",
) -> Array:
    r"""Multi-class focal loss from logits with probability labels.

    .. math::

        \ell_i = -\,s_i \sum_c w_c\, y_{ic}\, (1 - q_{ic})^\gamma \log q_{ic},
        \qquad q_i = \operatorname{softmax}(x_i)

    Keras's ``CategoricalFocalCrossentropy(from_logits=True)`` with ``class_weights`` as its
    ``alpha`` (one weight per class; Keras's default ``alpha=0.25`` is ``class_weights`` of 0.25).

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        Unnormalised log-probabilities. ``-inf`` masks a class.
    labels : array, same shape as ``logits``
        Target probabilities along ``axis`` (one-hot or soft); not renormalised.
    gamma : float ≥ 0, default 2
        Focusing exponent; 0 gives exactly :func:`~infoloss.softmax_cross_entropy`.
    axis : int, default -1
        The class axis.
    class_weights : array, shape (C,), optional
        Weight :math:`w_c` (the focal loss's :math:`\alpha_c`).
    sample_weights : array, broadcastable to (...), optional
        Weight :math:`s_i` of each example.
    reduction : {"none", "sum", "mean"}, default "none"
        As in :func:`~infoloss.softmax_cross_entropy`: ``"mean"`` divides by
        :math:`\sum_i s_i \sum_c w_c y_{ic}` (:math:`\sum_i s_i` without class weights).

    Returns
    -------
    array
        Shape ``logits.shape`` without ``axis`` for ``"none"``, else 0-d; the logits' array type
        and dtype.

    Notes
    -----
    :math:`\log(1 - q_c)` is :math:`\log(-\operatorname{expm1}(\log q_c))` for a class with
    :math:`q_c \le 1/2` and, for the one class of a row with :math:`q_c > 1/2`, the log-sum-exp of
    the other logits minus that of the row: exact even where :math:`1 - q_c` underflows. The
    gradient is :math:`\partial\ell/\partial x_j = b_j - q_j \sum_c b_c` with
    :math:`b_c = -s\,w_c y_c (1-q_c)^\gamma (1 + \gamma\, q_c h_c)`,
    :math:`h_c = -\log q_c / (1 - q_c)`. The ``-inf`` conventions are those of
    :func:`~infoloss.softmax_cross_entropy`.

    References
    ----------
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import softmax_focal_loss, softmax_cross_entropy
    >>> x = np.array([[2.0, 1.0, 0.1]]); y = np.array([[1.0, 0.0, 0.0]])
    >>> softmax_focal_loss(x, y)
    array([0.04849234])
    >>> bool(np.array_equal(softmax_focal_loss(x, y, gamma=0.0), softmax_cross_entropy(x, y)))
    True
    """
    return _softmax_focal(
        logits,
        labels,
        kind="focal",
        sparse=False,
        gamma=gamma,
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        reduction=reduction,
    )[0]


def sparse_softmax_focal_loss(
    logits: Any,
    labels: Any,
    *,
    gamma: float = 2.0,
    axis: int = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: int | None = None,
    reduction: str = "none",
) -> Array:
    r"""Multi-class focal loss from logits with integer labels.

    .. math::

        \ell_i = -\,s_i\, w_{y_i} (1 - q_{i y_i})^\gamma \log q_{i y_i}

    :func:`softmax_focal_loss` with one-hot labels, without forming them (Keras's
    ``SparseCategoricalFocalCrossentropy`` semantics; ``class_weights`` is :math:`\alpha`).

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        Unnormalised log-probabilities.
    labels : integer array, shape ``logits.shape`` without ``axis``
        Class indices in ``[0, C)``, or ``ignore_index``.
    gamma : float ≥ 0, default 2
        Focusing exponent; 0 gives exactly :func:`~infoloss.sparse_softmax_cross_entropy`.
    axis, class_weights, sample_weights, ignore_index, reduction
        As in :func:`~infoloss.sparse_softmax_cross_entropy`.

    Returns
    -------
    array
        The labels' shape for ``"none"``, else 0-d; the logits' array type and dtype.

    Notes
    -----
    The gradient is :math:`B_i(q_i - e_{y_i})` with
    :math:`B_i = s_i w_{y_i}(1-q_{iy_i})^\gamma(1 + \gamma\, q_{iy_i} h_i)`,
    :math:`h_i = -\log q_{iy_i} / (1 - q_{iy_i})`, and the target's entry
    :math:`-B_i(1 - q_{iy_i})` formed from the exact :math:`\log(1 - q)` (see
    :func:`softmax_focal_loss`). Label checks as in :func:`~infoloss.sparse_softmax_cross_entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import sparse_softmax_focal_loss
    >>> x = np.array([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0]])
    >>> sparse_softmax_focal_loss(x, np.array([0, 1]))
    array([4.84923434e-02, 2.36666048e-06])
    """
    return _softmax_focal(
        logits,
        labels,
        kind="focal",
        sparse=True,
        gamma=gamma,
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        ignore_index=ignore_index,
        reduction=reduction,
    )[0]


def poly_cross_entropy(
    logits: Any,
    labels: Any,
    *,
    epsilon: float = 1.0,
    axis: int = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    reduction: str = "none",
) -> Array:
    r"""Poly-1 cross-entropy from logits with probability labels (Leng et al. 2022).

    .. math::

        \ell_i = s_i \sum_c w_c\, y_{ic} \big[-\log q_{ic} + \varepsilon\,(1 - q_{ic})\big],
        \qquad q_i = \operatorname{softmax}(x_i)

    the cross-entropy plus :math:`\varepsilon` times the first term of its expansion in
    :math:`(1 - p_t)`; for one-hot labels optax's ``poly_loss_cross_entropy``.

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        Unnormalised log-probabilities.
    labels : array, same shape as ``logits``
        Target probabilities along ``axis``.
    epsilon : float ≥ -1, default 1
        :math:`\varepsilon`; 0 gives exactly :func:`~infoloss.softmax_cross_entropy` (the paper
        recommends 2 for ImageNet classification, −1 for detection).
    axis, class_weights, sample_weights, reduction
        As in :func:`~infoloss.softmax_cross_entropy`.

    Returns
    -------
    array
        Shape ``logits.shape`` without ``axis`` for ``"none"``, else 0-d.

    Notes
    -----
    The gradient is :math:`b_j - q_j \sum_c b_c` with :math:`b_c = -s\,w_c y_c (1 + \varepsilon
    q_c)`. For soft labels optax's :math:`\sum_c y_c(1 - q_c)` is kept (with the class weights
    inside the sum).

    References
    ----------
    Z. Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
    Functions", ICLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import poly_cross_entropy
    >>> x = np.array([[2.0, 1.0, 0.1]]); y = np.array([[1.0, 0.0, 0.0]])
    >>> poly_cross_entropy(x, y)
    array([0.75802888])
    """
    return _softmax_focal(
        logits,
        labels,
        kind="poly",
        sparse=False,
        epsilon=epsilon,
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        reduction=reduction,
    )[0]


def sparse_poly_cross_entropy(
    logits: Any,
    labels: Any,
    *,
    epsilon: float = 1.0,
    axis: int = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: int | None = None,
    reduction: str = "none",
) -> Array:
    r"""Poly-1 cross-entropy from logits with integer labels.

    .. math::

        \ell_i = s_i\, w_{y_i} \big[-\log q_{i y_i} + \varepsilon\,(1 - q_{i y_i})\big]

    :func:`poly_cross_entropy` with one-hot labels, without forming them.

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        Unnormalised log-probabilities.
    labels : integer array, shape ``logits.shape`` without ``axis``
        Class indices in ``[0, C)``, or ``ignore_index``.
    epsilon : float ≥ -1, default 1
        :math:`\varepsilon`; 0 gives exactly :func:`~infoloss.sparse_softmax_cross_entropy`.
    axis, class_weights, sample_weights, ignore_index, reduction
        As in :func:`~infoloss.sparse_softmax_cross_entropy`.

    Returns
    -------
    array
        The labels' shape for ``"none"``, else 0-d.

    Notes
    -----
    The gradient is :math:`s_i w_{y_i}(1 + \varepsilon q_{iy_i})(q_i - e_{y_i})`.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import sparse_poly_cross_entropy
    >>> x = np.array([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0]])
    >>> sparse_poly_cross_entropy(x, np.array([0, 1]), epsilon=2.0)
    array([1.09902774, 0.03997932])
    """
    return _softmax_focal(
        logits,
        labels,
        kind="poly",
        sparse=True,
        epsilon=epsilon,
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        ignore_index=ignore_index,
        reduction=reduction,
    )[0]
