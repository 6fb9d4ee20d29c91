"""The public surface of infoloss: names, module layout, signatures and docstrings (issue 2)."""

from __future__ import annotations
import __future__

import inspect
import re
from types import ModuleType

import pytest

import infoloss

CONTRACT = {
    # name: (module, positional parameters, {keyword-only parameter: default})
    "information": ("measures", ["p"], {"base": None}),
    "entropy": ("measures", ["p"], {"axis": -1, "base": None, "keepdims": False}),
    "cross_entropy": ("measures", ["p", "q"], {"axis": -1, "base": None, "keepdims": False}),
    "kl_divergence": ("measures", ["p", "q"], {"axis": -1, "base": None, "keepdims": False}),
    "js_divergence": (
        "measures",
        ["p", "q"],
        {"axis": -1, "base": None, "keepdims": False, "beta": 0.5},
    ),
    "softmax_js_divergence": (
        "measures",
        ["p_logits", "q_logits"],
        {
            "beta": 0.5,
            "temperature": 1.0,
            "scale_by_temperature_squared": False,
            "axis": -1,
            "base": None,
            "keepdims": False,
            "sample_weights": None,
            "mask": None,
            "reduction": "none",
        },
    ),
    "mutual_information": ("joint", ["joint"], {"base": None, "axis": (-2, -1), "keepdims": False}),
    "conditional_entropy": (
        "joint",
        ["joint"],
        {"given": 0, "base": None, "axis": (-2, -1), "keepdims": False},
    ),
    "perplexity": (
        "metrics",
        ["logits", "labels"],
        {"ignore_index": None, "sample_weights": None, "axis": -1},
    ),
    "bits_per_byte": (
        "metrics",
        ["logits", "labels", "num_bytes"],
        {"ignore_index": None, "sample_weights": None, "axis": -1},
    ),
    "softmax_entropy": ("measures", ["logits"], {"axis": -1, "base": None}),
    "softmax_kl_divergence": (
        "measures",
        ["p_logits", "q_logits"],
        {
            "axis": -1,
            "base": None,
            "temperature": 1.0,
            "scale_by_temperature_squared": False,
            "sample_weights": None,
            "mask": None,
            "reduction": "none",
        },
    ),
    "logsumexp": ("activations", ["x"], {"axis": -1, "keepdims": False}),
    "softmax": ("activations", ["x"], {"axis": -1}),
    "log_softmax": ("activations", ["x"], {"axis": -1}),
    "sigmoid": ("activations", ["x"], {}),
    "log_sigmoid": ("activations", ["x"], {}),
    "softmax_cross_entropy": (
        "losses",
        ["logits", "labels"],
        {
            "axis": -1,
            "class_weights": None,
            "sample_weights": None,
            "label_smoothing": 0.0,
            "z_loss": 0.0,
            "reduction": "none",
        },
    ),
    "sparse_softmax_cross_entropy": (
        "losses",
        ["logits", "labels"],
        {
            "axis": -1,
            "class_weights": None,
            "sample_weights": None,
            "ignore_index": None,
            "label_smoothing": 0.0,
            "z_loss": 0.0,
            "reduction": "none",
        },
    ),
    "sigmoid_cross_entropy": (
        "losses",
        ["logits", "labels"],
        {"pos_weight": None, "sample_weights": None, "label_smoothing": 0.0, "reduction": "none"},
    ),
    "value_and_grad": ("gradients", ["fn"], {}),
    "weight_total": (
        "losses",
        ["labels"],
        {
            "kind": None,
            "axis": -1,
            "ignore_index": None,
            "class_weights": None,
            "sample_weights": None,
            "dtype": None,
        },
    ),
    "sigmoid_focal_loss": (
        "focal",
        ["logits", "labels"],
        {"alpha": 0.25, "gamma": 2.0, "sample_weights": None, "reduction": "none"},
    ),
    "softmax_focal_loss": (
        "focal",
        ["logits", "labels"],
        {
            "gamma": 2.0,
            "axis": -1,
            "class_weights": None,
            "sample_weights": None,
            "reduction": "none",
        },
    ),
    "sparse_softmax_focal_loss": (
        "focal",
        ["logits", "labels"],
        {
            "gamma": 2.0,
            "axis": -1,
            "class_weights": None,
            "sample_weights": None,
            "ignore_index": None,
            "reduction": "none",
        },
    ),
    "poly_cross_entropy": (
        "focal",
        ["logits", "labels"],
        {
            "epsilon": 1.0,
            "axis": -1,
            "class_weights": None,
            "sample_weights": None,
            "reduction": "none",
        },
    ),
    "sparse_poly_cross_entropy": (
        "focal",
        ["logits", "labels"],
        {
            "epsilon": 1.0,
            "axis": -1,
            "class_weights": None,
            "sample_weights": None,
            "ignore_index": None,
            "reduction": "none",
        },
    ),
}
ERRORS = ("InfolossError", "InfolossTypeError")


