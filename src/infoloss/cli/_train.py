"""``infoloss train``: the tutorial's network, generalised, trained on real 8x8 digit images.

The model is the tutorial's ``h0 = X.W + b`` with X the 64 pixels of each of scikit-learn's
bundled 8x8 digits (1,797 images, no download) and, optionally, one ReLU hidden layer
(``--hidden N``). ``--task single`` learns the digit (10 classes, softmax + cross-entropy through
:func:`infoloss.sparse_softmax_cross_entropy`); ``--task multi`` learns several true properties of
each digit at once (even, prime, >= 5, has a closed loop: sigmoid + cross-entropy through
:func:`infoloss.sigmoid_cross_entropy`). Plain NumPy: the gradient with respect to the logits comes
from :func:`infoloss.value_and_grad`, is back-propagated by hand through the layers, and Adam
updates the weights. The options are bounded and checked before anything is loaded: --epochs 1 to
10000, --hidden 0 to 4096, --batch-size 1 to 65536, --lr in (0, 100], --label-smoothing in
[0, 1], --test-size in [0.01, 0.99], --seed in [0, 2**32 - 1].
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import (
    MAX_SEED,
    CLIError,
    check_output_path,
    dumps_json,
    float_in,
    fmt,
    int_in,
    require,
)

__all__ = ["MULTI_LABELS", "Adam", "Model", "load_digits_task", "run", "train"]

#: Properties of the digits 0-9 used as the multi-label targets. "Closed loop" counts the digits
#: whose usual handwritten form encloses an area (0, 6, 8, 9; a handwritten 4 is mostly open).
MULTI_LABELS: dict[str, tuple[int, ...]] = {
    "even": (0, 2, 4, 6, 8),
    "prime": (2, 3, 5, 7),
    ">=5": (5, 6, 7, 8, 9),
    "closed loop": (0, 6, 8, 9),
}


#: The ranges of the numeric options, checked while the options are parsed (before any work).
MAX_EPOCHS = 10_000
MAX_HIDDEN = 4096
MAX_BATCH_SIZE = 65_536
MAX_LR = 100.0
TEST_SIZE_RANGE = (0.01, 0.99)  # each split keeps at least 10 images, one per digit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        choices=["single", "multi"],
        default="single",
        help="single: which digit (softmax + cross-entropy, 10 classes); multi: several "
        "properties of the digit at once (sigmoid + cross-entropy). Default: %(default)s",
    )
    parser.add_argument(
        "--epochs",
        type=int_in(1, MAX_EPOCHS),
        default=20,
        help=f"passes over the training set, 1 to {MAX_EPOCHS} (default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=float_in(0.0, MAX_LR, low_open=True),
        default=0.01,
        help=f"Adam learning rate, in (0, {MAX_LR:g}] (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int_in(1, MAX_BATCH_SIZE),
        default=32,
        help=f"examples per step, 1 to {MAX_BATCH_SIZE} (default: %(default)s)",
    )
    parser.add_argument(
        "--label-smoothing",
        type=float_in(0.0, 1.0),
        default=0.0,
        metavar="EPS",
        help="mix the targets with the uniform distribution, in [0, 1] (default: %(default)s)",
    )
    parser.add_argument(
        "--hidden",
        type=int_in(0, MAX_HIDDEN),
        default=0,
        metavar="N",
        help=f"units of one ReLU hidden layer, 0 to {MAX_HIDDEN}; 0 (default) is the tutorial's "
        "single layer h = X.W + b",
    )
    parser.add_argument(
        "--test-size",
        type=float_in(*TEST_SIZE_RANGE),
        default=0.25,
        metavar="FRACTION",
        help=f"fraction of the images held out for testing, in [{TEST_SIZE_RANGE[0]:g}, "
        f"{TEST_SIZE_RANGE[1]:g}] (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int_in(0, MAX_SEED),
        default=0,
        help=f"seed of the train/test split, the initial weights and the batch order, in "
        f"[0, {MAX_SEED}] (default: %(default)s)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="write the loss curves (train and test) "
        "and, for --task single, the test confusion matrix (needs matplotlib)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


@dataclass
class Data:
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray  # int class indices (single) or 0/1 float matrix (multi)
    y_test: np.ndarray
    digits_train: np.ndarray
    digits_test: np.ndarray
    label_names: list[str]


def load_digits_task(task: str, *, test_size: float, seed: int) -> Data:
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1], split with a stratified seed."""
    datasets = require("sklearn.datasets", package="scikit-learn", purpose="infoloss train")
    model_selection = require(
        "sklearn.model_selection", package="scikit-learn", purpose="infoloss train"
    )
    digits = datasets.load_digits()
    X = digits.data.astype(np.float64) / 16.0
    d = digits.target.astype(np.int64)
    X_tr, X_te, d_tr, d_te = model_selection.train_test_split(
        X, d, test_size=test_size, random_state=seed, stratify=d
    )
    if task == "single":
        return Data(X_tr, X_te, d_tr, d_te, d_tr, d_te, [str(i) for i in range(10)])
    table = np.array(
        [[digit in members for members in MULTI_LABELS.values()] for digit in range(10)],
        dtype=np.float64,
    )
    return Data(X_tr, X_te, table[d_tr], table[d_te], d_tr, d_te, list(MULTI_LABELS))


