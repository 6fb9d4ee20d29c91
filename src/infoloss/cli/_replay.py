"""``infoloss demo --backend NAME``: the tutorial's two experiments on one framework's tensors.

The network of Parts 2 and 3 (the same X, W, b) is rebuilt as tensors of the chosen framework;
infoloss's fused softmax and sigmoid cross-entropies run on them and are printed beside that
framework's own losses — ``tf.nn.softmax_cross_entropy_with_logits`` and
``tf.nn.sigmoid_cross_entropy_with_logits`` (as in the tutorial), ``F.cross_entropy`` and
``F.binary_cross_entropy_with_logits`` for PyTorch, optax's losses for JAX (a ``jax.nn``
formula when optax is not installed), SciPy's ``log_softmax``/``log_expit`` for NumPy (the NumPy
formula without SciPy) — with the difference, and the gradients from the framework's own
autodiff through infoloss beside the closed forms softmax(h0) − y and sigmoid(h0) − y.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import CLIError, fmt, fmt_array

__all__ = ["BACKENDS", "render", "replay"]

#: ``--backend`` name: (module to import, the pip extra that brings it)
BACKENDS = {
    "numpy": ("numpy", "infoloss"),
    "torch": ("torch", "torch"),
    "jax": ("jax", "jax[cpu]"),
    "tensorflow": ("tensorflow", "infoloss[tensorflow]"),
}


def _import(backend: str) -> Any:
    module, pkg = BACKENDS[backend]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CLIError(
            f"--backend {backend} needs {module}, which is not installed; "
            f'install it with: pip install "{pkg}"'
        ) from None


# Each framework: (tensor maker, its own softmax CE, its own sigmoid CE, their names,
# the gradient of the sum of a loss's entries by its autodiff (None: no autodiff), to NumPy).
Peer = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], tuple[str, str], Any, Any]


def _numpy_peer() -> Peer:
    try:
        from scipy.special import log_expit, log_softmax

        names = ("-sum(y * scipy.special.log_softmax(h0))", "scipy.special.log_expit formula")
    except ImportError:  # pragma: no cover - scipy comes with the cli and test extras

        def log_softmax(x: Any, axis: int = -1) -> Any:
            m = np.max(x, axis=axis, keepdims=True)
            return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))

        def log_expit(x: Any) -> Any:
            return -np.logaddexp(0.0, -x)

        names = ("-sum(y * log_softmax(h0)) (NumPy)", "-[y log σ + (1-y) log(1-σ)] (NumPy)")

    def softmax_ce(y: Any, x: Any) -> Any:
        return -np.sum(y * log_softmax(x, axis=-1), axis=-1)

    def sigmoid_ce(y: Any, x: Any) -> Any:
        return -(y * log_expit(x) + (1 - y) * log_expit(-x))

    return np.asarray, softmax_ce, sigmoid_ce, names, None, np.asarray


def _torch_peer() -> Peer:
    import torch
    import torch.nn.functional as F

    def grad(fn: Callable[[Any], Any], x: Any) -> Any:
        x = x.detach().requires_grad_(True)
        fn(x).sum().backward()
        return x.grad

    return (
        torch.as_tensor,
        lambda y, x: F.cross_entropy(x, y, reduction="none"),
        lambda y, x: F.binary_cross_entropy_with_logits(x, y, reduction="none"),
        ("F.cross_entropy", "F.binary_cross_entropy_with_logits"),
        grad,
        lambda t: t.detach().numpy(),
    )


def _jax_peer() -> Peer:
    import jax
    import jax.numpy as jnp

    try:
        import optax

        names = ("optax.softmax_cross_entropy", "optax.sigmoid_binary_cross_entropy")

        def softmax_ce(y: Any, x: Any) -> Any:
            return optax.softmax_cross_entropy(x, y)

        def sigmoid_ce(y: Any, x: Any) -> Any:
            return optax.sigmoid_binary_cross_entropy(x, y)

    except ImportError:
        names = ("-sum(y * jax.nn.log_softmax(h0))", "jax.nn.log_sigmoid formula")

        def softmax_ce(y: Any, x: Any) -> Any:
            return -jnp.sum(y * jax.nn.log_softmax(x), axis=-1)

        def sigmoid_ce(y: Any, x: Any) -> Any:
            return -(y * jax.nn.log_sigmoid(x) + (1 - y) * jax.nn.log_sigmoid(-x))

    def grad(fn: Callable[[Any], Any], x: Any) -> Any:
        return jax.grad(lambda t: jnp.sum(fn(t)))(x)

    return jnp.asarray, softmax_ce, sigmoid_ce, names, grad, np.asarray


def _tensorflow_peer() -> Peer:
    import tensorflow as tf

    def grad(fn: Callable[[Any], Any], x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            v = fn(x)
        return tape.gradient(v, x)  # of the sum of v's entries

    return (
        tf.constant,
        lambda y, x: tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x),
        lambda y, x: tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x),
        (
            "tf.nn.softmax_cross_entropy_with_logits",
            "tf.nn.sigmoid_cross_entropy_with_logits",
        ),
        grad,
        lambda t: t.numpy(),
    )


_PEERS = {
    "numpy": _numpy_peer,
    "torch": _torch_peer,
    "jax": _jax_peer,
    "tensorflow": _tensorflow_peer,
}


def replay(backend: str, h0: np.ndarray, single: Any, multi: Any) -> dict[str, Any]:
    """Parts 2 and 3 on ``backend``'s tensors: infoloss beside the framework's own losses.

    Examples
    --------
    >>> r = replay("numpy", np.array([[2.0, 1.0, 0.1]]), [[0.0, 0.0, 1.0]], [[1.0, 0.0, 1.0]])
    >>> r["softmax"]["infoloss"], r["softmax"]["difference"]
    (array([2.31703002]), array([0.]))
    """
    import infoloss

    if backend not in _PEERS:
        raise CLIError(f"--backend must be one of {', '.join(_PEERS)}; got {backend}")
    _import(backend)
    if backend == "jax":
        import jax

        if h0.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
    tensor, own_softmax, own_sigmoid, names, grad, to_np = _PEERS[backend]()
    x = tensor(h0)
    y1 = tensor(np.asarray(single, dtype=h0.dtype))
    y2 = tensor(np.asarray(multi, dtype=h0.dtype))
    out: dict[str, Any] = {
        "backend": backend,
        "tensor_type": f"{type(x).__module__}.{type(x).__name__}",
    }
    for key, fused, own, name, y in (
        ("softmax", infoloss.softmax_cross_entropy, own_softmax, names[0], y1),
        ("sigmoid", infoloss.sigmoid_cross_entropy, own_sigmoid, names[1], y2),
    ):
        mine = fused(labels=y, logits=x)
        theirs = own(y, x)
        entry: dict[str, Any] = {
            "peer": name,
            "result_type": f"{type(mine).__module__}.{type(mine).__name__}",
            "infoloss": to_np(mine),
            "framework": to_np(theirs),
            "difference": to_np(mine) - to_np(theirs),
        }
        if grad is not None:
            g = grad(lambda t, fused=fused, y=y: fused(labels=y, logits=t), x)
            act = infoloss.softmax(h0) if key == "softmax" else infoloss.sigmoid(h0)
            closed = act - np.asarray(single if key == "softmax" else multi, dtype=h0.dtype)
            entry["gradient"] = to_np(g)
            entry["closed_form"] = closed
            entry["gradient_max_abs_difference"] = float(np.max(np.abs(to_np(g) - closed)))
        out[key] = entry
    return out


def render(r: dict[str, Any]) -> list[str]:
    """The replay's lines (appended to the demo's output)."""
    title = f"The tutorial on {r['backend']}: infoloss beside the framework's own losses"
    lines = ["", title, "-" * len(title), f"  h0 and the labels as {r['tensor_type']}"]
    for key, what in (("softmax", "softmax"), ("sigmoid", "sigmoid")):
        e = r[key]
        lines += [
            f"  {what} cross-entropy, infoloss ({e['result_type']}): {fmt_array(e['infoloss'], 8)}",
            f"      {e['peer']}: {fmt_array(e['framework'], 8)}",
            f"      difference: {fmt_array(e['difference'], 3)}",
        ]
        if "gradient" in e:
            lines += [
                f"      gradient by {r['backend']} autodiff: {fmt_array(e['gradient'])}",
                f"      closed form {what}(h0) - label: {fmt_array(e['closed_form'])}"
                f"  (max |difference| {fmt(e['gradient_max_abs_difference'], 3)})",
            ]
    return lines
