"""``infoloss demo``: the tutorial's definitions and experiments, number by number.

Part 1 computes information content, entropy, KL divergence and cross-entropy for the tutorial's
two events ("the sun will not explode tomorrow" / "the sun will explode tomorrow"); Parts 2 and 3
run the tutorial's one-layer network (X = randn(1, 16)·10, W ~ N(0, 1) of shape 16×3, b = ones(3))
with softmax + cross-entropy on the label [[0, 0, 1]] and sigmoid + cross-entropy on [[1, 0, 1]];
the last part shows the gradients from :func:`infoloss.value_and_grad` beside their closed forms.
Only NumPy is needed, unless ``--plot`` asks for a figure (matplotlib). ``--backend NAME``
(numpy, torch, jax, tensorflow) also replays Parts 2 and 3 on that framework's tensors, beside its
own losses (:mod:`infoloss.cli._replay`).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ._common import (
    MAX_SEED,
    check_output_path,
    dumps_json,
    fmt,
    fmt_array,
    int_in,
    require,
    unit_name,
)
from ._replay import BACKENDS, replay
from ._replay import render as render_replay

__all__ = ["compute", "render", "run"]

#: Probability of "the sun will explode tomorrow" (event B); event A is its complement.
P_EXPLODE = 1e-6
#: The model's predicted distribution Q_pred = (Q_A, Q_B) for the two events.
Q_PRED = (0.99, 0.01)
SINGLE_LABEL = [[0.0, 0.0, 1.0]]
MULTI_LABEL = [[1.0, 0.0, 1.0]]
DEFAULT_SEED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed",
        type=int_in(0, MAX_SEED),
        default=DEFAULT_SEED,
        help=f"seed of numpy.random.default_rng for X and W, in [0, {MAX_SEED}] "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float64", "float32"],
        default="float64",
        help="floating type of the network's arrays; the tutorial's TensorFlow code used "
        "float32 (default: %(default)s)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="also write a figure (needs matplotlib): the softmax and sigmoid outputs next to "
        "their labels, and the information-content curve -log2 p with the two events marked",
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="also replay Parts 2 and 3 on this framework's tensors, each fused loss beside the "
        "framework's own (tf.nn.*_cross_entropy_with_logits, F.cross_entropy, optax, ...) and "
        "the gradients from its autodiff",
    )


def network(seed: int, dtype: str = "float64") -> dict[str, np.ndarray]:
    """The tutorial's input, weights and logits: ``h0 = X @ W + b``.

    Examples
    --------
    >>> net = network(1)
    >>> net["X"].shape, net["W"].shape, net["h0"].shape
    ((1, 16), (16, 3), (1, 3))
    >>> bool(np.allclose(net["h0"], net["X"] @ net["W"] + 1.0))
    True
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((1, 16)) * 10
    W = rng.standard_normal((16, 3))
    b = np.ones(3)
    X, W, b = (a.astype(dtype) for a in (X, W, b))
    return {"X": X, "W": W, "b": b, "h0": X @ W + b}


