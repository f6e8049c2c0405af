"""What a Python app declares, read from its files: which dependency files matter and which
tool installs them (requirements files with their -r/-c includes, uv.lock, poetry.lock,
pdm.lock, Pipfile(.lock), PEP 621 dependencies), the names of the packages it depends on (to
pick a server), and the Python version it asks for (with where that came from). Reads files
only: never runs an installer, never touches the network."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headway.builder.common import read
from headway.errors import ConfigError

KNOWN_MINORS = [(3, m) for m in range(8, 15)]  # official python:X.Y-slim images
# extras that bring a server: fastapi[standard] installs uvicorn
EXTRAS = {("fastapi", "standard"): {"uvicorn"}, ("fastapi", "all"): {"uvicorn"},
          ("fastapi-cli", "standard"): {"uvicorn"}, ("channels", "daphne"): {"daphne"}}
# a server a startup script runs -> its package
SERVER_PACKAGES = {"gunicorn": "gunicorn", "uvicorn": "uvicorn", "hypercorn": "hypercorn",
                   "daphne": "daphne", "waitress-serve": "waitress", "granian": "granian"}
_SCRIPT_SERVER = re.compile(r"^\s*(?:exec\s+)?(gunicorn|uvicorn|hypercorn|daphne|waitress-serve|"
                            r"granian)\s", re.MULTILINE)
_INCLUDE = re.compile(r"^(?:-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


@dataclass(frozen=True)
class Deps:
    installer: str  # pip | uv | poetry | pdm | pipenv | none
    files: tuple[str, ...]  # the files that decide what is installed, relative to the app
    source: str  # what they are, for reasons and messages
    generated: tuple[str, ...] | None = None  # requirement lines Headway writes out itself


@dataclass(frozen=True)
class Wanted:
    spec: str  # a version specifier: "==3.11.*", ">=3.10,<3.13"
    source: str  # where it was declared, e.g. ".python-version", "requires-python"


def load_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(errors="replace"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}",
                          hint="fix the file; Headway reads it to find the dependencies") from None


def dependencies(folder: Path) -> Deps:
    """The app's dependency files and the tool they belong to, lock files first."""
    pyproject = load_toml(folder / "pyproject.toml")
    for lock, tool in (("uv.lock", "uv"), ("poetry.lock", "poetry"), ("pdm.lock", "pdm")):
        if (folder / lock).is_file():
            return Deps(tool, ("pyproject.toml", lock), f"{lock} -> {tool}")
    if (folder / "Pipfile.lock").is_file():
        return Deps("pipenv", ("Pipfile", "Pipfile.lock"), "Pipfile.lock -> pip (locked versions)",
                    tuple(pipfile_lock_requirements(folder / "Pipfile.lock")))
    if (folder / "requirements.txt").is_file():
        files = tuple(requirement_files(folder, "requirements.txt"))
        more = f" (+ {', '.join(files[1:])})" if len(files) > 1 else ""
        deps = _with_project(folder, Deps("pip", files, f"requirements.txt{more} -> pip"),
                             pyproject.get("project", {}).get("dependencies"))
        return _script_server(folder, deps)
    if (folder / "Pipfile").is_file():
        return Deps("pipenv", ("Pipfile",), "Pipfile (no Pipfile.lock) -> pip",
                    tuple(pipfile_requirements(folder / "Pipfile")))
    project = pyproject.get("project", {})
    if project.get("dependencies") is not None:
        return Deps("pip", ("pyproject.toml",), "pyproject.toml [project] dependencies -> pip",
                    tuple(project["dependencies"]))
    poetry = pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {})
    if set(poetry) - {"python"}:
        raise ConfigError(f"{folder / 'pyproject.toml'}: [tool.poetry] dependencies but no "
                          "poetry.lock", hint="run `poetry lock` and commit poetry.lock")
    return Deps("none", (), "no dependency file")


