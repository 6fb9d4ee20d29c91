"""Information measures: information content, entropy, cross-entropy, KL and JS divergence.

Two families live here:

- measures of probability arrays (:func:`information`, :func:`entropy`, :func:`cross_entropy`,
  :func:`kl_divergence`, :func:`js_divergence`): inputs are probabilities along ``axis``; they are
  **not** renormalised, so pass distributions that sum to one;
- measures of distributions given by logits (:func:`softmax_entropy`,
  :func:`softmax_kl_divergence`, :func:`softmax_js_divergence`), computed stably without forming
  probabilities first, with the options of distillation (temperature, weights, masks, reductions);
- the measures of a joint probability table are in :mod:`infoloss.joint`.

Every function accepts arrays of any Array API library and returns the caller's array type (a
0-d result is a 0-d array, also for NumPy). ``base=None`` measures in nats, ``base=2`` in bits.
The convention 0·log 0 = 0 holds throughout; nan in gives nan out.

Edges (docs/semantics.md, "Probability measures"): the masks that keep ``0·log 0`` out of a value
are applied to the *inputs* of the logarithms ("double where"), so that autodiff (torch autograd,
``jax.grad``) through these functions gives the true derivative wherever it is finite, also at
exact zeros: ``∂H(P,Q)/∂p_c = −log q_c`` and ``∂KL/∂q_c = 1`` at ``p_c = 0``.
"""

from __future__ import annotations

from typing import Any

from . import _router
from ._utils import Array, quiet_overflow
from ._validate import prob_spec, softmax_measure_spec

__all__ = [
    "cross_entropy",
    "entropy",
    "information",
    "js_divergence",
    "kl_divergence",
    "softmax_entropy",
    "softmax_js_divergence",
    "softmax_kl_divergence",
]


@quiet_overflow
def _softmax_entropy(logits: Any, *, want_grad: bool = False, **options: Any) -> tuple[Array, Any]:
    """Value and, with ``want_grad``, the gradient of :func:`softmax_entropy`."""
    return _router.softmax_measure(softmax_measure_spec(logits, **options), want_grad)


@quiet_overflow
def _softmax_kl_divergence(
    p_logits: Any, q_logits: Any, *, want_grad: bool = False, **options: Any
) -> tuple[Array, Any]:
    """Value and, with ``want_grad``, the gradients of :func:`softmax_kl_divergence`."""
    return _router.softmax_measure(softmax_measure_spec(p_logits, q_logits, **options), want_grad)


@quiet_overflow
def _softmax_js_divergence(
    p_logits: Any, q_logits: Any, *, want_grad: bool = False, **options: Any
) -> tuple[Array, Any]:
    """Value and, with ``want_grad``, the gradients of :func:`softmax_js_divergence`."""
    spec = softmax_measure_spec(p_logits, q_logits, op="js", **options)
    return _router.softmax_measure(spec, want_grad)


@quiet_overflow
def _js_divergence(p: Any, q: Any, *, want_grad: bool = False, **options: Any) -> Any:
    """Value and, with ``want_grad``, the gradients of :func:`js_divergence`."""
    spec = prob_spec("js_divergence", p, q, **{"axis": -1, **options})
    return _router.probability_measure(spec, want_grad)


# --------------------------------------------------------------------------- probability measures


@quiet_overflow
def information(p: Any, *, base: float | None = None) -> Array:
    r"""Information content (surprisal) of events with probability ``p``, elementwise.

    .. math::

        I(x) = -\log p(x)

    Parameters
    ----------
    p : array, any shape
        Probabilities in [0, 1].
    base : float, optional
        Logarithm base: ``None`` for nats, ``2`` for bits, ``10`` for hartleys.

    Returns
    -------
    array, same shape as ``p``
        ``I ≥ 0`` for ``p ≤ 1``; ``p = 0`` gives ``+inf`` (an impossible event carries unbounded
        information), with no warning; nan gives nan.

    Raises
    ------
    InfolossError
        If ``p`` holds a negative number or ``±inf`` (checked when the values can be read).

    Notes
    -----
    The less likely an event, the more information its occurrence carries: "the sun will not
    explode tomorrow" (p ≈ 1) carries almost none, "the sun will explode tomorrow" (p tiny) a lot.
    Entropy is the expected information content, :math:`H(P) = \sum_x p(x) I(x)`.

    Gradient (autodiff): :math:`-1/p`; at ``p = 0`` (value ``+inf``, derivative ``-inf``) it is
    returned as 0.

    Examples
    --------
    >>> from infoloss import information
    >>> information([0.5, 0.25, 1.0], base=2)
    array([1., 2., 0.])
    >>> float(information(0.0))
    inf
    """
    return _router.probability_measure(prob_spec("information", p, base=base))


