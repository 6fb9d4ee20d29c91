"""Validation of the focal and poly losses' arguments into specs (:mod:`infoloss._specs`).

The losses' own options (γ, α, ε) are checked first; everything else is validated exactly as for
the plain cross-entropies (:mod:`infoloss._validate`), whose specs the focal specs wrap.
"""

from __future__ import annotations

import math
from typing import Any

from ._specs import SigmoidFocal, SoftmaxFocal
from ._utils import _real_option, check_nonnegative, check_unit_interval
from ._validate import sigmoid_ce_spec, softmax_ce_spec
from .errors import InfolossError

__all__ = ["sigmoid_focal_spec", "softmax_focal_spec"]


def _epsilon(value: Any) -> float:
    v = _real_option(value, "epsilon", "a number ≥ -1")
    if not (v >= -1.0) or v == math.inf:
        raise InfolossError(
            f"`epsilon` must be a finite number ≥ -1 (the loss is then ≥ 0); got {value}"
        )
    return v


def softmax_focal_spec(
    logits: Any,
    labels: Any,
    *,
    kind: str,
    sparse: bool,
    gamma: Any = 2.0,
    epsilon: Any = 1.0,
    axis: Any = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: Any = None,
    reduction: Any = "none",
) -> SoftmaxFocal:
    """The spec of the softmax focal losses (``kind="focal"``) and poly cross-entropies
    (``kind="poly"``), dense or sparse labels."""
    param = check_nonnegative(gamma, "gamma") if kind == "focal" else _epsilon(epsilon)
    ce = softmax_ce_spec(
        logits,
        labels,
        sparse=sparse,
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    return SoftmaxFocal(ce=ce, kind=kind, param=param)


def sigmoid_focal_spec(
    logits: Any,
    labels: Any,
    *,
    alpha: Any = 0.25,
    gamma: Any = 2.0,
    sample_weights: Any = None,
    reduction: Any = "none",
) -> SigmoidFocal:
    """The spec of :func:`infoloss.sigmoid_focal_loss`."""
    a = None if alpha is None else check_unit_interval(alpha, "alpha")
    g = check_nonnegative(gamma, "gamma")
    ce = sigmoid_ce_spec(logits, labels, sample_weights=sample_weights, reduction=reduction)
    return SigmoidFocal(ce=ce, alpha=a, gamma=g)