def requirement_files(folder: Path, first: str) -> list[str]:
    """`first` and every file it includes with -r/-c, recursively, relative to `folder`."""
    seen: list[str] = []
    todo = [first]
    while todo:
        rel = todo.pop(0)
        path = (folder / rel).resolve()
        try:
            name = str(path.relative_to(folder.resolve()))
        except ValueError:
            raise ConfigError(f"{folder / first}: includes {rel}, outside the app folder",
                              hint="keep every requirements file inside the app") from None
        if name in seen:
            continue
        if not path.is_file():
            raise ConfigError(f"{folder / first}: includes {name}, which does not exist")
        seen.append(name)
        for line in _logical_lines(path.read_text(errors="replace")):
            if m := _INCLUDE.match(line):
                todo.append(str(Path(name).parent / m.group(1)))
    return seen


def _with_project(folder: Path, deps: Deps, project: object) -> Deps:
    """requirements.txt beside a pyproject.toml whose [project] lists the app's own
    dependencies, the requirements not installing the project itself (`-e .`): both are
    installed (azure-flask-postgres-flexible-appservice's requirements.txt holds gunicorn
    only; its startup script runs `pip install -e .` for the rest)."""
    if not isinstance(project, list) or not project:
        return deps
    lines = [line for f in deps.files
             for line in _logical_lines((folder / f).read_text(errors="replace"))]
    if any(re.match(r"(-e\s+|--editable\s+)?\.(\[.*\])?$", line) or
           line.startswith(("-c", "--constraint")) for line in lines):
        return deps
    kept = tuple(line for line in lines if not _INCLUDE.match(line))
    return Deps("pip", (*deps.files, "pyproject.toml"), f"{deps.source.removesuffix(' -> pip')}"
                " + pyproject.toml [project] dependencies -> pip",
                (*kept, *(str(d) for d in project)))


def _script_server(folder: Path, deps: Deps) -> Deps:
    """The server the app's own startup script runs when its requirements do not name one
    (Azure App Service supplies gunicorn to `startup.sh`): installed with them, so the app
    deploys as its authors run it. Requirements that install local folders or take
    constraints are left as they are."""
    lines = list(deps.generated) if deps.generated is not None else [
        line for f in deps.files for line in _logical_lines((folder / f).read_text(errors="replace"))]
    if _requirement_names(lines) & set(SERVER_PACKAGES.values()) or any(
            line.startswith(("-c", "--constraint", "-e", "--editable", ".", "/", "file:"))
            for line in lines):
        return deps
    for script in sorted(folder.glob("*.sh")):
        if m := _SCRIPT_SERVER.search(script.read_text(errors="replace")):
            server = SERVER_PACKAGES[m.group(1)]
            kept = tuple(line for line in lines if not _INCLUDE.match(line))
            return Deps("pip", deps.files, f"{deps.source}, + {server} (run by {script.name}, "
                        "not in the requirements: installed with them)", (*kept, server))
    return deps


