"""Import LanceDB for a local search without its remote-namespace REST client.

`import lancedb` executes `lance_namespace_urllib3_client`, a generated REST client (API classes
and pydantic models) for LanceDB's remote namespace API: most of the ~2.7 CPU seconds the import
takes on this machine, for a client a local (or object-store) library never calls.
`lancedb_deferred()` imports lancedb with that client's package `__init__` files (`models`,
`api`, the root) replaced by lazy ones: each name is imported from its own submodule the first
time something asks for it, so the names lancedb binds at import still resolve (the models it
names are still built) and the API classes, which it never names, are not. Anything the deferral
cannot serve falls back to the normal import. Only the search path uses it; a process that
already imported lancedb is unaffected.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import re
import sys
from types import ModuleType
from typing import Any

DEFERRED = (
    "lance_namespace_urllib3_client",
    "lance_namespace_urllib3_client.models",
    "lance_namespace_urllib3_client.api",
)
_FROM_IMPORT = re.compile(r"^from (\S+) import (\w+)", re.MULTILINE)


class _LazyPackage(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads the DEFERRED packages as modules whose names import on first access."""

    def __init__(self) -> None:
        self.origins: dict[str, str] = {}

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.origin is None:
            return None
        self.origins[name] = spec.origin
        spec.loader = self
        return spec

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        with open(self.origins[module.__name__], encoding="utf-8") as handle:
            table = {name: source for source, name in _FROM_IMPORT.findall(handle.read())}

        def __getattr__(attribute: str) -> Any:
            source = table.get(attribute)
            if source is None:
                raise AttributeError(f"module {module.__name__!r} has no attribute {attribute!r}")
            value = getattr(importlib.import_module(source), attribute)
            setattr(module, attribute, value)
            return value

        module.__getattr__ = __getattr__  # type: ignore[method-assign]


def lancedb_deferred() -> ModuleType:
    """`lancedb`, imported with the REST client deferred when this process has not imported it."""
    if "lancedb" in sys.modules:
        return sys.modules["lancedb"]
    finder = _LazyPackage()
    sys.meta_path.insert(0, finder)
    try:
        import lancedb
    except ImportError:
        for name in [m for m in sys.modules if m.startswith(("lancedb", "lance_namespace"))]:
            del sys.modules[name]
        sys.meta_path.remove(finder)
        import lancedb
    else:
        sys.meta_path.remove(finder)
    return lancedb
