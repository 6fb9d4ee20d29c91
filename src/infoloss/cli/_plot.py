"""Figures for ``infoloss demo --plot`` and ``infoloss train --plot`` (matplotlib, Agg backend).

This module imports only :mod:`._common` (the subcommands import it, never the reverse); figures
are saved atomically by :func:`._common.save_figure`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._common import require, save_figure

__all__ = ["plot_demo", "plot_train"]


def _pyplot() -> Any:
    """matplotlib's Figure class, drawn off-screen (no display, no global pyplot state)."""
    require("matplotlib", purpose="--plot")
    from matplotlib.figure import Figure

    return Figure


def _bars(ax: Any, values: np.ndarray, label: np.ndarray, title: str, names: list[str]) -> None:
    x = np.arange(len(values))
    ax.bar(x - 0.2, values, width=0.4, color="tab:blue", label="model output")
    ax.bar(x + 0.2, label, width=0.4, color="tab:orange", label="label")
    for xi, v in zip(x, values, strict=True):
        ax.annotate(
            f"{v:.3g}",
            (xi - 0.2, v),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_title(title)
    ax.legend(loc="upper center", fontsize=8, ncols=2, frameon=False)


def _info_curve(p_min: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Points of the information-content curve -log2 p, from p_min / 10 to 1 on a log grid.

    Examples
    --------
    >>> p, info = _info_curve(1e-6, n=8)
    >>> float(p[0]), float(p[-1]), float(info[-1])
    (1e-07, 1.0, -0.0)
    """
    p = np.logspace(math.log10(p_min) - 1, 0, n)
    return p, -np.log2(p)


def plot_demo(result: dict[str, Any], path: Path) -> None:
    """Information-content curve with the two events, and the outputs next to their labels."""
    Figure = _pyplot()
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax_i, ax_s, ax_g = fig.subplots(1, 3)

    p_real = np.asarray(result["part1"]["p_real"], dtype=float)
    p, info = _info_curve(float(p_real.min()))
    ax_i.plot(p, info, color="tab:gray")
    bits = np.asarray(result["part1"]["information_bits"], dtype=float)
    colors = ("tab:green", "tab:red")
    for name, pi, ii, color in zip(("A", "B"), p_real, bits, colors, strict=True):
        ax_i.scatter([pi], [ii], color=color, zorder=3)
        text = result["part1"]["events"][name]
        ax_i.annotate(
            f"{name}: {text}\np = {pi:.6g}, I = {ii:.3g} bits",
            (pi, ii),
            xytext=(10, 8) if name == "B" else (0.98, 0.55),
            textcoords="offset points" if name == "B" else "axes fraction",
            fontsize=8,
            color=color,
            ha="left" if name == "B" else "right",
            arrowprops=None if name == "B" else {"arrowstyle": "-", "color": color},
        )
    ax_i.set_xscale("log")
    ax_i.set_xlabel("probability p(x)")
    ax_i.set_ylabel("information content -log2 p(x)  [bits]")
    ax_i.set_title("Information content")

    names = ["class 0", "class 1", "class 2"]
    p2, p3 = result["part2"], result["part3"]
    _bars(
        ax_s,
        np.ravel(p2["softmax"]),
        np.ravel(p2["label"]),
        f"softmax (loss {float(np.ravel(p2['loss'])[0]):.4g} nats)",
        names,
    )
    _bars(
        ax_g,
        np.ravel(p3["sigmoid"]),
        np.ravel(p3["label"]),
        f"sigmoid (losses {', '.join(f'{v:.3g}' for v in np.ravel(p3['loss']))} nats)",
        names,
    )
    fig.suptitle(f"infoloss demo (seed {result['seed']})")
    save_figure(fig, path)


def plot_train(result: dict[str, Any], path: Path) -> None:
    """Loss curves (train and test) and, for single-label, the test confusion matrix."""
    Figure = _pyplot()
    from matplotlib.ticker import MaxNLocator

    hist = result["history"]
    single = result["task"] == "single"
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_l, ax_r = fig.subplots(1, 2, width_ratios=[1.2, 1])

    ax_l.plot(hist["epoch"], hist["train_loss"], marker="o", ms=3, label="train")
    ax_l.plot(hist["epoch"], hist["test_loss"], marker="o", ms=3, label="test")
    ax_l.set_xlabel("epoch")
    ax_l.xaxis.set_major_locator(MaxNLocator(integer=True))
    kind = "softmax" if single else "sigmoid"
    ax_l.set_ylabel(f"{kind} cross-entropy [nats]")
    ax_l.set_yscale("log")
    ax_l.set_title("Loss")
    ax_l.grid(True, alpha=0.3)
    ax_l.legend()

    if single:
        cm = np.asarray(result["confusion_matrix"])
        im = ax_r.imshow(cm, cmap="Blues")
        n = cm.shape[0]
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if cm[i, j] > cm.max() / 2 else "black"
                    ax_r.text(
                        j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color
                    )
        ax_r.set_xticks(range(n))
        ax_r.set_yticks(range(n))
        ax_r.set_xlabel("predicted digit")
        ax_r.set_ylabel("true digit")
        ax_r.set_title(f"Test confusion matrix (accuracy {result['test']['accuracy']:.3f})")
        fig.colorbar(im, ax=ax_r, shrink=0.8)
    else:
        names = result["label_names"]
        train_acc = result["train"]["per_label_accuracy"]
        test_acc = result["test"]["per_label_accuracy"]
        x = np.arange(len(names))
        ax_r.bar(x - 0.2, train_acc, width=0.4, label="train")
        ax_r.bar(x + 0.2, test_acc, width=0.4, label="test")
        for xi, v in zip(x, test_acc, strict=True):
            ax_r.annotate(
                f"{v:.3f}",
                (xi + 0.2, v),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
        ax_r.set_xticks(x, names)
        lo = min(min(train_acc), min(test_acc))
        ax_r.set_ylim(max(0.0, lo - 0.1), 1.02)
        ax_r.set_title(f"Per-label accuracy (test exact match {result['test']['exact_match']:.3f})")
        ax_r.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncols=2, frameon=False)
    fig.suptitle(
        f"infoloss train --task {result['task']}: digits 8x8, {result['epochs']} epochs, "
        f"seed {result['seed']}"
    )
    save_figure(fig, path)
