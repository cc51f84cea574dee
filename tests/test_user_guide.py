"""The user guide's code runs: each page's Python blocks, in order, after
the setup the pages share (``docs/user_guide/_setup.py``), with fewer
meta-iterations than the pages give so that the run stays short.

Blocks that need a launcher or a package the tests do not install
(``torchrun``, Ray) are left out.
"""

import re
import textwrap
import warnings
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "user_guide"
SHORTER = [
    ("n_meta_iter=2000", "n_meta_iter=20"), ("n_meta_iter=500", "n_meta_iter=20"),
    ("n_meta_iter=300", "n_meta_iter=20"), ("n_splits=10", "n_splits=2"),
    ("for iteration in range(300)", "for iteration in range(20)"),
    ('Client("scheduler.example.org:8786")', "Client(n_workers=1, processes=False)"),
]
NEEDS_A_LAUNCHER = ("torchrun", "init_process_group", "import ray", "from ray")
# pages whose blocks meta-train several estimators: the slow run covers them
SLOW_PAGES = {"meta_training", "sklearn_integration", "pretraining", "distributed"}


def _python_blocks(page):
    """The dedented ``.. code-block:: python`` bodies of a page, in order."""
    lines = (GUIDE / f"{page}.rst").read_text().split("\n")
    blocks = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)\.\. code-block::\s*python\s*$", line)
        if not match:
            continue
        indent = len(match.group(1))
        body = []
        for following in lines[i + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        blocks.append((i + 1, textwrap.dedent("\n".join(body)).strip("\n")))
    return blocks


def _shorter(code):
    for long, short in SHORTER:
        code = code.replace(long, short)
    return code


PAGES = sorted(path.stem for path in GUIDE.glob("*.rst")
               if "literalinclude:: _setup.py" in path.read_text())


@pytest.mark.parametrize("page", [
    pytest.param(page, marks=pytest.mark.slow) if page in SLOW_PAGES else page
    for page in PAGES])
def test_the_pages_python_blocks_run_after_the_setup(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that save files write here
    namespace = {"__name__": "__user_guide__"}
    exec(compile(_shorter((GUIDE / "_setup.py").read_text()), "_setup.py", "exec"),
         namespace)
    blocks = [(line, code) for line, code in _python_blocks(page)
              if not any(word in code for word in NEEDS_A_LAUNCHER)]
    assert blocks, f"{page} has no runnable Python block"
    for line, code in blocks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(_shorter(code), f"{page}.rst:{line}", "exec"), namespace)


def test_every_page_that_uses_the_setups_names_includes_it():
    """A page whose blocks use the setup's names without showing it cannot
    be followed."""
    names = ("train_tasks", "val_tasks", "test_tasks", "X_support", "clf.")
    for path in GUIDE.glob("*.rst"):
        code = "\n".join(code for _, code in _python_blocks(path.stem))
        defines_its_own = "split_classes(" in code or "load_digits(" in code
        if any(name in code for name in names) and not defines_its_own:
            assert "literalinclude:: _setup.py" in path.read_text(), path.name


@pytest.mark.parametrize("page", ["tasks", "functional"])
def test_standalone_pages_python_blocks_run(page, tmp_path, monkeypatch):
    """Pages whose blocks define their own data (no setup) run too."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__user_guide__"}
    blocks = _python_blocks(page)
    assert blocks
    for line, code in blocks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(_shorter(code), f"{page}.rst:{line}", "exec"), namespace)
