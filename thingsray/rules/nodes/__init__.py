"""The node catalogue: one module per kind of node, each registering its classes with ``@node``.

Importing this package imports every module in it, so ``NODE_TYPES`` is complete afterwards;
a module added here needs no other registration.
"""

from __future__ import annotations

import importlib
import pkgutil

from thingsray.rules.node import NODE_TYPES

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["NODE_TYPES"]
