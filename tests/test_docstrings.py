"""The public docstrings say what the code does: every parameter of every
public callable is documented, in signature order, with its real default."""

import inspect
import re

import numpy as np
import pytest

import sk_meta
import sk_meta.datasets
import sk_meta.functional
import sk_meta.model_selection
import sk_meta.models
import sk_meta.pipeline
import sk_meta.tasks

docscrape = pytest.importorskip("numpydoc.docscrape")
ClassDoc, FunctionDoc = docscrape.ClassDoc, docscrape.FunctionDoc

MODULES = [sk_meta, sk_meta.tasks, sk_meta.datasets, sk_meta.models,
           sk_meta.functional, sk_meta.model_selection, sk_meta.pipeline]


def _public_callables():
    seen = {}
    for module in MODULES:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if callable(obj) and not (inspect.isclass(obj)
                                      and issubclass(obj, BaseException)):
                seen[f"{module.__name__}.{name}"] = obj
    return seen


CALLABLES = _public_callables()


def _documented(obj):
    doc = ClassDoc(obj) if inspect.isclass(obj) else FunctionDoc(obj)
    return doc["Parameters"]


def _signature(obj):
    """Parameters by name as numpydoc writes them (``**options``)."""
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return {stars.get(p.kind, "") + name: p
            for name, p in inspect.signature(obj).parameters.items()
            if name != "self"}


def _stated_default(type_text):
    match = re.search(r"default=(.+)$", type_text)
    return None if match is None else match.group(1).strip()


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_parameters_are_documented_in_signature_order(name):
    obj = CALLABLES[name]
    documented = []
    for param in _documented(obj):
        # "X_support, y_support : ..." documents several at once
        documented += [p.strip() for p in param.name.split(",")]
    assert documented == list(_signature(obj)), name


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_stated_defaults_are_the_signature_defaults(name):
    obj = CALLABLES[name]
    signature = _signature(obj)
    for param in _documented(obj):
        stated = _stated_default(param.type)
        first = param.name.split(",")[0].strip()
        if stated is None or first not in signature:
            continue
        actual = signature[first].default
        assert actual is not inspect.Parameter.empty, (name, first, "no default")
        if isinstance(actual, str):
            assert stated.strip("\"'") == actual, (name, first, stated, actual)
        elif stated != repr(actual):  # "4/3", "np.pi", a function's name
            value = eval(stated, {"np": np, **vars(inspect.getmodule(obj))})
            both_nan = value != value and actual != actual  # "np.nan"
            assert value == actual or both_nan, (name, first, stated, actual)


def test_every_estimator_documents_its_own_defaults():
    """The six classes differ in defaults (inner_lr, first_order, ...): each
    docstring states its own."""
    for name, cls in sk_meta.estimator_classes().items():
        stated = {p.name: _stated_default(p.type) for p in _documented(cls)}
        for param, value in _signature(cls).items():
            shown = stated[param]
            expected = value.default if isinstance(value.default, str) \
                else repr(value.default)
            assert shown is not None and shown.strip("\"'") == expected, (
                name, param, shown, expected)