def _logical_lines(text: str) -> list[str]:
    """Requirement lines with continuations joined and comments removed."""
    text = text.replace("\\\n", " ")
    lines = (re.sub(r"(^|\s)#.*", "", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def pin(folder: Path, deps: Deps, package: str) -> str | None:
    """The exact version (`==X`) a pip requirement list pins `package` to, if any."""
    if deps.installer not in ("pip", "pipenv"):
        return None
    lines = deps.generated if deps.generated is not None else [
        line for f in deps.files if f.endswith(".txt")
        for line in _logical_lines((folder / f).read_text(errors="replace"))]
    for line in lines:
        if (m := _NAME.match(line)) and _normal(m.group(1)) == package and (
                v := re.search(r"===?\s*([\w.]+)", line)):
            return v.group(1)
    return None


def names(folder: Path, deps: Deps) -> set[str]:
    """Normalised names of the packages the app installs (extras that bring a server too)."""
    if deps.installer in ("uv", "poetry", "pdm"):
        found = _locked_names(folder, deps)
    elif deps.generated is not None:
        found = _requirement_names(deps.generated)
    else:
        lines = [line for f in deps.files
                 for line in _logical_lines((folder / f).read_text(errors="replace"))]
        found = _requirement_names(lines)
    return found


def local_paths(folder: Path, deps: Deps) -> list[str]:
    """Folders of the app that requirement files install from (`-e .`, `./libs/x`), relative
    to the app: what they hold is a dependency too."""
    if deps.installer != "pip" or deps.generated is not None:
        return []
    found = []
    for name in deps.files:
        for line in _logical_lines((folder / name).read_text(errors="replace")):
            word = re.sub(r"^(-e|--editable)\s+", "", line).split(";")[0].split()[0]
            word = word.removeprefix("file:")
            if word.startswith((".", "/")) and not line.startswith(("-r", "-c", "--")):
                where = (folder / word.split("[")[0]).resolve()  # pip: from the cwd
                if where.is_relative_to(folder.resolve()):
                    found.append(str(where.relative_to(folder.resolve())))
    return sorted(set(found))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(lines: tuple[str, ...] | list[str]) -> set[str]:
    found: set[str] = set()
    for line in lines:
        if line.startswith("-"):
            egg = re.search(r"#egg=([\w.-]+)", line)
            if egg:
                found.add(_normal(egg.group(1)))
            continue
        if m := _NAME.match(line):
            name = _normal(m.group(1))
            found.add(name)
            for extra in (m.group(2) or "").split(","):
                found |= EXTRAS.get((name, extra.strip().lower()), set())
    return found


def _locked_names(folder: Path, deps: Deps) -> set[str]:
    lock = load_toml(folder / deps.files[1])
    packages = lock.get("package", [])
    if deps.installer == "poetry":
        return {_normal(p["name"]) for p in packages
                if p.get("category", "main") == "main" and "main" in p.get("groups", ["main"])}
    if deps.installer == "pdm":
        return {_normal(p["name"]) for p in packages if "default" in p.get("groups", ["default"])}
    return _uv_reachable(packages)


def _uv_reachable(packages: list[dict[str, Any]]) -> set[str]:
    """uv.lock lists dev dependencies too: walk from the project's own (non-dev) ones."""
    by_name = {_normal(p["name"]): p for p in packages}
    roots = [p for p in packages if any(k in p.get("source", {}) for k in ("editable", "virtual"))
             and p["source"].get("editable", p["source"].get("virtual")) == "."]
    todo = [(d, d.get("extra", [])) for p in roots for d in p.get("dependencies", [])]
    found: set[str] = set()
    while todo:
        dep, extras = todo.pop()
        name = _normal(dep["name"])
        package = by_name.get(name, {})
        new = name not in found
        found.add(name)
        more = [d for e in extras for d in package.get("optional-dependencies", {}).get(e, [])]
        todo += [(d, d.get("extra", [])) for d in (package.get("dependencies", []) if new else [])]
        todo += [(d, d.get("extra", [])) for d in more]
    return found


def pipfile_lock_requirements(path: Path) -> list[str]:
    """Pipfile.lock's default packages as pinned requirement lines."""
    try:
        default = json.loads(path.read_text()).get("default", {})
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})",
                          hint="run `pipenv lock` again") from None
    lines = []
    for name, entry in sorted(default.items()):
        extras = f"[{','.join(entry['extras'])}]" if entry.get("extras") else ""
        if "git" in entry:
            ref = f"@{entry['ref']}" if entry.get("ref") else ""
            line = f"{name}{extras} @ git+{entry['git']}{ref}"
        else:
            line = f"{name}{extras}{entry.get('version', '')}"
        if entry.get("markers"):
            line += f"; {entry['markers']}"
        lines.append(line)
    return lines


def pipfile_requirements(path: Path) -> list[str]:
    """Pipfile's [packages] as requirement lines (versions as declared, "*" = any)."""
    lines = []
    for name, want in load_toml(path).get("packages", {}).items():
        if isinstance(want, dict):
            extras = f"[{','.join(want['extras'])}]" if want.get("extras") else ""
            want = f"{extras}{want.get('version', '*')}"
        lines.append(f"{name}{'' if want == '*' else want}")
    return lines


