"""Build segmentation models by name.

A builder registers itself with ``@register_model("name", min_side=N)``; ``create_model`` drops
``None`` keyword arguments so each model's own defaults survive a config that leaves them unset.
``min_input_side`` is the smallest image side the model takes, which train and predict check.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_MIN_SIDES: dict[str, int] = {}


def register_model(name: str, min_side: int):
    """``min_side``: the smallest image side the model takes. Each 2x2 pooling halves a side;
    one halved to 0 fails deep inside the network ("Output size is too small")."""
    def decorator(builder: Callable[..., nn.Module]):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name], _MIN_SIDES[name] = builder, min_side
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def min_input_side(name: str) -> int:
    return _MIN_SIDES[name]


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return _BUILDERS[name](**{k: v for k, v in kwargs.items() if v is not None})
