"""Analytic gradients of the losses and logit measures, without an autodiff framework."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from .errors import InfolossError
from .focal import (
    _sigmoid_focal,
    _softmax_focal,
    poly_cross_entropy,
    sigmoid_focal_loss,
    softmax_focal_loss,
    sparse_poly_cross_entropy,
    sparse_softmax_focal_loss,
)
from .linear import _linear_ce, linear_cross_entropy
from .losses import (
    _sigmoid_ce,
    _softmax_ce,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
    sparse_softmax_cross_entropy,
)
from .measures import (
    _js_divergence,
    _softmax_entropy,
    _softmax_js_divergence,
    _softmax_kl_divergence,
    js_divergence,
    softmax_entropy,
    softmax_js_divergence,
    softmax_kl_divergence,
)
from .metrics import _bits_per_byte, _perplexity, bits_per_byte, perplexity

__all__ = ["value_and_grad"]


# Each loss's private implementation takes the public function's arguments plus ``want_grad``
# (and the switches that tell its variants apart); value_and_grad checks the call against the
# public signature first, so an argument the public function lacks is still an error.
_REGISTRY: dict[Callable[..., Any], Callable[..., Any]] = {
    softmax_cross_entropy: functools.partial(_softmax_ce, sparse=False, want_grad=True),
    sparse_softmax_cross_entropy: functools.partial(_softmax_ce, sparse=True, want_grad=True),
    sigmoid_cross_entropy: functools.partial(_sigmoid_ce, want_grad=True),
    softmax_entropy: functools.partial(_softmax_entropy, want_grad=True),
    softmax_kl_divergence: functools.partial(_softmax_kl_divergence, want_grad=True),
    softmax_js_divergence: functools.partial(_softmax_js_divergence, want_grad=True),
    js_divergence: functools.partial(_js_divergence, want_grad=True),
    perplexity: functools.partial(_perplexity, want_grad=True),
    bits_per_byte: functools.partial(_bits_per_byte, want_grad=True),
    linear_cross_entropy: functools.partial(_linear_ce, want_grad=True),
    sigmoid_focal_loss: functools.partial(_sigmoid_focal, want_grad=True),
    softmax_focal_loss: functools.partial(
        _softmax_focal, kind="focal", sparse=False, want_grad=True
    ),
    sparse_softmax_focal_loss: functools.partial(
        _softmax_focal, kind="focal", sparse=True, want_grad=True
    ),
    poly_cross_entropy: functools.partial(
        _softmax_focal, kind="poly", sparse=False, want_grad=True
    ),
    sparse_poly_cross_entropy: functools.partial(
        _softmax_focal, kind="poly", sparse=True, want_grad=True
    ),
}


# The losses whose gradient can be written into a caller's buffer (``out=``).
_TAKES_OUT = frozenset(
    {
        softmax_cross_entropy,
        sparse_softmax_cross_entropy,
        sigmoid_cross_entropy,
        sigmoid_focal_loss,
        softmax_focal_loss,
        sparse_softmax_focal_loss,
        poly_cross_entropy,
        sparse_poly_cross_entropy,
    }
)


def value_and_grad(fn: Callable[..., Any]) -> Callable[..., tuple[Any, Any]]:
    r"""Turn a loss into a function returning ``(value, gradient with respect to the logits)``.

    Supported: :func:`~infoloss.softmax_cross_entropy`,
    :func:`~infoloss.sparse_softmax_cross_entropy`, :func:`~infoloss.sigmoid_cross_entropy`,
    :func:`~infoloss.softmax_entropy`, :func:`~infoloss.softmax_kl_divergence`,
    :func:`~infoloss.softmax_js_divergence`, :func:`~infoloss.js_divergence` (gradients with
    respect to the probabilities), :func:`~infoloss.perplexity`,
    :func:`~infoloss.bits_per_byte`, :func:`~infoloss.linear_cross_entropy` and the focal and
    poly losses of :mod:`infoloss.focal`. The returned function takes the same
    arguments as ``fn``. The gradient is computed analytically in the same pass as the value
    (for NumPy float32/float64, in one fused sweep over the logits), on any backend:

    .. math::

        \frac{\partial \ell}{\partial x} = s\,[(\textstyle\sum_k w_k t_k + 2 z\,\mathrm{lse})\,
        \operatorname{softmax}(x) - w \odot t] \quad\text{(softmax)}, \qquad
        s\,[(p y' + 1 - y')\,\sigma(x) - p y'] \quad\text{(sigmoid)}

    Parameters
    ----------
    fn : callable
        One of the functions above.

    Returns
    -------
    callable
        ``f(*args, out=None, **kwargs) -> (value, grad)``. ``grad`` has the logits' shape, array
        type and dtype.

        ``out`` (NumPy logits of the cross-entropies and the focal and poly losses only): a writeable NumPy array of the
        logits' shape and dtype that receives the gradient and is returned as ``grad``. Reusing
        one buffer across the steps of a training loop saves a fresh N × C allocation per call,
        whose first touch (the operating system zeroing new pages) can cost a third of the
        call. ``out`` may be the logits array itself, which is then overwritten by its gradient
        (no N × C memory at all). With the fused kernels, a C-contiguous ``out`` of the compute
        dtype is written directly; otherwise the gradient is computed and copied into it. For ``reduction="none"`` it is the gradient of the *sum* of the per-example losses
        (each row of the gradient is then the gradient of that example's loss). For
        :func:`~infoloss.softmax_kl_divergence` and :func:`~infoloss.softmax_js_divergence` it
        is a pair ``(d/dp_logits, d/dq_logits)``, for :func:`~infoloss.js_divergence` a pair
        ``(d/dp, d/dq)``.

    Raises
    ------
    InfolossError
        If ``fn`` is not supported.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import value_and_grad, softmax_cross_entropy, softmax
    >>> h0 = np.array([[2.0, 1.0, 0.1]]); label = np.array([[0.0, 0.0, 1.0]])
    >>> loss, grad = value_and_grad(softmax_cross_entropy)(h0, label)
    >>> grad  # softmax(h0) - label
    array([[ 0.65900114,  0.24243297, -0.90143411]])
    >>> bool(np.allclose(grad, softmax(h0) - label))
    True

    A training loop can reuse one gradient buffer:

    >>> from infoloss import sparse_softmax_cross_entropy
    >>> buf = np.empty_like(h0)
    >>> loss, g = value_and_grad(sparse_softmax_cross_entropy)(h0, np.array([2]), out=buf)
    >>> g is buf and bool(np.allclose(buf, grad))
    True
    """
    try:
        impl = _REGISTRY[fn]
    except (KeyError, TypeError):
        names = ", ".join(sorted(f.__name__ for f in _REGISTRY))
        raise InfolossError(
            f"`fn` must be one of {names}; got {getattr(fn, '__name__', repr(fn))}"
        ) from None

    signature = inspect.signature(fn)
    takes_out = fn in _TAKES_OUT

    @functools.wraps(fn)
    def wrapper(*args: Any, out: Any = None, **kwargs: Any) -> tuple[Any, Any]:
        signature.bind(*args, **kwargs)  # the public function's arguments, nothing else
        if out is None:
            return impl(*args, **kwargs)
        if not takes_out:
            raise InfolossError(
                f"`out` is supported for {', '.join(sorted(f.__name__ for f in _TAKES_OUT))}; "
                f"not for {fn.__name__}"
            )
        return impl(*args, grad_out=out, **kwargs)

    wrapper.__doc__ = f"Value and gradient of :func:`infoloss.{fn.__name__}` (same arguments)."
    return wrapper