@quiet_overflow
def entropy(p: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False) -> Array:
    r"""Shannon entropy of the distributions in ``p`` along ``axis``.

    .. math::

        H(P) = -\sum_c p_c \log p_c, \qquad 0 \log 0 = 0

    Parameters
    ----------
    p : array, shape (..., C, ...)
        Probabilities along ``axis`` (finite, non-negative). They are not renormalised.
    axis : int, default -1
        The axis holding the outcomes (one integer; ``None`` and tuples are refused).
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, shape of ``p`` without ``axis``
        ``H ≥ 0`` for probabilities; ``H ≤ log C`` with equality for the uniform distribution.
        A nan in a distribution gives nan for it.

    Raises
    ------
    InfolossError
        If ``p`` holds a negative number or ``±inf`` (checked when the values can be read; under
        ``jax.jit`` such a distribution gives nan instead), or ``axis`` is not an integer in
        range.

    Notes
    -----
    :math:`H(P) = \sum_c p_c I(c)` is the expected information content. With cross-entropy and
    KL divergence it satisfies :math:`H(P, Q) = H(P) + D_{KL}(P \| Q)`.

    Gradient (autodiff): :math:`-(\log p_c + 1)`; at ``p_c = 0``, where it is ``+inf``, it is
    returned as 0.

    References
    ----------
    C. E. Shannon, "A Mathematical Theory of Communication", 1948.

    Examples
    --------
    >>> from infoloss import entropy
    >>> entropy([0.5, 0.5], base=2)
    array(1.)
    >>> entropy([[1.0, 0.0], [0.25, 0.75]])
    array([0.        , 0.56233514])
    """
    return _router.probability_measure(
        prob_spec("entropy", p, axis=axis, base=base, keepdims=keepdims)
    )


@quiet_overflow
def cross_entropy(
    p: Any, q: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False
) -> Array:
    r"""Cross-entropy of ``q`` relative to ``p`` along ``axis``.

    .. math::

        H(P, Q) = -\sum_c p_c \log q_c, \qquad 0 \log q = 0 \text{ (also for } q = 0)

    Parameters
    ----------
    p : array, shape (..., C, ...)
        The true distribution(s). Not renormalised.
    q : array, broadcastable with ``p``
        The predicted distribution(s). Not renormalised.
    axis : int, default -1
        The axis holding the outcomes (after broadcasting).
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, broadcast shape without ``axis``
        ``+inf`` where some ``p_c > 0`` has ``q_c = 0``; nan where ``p`` or ``q`` holds a nan.

    Raises
    ------
    InfolossError
        If ``p`` or ``q`` holds a negative number or ``±inf`` (see :func:`entropy`).

    Notes
    -----
    :math:`H(P, Q) = H(P) + D_{KL}(P \| Q)` for distributions: as :math:`H(P)` does not depend on
    the model, minimising cross-entropy over ``q`` minimises the KL divergence. For losses
    computed from logits use :func:`infoloss.softmax_cross_entropy`, which never forms ``log q``
    from ``q``.

    Gradients (autodiff): :math:`\partial/\partial p_c = -\log q_c` (also at ``p_c = 0``) and
    :math:`\partial/\partial q_c = -p_c/q_c` (0 at ``p_c = 0``). Where ``q_c = 0``: ``+inf``
    and 0 for ``p_c > 0`` (the value is ``+inf``), 0 and 0 for ``p_c = 0``.

    Examples
    --------
    >>> from infoloss import cross_entropy, entropy, kl_divergence
    >>> p, q = [0.5, 0.5], [0.9, 0.1]
    >>> float(cross_entropy(p, q, base=2))
    1.73696559416620
    >>> float(entropy(p, base=2) + kl_divergence(p, q, base=2))
    1.73696559416620
    """
    return _router.probability_measure(
        prob_spec("cross_entropy", p, q, axis=axis, base=base, keepdims=keepdims)
    )


