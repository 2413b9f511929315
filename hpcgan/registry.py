"""Named registries: the only global mutable state hpcgan allows.

Each registry maps a name used on the command line (``--algo dqgan``, ``--compressor sign``) to
the object that implements it. Lookups of unknown names raise :class:`UsageError` with the list of
valid names, so every "unknown X" message in the program has the same one-line form. An entry
may be registered lazily (``lazy(name, "module:attr")``): its name is known at once, its module is
imported on the first lookup (communication backends, whose modules start MPI or NCCL).
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """A validated name -> object mapping, filled by ``@REGISTRY.register("name")``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> "module:attr", imported on first lookup

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items or (name in self._lazy and not self._lazy[name].startswith(obj.__module__ + ":")):
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj

        return add

    def lazy(self, name: str, target: str) -> None:
        """Register ``name`` now; ``target`` ("module:attr") is imported on its first lookup and
        must be registered under ``name`` by that import."""
        if name in self._items or name in self._lazy:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._lazy[name] = target

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            module, attr = self._lazy[name].split(":")
            importlib.import_module(module)
            if self._items.get(name) is not getattr(importlib.import_module(module), attr):
                raise ValueError(f"{self.kind} '{name}': {self._lazy[name]} did not register itself")
        try:
            return self._items[name]
        except KeyError:
            raise UsageError(f"unknown {self.kind} '{name}'; valid: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy))

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