def compute(seed: int = DEFAULT_SEED, dtype: str = "float64") -> dict[str, Any]:
    """Every number the demo prints, as a dictionary (the ``--json`` output)."""
    import infoloss

    # Part 1: information, entropy, KL divergence, cross-entropy.
    p_b = P_EXPLODE
    p_real = np.array([1.0 - p_b, p_b])
    q_pred = np.array(Q_PRED)
    info_bits = infoloss.information(p_real, base=2)
    info_nats = infoloss.information(p_real)
    h_p = infoloss.entropy(p_real, base=2)
    kl = infoloss.kl_divergence(p_real, q_pred, base=2)
    ce = infoloss.cross_entropy(p_real, q_pred, base=2)
    part1 = {
        "events": {
            "A": "the sun will not explode tomorrow",
            "B": "the sun will explode tomorrow",
        },
        "p_real": p_real,
        "q_pred": q_pred,
        "information_bits": info_bits,
        "information_nats": info_nats,
        "entropy_p_bits": float(h_p),
        "kl_divergence_bits": float(kl),
        "cross_entropy_bits": float(ce),
        "entropy_plus_kl_bits": float(h_p + kl),
        "identity_difference": float(ce - (h_p + kl)),
    }

    net = network(seed, dtype)
    h0 = net["h0"]

    # Part 2: single label, softmax + cross-entropy.
    label = np.asarray(SINGLE_LABEL, dtype=h0.dtype)
    pred = infoloss.softmax(h0)
    loss = infoloss.softmax_cross_entropy(labels=label, logits=h0)
    with np.errstate(divide="ignore", invalid="ignore"):
        textbook = -np.sum(np.where(label > 0, label * np.log(pred), 0.0), axis=-1) + 0.0
    part2 = {
        "label": label,
        "logits": h0,
        "softmax": pred,
        "loss": loss,
        "loss_from_definition": textbook,
        "difference": loss - textbook,
    }

    # Part 3: multi-label, sigmoid + cross-entropy.
    mlabel = np.asarray(MULTI_LABEL, dtype=h0.dtype)
    spred = infoloss.sigmoid(h0)
    sloss = infoloss.sigmoid_cross_entropy(labels=mlabel, logits=h0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stextbook = (
            -(
                np.where(mlabel > 0, mlabel * np.log(spred), 0.0)
                + np.where(mlabel < 1, (1 - mlabel) * np.log(1 - spred), 0.0)
            )
            + 0.0
        )  # + 0.0 turns -0.0 into 0.0
    part3 = {
        "label": mlabel,
        "logits": h0,
        "sigmoid": spred,
        "loss": sloss,
        "loss_from_definition": stextbook,
        "difference": sloss - stextbook,
    }

    # Gradients with respect to the logits.
    _, g_soft = infoloss.value_and_grad(infoloss.softmax_cross_entropy)(labels=label, logits=h0)
    _, g_sig = infoloss.value_and_grad(infoloss.sigmoid_cross_entropy)(labels=mlabel, logits=h0)
    g_soft_closed = pred - label
    g_sig_closed = spred - mlabel
    gradients = {
        "softmax_cross_entropy": g_soft,
        "softmax_minus_label": g_soft_closed,
        "softmax_max_abs_difference": float(np.max(np.abs(g_soft - g_soft_closed))),
        "sigmoid_cross_entropy": g_sig,
        "sigmoid_minus_label": g_sig_closed,
        "sigmoid_max_abs_difference": float(np.max(np.abs(g_sig - g_sig_closed))),
    }
    return {
        "seed": seed,
        "dtype": dtype,
        "network": {"X": net["X"], "W": net["W"], "b": net["b"]},
        "part1": part1,
        "part2": part2,
        "part3": part3,
        "gradients": gradients,
    }


def _rule(title: str) -> list[str]:
    return ["", title, "-" * len(title)]


def _label(label: Any, *, integer: bool) -> str:
    """A label written as in the tutorial's code: ``[[0, 0, 1]]`` or ``[[1., 0., 1.]]``.

    Examples
    --------
    >>> _label(np.array([[0.0, 0.0, 1.0]]), integer=True), _label([[1.0, 0.0, 1.0]], integer=False)
    ('[[0, 0, 1]]', '[[1., 0., 1.]]')
    """
    rows = np.asarray(label, dtype=float).tolist()
    cell = (
        (lambda v: str(int(v))) if integer else (lambda v: f"{v:g}" + ("." if v == int(v) else ""))
    )
    return "[" + ", ".join("[" + ", ".join(cell(v) for v in row) + "]" for row in rows) + "]"


def render(r: dict[str, Any]) -> str:
    """The demo's text output for the numbers from :func:`compute`."""
    p1, p2, p3, g = r["part1"], r["part2"], r["part3"], r["gradients"]
    bits = unit_name(2)
    pa, pb = (float(v) for v in p1["p_real"])
    qa, qb = (float(v) for v in p1["q_pred"])
    ib, in_ = p1["information_bits"], p1["information_nats"]
    lines = [
        f"infoloss demo: the tutorial's experiments (seed {r['seed']}, {r['dtype']})",
    ]
    lines += _rule("Part 1. Information content, entropy, KL divergence, cross-entropy")
    lines += [
        f'  event A: "{p1["events"]["A"]}"   p(A) = {fmt(pa, 8)}',
        f'  event B: "{p1["events"]["B"]}"       p(B) = {fmt(pb, 8)}',
        "  information content I(x) = -log p(x): the less likely, the more informative",
        f"    I(A) = {fmt(ib[0]):>12} {bits} = {fmt(in_[0]):>12} nats",
        f"    I(B) = {fmt(ib[1]):>12} {bits} = {fmt(in_[1]):>12} nats",
        f"  entropy of P_real = (p(A), p(B)):  H(P) = -sum p log p = "
        f"{fmt(p1['entropy_p_bits'])} {bits}",
        f"  a model predicts Q_pred = ({fmt(qa)}, {fmt(qb)}):",
        f"    KL divergence  D_KL(P||Q) = sum p log(p/q) = {fmt(p1['kl_divergence_bits'])} {bits}",
        f"    cross-entropy  H(P,Q) = -sum p log q       = {fmt(p1['cross_entropy_bits'])} {bits}",
        f"    H(P) + D_KL(P||Q)                          = {fmt(p1['entropy_plus_kl_bits'])} {bits}"
        f"  (difference {fmt(p1['identity_difference'], 3)})",
        "  H(P) is fixed by the data, so minimising H(P,Q) minimises D_KL(P||Q).",
    ]
    lines += _rule("Part 2. Single label: softmax + cross-entropy")
    lines += [
        '  X = randn(1, 16) * 10 (a 4x4 "image"), W ~ N(0, 1) of shape 16x3, b = ones(3)',
        f"  logits h0 = X.W + b;  label = {_label(p2['label'], integer=True)}",
        f"  output before softmax activation:  {fmt_array(p2['logits'])}",
        f"  after the softmax mapping:         {fmt_array(p2['softmax'])}",
        f"  cross-entropy loss:                {fmt_array(p2['loss'], 8)}",
        "      from softmax_cross_entropy(labels=label, logits=h0)",
        f"  the same from the definition:      {fmt_array(p2['loss_from_definition'], 8)}",
        "      -sum(label * log(softmax(h0)))",
        f"  difference:                        {fmt_array(p2['difference'], 3)}",
    ]
    if not np.all(np.isfinite(p2["loss_from_definition"])):
        lines.append(
            "  (the definition overflows: softmax underflowed to 0 for the labelled class;"
            " the fused loss works from the logits and stays finite)"
        )
    lines += _rule("Part 3. Multi-label: sigmoid + cross-entropy (the same network)")
    lines += [
        f"  label = {_label(p3['label'], integer=False)}",
        f"  output before sigmoid activation:  {fmt_array(p3['logits'])}",
        f"  after the sigmoid mapping:         {fmt_array(p3['sigmoid'])}",
        f"  cross-entropy loss (per class):    {fmt_array(p3['loss'], 8)}",
        "      from sigmoid_cross_entropy(labels=label, logits=h0)",
        f"  the same from the definition:      {fmt_array(p3['loss_from_definition'], 8)}",
        "      -[y log q + (1 - y) log(1 - q)], q = sigmoid(h0)",
        f"  difference:                        {fmt_array(p3['difference'], 3)}",
    ]
    if not np.all(np.isfinite(p3["loss_from_definition"])):
        lines.append(
            "  (the definition overflows where the sigmoid saturated to 0 or 1;"
            " the fused loss works from the logits and stays finite)"
        )
    lines += _rule("Gradients of the losses with respect to the logits")
    lines += [
        f"  value_and_grad(softmax_cross_entropy):  {fmt_array(g['softmax_cross_entropy'])}",
        f"  closed form softmax(h0) - label:        {fmt_array(g['softmax_minus_label'])}",
        f"      max |difference| = {fmt(g['softmax_max_abs_difference'], 3)}",
        f"  value_and_grad(sigmoid_cross_entropy):  {fmt_array(g['sigmoid_cross_entropy'])}",
        f"  closed form sigmoid(h0) - label:        {fmt_array(g['sigmoid_minus_label'])}",
        f"      max |difference| = {fmt(g['sigmoid_max_abs_difference'], 3)}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    plot_path = None
    if args.plot is not None:
        plot_path = check_output_path(args.plot)
        require("matplotlib", purpose="--plot")
    backend = getattr(args, "backend", None)
    result = compute(args.seed, args.dtype)
    if backend is not None:
        net = network(args.seed, args.dtype)
        result["framework"] = replay(backend, net["h0"], SINGLE_LABEL, MULTI_LABEL)
    text = dumps_json(result) if args.json else render(result)
    if backend is not None and not args.json:
        text += "\n" + "\n".join(render_replay(result["framework"]))
    if plot_path is not None:
        from ._plot import plot_demo

        plot_demo(result, plot_path)
    print(text)
    if plot_path is not None and not args.json:
        print(f"\nwrote {plot_path}")
    return 0
