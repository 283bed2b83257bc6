"""One small name -> object registry (timm style), and the loader of registrations from installed plugins.

Used for backbones, bottlenecks, losses, datasets, protocols and tables. Imports nothing of rdbench."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

# Entry-point group through which protocol modules register (pyproject.toml: rdbench's own paper protocols,
# and any third-party package that adds a protocol or a table).
PROTOCOL_PLUGINS = "rdbench.protocols"
# What an empty registry of protocols or tables says: they are filled from above, by the plugins.
PLUGINS_HINT = ("call rdbench.registry.load_plugins() first (the CLI does), or rdbench_protocols.register() for "
                "the paper's own")


def unknown_choice(kind: str, value: object, valid) -> str:
    """The one wording of a bad name anywhere in rdbench (registries, config fields, command-line options)."""
    if kind.endswith("y") and not kind.endswith("ey"):
        plural = kind[:-1] + "ies"
    else:
        plural = kind + ("es" if kind.endswith(("s", "x", "ch", "sh")) else "s")
    return f"unknown {kind} {value!r}; valid {plural}: {', '.join(map(str, valid))}"


def _definition(obj: object) -> tuple[str, str] | None:
    """Where ``obj`` (or, for an instance, its class) was defined: the same definition imported twice (a reload,
    a module reached under two names) registers harmlessly, a different one under a taken name does not."""
    kind = obj if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")) else type(obj)
    module, qualname = getattr(kind, "__module__", None), getattr(kind, "__qualname__", None)
    return (module, qualname) if module and qualname and kind.__module__ != "builtins" else None


class Registry(Generic[T]):
    def __init__(self, kind: str, empty_hint: str = ""):
        self.kind = kind
        self.empty_hint = empty_hint  # said when a lookup finds the registry empty (nothing registered yet)
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@BACKBONES.register()`` or ``@BACKBONES.register("alias")``."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"cannot register {obj!r} as a {self.kind} without a name")
            if key in self._items:
                old = self._items[key]
                same = old == obj or (_definition(old) is not None and _definition(old) == _definition(obj))
                if not same:
                    raise ValueError(f"{self.kind} {key!r} is already registered (by {_definition(old) or old!r})")
            self._items[key] = obj  # a re-registration of the same definition replaces it (idempotent)
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            if not self._items and self.empty_hint:
                raise ValueError(f"unknown {self.kind} {name!r}: no {self.kind}s are registered; "
                                 f"{self.empty_hint}") from None
            raise ValueError(unknown_choice(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)


_loaded: set[tuple[str, str]] = set()


def load_plugins(group: str = PROTOCOL_PLUGINS) -> list[str]:
    """Call every ``register`` function installed under the entry-point ``group`` (once per process; again
    is harmless). The CLI calls this at start and each Ray worker before its run; library users call it (or
    import ``rdbench_protocols`` and call its ``register()``) before looking up a protocol or a table.
    Returns the names of the entry points loaded."""
    names = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if (group, ep.name) in _loaded:
            names.append(ep.name)
            continue
        try:
            register = ep.load()
            register()
        except Exception as exc:
            raise RuntimeError(f"plugin {ep.name!r} ({ep.value}) of entry-point group {group!r} failed to "
                               f"register: {type(exc).__name__}: {exc}") from exc
        _loaded.add((group, ep.name))
        names.append(ep.name)
    return names
