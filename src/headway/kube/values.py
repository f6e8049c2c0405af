"""Tunables of the generated Kubernetes objects. The same object builders serve kustomize
(concrete values) and Helm (each tunable becomes a `{{ .Values.PATH }}` placeholder, and its
concrete value goes into values.yaml), so the two outputs cannot drift.
Pure: no I/O."""

from __future__ import annotations

from typing import Any

SCALAR, STRING, BLOCK = "v", "s", "b"
TOKEN = "@@{kind}:{path}@@"


def key(path: str) -> str:
    """A values path as the chart spells it: dashes become underscores."""
    return path.replace("-", "_")


class Values:
    """`v(path, value)`: the value itself (kustomize) or a placeholder (Helm). Every path used
    is recorded with its concrete value in `tree`, which becomes values.yaml."""

    def __init__(self, *, template: bool) -> None:
        self.template = template
        self.tree: dict[str, Any] = {}

    def _record(self, path: str, value: Any) -> None:
        # a Go template reads `.Values.a.b`: no dashes in a key (a process named "db-main")
        node = self.tree
        *parents, last = key(path).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(last, value)

    def scalar(self, path: str, value: Any) -> Any:
        """A number or boolean (or a string that must stay unquoted, never here)."""
        self._record(path, value)
        return TOKEN.format(kind=SCALAR, path=key(path)) if self.template else value

    def string(self, path: str, value: Any) -> Any:
        self._record(path, value)
        return TOKEN.format(kind=STRING, path=key(path)) if self.template else value

    def block(self, path: str, value: Any) -> Any:
        """A whole mapping or list (resources, env data): `toYaml` in the chart."""
        self._record(path, value)
        return TOKEN.format(kind=BLOCK, path=key(path)) if self.template else value

    def record(self, path: str, value: Any) -> None:
        """A value only a template reads as a whole (the image), recorded for values.yaml."""
        self._record(path, value)
