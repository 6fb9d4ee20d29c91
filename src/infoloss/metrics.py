"""Evaluation measures of language models: perplexity, bits per byte and a streaming meter.

All three count the same tokens the same way as :func:`infoloss.sparse_softmax_cross_entropy`:
a token whose label is ``ignore_index`` counts for nothing (loss, weight and bytes), every
other token is weighted by its sample weight (1 without weights). The measures of a data set
are those of its token sums, never a mean of per-batch means: batches of different sizes (or
with different numbers of padding tokens) are combined correctly by
:class:`CrossEntropyMeter`, also across processes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _router
from ._utils import Array, quiet_overflow, size
from ._validate import lm_spec
from .errors import InfolossError

__all__ = ["CrossEntropyMeter", "bits_per_byte", "perplexity"]

_LN2 = math.log(2.0)


@quiet_overflow
def _perplexity(logits: Any, labels: Any, *, want_grad: bool = False, **options: Any) -> Any:
    """Value and, with ``want_grad``, d value / d logits of :func:`perplexity`."""
    return _router.lm_measure(lm_spec("perplexity", logits, labels, **options), want_grad)


@quiet_overflow
def _bits_per_byte(
    logits: Any, labels: Any, num_bytes: Any, *, want_grad: bool = False, **options: Any
) -> Any:
    """Value and, with ``want_grad``, d value / d logits of :func:`bits_per_byte`."""
    spec = lm_spec("bits_per_byte", logits, labels, num_bytes, **options)
    return _router.lm_measure(spec, want_grad)


def perplexity(
    logits: Any,
    labels: Any,
    *,
    ignore_index: int | None = None,
    sample_weights: Any = None,
    axis: int = -1,
) -> Array:
    r"""Perplexity of a model's predictions of integer labels: exp of the mean cross-entropy.

    .. math::

        \mathrm{PPL} = \exp\Big(\frac{\sum_i s_i\, \ell_i}{\sum_i s_i}\Big), \qquad
        \ell_i = \operatorname{lse}(x_i) - x_{i y_i}

    over the tokens ``i`` whose label is not ``ignore_index``.

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        The model's logits for each token.
    labels : integer array, shape ``logits.shape`` without ``axis``
        The tokens that came next, in ``[0, C)``, or ``ignore_index``.
    ignore_index : int, optional
        Label of tokens that are not counted (padding, prompt tokens), e.g. ``-100``.
    sample_weights : array, broadcastable to the labels' shape, optional
        Weight :math:`s_i` of each token.
    axis : int, default -1
        The class (vocabulary) axis.

    Returns
    -------
    0-d array
        In :math:`[1, \infty)`; ``C`` for uniform logits over ``C`` classes; 1.0 when no token
        counts (the mean over nothing is 0). The logits' array type and dtype.

    Notes
    -----
    The geometric mean of :math:`1/q(y_i)`: the number of equally likely choices the model is
    as uncertain as. ``log2(PPL)`` is the bits per token. The gradient
    (:func:`infoloss.value_and_grad`) is :math:`\mathrm{PPL}` times the gradient of the mean
    cross-entropy. For a data set in several batches use :class:`CrossEntropyMeter`: the
    perplexity of the whole is not the mean of the batches' perplexities.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import perplexity
    >>> float(perplexity(np.zeros((3, 50)), np.array([4, 7, 9])))  # uniform over 50 tokens
    50.0
    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    >>> float(perplexity(logits, np.array([0, 1, -100]), ignore_index=-100))
    1.18203066424069...
    """
    return _perplexity(
        logits, labels, ignore_index=ignore_index, sample_weights=sample_weights, axis=axis
    )[0]


def bits_per_byte(
    logits: Any,
    labels: Any,
    num_bytes: Any,
    *,
    ignore_index: int | None = None,
    sample_weights: Any = None,
    axis: int = -1,
) -> Array:
    r"""Bits per byte of text: the summed cross-entropy in bits over the bytes it encodes.

    .. math::

        \mathrm{bpb} = \frac{\sum_i s_i\, \ell_i}{\ln 2 \,\sum_i s_i\, b_i}

    over the tokens ``i`` whose label is not ``ignore_index``, with :math:`b_i` the number of
    bytes (UTF-8) of token :math:`y_i`.

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        The model's logits.
    labels : integer array, shape ``logits.shape`` without ``axis``
        The next tokens, or ``ignore_index``.
    num_bytes : array, broadcastable to the labels' shape
        Bytes of each target token (non-negative), e.g. ``token_bytes[labels]`` with
        ``token_bytes`` the byte length of each vocabulary entry. Special tokens with 0 bytes
        still add their loss; give them ``ignore_index`` to leave them out entirely.
    ignore_index : int, optional
        Label of tokens counted neither in the loss nor in the bytes.
    sample_weights : array, broadcastable to the labels' shape, optional
        Weight of each token, in the loss and in the bytes.
    axis : int, default -1
        The class axis.

    Returns
    -------
    0-d array
        Non-negative; 0.0 when the bytes total 0. The logits' array type and dtype.

    Notes
    -----
    Unlike the perplexity, bits per byte does not depend on the tokenizer: models with different
    vocabularies can be compared on the same text. The gradient (:func:`infoloss.value_and_grad`)
    is that of the summed cross-entropy divided by :math:`\ln 2 \sum_i s_i b_i`.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import bits_per_byte
    >>> logits = np.zeros((2, 256))  # a uniform model over 256 byte values: 8 bits per byte
    >>> float(bits_per_byte(logits, np.array([104, 105]), np.array([1, 1])))
    8.0
    >>> float(bits_per_byte(np.zeros((2, 4)), np.array([1, 2]), 2))  # 2 bits per 2-byte token
    1.0
    """
    return _bits_per_byte(
        logits,
        labels,
        num_bytes,
        ignore_index=ignore_index,
        sample_weights=sample_weights,
        axis=axis,
    )[0]


def _scalar(x: Any, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InfolossError(f"`{name}` must be a real number; got {x!r}") from None
    if not v >= 0.0 or v == math.inf:
        raise InfolossError(f"`{name}` must be a finite non-negative number; got {x!r}")
    return v


class CrossEntropyMeter:
    r"""A streaming accumulator of the token cross-entropy of an evaluation.

    It keeps four float64 sums: the weighted loss :math:`L = \sum_i s_i \ell_i` (nats), the
    weight :math:`W = \sum_i s_i`, the bytes :math:`B = \sum_i s_i b_i` and the token count
    :math:`N`, over the tokens not ignored, and reports

    .. math::

        \text{mean loss} = L / W, \quad \mathrm{PPL} = e^{L/W}, \quad
        \text{bits per token} = \frac{L}{W \ln 2}, \quad \text{bits per byte} = \frac{L}{B \ln 2}

    (0.0, or 1.0 for the perplexity, when the denominator is 0). Adding batches one by one,
    merging meters and adding everything as one batch give the same results (up to the
    rounding of the sums).

    Across processes, :meth:`state` is a length-4 float64 NumPy array that an all-reduce can
    sum, and :meth:`from_state` rebuilds the meter of the whole::

        t = torch.as_tensor(meter.state())          # or jax.lax.psum(meter.state(), "i")
        torch.distributed.all_reduce(t)             # op=SUM
        total = CrossEntropyMeter.from_state(t)

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss.metrics import CrossEntropyMeter
    >>> meter = CrossEntropyMeter()
    >>> logits = np.zeros((4, 8))  # uniform over 8 tokens: 3 bits per token
    >>> _ = meter.update(logits, np.array([1, 2, 3, -100]), ignore_index=-100,
    ...                  num_bytes=np.array([2, 1, 3, 5]))
    >>> meter.tokens, round(meter.perplexity, 6), round(meter.bits_per_token, 6)
    (3, 8.0, 3.0)
    >>> round(meter.bits_per_byte, 6)  # 9 bits over 6 bytes
    1.5
    >>> other = CrossEntropyMeter().update(np.zeros((1, 8)), np.array([0]), num_bytes=3)
    >>> round(meter.merge(other).bits_per_byte, 6)  # 12 bits over 9 bytes
    1.333333
    >>> CrossEntropyMeter.from_state(meter.state()).tokens
    4
    """

    __slots__ = ("loss_sum", "num_bytes", "tokens", "weight")

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.weight = 0.0
        self.num_bytes = 0.0
        self.tokens = 0

    def __repr__(self) -> str:
        return (
            f"CrossEntropyMeter(loss_sum={self.loss_sum!r}, weight={self.weight!r}, "
            f"num_bytes={self.num_bytes!r}, tokens={self.tokens})"
        )

    @quiet_overflow
    def update(
        self,
        logits: Any,
        labels: Any,
        *,
        num_bytes: Any = None,
        ignore_index: int | None = None,
        sample_weights: Any = None,
        axis: int = -1,
    ) -> CrossEntropyMeter:
        """Add a batch: the arguments of :func:`bits_per_byte` (``num_bytes`` optional, needed
        for :attr:`bits_per_byte`). Returns the meter. The batch's sums are formed in the
        logits' dtype and added in float64."""
        spec = lm_spec(
            "meter",
            logits,
            labels,
            num_bytes,
            ignore_index=ignore_index,
            sample_weights=sample_weights,
            axis=axis,
        )
        ce = spec.ce
        xp = ce.xp
        loss, _ = _router.softmax_ce(ce)
        ii = ce.options.ignore_index
        valid = None if ii is None else (ce.labels != ii)
        w = ce.sample_weights
        if w is None:
            w = xp.ones(tuple(ce.labels.shape), dtype=ce.compute_dtype)
        if valid is not None:
            w = xp.where(valid, w, xp.zeros_like(w))
        count = (
            int(size(ce.labels) or 0) if valid is None else int(xp.sum(xp.astype(valid, xp.int64)))
        )
        self.loss_sum += _detached(loss)
        self.weight += _detached(xp.sum(w))
        if spec.num_bytes is not None:
            self.num_bytes += _detached(xp.sum(spec.num_bytes * w))
        self.tokens += count
        return self

    def add(
        self, loss_sum: float, weight: float, *, num_bytes: float = 0.0, tokens: int = 0
    ) -> CrossEntropyMeter:
        """Add sums computed elsewhere (e.g. ``loss_sum`` from a ``reduction="sum"`` loss and
        ``weight`` its token count). Returns the meter."""
        self.loss_sum += _scalar(loss_sum, "loss_sum")
        self.weight += _scalar(weight, "weight")
        self.num_bytes += _scalar(num_bytes, "num_bytes")
        if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 0:
            raise InfolossError(f"`tokens` must be a non-negative integer; got {tokens!r}")
        self.tokens += int(tokens)
        return self

    def merge(self, other: CrossEntropyMeter) -> CrossEntropyMeter:
        """Add another meter's sums into this one (another shard or process). Returns self."""
        if not isinstance(other, CrossEntropyMeter):
            raise InfolossError(f"`other` must be a CrossEntropyMeter; got {type(other).__name__}")
        self.loss_sum += other.loss_sum
        self.weight += other.weight
        self.num_bytes += other.num_bytes
        self.tokens += other.tokens
        return self

    def reset(self) -> None:
        """Start over."""
        self.__init__()  # type: ignore[misc]

    def state(self) -> np.ndarray:
        """The sums ``[loss_sum, weight, num_bytes, tokens]`` as a float64 array of shape (4,),
        for an all-reduce (sum) across processes; see :meth:`from_state`."""
        return np.array(
            [self.loss_sum, self.weight, self.num_bytes, float(self.tokens)], dtype=np.float64
        )

    @classmethod
    def from_state(cls, state: Any) -> CrossEntropyMeter:
        """The meter of a :meth:`state` (or of the sum of several): any array of 4 numbers
        (NumPy, a CPU torch tensor, a JAX array)."""
        if hasattr(state, "detach"):
            state = state.detach().cpu()
        s = np.asarray(state, dtype=np.float64)
        if s.shape != (4,):
            raise InfolossError(
                f"`state` must have shape (4,): loss_sum, weight, num_bytes, tokens; got {s.shape}"
            )
        m = cls()
        m.add(s[0], s[1], num_bytes=s[2], tokens=round(float(s[3])))
        return m

    @property
    def mean_loss(self) -> float:
        """Mean cross-entropy per token, in nats (0.0 before any token)."""
        return self.loss_sum / self.weight if self.weight else 0.0

    @property
    def perplexity(self) -> float:
        """``exp(mean_loss)``."""
        return math.exp(self.mean_loss)

    @property
    def bits_per_token(self) -> float:
        """``mean_loss / ln 2``."""
        return self.mean_loss / _LN2

    @property
    def bits_per_byte(self) -> float:
        """``loss_sum / (ln 2 · num_bytes)`` (0.0 when no bytes were added)."""
        return self.loss_sum / (_LN2 * self.num_bytes) if self.num_bytes else 0.0


def _detached(x: Any) -> float:
    """A 0-d array of any library as a Python float (outside autograd)."""
    if hasattr(x, "detach"):
        x = x.detach()
    return float(x)
