"""Named choices (losses, heads, ...) registered by decorator, as timm's ``register_model`` does."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def registrar(table: dict[str, T]) -> Callable[[str], Callable[[T], T]]:
    """A ``@register(name)`` decorator that stores the decorated object in ``table``."""

    def register(name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            table[name] = item
            return item

        return decorate

    return register
