"""Load headway.toml into a Spec, turning every problem into a ConfigError that names the
file and the key path, with a hint. Never partially accepts a file."""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from headway.errors import ConfigError
from headway.spec.models import Spec


def load_spec(path: Path) -> Spec:
    return parse_spec(read_config(path), source=str(path))


def read_config(path: Path) -> str:
    """The text of headway.toml, or a ConfigError that says what is wrong with the path."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a headway.toml",
                          hint=f"pass the file: -c {path / 'headway.toml'}")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file", hint="run `headway init` to write one, or pass -c PATH"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, so not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def parse_spec(text: str, *, source: str = "headway.toml") -> Spec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        keys = _key_lines(text)
        lines = [_describe(err, data) + _where(source, keys, err["loc"]) for err in exc.errors()]
        raise ConfigError(f"{source}: " + "\n  ".join(lines)) from None


_HEADER = re.compile(r"\s*\[\[?([^\[\]]+)\]\]?\s*(#.*)?$")
_KEY = re.compile(r"\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")


def _dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(
        r"\"[^\"]*\"|'[^']*'|[^.]+", key))


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Best effort: the line (1-based) of each table header and key, by its full key path.
    A line inside a multi-line string or array may be taken for a key; no harm, it is a hint."""
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for n, line in enumerate(text.splitlines(), 1):
        if header := _HEADER.match(line):
            table = _dotted(header.group(1))
            found.setdefault(table, n)
        elif key := _KEY.match(line):
            found.setdefault(table + _dotted(key.group(1)), n)
    return found


def _where(source: str, keys: dict[tuple[str, ...], int], loc: tuple[Any, ...]) -> str:
    """` (headway.toml:LINE)` for the deepest key of loc found in the text, else nothing."""
    path = tuple(str(p) for p in loc if not isinstance(p, int))
    for end in range(len(path), 0, -1):
        if path[:end] in keys:
            return f" ({source}:{keys[path[:end]]})"
    return ""


def _describe(err: Any, data: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        return f"{path}: unknown key{hint} (known: {', '.join(known)})"
    if kind == "missing":
        return f"{path}: required key is missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind in {"literal_error", "string_pattern_mismatch", "int_parsing", "greater_than_equal",
                "less_than_equal", "greater_than", "less_than", "string_type", "int_type",
                "bool_type", "dict_type", "finite_number", "float_parsing", "float_type"}:
        value = _value_at(data, err["loc"])
        return f"{path}: {value!r}: {message}{_closest(value, err) if kind == 'literal_error' else ''}"
    key = message.partition(": ")[0]
    if loc == [] or key.startswith(f"{path}."):  # the message names a deeper key itself
        return message
    return f"{path}: {message}"


def _closest(value: Any, err: Any) -> str:
    """`; did you mean "blue-green"?` for a value close to one of a Literal's."""
    choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
    close = difflib.get_close_matches(str(value), choices, n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Spec
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:  # inside a dict such as processes.<name>
            continue
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return sorted(model.model_fields)