def public_members(module: ModuleType) -> set[str]:
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not isinstance(obj, (ModuleType, __future__._Feature))  # `from __future__ import`
    }


def test_all_matches_public_members():
    assert len(infoloss.__all__) == len(set(infoloss.__all__)), "duplicates in __all__"
    assert set(infoloss.__all__) == public_members(infoloss)


def test_all_contains_the_contract():
    missing = (set(CONTRACT) | set(ERRORS)) - set(infoloss.__all__)
    assert not missing, f"missing from infoloss.__all__: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_module_layout(name):
    module_name, _, _ = CONTRACT[name]
    module = __import__(f"infoloss.{module_name}", fromlist=[name])
    assert getattr(module, name) is getattr(infoloss, name)


def test_error_classes():
    from infoloss import errors

    assert errors.InfolossError is infoloss.InfolossError
    assert errors.InfolossTypeError is infoloss.InfolossTypeError
    assert issubclass(infoloss.InfolossError, ValueError)
    assert issubclass(infoloss.InfolossTypeError, TypeError)
    assert issubclass(infoloss.InfolossTypeError, infoloss.InfolossError)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_signature(name):
    _, positional, keywords = CONTRACT[name]
    sig = inspect.signature(getattr(infoloss, name))
    params = sig.parameters
    pos = [n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert pos[: len(positional)] == positional
    for n in positional:
        # keyword names are the contract: `labels=y, logits=h` must work
        assert params[n].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, n
    for kw, default in keywords.items():
        assert kw in params, f"{name} lacks keyword `{kw}`"
        assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY, f"`{kw}` is not keyword-only"
        assert params[kw].default == default, f"`{kw}` default {params[kw].default!r}"
        assert type(params[kw].default) is type(default), f"`{kw}` default type"


def _public_functions():
    return sorted(n for n in infoloss.__all__ if inspect.isfunction(getattr(infoloss, n)))


@pytest.mark.parametrize("name", _public_functions())
def test_docstring_has_examples(name):
    doc = inspect.getdoc(getattr(infoloss, name))
    assert doc, f"{name} has no docstring"
    assert re.search(r"^Examples\n-{8,}\n", doc, re.MULTILINE), f"{name}: no Examples section"
    examples = doc[doc.index("Examples") :]
    assert ">>>" in examples, f"{name}: Examples section without a doctest"


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_functions_are_public_functions(name):
    assert callable(getattr(infoloss, name))
    assert name in _public_functions()


def test_distributed_modules_public_api():
    """infoloss.distributed (torch) and infoloss.distributed_jax: __all__ is their public surface,
    every function documented with an example."""
    pytest.importorskip("torch")
    import infoloss.distributed as dist

    modules = [dist]
    if __import__("importlib").util.find_spec("jax") is not None:
        import infoloss.distributed_jax as djax

        modules.append(djax)
    for module in modules:
        defined = {
            n
            for n in public_members(module)
            if getattr(getattr(module, n), "__module__", None) == module.__name__
        }
        assert defined <= set(module.__all__), defined - set(module.__all__)
        assert set(module.__all__) <= public_members(module)
        for name in module.__all__:
            doc = inspect.getdoc(getattr(module, name))
            assert doc and ">>>" in doc[doc.index("Examples") :], name
    assert dist.weight_total is infoloss.weight_total