class Model:
    """``h = X.W + b``, or ``h = relu(X.W1 + b1).W2 + b2`` with a hidden layer.

    Examples
    --------
    >>> m = Model(64, 10, hidden=0, rng=np.random.default_rng(0))
    >>> m.forward(np.zeros((5, 64))).shape
    (5, 10)
    >>> [p.shape for p in m.params]
    [(64, 10), (10,)]
    """

    def __init__(self, n_in: int, n_out: int, *, hidden: int, rng: np.random.Generator) -> None:
        # The tutorial draws W ~ N(0, 1); scaled by 1/sqrt(fan-in) (He for ReLU) so the initial
        # logits are O(1) whatever the number of inputs.
        if hidden:
            self.params = [
                rng.standard_normal((n_in, hidden)) * np.sqrt(2.0 / n_in),
                np.zeros(hidden),
                rng.standard_normal((hidden, n_out)) * np.sqrt(1.0 / hidden),
                np.zeros(n_out),
            ]
        else:
            self.params = [
                rng.standard_normal((n_in, n_out)) * np.sqrt(1.0 / n_in),
                np.zeros(n_out),
            ]
        self._cache: tuple[np.ndarray, ...] = ()

    def forward(self, X: np.ndarray) -> np.ndarray:
        if len(self.params) == 2:
            W, b = self.params
            self._cache = (X,)
            return X @ W + b
        W1, b1, W2, b2 = self.params
        a = X @ W1 + b1
        z = np.maximum(a, 0.0)
        self._cache = (X, a, z)
        return z @ W2 + b2

    def backward(self, g: np.ndarray) -> list[np.ndarray]:
        """Gradients of the parameters from ``g`` = d loss / d logits of the last forward."""
        if len(self.params) == 2:
            (X,) = self._cache
            return [X.T @ g, g.sum(axis=0)]
        X, a, z = self._cache
        W2 = self.params[2]
        ga = (g @ W2.T) * (a > 0)
        return [X.T @ ga, ga.sum(axis=0), z.T @ g, g.sum(axis=0)]


