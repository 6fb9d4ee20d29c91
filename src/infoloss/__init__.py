"""infoloss: information-theoretic losses, stable from logits, on any array library.

Information content, entropy, cross-entropy, KL and Jensen–Shannon divergence; stable
log-sum-exp, softmax and sigmoid; softmax and sigmoid cross-entropy losses computed from raw
logits with analytic gradients. One implementation written against the Python Array API serves
NumPy, PyTorch, JAX, CuPy and array-api-strict; NumPy float32/float64 inputs use fused numba
kernels. See ``docs/semantics.md`` for the exact definitions.
"""

from __future__ import annotations

from ._fast.pool import empty_gradient_cache, set_gradient_cache
from .activations import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax
from .errors import InfolossError, InfolossTypeError
from .focal import (
    poly_cross_entropy,
    sigmoid_focal_loss,
    softmax_focal_loss,
    sparse_poly_cross_entropy,
    sparse_softmax_focal_loss,
)
from .gradients import value_and_grad
from .joint import conditional_entropy, mutual_information
from .linear import linear_cross_entropy
from .losses import (
    CrossEntropyAux,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
    sparse_softmax_cross_entropy,
    weight_total,
)
from .measures import (
    cross_entropy,
    entropy,
    information,
    js_divergence,
    kl_divergence,
    softmax_entropy,
    softmax_js_divergence,
    softmax_kl_divergence,
)
from .metrics import CrossEntropyMeter, bits_per_byte, perplexity

__version__ = "0.1.0"

__all__ = [
    "CrossEntropyAux",
    "CrossEntropyMeter",
    "InfolossError",
    "InfolossTypeError",
    "bits_per_byte",
    "conditional_entropy",
    "cross_entropy",
    "empty_gradient_cache",
    "entropy",
    "information",
    "js_divergence",
    "kl_divergence",
    "linear_cross_entropy",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "mutual_information",
    "perplexity",
    "poly_cross_entropy",
    "set_gradient_cache",
    "sigmoid",
    "sigmoid_cross_entropy",
    "sigmoid_focal_loss",
    "softmax",
    "softmax_cross_entropy",
    "softmax_entropy",
    "softmax_focal_loss",
    "softmax_js_divergence",
    "softmax_kl_divergence",
    "sparse_poly_cross_entropy",
    "sparse_softmax_cross_entropy",
    "sparse_softmax_focal_loss",
    "value_and_grad",
    "weight_total",
]
