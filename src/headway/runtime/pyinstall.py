"""Python dependencies for the process runtime: the installed interpreter that matches the
version the app declares (python3.X on PATH, pyenv, `uv python`), and a virtualenv built the
way the app's own tool intends (pip -r with includes, uv sync, poetry/pdm export, Pipfile.lock),
keyed by the content of every dependency file and the interpreter, built once and shared by
the releases that have the same key; then the app's build steps (Django's collectstatic).
As root, only interpreters every user can run are candidates (an app runs as its own user:
runtime.appuser; a pyenv or uv Python under /root is closed to it).
Never runs the app on another Python than the one it declares; never puts a secret in argv."""

from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from headway.builder import pydeps, python
from headway.builder.common import Detected
from headway.errors import HeadwayError, RuntimeFailure
from headway.runner import run
from headway.runtime import appuser

SCHEME = "4"  # bump when the way environments are built changes: new keys, fresh venvs
# pdm[locked]: pdm's own tested pins (a plain `pdm` with the newest hishel fails to start)
TOOLS = {"poetry": ["poetry", "poetry-plugin-export"], "pdm": ["pdm[locked]"], "uv": ["uv"]}
LOCAL_SKIP = {".venv", "venv", ".git", "__pycache__", "node_modules", ".headway"}
_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int, int]

    @property
    def text(self) -> str:
        return ".".join(map(str, self.version))


CLOSED: set[str] = set()  # interpreters found where the apps' users cannot run them


@functools.lru_cache(maxsize=1)
def interpreters() -> tuple[Interpreter, ...]:
    """Every CPython 3 found on this host, newest first (each asked for its own version)."""
    paths = [getattr(sys, "_base_executable", sys.executable), sys.executable]
    paths += [p for m in range(8, 16) if (p := shutil.which(f"python3.{m}"))]
    paths += sorted(glob.glob("/usr/local/bin/python3.*[0-9]") +
                    glob.glob("/usr/bin/python3.*[0-9]"))
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    paths += sorted(glob.glob(f"{root}/versions/3.*/bin/python3"))
    paths += _uv_pythons()
    found: dict[str, Interpreter] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in found or "/shims/" in real or not os.access(real, os.X_OK):
            continue
        if appuser.isolated() and not appuser.reachable(real):
            CLOSED.add(real)
            continue
        try:
            text = run([real, "-c", _PROBE], timeout=10, what=f"{real} --version").strip()
        except HeadwayError:
            continue
        major, minor, patch = (int(p) for p in text.split("."))
        found[real] = Interpreter(real, (major, minor, patch))
    return tuple(sorted(found.values(), key=lambda i: i.version, reverse=True))


def _uv_pythons() -> list[str]:
    """Interpreters `uv python install` put in its own folder (asking uv to list them would
    probe every pyenv shim on PATH: seconds)."""
    uv = uv_binary()
    if not uv:
        return []
    try:
        where = run([uv, "python", "dir"], timeout=20, what="uv python dir").strip()
    except HeadwayError:
        return []
    return sorted(glob.glob(f"{where}/cpython-3.*/bin/python3"))


def choose(want: pydeps.Wanted | None, found: tuple[Interpreter, ...] | list[Interpreter]
           ) -> Interpreter:
    """The X.Y the image would have (the same version on both runtimes) when it is
    installed, else the newest interpreter that meets the declared version; Headway's own
    when none is declared. A clear error, never another version, when none matches."""
    if want is None:
        own = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        mine = next((i for i in found if i.path == own), None)
        if mine is None and own in CLOSED:  # ours is closed to the apps' users: the same X.Y
            mine = next((i for i in found if i.version[:2] == sys.version_info[:2]), None)
        return mine or Interpreter(own, tuple(sys.version_info[:3]))  # type: ignore[arg-type]
    image = pydeps.image_minor(want)
    same = [i for i in found if ".".join(map(str, i.version[:2])) == image]
    candidates: list[Interpreter] = [*same, *found]
    for interp in candidates:
        if pydeps.satisfies(interp.version, want.spec):
            return interp
    minor = image or want.spec
    have = ", ".join(sorted({i.text for i in found})) or "none"
    raise RuntimeFailure(
        f"Python {want.spec.removeprefix('==').removesuffix('.*')} (from {want.source}) is not "
        f"installed on this host; found: {have}",
        hint=f"install it (`uv python install {minor}`, `pyenv install {minor}` or "
        f"`apt-get install python{minor}`), or declare a version that is installed in "
        f"{want.source}" + (f"; not usable by the apps' users (a folder above is closed to "
                            f"them): {', '.join(sorted(CLOSED))}" if CLOSED else ""))


# the virtualenv -----------------------------------------------------------------------------
def ensure_venv(app: Path, deps: pydeps.Deps, interp: Interpreter, cache: Path) -> Path:
    """The shared virtualenv for these dependency files and this interpreter, built in place
    (scripts keep a valid #! line) under a lock, marked complete only once installed."""
    key = venv_key(app, deps, interp)
    venv = cache / key
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f"{key}.lock"):
        if (venv / ".complete").exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        try:
            _create(venv, interp)
            _install(app, deps, venv, cache)
            if appuser.isolated():
                compile_bytecode(venv / "bin" / "python", venv)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        (venv / ".complete").write_text(f"{deps.source}\nPython {interp.text}\n")
    return venv