class Adam:
    """Adam (Kingma & Ba, 2015) on a list of NumPy arrays, updated in place."""

    def __init__(
        self,
        params: list[np.ndarray],
        lr: float,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, b1, b2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def _loss_fn(task: str) -> Callable[..., Any]:
    import infoloss

    if task == "single":
        return infoloss.sparse_softmax_cross_entropy
    return infoloss.sigmoid_cross_entropy


def _evaluate(model: Model, X: np.ndarray, y: np.ndarray, task: str) -> dict[str, Any]:
    """Plain cross-entropy (no smoothing) and accuracy of the model on (X, y)."""
    h = model.forward(X)
    loss = float(_loss_fn(task)(logits=h, labels=y, reduction="mean"))
    if task == "single":
        pred = np.argmax(h, axis=-1)
        return {"loss": loss, "accuracy": float(np.mean(pred == y)), "predictions": pred}
    pred = (h > 0).astype(np.float64)
    correct = pred == y
    return {
        "loss": loss,
        "per_label_accuracy": correct.mean(axis=0),
        "accuracy": float(correct.mean()),
        "exact_match": float(np.all(correct, axis=1).mean()),
        "predictions": pred,
    }


def train(
    data: Data,
    *,
    task: str,
    epochs: int,
    lr: float,
    batch_size: int,
    label_smoothing: float,
    hidden: int,
    seed: int,
    on_epoch: Callable[[int, dict[str, Any], dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train with minibatch Adam; return the final metrics and the per-epoch loss history."""
    import infoloss

    rng = np.random.default_rng(seed)
    n_out = 10 if task == "single" else data.y_train.shape[1]
    model = Model(data.X_train.shape[1], n_out, hidden=hidden, rng=rng)
    opt = Adam(model.params, lr)
    loss_and_grad = infoloss.value_and_grad(_loss_fn(task))
    history: dict[str, list[Any]] = {
        "epoch": [],
        "train_loss": [],
        "test_loss": [],
        "train_objective": [],
    }

    def record(epoch: int, objective: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
        tr = _evaluate(model, data.X_train, data.y_train, task)
        te = _evaluate(model, data.X_test, data.y_test, task)
        history["epoch"].append(epoch)
        history["train_loss"].append(tr["loss"])
        history["test_loss"].append(te["loss"])
        history["train_objective"].append(objective)
        return tr, te

    tr, te = record(0, None)
    n = data.X_train.shape[0]
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        perm = rng.permutation(n)
        total, count = 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            h = model.forward(data.X_train[idx])
            loss, g = loss_and_grad(
                logits=h,
                labels=data.y_train[idx],
                label_smoothing=label_smoothing,
                reduction="mean",
            )
            if not np.isfinite(loss):
                raise CLIError(
                    f"training diverged at epoch {epoch} (loss {fmt(float(loss))}); "
                    "try a smaller --lr"
                )
            opt.step(model.backward(np.asarray(g)))
            total += float(loss) * len(idx)
            count += len(idx)
        tr, te = record(epoch, total / count)
        if on_epoch is not None:
            on_epoch(epoch, tr, te)
    seconds = time.perf_counter() - start

    result: dict[str, Any] = {
        "task": task,
        "data": "scikit-learn digits 8x8",
        "n_train": int(n),
        "n_test": int(data.X_test.shape[0]),
        "label_names": data.label_names,
        "model": "h = X.W + b" if not hidden else f"h = relu(X.W1 + b1).W2 + b2, {hidden} hidden",
        "hidden": hidden,
        "optimizer": "adam",
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "label_smoothing": label_smoothing,
        "seed": seed,
        "seconds": seconds,
        "history": history,
    }
    for split, m in (("train", tr), ("test", te)):
        result[split] = {k: v for k, v in m.items() if k != "predictions"}
    if task == "single":
        cm = np.zeros((10, 10), dtype=np.int64)
        np.add.at(cm, (data.y_test, te["predictions"]), 1)
        result["confusion_matrix"] = cm
    else:
        # Exact-match broken down by digit shows which digits the properties are hard for.
        result["test_exact_match_by_digit"] = [
            float(
                np.all(
                    te["predictions"][data.digits_test == dgt]
                    == data.y_test[data.digits_test == dgt],
                    axis=1,
                ).mean()
            )
            for dgt in range(10)
        ]
    return result


def render(r: dict[str, Any]) -> str:
    lines = [
        f"infoloss train: {r['data']}, {r['n_train']} train / {r['n_test']} test images, "
        f"seed {r['seed']}",
    ]
    if r["task"] == "single":
        lines.append(
            "task single: which digit, 10 classes, softmax + cross-entropy "
            "(sparse_softmax_cross_entropy)"
        )
    else:
        props = "; ".join(f"{k} ({' '.join(map(str, v))})" for k, v in MULTI_LABELS.items())
        lines.append(
            f"task multi: {len(MULTI_LABELS)} labels per image, sigmoid + cross-entropy "
            "(sigmoid_cross_entropy)"
        )
        lines.append(f"  labels: {props}")
    lines.append(
        f"model {r['model']}; Adam lr {fmt(r['lr'])}, {r['epochs']} epochs, batch size "
        f"{r['batch_size']}, label smoothing {fmt(r['label_smoothing'])} "
        f"({r['seconds']:.1f} s)"
    )
    lines.append("")
    if r["task"] == "single":
        lines += [
            "         loss [nats]  accuracy",
            f"  train  {r['train']['loss']:11.4f}  {r['train']['accuracy']:8.4f}",
            f"  test   {r['test']['loss']:11.4f}  {r['test']['accuracy']:8.4f}",
        ]
    else:
        names = r["label_names"]
        w = max(len(n) for n in [*names, "exact match"])
        lines += [
            f"  {'':{w}}  {'train':>7}  {'test':>7}",
            f"  {'loss [nats]':{w}}  {r['train']['loss']:7.4f}  {r['test']['loss']:7.4f}",
        ]
        for i, name in enumerate(names):
            lines.append(
                f"  {name:{w}}  {r['train']['per_label_accuracy'][i]:7.4f}  "
                f"{r['test']['per_label_accuracy'][i]:7.4f}"
            )
        lines.append(
            f"  {'exact match':{w}}  {r['train']['exact_match']:7.4f}  "
            f"{r['test']['exact_match']:7.4f}"
        )
        lines.append("  (rows per label: accuracy; exact match: all labels of an image right)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    plot_path = check_output_path(args.plot) if args.plot is not None else None
    if plot_path is not None:
        require("matplotlib", purpose="--plot")
    tqdm_mod = require("tqdm", purpose="infoloss train")
    data = load_digits_task(args.task, test_size=args.test_size, seed=args.seed)

    show = not args.quiet and sys.stderr.isatty()
    bar = tqdm_mod.tqdm(
        total=args.epochs,
        desc=f"train ({args.task})",
        unit="epoch",
        disable=not show,
        leave=False,
        file=sys.stderr,
    )

    def on_epoch(epoch: int, tr: dict[str, Any], te: dict[str, Any]) -> None:
        bar.set_postfix(
            {
                "train_loss": f"{tr['loss']:.4f}",
                "test_loss": f"{te['loss']:.4f}",
                "test_acc": f"{te['accuracy']:.3f}",
            },
            refresh=False,
        )
        bar.update(1)

    try:
        result = train(
            data,
            task=args.task,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            label_smoothing=args.label_smoothing,
            hidden=args.hidden,
            seed=args.seed,
            on_epoch=on_epoch,
        )
    finally:
        bar.close()
    if plot_path is not None:
        from ._plot import plot_train

        plot_train(result, plot_path)
    print(dumps_json(result) if args.json else render(result))
    if plot_path is not None and not args.json:
        print(f"\nwrote {plot_path}")
    return 0