@quiet_overflow
def kl_divergence(
    p: Any, q: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False
) -> Array:
    r"""Kullback–Leibler divergence (relative entropy) of ``q`` from ``p`` along ``axis``.

    .. math::

        D_{KL}(P \| Q) = \sum_c \Big( p_c \log \frac{p_c}{q_c} - p_c + q_c \Big)

    with :math:`0 \log(0/q) = 0` (also for :math:`q = 0`) and :math:`p \log(p/0) = +\infty`.
    This is the *generalized* KL divergence (``scipy.special.kl_div`` summed): for distributions
    (:math:`\sum p = \sum q = 1`) the mass terms cancel and it is the KL divergence
    :math:`\sum_c p_c \log(p_c/q_c)`; for other non-negative arrays (unnormalised measures,
    Keras-style elementwise targets) every term is still :math:`\ge 0`, so the result is a true
    divergence rather than a possibly negative number.

    Parameters
    ----------
    p, q : arrays, broadcastable, shape (..., C, ...)
        Distributions (or non-negative measures) along ``axis``. Not renormalised.
    axis : int, default -1
        The axis holding the outcomes (after broadcasting).
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, broadcast shape without ``axis``
        Never negative (each term is :math:`\ge 0`; only rounding below 0 is clipped);
        ``+inf`` where ``q`` misses mass of ``p``; nan where ``p`` or ``q`` holds a nan.

    Raises
    ------
    InfolossError
        If ``p`` or ``q`` holds a negative number or ``±inf`` (see :func:`entropy`).

    Notes
    -----
    Accurate when ``p ≈ q``: with :math:`u = (p - q)/q` each term equals :math:`q f(u)`,
    :math:`f(u) = (1+u)\log(1+u) - u`, which is evaluated by its series for :math:`|u| < 0.05`,
    so the result keeps full relative precision where the textbook formula loses every digit to
    cancellation (relative error about 1e-15 in float64). Because each term is non-negative, the
    sum never cancels, and arrays normalised in floating point (masses a few ulps from 1) do not
    shift the result by their mass difference. Not symmetric;
    :math:`H(P, Q) = H(P) + D_{KL}(P \| Q) + \sum p - \sum q`.

    Gradients (autodiff): :math:`\partial/\partial p_c = \log(p_c/q_c)` and
    :math:`\partial/\partial q_c = 1 - p_c/q_c`; at ``p_c = 0`` the latter is exactly 1 and the
    former (``-inf``) is returned as :math:`-\log q_c - 1` (the derivative of
    :math:`p \log p` counted as 0, as in :func:`entropy`).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import kl_divergence
    >>> float(kl_divergence([0.5, 0.5], [0.9, 0.1]))
    0.51082562376599
    >>> d = 2.0**-30  # q differs from p by 1e-9, both sum to exactly 1
    >>> p = np.array([0.25, 0.75]); q = np.array([0.25 + d, 0.75 - d])
    >>> float(kl_divergence(p, q))  # ≈ d² (1/0.25 + 1/0.75) / 2; the textbook formula gives 0.0
    2.312964630806203e-18
    >>> float(kl_divergence([1.0, 0.0], [0.0, 1.0]))
    inf
    >>> float(kl_divergence([0.8], [0.9]))  # not distributions: 0.8 log(0.8/0.9) - 0.8 + 0.9
    0.00577357147489...
    """
    return _router.probability_measure(
        prob_spec("kl_divergence", p, q, axis=axis, base=base, keepdims=keepdims)
    )


