"""A renderer for the small part of Go templates (Helm's) that the generated chart uses:
`{{ .Values.a.b }}`, `{{- if X }}...{{ else }}...{{ end }}`, `{{ range X }}` with `.` and `$`,
and the functions quote, toYaml, nindent, indent, sha256sum, trunc, not, default. It is
how the chart is checked on machines without the `helm` binary: it is not Helm, and
refuses (ValueError) anything outside that part rather than guess. Pure: no I/O."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)


def render(text: str, context: dict[str, Any]) -> str:
    tokens = _tokenize(text)
    nodes, rest = _parse(tokens, 0, ())
    if rest != len(tokens):
        raise ValueError("unexpected {{ end }} or {{ else }}")
    return _run(nodes, context, context)


def _tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        out.append(("text", chunk))
        out.append(("action", m.group(2)))
        trim_next, pos = bool(m.group(3)), m.end()
    tail = text[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


Node = tuple[str, Any, Any, Any]


def _parse(tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[Node], int]:
    nodes: list[Node] = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value, None, None))
            i += 1
            continue
        word = value.split(" ", 1)[0]
        if word in stop:
            return nodes, i
        if word in {"if", "range"}:
            body, i = _parse(tokens, i + 1, ("else", "end"))
            other: list[Node] = []
            if tokens[i][1] == "else":
                other, i = _parse(tokens, i + 1, ("end",))
            if i >= len(tokens) or tokens[i][1] != "end":
                raise ValueError(f"{{{{ {value} }}}} has no {{{{ end }}}}")
            nodes.append((word, value[len(word):].strip(), body, other))
            i += 1
        elif word in {"else", "end"}:
            raise ValueError(f"unexpected {{{{ {value} }}}}")
        else:
            nodes.append(("print", value, None, None))
            i += 1
    if stop:
        raise ValueError(f"missing {{{{ {stop[-1]} }}}}")
    return nodes, i


def _run(nodes: list[Node], dot: Any, root: dict[str, Any]) -> str:
    out: list[str] = []
    for kind, value, body, other in nodes:
        if kind == "text":
            out.append(value)
        elif kind == "print":
            out.append(_text(_pipe(value, dot, root)))
        elif kind == "if":
            out.append(_run(body if _true(_pipe(value, dot, root)) else other, dot, root))
        else:  # range
            items = _pipe(value, dot, root) or []
            out += [_run(body, item, root) for item in items] or [_run(other, dot, root)]
    return "".join(out)


def _true(value: Any) -> bool:
    return bool(value)  # false, 0, nil, "" and empty maps and lists are false, as in Go


def _text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _pipe(pipe: str, dot: Any, root: dict[str, Any]) -> Any:
    value: Any = None
    for n, command in enumerate(pipe.split("|")):
        words = shlex.split(command.strip(), posix=False)
        args = [_term(w, dot, root) for w in words[1:]] + ([value] if n else [])
        name = words[0]
        if name in FUNCTIONS:
            value = FUNCTIONS[name](*args)
        elif n == 0 and not args:
            value = _term(name, dot, root)
        else:
            raise ValueError(f"unsupported in {pipe!r}: {name}")
    return value


def _term(word: str, dot: Any, root: dict[str, Any]) -> Any:
    if word.startswith('"'):
        return json.loads(word)
    if re.fullmatch(r"-?\d+", word):
        return int(word)
    if word in {"true", "false"}:
        return word == "true"
    if word == ".":
        return dot
    if word.startswith(("$.", ".")):
        value: Any = root if word.startswith("$") else dot
        for part in word.lstrip("$.").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    raise ValueError(f"unsupported term {word!r}")


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, width=1000).rstrip("\n") \
        if value not in (None, {}, []) else ("{}" if value == {} else "[]" if value == [] else "null")


FUNCTIONS: dict[str, Any] = {
    "quote": lambda v: json.dumps(_text(v)),
    "toYaml": _to_yaml,
    "nindent": lambda n, v: "\n" + "\n".join(" " * n + line for line in str(v).split("\n")),
    "indent": lambda n, v: "\n".join(" " * n + line for line in str(v).split("\n")),
    "sha256sum": lambda v: hashlib.sha256(str(v).encode()).hexdigest(),
    "trunc": lambda n, v: str(v)[:n],
    "not": lambda v: not _true(v),
    "default": lambda d, v: v if _true(v) else d,
}
