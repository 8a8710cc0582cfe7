"""Loading the repository's scripts (docs/*.py, bench/*.py) as modules, for the tests that check them.

They are scripts, not a package: run by path, importable by no name. Registered in ``sys.modules``
under the given name because dataclasses look their module up by name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str, name: str) -> ModuleType:
    """The script at ``REPO / relative_path``, executed as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative_path)
    assert spec is not None and spec.loader is not None, relative_path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