def js_divergence(
    p: Any,
    q: Any,
    *,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    beta: float = 0.5,
) -> Array:
    r"""Jensen–Shannon divergence between ``p`` and ``q`` along ``axis`` (generalized by ``beta``).

    .. math::

        D_{JS}(P, Q) = \tfrac12 D_{KL}(P \| M) + \tfrac12 D_{KL}(Q \| M), \qquad M = \tfrac12 (P + Q)

    and for a weight :math:`\beta \in (0, 1)` the generalized divergence

    .. math::

        \mathrm{JSD}_\beta(P \| Q) = \beta D_{KL}(P \| M) + (1 - \beta) D_{KL}(Q \| M),
        \qquad M = \beta P + (1 - \beta) Q

    (``beta=0.5`` is the symmetric one; :math:`\mathrm{JSD}_\beta(P\|Q) = \mathrm{JSD}_{1-\beta}(Q\|P)`).

    Parameters
    ----------
    p, q : arrays, broadcastable, shape (..., C, ...)
        Distributions along ``axis``. Not renormalised.
    axis : int, default -1
        The axis holding the outcomes (after broadcasting).
    base : float, optional
        ``None`` for nats, ``2`` for bits (then ``0 ≤ D_JS ≤ 1``).
    keepdims : bool, default False
        Keep the reduced axis with length 1.
    beta : float in (0, 1), default 0.5
        The weight :math:`\beta` of ``p`` in the mixture (Agarwal et al. 2024). The limits 0 and 1
        give 0; for the KL divergences themselves use :func:`kl_divergence`.

    Returns
    -------
    array, broadcast shape without ``axis``
        Finite, between 0 and the mixture's entropy bound :math:`h(\beta)` (``log 2`` at
        ``beta=0.5``, where it is symmetric). Its square root is a metric (the
        Jensen–Shannon distance, as in :func:`scipy.spatial.distance.jensenshannon`). nan
        where ``p`` or ``q`` holds a nan.

    Raises
    ------
    InfolossError
        If ``p`` or ``q`` holds a negative number or ``±inf`` (see :func:`entropy`).

    Notes
    -----
    The two divergences are the generalized ones of :func:`kl_divergence`; their mass terms
    :math:`\sum (m - p) + \sum (m - q)` cancel exactly, so this is the usual JS divergence for
    any non-negative arrays. Each term is non-negative, and the mass terms also absorb, to first
    order, the rounding of :math:`M`.

    Gradients (:func:`infoloss.value_and_grad` returns ``(value, (d/dp, d/dq))``, summed back
    to the shapes of ``p`` and ``q``): :math:`\partial/\partial p_c = \beta \log(p_c/m_c)`,
    :math:`\partial/\partial q_c = (1-\beta) \log(q_c/m_c)`; at ``p_c = 0`` the derivative of
    :math:`p \log p` counts as 0 (as in :func:`kl_divergence`), giving
    :math:`-\beta(\log m_c + 1)`, and 0 where :math:`m_c = 0`.

    References
    ----------
    J. Lin, "Divergence measures based on the Shannon entropy", 1991.
    R. Agarwal et al., "On-policy distillation of language models: learning from
    self-generated mistakes", 2024 (the generalized JSD).

    Examples
    --------
    >>> from infoloss import js_divergence, value_and_grad
    >>> float(js_divergence([1.0, 0.0], [0.0, 1.0], base=2))
    1.0
    >>> float(js_divergence([0.5, 0.5], [0.9, 0.1]))
    0.1017...
    >>> float(js_divergence([0.5, 0.5], [0.9, 0.1], beta=0.1))
    0.04307409095564...
    >>> value, (gp, gq) = value_and_grad(js_divergence)([0.5, 0.5], [0.9, 0.1])
    >>> gp  # log(p / m) / 2
    array([-0.16823612,  0.25541281])
    """
    return _js_divergence(p, q, axis=axis, base=base, keepdims=keepdims, beta=beta)


# --------------------------------------------------------------------------- measures from logits


def softmax_entropy(
    logits: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False
) -> Array:
    r"""Entropy of the softmax distribution of ``logits``, computed stably from the logits.

    .. math::

        H(\operatorname{softmax}(x)) = -\sum_c q_c \log q_c
        = \operatorname{logsumexp}(x) - \sum_c q_c x_c, \qquad q = \operatorname{softmax}(x)

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        Logits; ``-inf`` marks a masked class (probability 0, contributes 0).
    axis : int, default -1
        The class axis.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, shape of ``logits`` without ``axis``
        Between 0 and ``log C``. An all ``-inf`` row gives 0.

    Notes
    -----
    The gradient (see :func:`infoloss.value_and_grad`) is
    :math:`\partial H / \partial x_j = -q_j (\log q_j + H)`. Used for uncertainty estimates and
    entropy regularisation.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import softmax_entropy
    >>> float(softmax_entropy(np.zeros(4), base=2))  # uniform over 4 classes: 2 bits
    2.0
    >>> float(softmax_entropy(np.array([0.0, -np.inf])))
    0.0
    """
    return _softmax_entropy(logits, axis=axis, base=base, keepdims=keepdims)[0]


