"""The corpus (tests/corpus/*): small apps in the layouts of real projects, each deployed as a
stranger would, unedited: `headway init && headway deploy` in a copy of its folder, then a
request that writes a row to its database, one that reads it back, a second deploy (--force)
and the row read again. Only what makes ports test-safe is added to the headway.toml init
wrote (router port and loopback address, free metrics ports, the runtime under test).

`python -m bench.corpus [--app NAME ...] [--runtime process|podman] [--out FILE]` runs every
app on both runtimes and prints JSON (--out: also written to FILE after each app): per app and runtime whether it deployed unedited (else the failing
step and its message), seconds from `headway init` to serving, the cold and warm (--force)
deploy times (build included), and the share deployed unedited per runtime.
tests/test_corpus.py runs a subset of the same with pytest. Loopback only; every app is
destroyed and its containers removed when its run ends."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
RUNTIMES = ("process", "podman")
PRISMA = ("Prisma's engines are downloaded at install time from binaries.prisma.sh, which this "
          "machine cannot reach (`npm ci`: ENOTFOUND binaries.prisma.sh)")


@dataclass(frozen=True)
class CorpusApp:
    """One app of the corpus. `eventually`: a worker writes the row, so it shows up later.
    `user_secrets`: values only the app's owner can choose (Django's SECRET_KEY); set, as
    `init` says to, only when `init` names them. `cannot_run`: why it cannot run here.
    `items`: the path that writes (POST) and lists (GET) rows; `page`: a page that must show
    them too."""

    name: str
    what: str
    items: str = "/items"
    page: str | None = None
    eventually: bool = False
    user_secrets: tuple[str, ...] = ()
    cannot_run: str | None = None


APPS = (
    CorpusApp("fastapi-uv", "FastAPI in app/main.py, uv + uv.lock, alembic, DATABASE_URL"),
    CorpusApp("fastapi-poetry", "FastAPI package, Poetry + poetry.lock, SQLAlchemy create_all"),
    CorpusApp("flask-shop", "Flask create_app(), Procfile web+release (flask db upgrade), "
              "requirements.txt -r requirements/base.txt, runtime.txt"),
    CorpusApp("django-blog", "Django, dj-database-url, SECRET_KEY from the environment, "
              "migrations", user_secrets=("SECRET_KEY",)),
    CorpusApp("stdlib-guestbook", "http.server + sqlite3 in data/app.db, no dependency file"),
    CorpusApp("worker-redis", "Flask web enqueues to Redis, worker writes PostgreSQL; Procfile "
              "web + worker", eventually=True),
    CorpusApp("dockerfile-flask", "its own Dockerfile (Cloud Run sample), PostgreSQL"),
    CorpusApp("flask-sqlite", "single-file Flask app, sqlite3 in data/notes.db, app.run()"),
    CorpusApp("aiohttp-inventory", "aiohttp + asyncpg, PEP 621 src layout (hatchling), "
              "console script"),
    CorpusApp("flask-counter", "Flask + Redis counters, Pipenv (Pipfile.lock), Procfile"),
    CorpusApp("express-knex", "Express + knex migrations, DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/"
              "DB_NAME"),
    CorpusApp("express-prisma", "Express + Prisma (postinstall: prisma generate), migrations",
              cannot_run=PRISMA),
    CorpusApp("ts-express", "TypeScript (tsc build to dist/), pg, package.json migrate script"),
    CorpusApp("nextjs-guestbook", "Next.js pages router, API route + SSR page reading PostgreSQL",
              items="/api/items", page="/"),
    CorpusApp("fastify-redis", "Fastify + ioredis (REDIS_URL), yarn v1 lock"),
    CorpusApp("express-pg", "Express + pg, /healthz, pnpm lock"),
    CorpusApp("bun-hono", "Bun + Hono, Bun.sql on DATABASE_URL, bun.lock"),
)
BY_NAME = {a.name: a for a in APPS}


@dataclass
class Outcome:
    app: str
    runtime: str
    deployed_unedited: bool = False
    step: str | None = None
    message: str | None = None
    cannot_run: str | None = None
    init_to_serving_s: float | None = None
    cold_deploy_s: float | None = None
    warm_deploy_s: float | None = None
    cold_build_s: float | None = None
    warm_build_s: float | None = None
    secrets_set: list[str] = field(default_factory=list)


class StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step, self.message = step, message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    """One app on one runtime, in `work` (a scratch folder the caller removes)."""

    def __init__(self, app: CorpusApp, runtime: str, work: Path) -> None:
        self.app, self.runtime = app, runtime
        self.dir = work / app.name
        self.home = work / "home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.outcome = Outcome(app.name, runtime, cannot_run=app.cannot_run)

    def headway(self, step: str, *args: str, timeout: float = 900,
                stdin: str | None = None) -> str:
        try:
            proc = subprocess.run([sys.executable, "-m", "headway", *args], cwd=self.dir,
                                  env=dict(os.environ, HEADWAY_HOME=str(self.home)),
                                  input=stdin, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise StepFailed(step, f"`headway {' '.join(args)}` still running after "
                             f"{timeout:.0f} s") from None
        if proc.returncode != 0:
            raise StepFailed(step, f"`headway {' '.join(args)}` exited {proc.returncode}: "
                             + tail(readable(proc.stderr) + "\n" + proc.stdout))
        return proc.stdout + proc.stderr

    def execute(self) -> Outcome:
        """Every step in order; the first that fails is recorded with its message."""
        try:
            self.copy()
            started = time.monotonic()
            said = self.headway("init", "init", "--port", str(self.port))
            self.make_ports_test_safe()
            self.set_user_secrets(said)
            self.outcome.cold_deploy_s, self.outcome.cold_build_s = self.timed_deploy("deploy")
            token = f"corpus-{secrets.token_hex(4)}"
            self.write(token)
            self.outcome.init_to_serving_s = round(time.monotonic() - started, 1)
            self.read(token, "read")
            self.outcome.warm_deploy_s, self.outcome.warm_build_s = self.timed_deploy(
                "redeploy", "--force")
            self.read(token, "read after redeploy")
            self.outcome.deployed_unedited = True
        except StepFailed as failed:
            self.outcome.step, self.outcome.message = failed.step, failed.message
            if failed.step.startswith(("write", "read")):
                self.outcome.message += "\napp's log:\n" + self.app_log()
        return self.outcome

    def app_log(self) -> str:
        try:
            return tail(self.headway("logs", "logs", "-n", "12", timeout=60), 24)
        except StepFailed as failed:
            return failed.message

    def copy(self) -> None:
        shutil.copytree(CORPUS / self.app.name, self.dir,
                        ignore=shutil.ignore_patterns("node_modules", ".venv", "__pycache__"))
        git = ["git", "-c", "user.name=Corpus", "-c", "user.email=corpus@example.invalid"]
        for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "initial"]):
            subprocess.run([*git, *argv], cwd=self.dir, check=True, capture_output=True)

    def make_ports_test_safe(self) -> None:
        path = self.dir / "headway.toml"
        if not path.exists():
            raise StepFailed("init", "no headway.toml was written")
        text = set_keys(path.read_text(), {
            "app": {"runtime": f'"{self.runtime}"'},
            "router": {"port": str(self.port), "address": '"127.0.0.1"'},
            "observe": {"metrics_port": str(free_port()),
                        "router_metrics_port": str(free_port())},
        })
        path.write_text(text)

    def set_user_secrets(self, init_said: str) -> None:
        for name in self.app.user_secrets:
            if f"secrets set {name}" in init_said:
                self.headway("secrets", "secrets", "set", name, stdin=secrets.token_urlsafe(40))
                self.outcome.secrets_set.append(name)

    def timed_deploy(self, step: str, *extra: str) -> tuple[float, float | None]:
        """Seconds the deploy took, and its build step (from its JSON progress lines)."""
        t0 = time.monotonic()
        said = self.headway(step, "--log-format", "json", "deploy", *extra)
        return round(time.monotonic() - t0, 1), build_seconds(said)

    def write(self, token: str) -> None:
        try:
            resp = httpx.post(self.url + self.app.items, json={"text": token}, timeout=30)
        except httpx.HTTPError as exc:
            raise StepFailed("write", f"POST {self.app.items}: {exc!r}") from None
        if resp.status_code >= 300:
            raise StepFailed("write", f"POST {self.app.items} answered {resp.status_code}: "
                             f"{resp.text[:300]}")

    def read(self, token: str, step: str) -> None:
        for path in filter(None, (self.app.items, self.app.page)):
            self.read_at(path, token, step)

    def read_at(self, path: str, token: str, step: str) -> None:
        deadline = time.monotonic() + (20 if self.app.eventually else 5)
        while True:
            try:
                resp = httpx.get(self.url + path, timeout=30)
                seen = f"GET {path} answered {resp.status_code}: {resp.text[:300]}"
                if resp.status_code == 200 and token in resp.text:
                    return
            except httpx.HTTPError as exc:
                seen = f"GET {path}: {exc!r}"
            if time.monotonic() > deadline:
                raise StepFailed(step, f"the row written ({token}) is not there; {seen}")
            time.sleep(0.5)

    def cleanup(self) -> None:
        if self.dir.joinpath("headway.toml").exists():
            try:
                self.headway("destroy", "destroy", "--yes", timeout=120)
            except StepFailed:
                pass
        if shutil.which("podman"):
            ids = subprocess.run(["podman", "ps", "-aq", "--filter",
                                  f"label=headway.home={self.home}"], capture_output=True,
                                 text=True, check=False).stdout.split()
            if ids:
                subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True,
                               check=False)
        from tests.conftest import _kill_leftovers

        _kill_leftovers(self.home)


def set_keys(text: str, sections: dict[str, dict[str, str]]) -> str:
    """`text` (TOML) with each KEY = value set in its [SECTION]: replaced where the key is,
    else added at the end of the section, else in a new section at the end."""
    lines = text.splitlines()
    for section, keys in sections.items():
        header = re.compile(rf"^\s*\[{re.escape(section)}\]\s*(#.*)?$")
        start = next((n + 1 for n, line in enumerate(lines) if header.match(line)), None)
        if start is None:
            lines += ["", f"[{section}]", *(f"{k} = {v}" for k, v in keys.items())]
            continue
        end = next((n for n in range(start, len(lines))
                    if lines[n].lstrip().startswith("[")), len(lines))
        for key, value in keys.items():
            at = next((n for n in range(start, end)
                       if re.match(rf"^\s*{re.escape(key)}\s*=", lines[n])), None)
            if at is None:
                lines.insert(end, f"{key} = {value}")
                end += 1
            else:
                lines[at] = f"{key} = {value}"
    return "\n".join(lines) + "\n"


def progress(text: str) -> list[dict[str, object]]:
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return [line for line in lines if isinstance(line, dict) and "ts" in line]


def build_seconds(text: str) -> float | None:
    lines = progress(text)
    at = next((n for n, line in enumerate(lines) if line.get("step") == "build"), None)
    if at is None or at + 1 >= len(lines):
        return None
    return round(float(lines[at + 1]["ts"]) - float(lines[at]["ts"]), 1)  # type: ignore[arg-type]


def readable(text: str) -> str:
    """JSON progress lines as their messages; anything else as is."""
    out = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        out.append(str(parsed["message"]) if isinstance(parsed, dict) and "message" in parsed
                   else line)
    return "\n".join(out)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(line for line in text.strip().splitlines()[-lines:])


def run_app(app: CorpusApp, runtime: str) -> Outcome:
    """Deploy `app` unedited on `runtime` in a scratch folder, and clean up after it."""
    if app.cannot_run:
        return Outcome(app.name, runtime, step="cannot run here", cannot_run=app.cannot_run)
    work = Path(tempfile.mkdtemp(prefix=f"headway-corpus-{app.name}-"))
    run = Run(app, runtime, work)
    try:
        return run.execute()
    finally:
        run.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def summary(outcomes: list[Outcome]) -> dict[str, object]:
    share = {}
    for runtime in sorted({o.runtime for o in outcomes}):
        mine = [o for o in outcomes if o.runtime == runtime]
        runnable = [o for o in mine if not o.cannot_run]
        ok = sum(o.deployed_unedited for o in runnable)
        share[runtime] = {"deployed_unedited": ok, "runnable": len(runnable), "apps": len(mine),
                          "share": round(ok / len(runnable), 3) if runnable else None}
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", action="append", choices=sorted(BY_NAME), help="(repeatable)")
    parser.add_argument("--runtime", action="append", choices=RUNTIMES, help="(repeatable)")
    parser.add_argument("--out", type=Path, help="also write the JSON here, after each app "
                        "(a run cut short keeps what it measured)")
    args = parser.parse_args()
    runtimes = args.runtime or list(RUNTIMES)
    if "podman" in runtimes:
        from tests import images

        images.ensure(defaults=True)
    outcomes: list[Outcome] = []
    for app in [BY_NAME[n] for n in args.app] if args.app else APPS:
        for runtime in runtimes:
            outcome = run_app(app, runtime)
            print(f"{app.name} {runtime}: "
                  f"{'ok' if outcome.deployed_unedited else outcome.step}", file=sys.stderr)
            outcomes.append(outcome)
            if args.out:
                args.out.write_text(report(outcomes) + "\n")
    print(report(outcomes))


def report(outcomes: list[Outcome]) -> str:
    from bench.common import machine

    return json.dumps({"benchmark": "corpus", "machine": machine(),
                       "share_deployed_unedited": summary(outcomes),
                       "apps": [asdict(o) for o in outcomes]}, indent=2)


if __name__ == "__main__":
    main()
