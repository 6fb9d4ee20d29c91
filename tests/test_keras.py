"""infoloss.keras: Keras's numbers on every Keras backend (each in its own process, since the
backend is fixed when Keras is imported), in model.fit, and through get_config/from_config."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _helpers import installed

keras = pytest.importorskip("keras")

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

# Runs under KERAS_BACKEND=<backend>; prints one JSON object {case: [infoloss, keras]}.
SCRIPT = textwrap.dedent(
    r"""
    import json, numpy as np, keras
    import infoloss.keras as ik
    from keras import losses as kl

    r = np.random.default_rng(14)
    x = r.normal(size=(6, 4)) * 2
    idx = r.integers(0, 4, size=6)
    y = np.eye(4)[idx]
    soft = r.dirichlet(np.ones(4), size=6)
    p = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    yb = np.round(r.uniform(size=(6, 4)))
    pb = 1 / (1 + np.exp(-x))
    sw = r.uniform(size=6)
    out = {}

    def pair(name, ours, theirs, *args, **kw):
        out[name] = [np.asarray(ours(*args, **kw)).tolist(), np.asarray(theirs(*args, **kw)).tolist()]

    f64 = dict(dtype="float64")
    for red in ("sum_over_batch_size", "sum", "mean_with_sample_weight", "none"):
        for fl in (True, False):
            kw = dict(from_logits=fl, reduction=red, **f64)
            pair(f"cce-{red}-{fl}", ik.CategoricalCrossentropy(label_smoothing=0.1, **kw),
                 kl.CategoricalCrossentropy(label_smoothing=0.1, **kw), soft, x if fl else p,
                 sample_weight=sw)
            pair(f"scce-{red}-{fl}", ik.SparseCategoricalCrossentropy(**kw),
                 kl.SparseCategoricalCrossentropy(**kw), idx, x if fl else p, sample_weight=sw)
            pair(f"scce-ignore-{red}-{fl}", ik.SparseCategoricalCrossentropy(ignore_class=2, **kw),
                 kl.SparseCategoricalCrossentropy(ignore_class=2, **kw), idx, x if fl else p)
            pair(f"bce-{red}-{fl}", ik.BinaryCrossentropy(label_smoothing=0.2, **kw),
                 kl.BinaryCrossentropy(label_smoothing=0.2, **kw), yb, x if fl else pb,
                 sample_weight=sw)
        pair(f"kld-{red}", ik.KLDivergence(reduction=red, **f64),
             kl.KLDivergence(reduction=red, **f64), soft, p, sample_weight=sw)
    pair("cce-axis0", ik.CategoricalCrossentropy(from_logits=True, axis=0, **f64),
         kl.CategoricalCrossentropy(from_logits=True, axis=0, **f64), soft.T, x.T)
    pair("scce-column-labels", ik.SparseCategoricalCrossentropy(from_logits=True, **f64),
         kl.SparseCategoricalCrossentropy(from_logits=True, **f64), idx[:, None], x)

    # infoloss's extras against the textbook formula (float64 NumPy)
    cw = np.array([1.0, 2.0, 0.5, 3.0])
    lse = np.log(np.exp(x).sum(-1))
    nll = lse - x[np.arange(6), idx]
    out["scce-extras"] = [
        float(ik.SparseCategoricalCrossentropy(from_logits=True, class_weights=cw, z_loss=0.01,
                                               **f64)(idx, x)),
        float(np.mean(cw[idx] * nll + 0.01 * lse**2)),
    ]
    pw = np.array([0.5, 2.0, 3.0, 1.0])
    sp = lambda t: np.logaddexp(0.0, t)
    out["bce-pos-weight"] = [
        float(ik.BinaryCrossentropy(from_logits=True, pos_weight=pw, **f64)(yb, x)),
        float(np.mean(pw * yb * sp(-x) + (1 - yb) * sp(x))),
    ]

    # two epochs of model.fit (16 -> 3, the tutorial's layer), float32, the same initial weights
    X = r.normal(size=(40, 16)).astype("float32")
    labels = r.integers(0, 3, size=40)
    onehot = np.eye(3, dtype="float32")[labels]
    multi = np.round(r.uniform(size=(40, 3))).astype("float32")
    w_fit = r.uniform(size=40).astype("float32")

    def history(loss, target, activation=None, **fit):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3, activation=activation)])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
        h = model.fit(X, target, epochs=2, batch_size=16, verbose=0, shuffle=False, **fit)
        return h.history["loss"]

    fits = [
        ("fit-scce", "SparseCategoricalCrossentropy", dict(from_logits=True), labels, None, {}),
        ("fit-cce-smooth-weighted", "CategoricalCrossentropy",
         dict(from_logits=True, label_smoothing=0.1), onehot, None, dict(sample_weight=w_fit)),
        ("fit-cce-softmax", "CategoricalCrossentropy", {}, onehot, "softmax", {}),
        ("fit-bce", "BinaryCrossentropy", dict(from_logits=True), multi, None, {}),
        ("fit-bce-sigmoid", "BinaryCrossentropy", {}, multi, "sigmoid", {}),
        ("fit-kld", "KLDivergence", {}, onehot, "softmax", {}),
    ]
    for name, cls, kw, target, act, fit in fits:
        out[name] = [history(getattr(ik, cls)(**kw), target, act, **fit),
                     history(getattr(kl, cls)(**kw), target, act, **fit)]

    if keras.backend.backend() == "tensorflow":  # GradientTape gradients, float64
        import tensorflow as tf
        xt = tf.constant(x)
        for name, ours, theirs, target in [
            ("grad-cce", ik.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, **f64),
             kl.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, **f64), soft),
            ("grad-scce", ik.SparseCategoricalCrossentropy(from_logits=True, **f64),
             kl.SparseCategoricalCrossentropy(from_logits=True, **f64), idx),
            ("grad-bce", ik.BinaryCrossentropy(from_logits=True, **f64),
             kl.BinaryCrossentropy(from_logits=True, **f64), yb),
        ]:
            gs = []
            for fn in (ours, theirs):
                with tf.GradientTape() as t:
                    t.watch(xt)
                    v = fn(target, xt, sample_weight=sw)
                gs.append(t.gradient(v, xt).numpy().tolist())
            out[name] = gs
    print("RESULT " + json.dumps(out))
    """
)


def _run(backend: str) -> dict:
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "JAX_ENABLE_X64": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(sys.path),
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_keras_numbers_and_fit_on_each_backend(backend):
    if not installed(BACKENDS[backend]):
        pytest.skip(f"{backend} is not installed")
    results = _run(backend)
    assert len(results) >= 46
    for name, (ours, theirs) in results.items():
        ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
        assert ours.shape == theirs.shape, name
        # float64 values and gradients to rounding; the float32 fits to a few ulps per step
        rtol, atol = (2e-5, 1e-6) if name.startswith("fit-") else (1e-10, 1e-12)
        if name in ("scce-extras", "bce-pos-weight") and backend != "tensorflow":
            rtol = 1e-6  # against float64 NumPy; Keras's torch and JAX backends compute in float32
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=name)
    assert (
        len(results["fit-scce"][0]) == 2 and results["fit-scce"][0][1] < results["fit-scce"][0][0]
    )


def test_get_config_round_trip_and_serialization():
    import infoloss.keras as ik

    losses = [
        ik.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2, axis=1, z_loss=1e-3),
        ik.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=-1, class_weights=[1, 2, 3], reduction="sum"
        ),
        ik.BinaryCrossentropy(label_smoothing=0.1, pos_weight=[2.0, 1.0], name="bce"),
        ik.KLDivergence(reduction=None),
    ]
    for loss in losses:
        config = loss.get_config()
        again = type(loss).from_config(config)
        assert type(again) is type(loss) and again.get_config() == config
        rebuilt = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(rebuilt) is type(loss) and rebuilt.get_config() == config
    assert losses[1].get_config()["class_weights"] == [1.0, 2.0, 3.0]


def test_z_loss_needs_logits():
    import infoloss.keras as ik
    from infoloss.errors import InfolossError

    with pytest.raises(InfolossError, match="from_logits=True"):
        ik.CategoricalCrossentropy(z_loss=1e-3)


def test_public_names():
    import infoloss.keras as ik

    public = {n for n, v in vars(ik).items() if isinstance(v, type) and not n.startswith("_")}
    public = {n for n in public if getattr(ik, n).__module__ == "infoloss.keras"}
    assert set(ik.__all__) == public
    for name in ik.__all__:
        cls = getattr(ik, name)
        assert issubclass(cls, keras.losses.Loss) and "Examples" in cls.__doc__
        keras_cls = getattr(keras.losses, name)
        ours = inspect.signature(cls.__init__).parameters
        theirs = inspect.signature(keras_cls.__init__).parameters
        # Keras's arguments, in Keras's positions and with Keras's defaults
        assert list(ours)[: len(theirs)] == list(theirs), name
        for p in theirs:
            assert ours[p].default == theirs[p].default, (name, p)