def softmax_kl_divergence(
    p_logits: Any,
    q_logits: Any,
    *,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    temperature: float = 1.0,
    scale_by_temperature_squared: bool = False,
    sample_weights: Any = None,
    mask: Any = None,
    reduction: str = "none",
) -> Array:
    r"""KL divergence between the softmax distributions of two sets of logits.

    .. math::

        D_{KL}(P \| Q) = \sum_c p_c (\log p_c - \log q_c), \qquad
        p = \operatorname{softmax}(a / T), \; q = \operatorname{softmax}(b / T)

    computed from log-softmaxes, never from probabilities. Each example's divergence is
    multiplied by :math:`T^2` (with ``scale_by_temperature_squared``) and its sample weight
    :math:`s_i`, and examples where ``mask`` is False give 0; then ``reduction`` applies.

    The argument order is the direction: ``softmax_kl_divergence(teacher, student)`` is the
    *forward* KL :math:`D_{KL}(P_\text{teacher} \| Q_\text{student})` (mass-covering, the
    classic distillation loss); ``softmax_kl_divergence(student, teacher)`` is the *reverse* KL
    (mode-seeking, as in MiniLLM). PyTorch's ``F.kl_div(log_softmax(b), log_softmax(a),
    log_target=True, reduction="none").sum(-1)`` is the forward one.

    Parameters
    ----------
    p_logits : array, shape (..., C, ...)
        Logits ``a`` of the reference distribution P (the teacher in distillation). ``-inf``
        masks a class (a teacher's masked vocabulary): it contributes 0.
    q_logits : array, broadcastable with ``p_logits``
        Logits ``b`` of the approximating distribution Q (the student being fitted).
    axis : int, default -1
        The class axis.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1 (``reduction="none"`` only).
    temperature : float > 0, default 1
        :math:`T`: both sets of logits are divided by it (Hinton et al. 2015); ``T > 1`` softens
        the distributions.
    scale_by_temperature_squared : bool, default False
        Multiply the divergence by :math:`T^2`, so that the gradients keep their size as
        :math:`T` changes (the gradient of the tempered divergence scales as :math:`1/T^2`);
        Hinton et al. recommend it when the soft loss is mixed with a hard-label loss.
    sample_weights : array, broadcastable to the batch shape (``p_logits.shape`` without
        ``axis``), optional
        Weight :math:`s_i` of each example (token).
    mask : bool array, broadcastable to the batch shape, optional
        False for examples that count for nothing: value, weight in the mean and gradient are
        exactly 0, even if their logits hold nan or inf (padding). ``mask=labels != -100``
        gives the ``ignore_index`` convention of the cross-entropies.
    reduction : {"none", "sum", "mean"}, default "none"
        ``"mean"`` is :math:`\sum_i \ell_i / \sum_i W_i` with :math:`W_i = s_i m_i` (1 per
        unmasked example without weights; 0.0 when the denominator is 0), the per-token mean of
        sequence distillation.

    Returns
    -------
    array
        The broadcast shape without ``axis`` for ``"none"``, else 0-d. Never negative. Classes
        with ``p_c = 0`` (``a_c = -inf``) contribute 0; ``p_c > 0`` with ``b_c = -inf`` gives
        ``+inf``.

    Notes
    -----
    Gradients (see :func:`infoloss.value_and_grad`), for :math:`T = 1` and one example:
    :math:`\partial D / \partial a_j = p_j(\log p_j - \log q_j - D)` and
    :math:`\partial D / \partial b_j = q_j - p_j`; a temperature multiplies them by
    :math:`1/T` (by :math:`T` with ``scale_by_temperature_squared``), the weights and the
    reduction as the value. The value is finite with finite gradients for a teacher with ``-inf``
    logits as long as the student gives those classes mass or the teacher none.

    References
    ----------
    G. Hinton, O. Vinyals, J. Dean, "Distilling the knowledge in a neural network", 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import softmax_kl_divergence, kl_divergence, softmax
    >>> a, b = np.array([2.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])
    >>> float(softmax_kl_divergence(a, b))
    0.91298289781978
    >>> float(kl_divergence(softmax(a), softmax(b)))
    0.91298289781978

    A distillation loss: a batch of 2 tokens, the second one padding:

    >>> teacher = np.array([[2.0, 0.0, -np.inf], [0.0, 0.0, 0.0]])
    >>> student = np.array([[1.0, 0.5, 0.0], [9.0, 9.0, 9.0]])
    >>> float(softmax_kl_divergence(teacher, student, temperature=2.0,
    ...       scale_by_temperature_squared=True, mask=np.array([True, False]), reduction="mean"))
    1.41748132343983...
    """
    return _softmax_kl_divergence(
        p_logits,
        q_logits,
        axis=axis,
        base=base,
        keepdims=keepdims,
        temperature=temperature,
        scale_by_temperature_squared=scale_by_temperature_squared,
        sample_weights=sample_weights,
        mask=mask,
        reduction=reduction,
    )[0]