def venv_key(app: Path, deps: pydeps.Deps, interp: Interpreter) -> str:
    h = hashlib.sha256(f"{SCHEME}\0{deps.installer}\0{interp.path}\0{interp.text}".encode())
    for name in deps.files:
        h.update(name.encode() + b"\0" + (app / name).read_bytes() + b"\0")
    for line in deps.generated or ():
        h.update(line.encode() + b"\n")
    for local in pydeps.local_paths(app, deps):  # `-e .`: the code it installs is keyed too
        for root, dirs, files in os.walk(app / local):
            dirs[:] = sorted(d for d in dirs if d not in LOCAL_SKIP)
            for name in sorted(files):
                path = Path(root, name)
                h.update(str(path.relative_to(app)).encode() + b"\0" + path.read_bytes())
    return f"py{interp.version[0]}{interp.version[1]}-{h.hexdigest()[:16]}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _env() -> dict[str, str]:
    """The installers' environment: not Headway's own virtualenv, no interpreter downloads."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return env | {"UV_PYTHON_DOWNLOADS": "never", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                  "PDM_CHECK_UPDATE": "false", "POETRY_VIRTUALENVS_CREATE": "false"}


def uv_binary() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return shutil.which("uv") or (str(beside) if beside.exists() else None)


def _create(venv: Path, interp: Interpreter) -> None:
    uv = uv_binary()
    if uv:
        run([uv, "venv", "--quiet", "--seed", "--python", interp.path, str(venv)], env=_env(),
            what=f"uv venv (Python {interp.text})")
        if interp.version[:2] < (3, 12):  # as `python -m venv` seeds it: pkg_resources kept
            pip_install(venv, ["setuptools<81"], cwd=venv, what="setuptools<81 (pkg_resources)")
    else:
        run([interp.path, "-m", "venv", str(venv)], env=_env(),
            what=f"python{interp.version[0]}.{interp.version[1]} -m venv")


def _install(app: Path, deps: pydeps.Deps, venv: Path, cache: Path) -> None:
    if deps.installer == "none":
        return
    requirements = venv / "headway-requirements.txt"
    if deps.generated is not None:
        requirements.write_text("\n".join(deps.generated) + "\n")
    elif deps.installer == "uv":
        _uv_sync(app, venv, cache)
        return
    elif deps.installer in ("poetry", "pdm"):
        tool = _tool(cache, deps.installer)
        argv = [tool, "export", "--only", "main", "--without-hashes", "-f", "requirements.txt"] \
            if deps.installer == "poetry" else \
            [tool, "export", "--prod", "--no-hashes", "-f", "requirements"]
        run([*argv, "-o", str(requirements)], cwd=app, env=_env(),
            what=f"{deps.installer} export (from {deps.files[1]})")
    else:
        requirements = app / deps.files[0]
    pip_install(venv, ["-r", str(requirements)], cwd=app, what=deps.source)


def compile_bytecode(python: Path, folder: Path) -> None:
    """Byte-code compiled ahead, as root: the app's user cannot write __pycache__ into its
    virtualenv or release, and would otherwise compile every module at every start."""
    run([str(python), "-m", "compileall", "-q", "-j", "0", "-x", r"/(\.venv|node_modules)/",
         str(folder)], env=_env(), what=f"compiling {folder.name}'s Python", timeout=600)


def pip_install(venv: Path, args: list[str], *, cwd: Path, what: str) -> None:
    uv = uv_binary()
    argv = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")] if uv \
        else [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run([*argv, *args], cwd=cwd, env=_env(), what=f"installing the app's dependencies ({what})")


def _uv_sync(app: Path, venv: Path, cache: Path) -> None:
    uv = uv_binary() or _tool(cache, "uv")
    run([uv, "sync", "--frozen", "--no-dev", "--no-install-project", "--python",
         str(venv / "bin" / "python")], cwd=app, env=_env() | {"UV_PROJECT_ENVIRONMENT": str(venv)},
        what="uv sync --frozen --no-dev --no-install-project (from uv.lock)")


def _tool(cache: Path, name: str) -> str:
    """poetry, pdm (or uv) from PyPI in their own virtualenv under the cache, installed once."""
    home = cache / "tools" / name
    home.parent.mkdir(parents=True, exist_ok=True)
    with _locked(home.parent / f"{name}.lock"):
        if not (home / ".complete").exists():
            shutil.rmtree(home, ignore_errors=True)
            uv = uv_binary()
            if uv:
                run([uv, "venv", "--quiet", "--python", sys.executable, str(home)], env=_env(),
                    what=f"{name}'s venv")
            else:
                run([sys.executable, "-m", "venv", str(home)], env=_env(), what=f"{name}'s venv")
            pip_install(home, TOOLS[name], cwd=home, what=f"{name} from PyPI")
            (home / ".complete").touch()
    return str(home / "bin" / name)


# build steps --------------------------------------------------------------------------------
def build(app: Path, found: Detected, env: dict[str, str]) -> list[str]:
    """Run the app's build steps (collectstatic) in the release folder with its [env]; steps
    whose settings need variables [env] does not give (secrets) are skipped. Returns notes."""
    if not found.build:
        return []
    settings, text = python.django_settings(app)
    missing = [v for v in python.required_env(text) if v not in env]
    if missing:
        return [(f"skipped {' && '.join(found.build)}: the settings need "
                 f"{', '.join(missing)}, which [env] does not set (secrets are not given to "
                 "build steps)")]
    venv_bin = app / ".venv" / "bin"
    run_env = _env() | {"DJANGO_SETTINGS_MODULE": settings} | env | {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(venv_bin.parent)}
    for step in found.build:
        argv = shlex.split(step)
        if argv[0] in ("python", "python3"):
            argv[0] = str(venv_bin / "python")
        run(argv, cwd=app, env=run_env, what=f"build step `{step}`")
    return [f"ran {step}" for step in found.build]
