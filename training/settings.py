"""Strict settings: YAML or ``--key=value`` onto a dataclass. An unknown key or a value of the
wrong type is an error that names the key, the value and where it came from."""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import reprlib
import types
import typing
from pathlib import Path

import yaml

# A settings file is a few hundred bytes; a bigger one is a mistake (a data file, a log), and
# reading it whole would only cost memory before failing.
MAX_FILE_BYTES = 1 << 20
# Nesting of settings is 3 levels (space.lr.uniform); deeper input is refused before PyYAML's
# recursive composer can hit Python's recursion limit.
MAX_DEPTH = 20
MAX_INT = 2**63 - 1  # what torch, numpy and Ray can hold
QUOTE_CHARS = 80
YAML_1_1_MISSES = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")  # a number to YAML 1.2, not to 1.1


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


_SHORT = reprlib.Repr()  # reprlib walks only as far as it prints, however big the value
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, QUOTE_CHARS, 40, 40


def quote(value) -> str:
    """``repr(value)`` cut short: a message never carries a megabyte of someone's input."""
    short = _SHORT.repr(value)
    return short if len(short) <= QUOTE_CHARS else short[:QUOTE_CHARS] + "..."


class SettingsLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader without aliases (``*name``): a few aliases of aliases expand to
    billions of values (the "billion laughs"), which any later walk (an error message, a
    copy) would build. Settings files gain nothing from them, so all of them are refused; so
    are nesting beyond MAX_DEPTH (PyYAML's composer recurses) and a key given twice."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise self.refused("YAML aliases (*name) are not accepted in settings; write the "
                               "value out")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.refused(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:  # PyYAML keeps the last of two equal keys, silently
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # unhashable: the parent's construct_mapping says so
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {quote(key)} appears twice", key_node.start_mark)
        return super().construct_mapping(node, deep)

    def refused(self, problem: str) -> yaml.YAMLError:
        return yaml.composer.ComposerError(None, None, problem, self.peek_event().start_mark)


def parse_yaml(text: str):
    """YAML text -> Python values; anything SettingsLoader refuses is a YAMLError."""
    try:
        return yaml.load(text, Loader=SettingsLoader)  # noqa: S506 - a SafeLoader subclass
    except ValueError as error:  # e.g. an integer of over 4300 digits: int's own limit
        raise yaml.YAMLError(" ".join(str(error).split(";")[0].split())) from None


def read_settings_text(path: Path) -> str:
    try:
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, not a settings file")
        if not path.is_file():  # a device or a pipe could be endless
            raise ConfigError(f"{path}: no such file" if not path.exists()
                              else f"{path}: not a regular file")
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB: not a settings "
                          "file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset "
                          f"{error.start})") from None


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    text = read_settings_text(path)
    try:
        loaded = parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ConfigError(f"{path}: not valid YAML{where}: {problem[:200]}") from None
    except RecursionError:  # a safety net: the depth check above should come first
        raise ConfigError(f"{path}: nested too deeply") from None
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
            value = parse_yaml(text) if text else ""
        except yaml.YAMLError:
            value = text  # not YAML (an alias, 50 open brackets): the text as it is
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
                          f"got {quote(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields), key=str)  # keys may be numbers too
    if unknown:
        name = unknown[0] if isinstance(unknown[0], str) else quote(unknown[0])
        raise ConfigError(f"{source}: unknown key {prefix}{quote_key(name)} "
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
        if abs(value) > MAX_INT:
            raise wrong_type(source, key, value, "an integer that fits in 64 bits")
        return value
    if hint is float:
        if isinstance(value, str) and YAML_1_1_MISSES.fullmatch(value.strip()):
            value = float(value)  # PyYAML reads 1e-3 (no dot) as a string: YAML 1.1's rule
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong_type(source, key, value, "a number")
        # NaN passes every comparison check (nan > 0 is False, but so is nan <= 0), and inf
        # breaks arithmetic later: no setting of this project means either.
        if abs(value) > 1e300 or not math.isfinite(value):
            raise wrong_type(source, key, value, "a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong_type(source, key, value, "a string")
        return value
    return value


def quote_key(key: str) -> str:
    return key if len(key) <= QUOTE_CHARS else key[:QUOTE_CHARS] + "..."


def wrong_type(source: str, key: str, value, expected: str) -> ConfigError:
    return ConfigError(f"{source}: {key} = {quote(value)} should be {expected}")


def require(condition: bool, source: str, key: str, value, expected: str) -> None:
    if not condition:
        raise wrong_type(source, key, value, expected)