def softmax_js_divergence(
    p_logits: Any,
    q_logits: Any,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    scale_by_temperature_squared: bool = False,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    sample_weights: Any = None,
    mask: Any = None,
    reduction: str = "none",
) -> Array:
    r"""Generalized Jensen–Shannon divergence between the softmax distributions of two logits.

    .. math::

        \mathrm{JSD}_\beta(P \| Q) = \beta\, D_{KL}(P \| M) + (1 - \beta)\, D_{KL}(Q \| M),
        \qquad M = \beta P + (1 - \beta) Q,

    with :math:`p = \operatorname{softmax}(a/T)`, :math:`q = \operatorname{softmax}(b/T)`,
    computed from log-probabilities: :math:`\log m_c` is the log-sum-exp of
    :math:`\log\beta + \log p_c` and :math:`\log(1-\beta) + \log q_c`, so no probability is
    formed and none underflows into a log. The options (temperature, weights, mask,
    reduction) are those of :func:`softmax_kl_divergence`.

    Parameters
    ----------
    p_logits : array, shape (..., C, ...)
        Logits ``a`` of P (the teacher); ``-inf`` masks a class.
    q_logits : array, broadcastable with ``p_logits``
        Logits ``b`` of Q (the student).
    beta : float in (0, 1), default 0.5
        The weight of P in the mixture. ``0.5`` is the symmetric JS divergence, bounded by
        :math:`\log 2`; small ``beta`` behaves like :math:`\beta` times the forward KL
        :math:`D_{KL}(P\|Q)`, ``beta`` near 1 like :math:`1-\beta` times the reverse one
        (Agarwal et al. 2024, the GKD loss).
    temperature : float > 0, default 1
        Both logits are divided by :math:`T`.
    scale_by_temperature_squared : bool, default False
        Multiply the divergence by :math:`T^2`.
    axis : int, default -1
        The class axis.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1 (``reduction="none"`` only).
    sample_weights, mask, reduction
        As in :func:`softmax_kl_divergence`.

    Returns
    -------
    array
        The broadcast shape without ``axis`` for ``"none"``, else 0-d. Finite and non-negative
        for any finite or ``-inf`` logits (a class with ``-inf`` in both contributes 0); a row
        with nan or ``+inf`` gives nan.

    Notes
    -----
    Gradients (:func:`infoloss.value_and_grad` returns ``(value, (d/da, d/db))``), for
    :math:`T = 1` and one example, with :math:`d^P = \log p - \log m`:
    :math:`\partial/\partial a_j = \beta\, p_j (d^P_j - D_{KL}(P\|M))` and
    :math:`\partial/\partial b_j = (1-\beta)\, q_j (d^Q_j - D_{KL}(Q\|M))`: 0 for a class
    with ``-inf`` logit. :math:`\mathrm{JSD}_\beta(P\|Q) = \mathrm{JSD}_{1-\beta}(Q\|P)`.

    References
    ----------
    R. Agarwal et al., "On-policy distillation of language models: learning from
    self-generated mistakes", ICLR 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import softmax_js_divergence, js_divergence, softmax
    >>> a, b = np.array([2.0, 0.0, -np.inf]), np.array([0.0, 1.0, 0.0])
    >>> float(softmax_js_divergence(a, b))
    0.26510209010568...
    >>> float(js_divergence(softmax(a), softmax(b)))
    0.26510209010568...
    >>> float(softmax_js_divergence(a, b, beta=0.1, temperature=2.0))
    0.0523622029779...
    """
    return _softmax_js_divergence(
        p_logits,
        q_logits,
        beta=beta,
        temperature=temperature,
        scale_by_temperature_squared=scale_by_temperature_squared,
        axis=axis,
        base=base,
        keepdims=keepdims,
        sample_weights=sample_weights,
        mask=mask,
        reduction=reduction,
    )[0]
