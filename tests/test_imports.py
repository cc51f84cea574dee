"""Import-time properties of the package."""

import ast
import subprocess
import sys
from pathlib import Path

import sk_meta


def test_tasks_and_datasets_load_without_torch():
    code = (
        "import sys\n"
        "import sk_meta.tasks, sk_meta.datasets, sk_meta.model_selection\n"
        "from sk_meta.tasks import EpisodeSampler, SinusoidTasks, Task, split_classes\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "from sk_meta import MAMLClassifier\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_public_names():
    assert set(sk_meta.__all__) == {
        "MAMLClassifier", "MAMLRegressor", "FOMAMLClassifier", "FOMAMLRegressor",
        "ReptileClassifier", "ReptileRegressor", "load",
    }
    for name in sk_meta.__all__:
        assert getattr(sk_meta, name).__name__ == name
    assert set(sk_meta.estimator_classes()) == set(sk_meta.__all__) - {"load"}


def test_defaults_of_each_estimator_are_those_of_its_signature():
    import inspect

    expected = {
        # the classifiers' defaults were chosen by benchmarks/fidelity_tabular.py
        "MAMLClassifier": {"inner_lr": 0.1, "first_order": False,
                           "head_init": "prototype", "inner_steps": 20,
                           "meta_inner_steps": 5},
        "FOMAMLClassifier": {"inner_lr": 0.1, "first_order": True,
                             "head_init": "prototype", "inner_steps": 20,
                             "meta_inner_steps": 5},
        "MAMLRegressor": {"inner_lr": 0.01, "first_order": False,
                          "head_init": "meta", "inner_steps": 5,
                          "meta_inner_steps": None},
        "FOMAMLRegressor": {"inner_lr": 0.01, "first_order": True,
                            "head_init": "meta", "inner_steps": 5,
                            "meta_inner_steps": None},
        "ReptileClassifier": {"inner_lr": 0.1, "inner_optimizer": "sgd",
                              "head_init": "prototype", "inner_steps": 20,
                              "meta_inner_steps": 10},
        "ReptileRegressor": {"inner_lr": 0.01, "inner_optimizer": "sgd",
                             "head_init": "meta", "inner_steps": 5,
                             "meta_inner_steps": None},
    }
    for name, defaults in expected.items():
        cls = getattr(sk_meta, name)
        parameters = inspect.signature(cls).parameters
        estimator = cls()
        for param, value in defaults.items():
            assert parameters[param].default == value
            assert getattr(estimator, param) == value
        assert repr(estimator) == f"{name}()"  # repr shows only changed values


# -- layering ---------------------------------------------------------------------
PACKAGE = Path(sk_meta.__file__).parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """(module-level imports, imports inside functions) of sk_meta modules."""
    tree = ast.parse(path.read_text())
    top, nested = set(), set()
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rpartition(".")[0]

    def names(node):
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:  # relative: up from the module's package
            parents = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parents, *([base] if base else [])])
        # "from sk_meta import _fitting" imports the module sk_meta._fitting
        return [f"{base}.{alias.name}" for alias in node.names]

    def visit(node, inside_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                target = nested if inside_function else top
                target.update(n for n in names(child) if n.startswith("sk_meta"))
            visit(child, inside_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return top, nested


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name):
    """The module an import names (``sk_meta.x.y`` may be a name in ``sk_meta.x``)."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def test_no_import_cycle_between_modules():
    graph = {name: {_resolve(n) for n in _imports(path)[0]} - {name}
             for name, path in MODULES.items()}
    # the package __init__ imports estimators lazily, so it is not an edge
    # that closes a cycle; every other module-level import is
    visiting, done = [], set()

    def walk(node):
        if node in done:
            return
        assert node not in visiting, " -> ".join([*visiting, node])
        visiting.append(node)
        for target in graph.get(node, ()):
            if target != "sk_meta":
                walk(target)
        visiting.pop()
        done.add(node)

    for name in graph:
        walk(name)


def test_no_function_imports_the_package_itself():
    """``import sk_meta`` inside a function hides a cycle through ``__init__``."""
    offenders = {name: sorted(n for n in _imports(path)[1] if n == "sk_meta")
                 for name, path in MODULES.items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_lower_layers_do_not_import_the_estimators():
    estimator_layer = {"sk_meta._base", "sk_meta._maml", "sk_meta._reptile",
                       "sk_meta._fitting", "sk_meta._training", "sk_meta._load"}
    for name, path in MODULES.items():
        if name.startswith(("sk_meta.functional", "sk_meta.models", "sk_meta.tasks",
                            "sk_meta.datasets")):
            top, nested = _imports(path)
            used = {_resolve(n) for n in top | nested}
            assert not used & estimator_layer, (name, used & estimator_layer)


def test_functional_core_and_models_load_without_scikit_learn():
    code = (
        "import sys\n"
        "import sk_meta.functional, sk_meta.models\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn was imported'\n"
        "assert 'sk_meta._base' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
