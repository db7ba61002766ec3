"""A Python file that is not in a package (a role's files/ helper, a tool, a module at an old revision),
imported by its path for a test or a benchmark."""

from __future__ import annotations

import importlib.util


def load_script(path, name):
    """The module ``name`` executed from the file ``path`` (not added to sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
