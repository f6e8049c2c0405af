"""Prints the headway.toml reference (Markdown) from the spec models, so docs cannot drift."""

from __future__ import annotations

from pydantic import BaseModel

from headway.spec.models import AppSpec, DeploySpec, HealthSpec, ProcessSpec, RouterSpec

SECTIONS = [("[app]", AppSpec), ("[processes.NAME]", ProcessSpec),
            ("[processes.NAME.health]", HealthSpec), ("[deploy]", DeploySpec),
            ("[router]", RouterSpec)]


def main() -> None:
    for header, model in SECTIONS:
        print(f"**`{header}`** — {model.__doc__}\n")
        print("| key | default | meaning |\n|---|---|---|")
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                continue
            default = "required" if field.is_required() else repr(field.get_default(
                call_default_factory=True))
            print(f"| `{name}` | `{default}` | {field.description or ''} |")
        print()
    print("**`[env]`** — `KEY = value` for every process; `[env.NAME]` tables override them "
          "for `--env NAME`.")


if __name__ == "__main__":
    main()
