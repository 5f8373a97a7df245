"""Build segmentation models by name.

A builder registers itself with ``@register_model("name")``; ``create_model`` drops ``None``
keyword arguments so each model's own defaults survive a config that leaves them unset.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def decorator(builder: Callable[..., nn.Module]):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return _BUILDERS[name](**{k: v for k, v in kwargs.items() if v is not None})
