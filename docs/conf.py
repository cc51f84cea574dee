# SPDX-License-Identifier: BSD-3-Clause
"""Sphinx configuration of the sk_meta documentation.

Build (from the repository root, offline, warnings as errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import importlib
import inspect
import os
import re
from pathlib import Path

import sk_meta

project = "sk_meta"
copyright = "sk_meta developers, BSD-3-Clause"
version = release = sk_meta.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**/sg_execution_times.rst",
                    "sg_execution_times.rst"]
root_doc = "index"
default_role = "literal"  # `name` renders as code, as ``name`` does

# -- API reference --------------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": False, "inherited-members": False}
autodoc_typehints = "none"  # the numpydoc Parameters sections say it all
numpydoc_show_class_members = False  # the class templates list the methods
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# the Examples sections are doctests, run by pytest --doctest-modules
numpydoc_use_plots = False

# -- offline: no inventories are fetched, so no intersphinx ---------------------------
intersphinx_mapping = {}

# -- theme ----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sk_meta {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": False,
    "footer_start": ["copyright"],
    "footer_end": [],
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"index": [], "install": []}
html_show_sourcelink = False

# -- the example gallery --------------------------------------------------------------
# Every script in examples/ runs, with one torch and BLAS thread each.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",  # run every example, not only plot_*
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "show_memory": False,
    "reference_url": {"sk_meta": None},
    "min_reported_time": 1,
}
os.environ.setdefault("MPLBACKEND", "Agg")  # headless


# -- every public name is in the API reference ----------------------------------------
PUBLIC_MODULES = ("sk_meta", "sk_meta.tasks", "sk_meta.datasets", "sk_meta.models",
                  "sk_meta.functional", "sk_meta.model_selection", "sk_meta.pipeline",
                  "sk_meta.exceptions")


def public_names(module_name):
    """``__all__``, or the public functions and classes defined in the module."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {name for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and obj.__module__ == module_name}


def check_api_reference(app):
    """Warn (an error under -W) for a public name missing from api.rst."""
    text = (Path(app.srcdir) / "api.rst").read_text()
    sections = re.split(r"^\.\. currentmodule:: ", text, flags=re.MULTILINE)[1:]
    listed = {}
    for section in sections:
        module_name, _, body = section.partition("\n")
        names = set(re.findall(r"^    (\w+)\s*$", body, flags=re.MULTILINE))
        listed.setdefault(module_name.strip(), set()).update(names)
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    for module_name in PUBLIC_MODULES:
        missing = public_names(module_name) - listed.get(module_name, set())
        if missing:
            logger.warning("api.rst does not document %s from %s",
                           ", ".join(sorted(missing)), module_name)


def escape_shapes(app, what, name, obj, options, lines):
    """Quote fitted attributes named in shapes: ``(n_features_in_,)``.

    A bare ``n_features_in_`` is a reST reference to a target that does not
    exist; scikit-learn writes such shapes with backquotes.
    """
    for i, line in enumerate(lines):
        lines[i] = re.sub(r"\((\w+_),\)", r"(``\1``,)", line)


def skip_foreign_members(app, what, name, obj, skip, options):
    """List the methods sk_meta and scikit-learn define, not torch's or Python's.

    The networks of :mod:`sk_meta.models` are ``torch.nn.Module`` subclasses
    and ``Task`` is a tuple: their inherited methods are documented upstream.
    """
    owner = getattr(obj, "__objclass__", None)
    module = getattr(obj, "__module__", None) or getattr(owner, "__module__", None)
    if module and module.split(".")[0] in ("torch", "builtins"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.connect("builder-inited", check_api_reference)
    # before numpydoc (priority 500) turns the sections into reST
    app.connect("autodoc-process-docstring", escape_shapes, priority=100)