# the Python version --------------------------------------------------------------------------
def wanted(folder: Path) -> Wanted | None:
    """The Python version the app declares, or None."""
    pinned = _first_line(folder / ".python-version")
    if m := re.match(r"(\d+\.\d+)(\.\d+)?$", pinned):
        return Wanted(f"=={m.group(0)}" if m.group(2) else f"=={m.group(1)}.*",
                      ".python-version")
    if m := re.search(r"python-(\d+\.\d+)", _first_line(folder / "runtime.txt")):
        return Wanted(f"=={m.group(1)}.*", "runtime.txt")
    tools = (folder / ".tool-versions").read_text() if (folder / ".tool-versions").is_file() else ""
    if m := re.search(r"^python\s+(\d+\.\d+)", tools, re.MULTILINE):
        return Wanted(f"=={m.group(1)}.*", ".tool-versions")
    pyproject = load_toml(folder / "pyproject.toml")
    project = pyproject.get("project", {})
    if spec := project.get("requires-python", pyproject.get("requires-python")):
        return Wanted(str(spec), "pyproject.toml requires-python")
    poetry = pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {}).get("python")
    if isinstance(poetry, str):
        return Wanted(poetry, "pyproject.toml [tool.poetry.dependencies] python")
    requires = load_toml(folder / "Pipfile").get("requires", {})
    if v := requires.get("python_full_version") or requires.get("python_version"):
        return Wanted(f"=={v}" if v.count(".") == 2 else f"=={v}.*", "Pipfile [requires]")
    for own in ("Dockerfile.prod", "Dockerfile", "Containerfile"):  # the app's own image's
        if m := re.search(r"^FROM\s+(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)\b",
                          read(folder / own), re.MULTILINE | re.IGNORECASE):
            return Wanted(f"=={m.group(1)}.*", f"{own} FROM python:{m.group(1)}")
    return None


def _first_line(path: Path) -> str:
    if not path.is_file():
        return ""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    return next((line for line in lines if line and not line.startswith("#")), "")


def satisfies(version: tuple[int, ...], spec: str) -> bool:
    """Whether a Python version (3, 11, 7) meets a specifier (PEP 440, or Poetry's ^ and ~)."""
    clauses = [c.strip() for c in re.split(r"[,\s]+(?=[<>=!~^\d])", spec.strip()) if c.strip()]
    return all(_clause(version, c) for c in clauses)


def _clause(version: tuple[int, ...], clause: str) -> bool:
    m = re.fullmatch(r"(===|==|!=|~=|<=|>=|<|>|\^|~)?\s*v?(\d+(?:\.\d+)*)(\.\*)?", clause)
    if not m:
        raise ConfigError(f"Python version {clause!r}: not a version specifier",
                          hint='e.g. requires-python = ">=3.11" or .python-version "3.11"')
    op, want = m.group(1) or "==", tuple(int(p) for p in m.group(2).split("."))
    if op in ("==", "===", "!="):
        # "==3.11" is read as any 3.11.x, as people mean it
        same = version[:len(want)] == want if m.group(3) or len(want) < 3 else \
            _pad(version) == _pad(want)
        return same if op != "!=" else not same
    if op in ("^", "~", "~="):
        upper = (want[0] + 1,) if op == "^" or (op == "~=" and len(want) == 2) or len(want) == 1 \
            else (want[0], want[1] + 1)
        return _pad(want) <= _pad(version) < _pad(upper)
    a, b = _pad(version), _pad(want)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _pad(v: tuple[int, ...]) -> tuple[int, ...]:
    return (v + (0, 0, 0))[:3]


def image_minor(want: Wanted) -> str | None:
    """The X.Y of the base image: the one pinned, else the oldest known minor the range
    allows (any patch)."""
    if m := re.fullmatch(r"==(\d+\.\d+)(\.\*|\.\d+)", want.spec):
        return m.group(1)
    for major, minor in KNOWN_MINORS:
        if any(satisfies((major, minor, patch), want.spec) for patch in range(40)):
            return f"{major}.{minor}"
    return None
