"""Strict settings: YAML or ``--key=value`` onto a dataclass. An unknown key or a value of the
wrong type is an error that names the key, the value and where it came from."""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """Bad settings; the message is one line a user can act on."""


def setting(default=dataclasses.MISSING, help: str = "", *, factory=dataclasses.MISSING):
    """A dataclass field with its one-line description: the one source of ``--help`` and
    docs/SETTINGS.md. A list or dict default is copied for each instance."""
    if isinstance(default, (list, dict)):
        default, factory = dataclasses.MISSING, lambda value=default: copy.deepcopy(value)
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help})


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") \
            from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    return loaded


def parse_overrides(items: list[str], source: str = "command line") -> dict:
    """['lr=0.01', 'search.trials=4'] -> {'lr': 0.01, 'search': {'trials': 4}}."""
    out: dict = {}
    for item in items:
        key, sep, text = item.removeprefix("--").partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        node = out
        *parents, leaf = key.replace("-", "_").split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build(cls, values: dict, source: str, prefix: str = ""):
    """A ``cls`` dataclass from ``values``, checking every key and type (nested dataclasses too)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'settings'} must be a mapping, "
                          f"got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]} "
                          f"(known: {', '.join(sorted(fields))})")
    kwargs = {name: coerce(hints[name], value, source, prefix + name)
              for name, value in values.items()}
    return cls(**kwargs)


def coerce(hint, value, source: str, key: str):
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, key + ".")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(option, value, source, key)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise wrong_type(source, key, value, "a list")
        (item_hint, *_) = typing.get_args(hint) or (typing.Any,)
        return [coerce(item_hint, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise wrong_type(source, key, value, "a mapping")
        return dict(value)
    if hint is typing.Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong_type(source, key, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(source, key, value, "an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong_type(source, key, value, "a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong_type(source, key, value, "a string")
        return value
    return value


def wrong_type(source: str, key: str, value, expected: str) -> ConfigError:
    return ConfigError(f"{source}: {key} = {value!r} should be {expected}")


def require(condition: bool, source: str, key: str, value, expected: str) -> None:
    if not condition:
        raise wrong_type(source, key, value, expected)
