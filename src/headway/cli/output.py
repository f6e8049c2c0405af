"""What the CLI shows: the lazily built context (spec, store, engine) and every printer.
--json output is `json.dumps` of plain rows, keys documented in the README."""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from headway.errors import ConfigError, DeployFailed, HeadwayError, NotFound

_WIDTH = None if sys.stdout.isatty() else 200  # pipes and logs get whole lines
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)


APP_NAME = r"[a-z][a-z0-9-]{0,39}"  # as [app] name in spec/models.py
LIVE_WINDOW = 10  # seconds of request log behind the live figures
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


@dataclass
class Context:
    config: Path = Path("headway.toml")
    env: str = "production"
    app_name: str | None = None
    _store: Any = None

    def __post_init__(self) -> None:
        # --app names folders, keys and HAProxy backends: the same rule as [app] name
        if self.app_name is not None and not re.fullmatch(APP_NAME, self.app_name):
            raise ConfigError(f"--app {self.app_name!r}: not an app name (lowercase letters, "
                              "digits and dashes, at most 40, starting with a letter)",
                              hint="the [app] name of its headway.toml, e.g. --app shop")

    def spec(self) -> Any:
        from headway.spec import load_spec

        spec = load_spec(self.config)  # runtime "kubernetes": cli/kube_runtime.py's commands
        self._check_env_name(spec)
        return spec

    def _check_env_name(self, spec: Any) -> None:
        """--env with no [env.NAME] table is fine, unless it looks like a typo of one."""
        known = spec.environments()
        close = difflib.get_close_matches(self.env, known, n=1, cutoff=0.75)
        if self.env not in known and close:
            raise ConfigError(f"{self.config}: --env {self.env}: no [env.{self.env}] table; "
                              f"did you mean --env {close[0]}?",
                              hint=f"add an [env.{self.env}] table (it may be empty) to use "
                              f"{self.env} without overrides")

    def _check_deployable(self, spec: Any) -> None:
        """What `config check` must refuse because `deploy` would: no app folder."""
        self.source(spec)

    def source(self, spec: Any) -> Path:
        folder: Path = (self.config.parent / spec.app.path).resolve()
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise ConfigError(f"{self.config}: app.path: {spec.app.path!r} ({folder}) {what}",
                              hint="app.path is the app folder, relative to headway.toml")
        return folder

    def app(self) -> str:
        if self.app_name:
            return self.app_name
        if not self.config.exists():
            raise ConfigError(f"{self.config}: no such file",
                              hint="run it in the app folder, or pass -c PATH or --app NAME")
        return str(self.spec().app.name)

    def effective_config(self, *, strict: bool = True) -> dict[str, Any]:
        """The spec for this environment. Required secrets that are not set raise ConfigError
        (strict) or show as [MISSING]."""
        from headway.secrets import Vault, load_key

        spec = self.spec()
        if strict:
            self._check_deployable(spec)
        store = self.store()
        has = store.q("SELECT 1 FROM secrets WHERE app=? AND env=? LIMIT 1", spec.app.name,
                      self.env)
        names = Vault(store, load_key(store.home)).names(spec.app.name, self.env) if has else []
        missing = [n for n in spec.app.secrets if n not in names and n not in spec.secrets]
        if missing and strict:
            raise ConfigError(f"{self.config}: app.secrets: {', '.join(missing)} not set for "
                              f"--env {self.env}",
                              hint=f"headway --env {self.env} secrets set {missing[0]}")
        data: dict[str, Any] = spec.model_dump(mode="json", exclude={"env"})
        return data | {"environment": self.env, "env": spec.environment(self.env),
                       "secrets": dict.fromkeys(names, "[REDACTED]")
                       | {n: f"[REDACTED, from {ref}]" for n, ref in spec.secrets.items()}
                       | dict.fromkeys(missing, "[MISSING]")}

    def store(self) -> Any:
        """One store connection for the whole command."""
        from headway.store import Store, home_dir

        if self._store is None:
            self._store = Store(home_dir())
            from headway.agent.control import revive  # the agent is never gone for good
            if revive(self._store.home):
                err.print("the headway agent was not running: started it again")
        return self._store

    def recovered_store(self) -> Any:
        """The store, after finishing or undoing a deploy of this app whose command died. When
        another command or the agent holds the app (recovering it, say: it waits for requests
        to drain), the store as it is: a read is never refused for it."""
        from headway.errors import LockedError

        store, app = self.store(), self.app()
        if store.interrupted_deploys(app, self.env):
            try:
                with store.lock(f"app:{app}:{self.env}", f"headway recover {app}", wait=5):
                    self.engine().recover(app, self.env)
            except LockedError as exc:
                err.print(f"an interrupted deploy is being finished ({exc.message}); this is "
                          "the state as it is now")
        return store

    def build_progress(self, folder: Path, pattern: str) -> Any:
        """`headway build`: its image build's lines as they are written (build_progress)."""
        return build_progress(folder, pattern, env=self.env)

    def engine(self) -> Any:
        from headway.agent.control import ensure_agent
        from headway.engine import Engine
        from headway.router import HAProxy

        store = self.store()
        return Engine(store, HAProxy(store.home), progress=progress,
                      ensure_agent=lambda: ensure_agent(store.home))

    def status(self) -> dict[str, Any]:
        from headway.router import HAProxy, backend_name
        from headway.router.base import shares

        store, app = self.recovered_store(), self.app()
        router = HAProxy(store.home)
        live = router.servers(backend_name(app, self.env)) if router.running() else {}
        insts = store.instances(app, self.env)
        if not insts and not store.releases(app, self.env):
            raise NotFound(f"{app} ({self.env}) is not deployed on this host")
        share = shares({i.id: live[i.id].weight for i in insts
                        if i.id in live and live[i.id].serving})
        active = next((r.number for r in store.releases(app, self.env) if r.status == "active"),
                      None)
        rows = [{
            "id": i.id, "release": i.release, "process": i.process, "port": i.port or None,
            "state": i.state, "pid": i.pid, "restarts": i.restarts,
            "router": live[i.id].admin if i.id in live else "none",
            "health": ("up" if live[i.id].up else "down")
            if i.id in live and live[i.id].admin != "maint" else None,
            "traffic": share.get(i.id, 0.0),
        } for i in insts]
        from headway.accessories import backups, manage

        accessories = [row | {"last_backup": next(
            (b.created for b in backups.listing(store, app, self.env, row["name"])), None)}
            for row in manage.status(store, app, self.env, None)]
        routed = any(a["router_port"] for a in store.apps() if (a["app"], a["env"]) ==
                     (app, self.env))  # 0: a fleet host that runs no web process of it
        return {"app": app, "env": self.env, "active_release": active, "routed": routed,
                "router": ("running" if live or router.running() else "stopped") if routed
                else "not used (no web process here)",
                "traffic": self.traffic(store, app), "instances": rows,
                "accessories": accessories}

    def traffic(self, store: Any, app: str) -> list[dict[str, Any]]:
        """Live figures per release over the last LIVE_WINDOW seconds of the request log."""
        from headway.observer.requests import release_stats

        rows = store.samples(app, self.env, since=int(time.time()) - LIVE_WINDOW)
        stats = release_stats(rows, window=LIVE_WINDOW)
        return [{"release": rel or None, **figures} for rel, figures in sorted(stats.items())]

    def signal(self, what: str) -> None:
        """Leave `promote` or `abort` for the running deploy of this app, which polls for it."""
        from headway.engine.analysis import signal_key

        store, app = self.store(), self.app()
        running = [d for d in store.deploys(app, self.env, limit=5) if d["status"] == "running"]
        if not running or store.interrupted_deploys(app, self.env):
            raise NotFound(f"no deploy of {app} ({self.env}) is running",
                           hint="promote and abort act on a canary while `headway deploy` runs")
        store.put(signal_key(app, self.env), what)
        out.print(f"{what} sent to the deploy of release {running[0]['release']}")

    def after_destroy(self) -> None:
        from headway.agent.control import wait_agent_exit
        from headway.router import HAProxy

        store = self.store()
        if not store.apps():
            wait_agent_exit(store.home)
            HAProxy(store.home).stop()


def confirm_destroy(where: str, *, yes: bool, volumes: bool) -> None:
    """Ask before `headway destroy` stops every instance of `where` (and deletes its volumes'
    data with --volumes); without a terminal, --volumes needs --yes."""
    if not yes and sys.stdin.isatty():
        click.confirm(f"Stop every instance of {where}"
                      + (" and delete its volumes' data?" if volumes else "?"), abort=True)
    elif volumes and not yes:
        raise ConfigError("destroy --volumes deletes data", hint="confirm with --yes")


_JSON_LOGS = False


def use_log_format(name: str) -> None:
    """json: progress and agent logs as JSON lines; the agent this CLI starts inherits it."""
    global _JSON_LOGS
    _JSON_LOGS = name == "json"
    os.environ["HEADWAY_LOG_FORMAT"] = name


def _json_line(message: str, fields: dict[str, object], **base: object) -> str:
    return json.dumps({"ts": round(time.time(), 3), **base, "message": message, **fields},
                      default=str)


def progress(message: str, /, **fields: object) -> None:
    if _JSON_LOGS:
        print(_json_line(message, fields, level="info"), file=sys.stderr, flush=True)
    else:
        err.print(Text(time.strftime("%H:%M:%S"), style="dim"), Text(message))


_BUILD_STEP = re.compile(r"(?:\[\d+/\d+\] )?(?:STEP|Step) \d+/\d+")  # [stage/stages] STEP n/m
_LAYER_ID = re.compile(r"(--> )?[0-9a-f]{11,64}$")  # a layer or image id alone


@contextmanager
def build_progress(folder: Path, pattern: str = "build-*.log", **fields: object) -> Iterator[None]:
    """While the block runs, print the image builds' output as it is written to `folder`'s
    build logs (files older than the block are skipped): on a terminal the build's STEP
    lines, elsewhere (and with --log-format json) every line, prefixed with its step."""
    stop, started = threading.Event(), time.time() - 1
    watcher = threading.Thread(target=_follow_builds, daemon=True,
                               args=(folder, pattern, started, stop, fields))
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=2)


def deploy_builds(ctx: Context, spec: Any) -> Any:
    """build_progress for a deploy: its release's image build log (container runtime)."""
    app = spec.app.name
    return build_progress(ctx.store().home / "apps" / app / ctx.env / "logs", app=app,
                          env=ctx.env)


def _follow_builds(folder: Path, pattern: str, started: float, stop: threading.Event,
                   fields: dict[str, object]) -> None:
    shown = _BuildLines(fields)
    offsets: dict[Path, int] = {}
    try:
        while True:
            last = stop.is_set()
            for log in sorted(folder.glob(pattern)) if folder.is_dir() else []:
                try:
                    if log not in offsets and log.stat().st_mtime < started:
                        continue
                    with open(log, "rb") as f:
                        f.seek(offsets.get(log, 0))
                        data = f.read()
                except OSError:
                    continue
                if not last:  # a line still being written waits for its end
                    data = data[:data.rfind(b"\n") + 1]
                offsets[log] = offsets.get(log, 0) + len(data)
                for line in data.decode(errors="replace").splitlines():
                    shown.add(log, line.rstrip())
            if last:
                return
            stop.wait(0.25)
    finally:
        shown.close()


class _BuildLines:
    """Prints a build's lines: STEP lines always; the others one per line off a terminal (and
    as JSON lines), on a terminal in one live line under the step that is gone when done."""

    def __init__(self, fields: dict[str, object]) -> None:
        self.fields, self.steps = fields, dict[Path, str]()
        self.every_line = _JSON_LOGS or not err.is_terminal
        self.status: Any = None

    def add(self, log: Path, line: str) -> None:
        step = _BUILD_STEP.match(line)
        if step:
            self.steps[log] = step.group(0)
            progress(f"build {line}", **self.fields, step="build")
        elif not line or _LAYER_ID.match(line):
            return
        elif self.every_line:
            progress(f"build {self.steps.get(log, 'start')} | {line}", **self.fields,
                     step="build")
        else:
            text = Text(f"  {line[:150]}", style="dim", no_wrap=True, overflow="ellipsis")
            if self.status is None:
                self.status = err.status(text)
                self.status.start()
            else:
                self.status.update(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


def agent_log(message: str, /, **fields: object) -> None:
    if _JSON_LOGS:
        print(_json_line(message, fields, source="agent"), flush=True)
    else:
        print(f"{time.strftime('%H:%M:%S')} agent: {message}", flush=True)


def outcome(result: Any) -> None:
    extra = f" in {result.seconds:.2f}s" if result.changed else ""
    if result.switch_seconds is not None and result.changed:
        extra += f" (traffic switched in {result.switch_seconds * 1000:.0f} ms)"
    out.print(f"[bold]{result.app}[/bold] ({result.env}): {result.message}{extra}")


def show_config(data: dict[str, Any], as_json: bool) -> None:
    """JSON, or TOML that reads back as headway.toml (an unset value is left out: TOML has no
    null)."""
    if as_json:
        print(json.dumps(data, indent=2))
        return
    import tomli_w

    body = dict(data)
    if "environment" in body:  # which one it is, not a key of headway.toml
        print(f"# headway.toml as it applies to --env {body.pop('environment')}\n")
    print(tomli_w.dumps(_without_none(body)), end="")


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def plan(spec: Any, env: str, steps: list[Any], ctx: Context | None = None) -> None:
    out.print(f"Plan for {spec.app.name} ({env}), {spec.deploy.strategy}:", markup=False)
    for line in _preparation(ctx, spec) if ctx else []:
        out.print(f"  - {line}", markup=False)
    backups = spec.pre_release_backups()
    for n, step in enumerate(steps, 1):
        text = step.describe()
        if step.kind == "release" and backups:
            text = f"back up {', '.join(backups)} (a restore point), then {text}"
        out.print(f"  {n}. {text}", markup=False)
    out.print("(dry run: nothing was changed)")


def _preparation(ctx: Context, spec: Any) -> list[str]:
    """What a deploy does before its steps: accessories it creates, the runtime and why, the
    build, the push. Reads only; asking podman and docker whether they answer is all it runs."""
    from headway.accessories import manage
    from headway.runtime import container

    known = {a.name for a in manage.load(ctx.store(), spec.app.name, ctx.env)}
    lines = [f"create accessory {name} ({acc.type}{' ' + acc.version if acc.version else ''}, "
             f"its URL in {acc.env_name})"
             for name, acc in spec.accessories.items() if name not in known]
    runtime = container.resolve(spec.app.runtime, spec.build)
    if spec.app.runtime != "auto":
        why = f'runtime = "{spec.app.runtime}"'
    elif runtime == "process":
        why = ('runtime = "auto" chose process: neither podman (`podman info`) nor a Docker '
               "daemon answers")
    elif Path(runtime).name == "docker":
        why = 'runtime = "auto" chose docker: podman does not answer, the Docker daemon does'
    else:
        why = 'runtime = "auto" chose podman: it answers `podman info`'
    found = _detected(ctx.source(spec), spec)
    if runtime == "process":
        lines.append(f"build: a release folder of the app's files, {found} ({why})")
        return lines
    repo = container.repository(spec)
    lines.append(f"build: image {repo} with {Path(runtime).name}, {found} ({why})")
    if spec.registry.server:
        lines.append(f"push: {repo} to {spec.registry.server}, where instances pull it from")
    return lines


def _detected(source: Path, spec: Any) -> str:
    from headway.builder import image

    try:
        found = image.detected(source, spec)
    except ConfigError:
        return "no language detected: the configured command runs as it is"
    if found.containerfile:
        return f"from the app's own {found.containerfile}"
    version = f" {found.version}" if found.version else ""
    return f"{found.language}{version}, dependencies installed with {found.installer}"


def table(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        out.print(_table(rows, columns))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> Table:
    t = Table(*columns, box=None, header_style="bold")
    for row in rows:
        t.add_row(*(_cell(k, row.get(k)) for k in columns))
    return t


def status(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        out.print(_status(data))


def watch_status(ctx: Context, interval: float) -> None:
    """`status --watch`: the same view, refreshed until Ctrl-C."""
    with Live(_status(ctx.status()), console=out, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(_status(ctx.status()), refresh=True)


def _status(data: dict[str, Any]) -> Group:
    parts: list[Any] = [
        Text.assemble((data["app"], "bold"), f" ({data['env']}): release "
                      f"{data['active_release']} live, router {data['router']}"),
        _table(data["instances"], ["id", "release", "process", "port", "state", "pid",
                                   "restarts", "router", "health", "traffic"])]
    if data["accessories"]:
        parts += [Text("\naccessories:"), _table(data["accessories"], [
            "name", "type", "state", "address", "url_env", "data_mb", "last_backup"])]
    if data["traffic"]:
        parts += [Text(f"\nrequests in the last {LIVE_WINDOW}s, by release:"),
                  _table(data["traffic"], ["release", "requests", "rps", "error_rate", "p99_ms"])]
    return Group(*parts)


@dataclass(frozen=True)
class LogFilter:
    """`logs --since/--grep`: which lines of an instance log to show."""

    since: float | None = None
    pattern: re.Pattern[str] | None = None

    def lines(self, f: Any, mtime: float, last: int | None) -> deque[str]:
        """The file's last `last` lines that pass (all: None); a line without its own stamp
        takes the time of the last stamped (agent) line before it, or the file's mtime when
        none came before."""
        kept: deque[str] = deque(maxlen=last)
        stamp = mtime
        for line in f:
            if self.since is not None:
                stamp = _stamp(line, stamp)
                if stamp < self.since:
                    continue
            if self.pattern is None or self.pattern.search(line):
                kept.append(line)
        return kept


_STAMP = re.compile(r"--- headway (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) ")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def _stamp(line: str, previous: float) -> float:
    match = _STAMP.match(line)
    if not match:
        return previous
    return time.mktime(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))


def log_filter(since: str | None, grep: str | None, now: float | None = None) -> LogFilter:
    """--since DURATION (30s, 10m, 2h, 1d) or local TIME (2026-11-27T10:00[:00], 10:00) and
    --grep REGEX, checked."""
    start = None
    if since is not None:
        start = _since(since, time.time() if now is None else now)
    pattern = None
    if grep is not None:
        try:
            pattern = re.compile(grep)
        except re.error as exc:
            raise ConfigError(f"--grep {grep!r}: not a regular expression ({exc})",
                              hint="a Python regex, e.g. --grep 'ERROR|WARN'") from None
    return LogFilter(start, pattern)


def _since(value: str, now: float) -> float:
    match = _DURATION.fullmatch(value.strip())
    if match:
        return now - float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[
            match.group(2)]
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(value.strip(), fmt))
        except ValueError:
            pass
    for fmt in ("%H:%M:%S", "%H:%M"):  # today
        try:
            t = time.strptime(value.strip(), fmt)
        except ValueError:
            continue
        day = time.localtime(now)
        return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, t.tm_hour, t.tm_min,
                            t.tm_sec, 0, 0, -1))
    raise ConfigError(f"--since {value!r}: neither a duration nor a time",
                      hint="e.g. --since 10m, --since 2h, --since 2026-11-27T10:00 or 10:00")


def logs(store: Any, app: str, env: str, *, process: str | None, lines: int | None,
         follow: bool, as_json: bool, release: int | None = None,
         only: LogFilter = LogFilter()) -> None:
    if lines is not None and lines < 0:
        raise ConfigError(f"logs -n {lines}: a number of lines, 0 or more", hint="e.g. -n 50")
    if lines is None:
        lines = 20 if only.since is None else None
    insts = [i for i in store.instances(app, env, release=release) if process in {None, i.process}]
    if not insts:
        raise NotFound(f"no instances of {app} ({env})" + (f" for {process}" if process else "")
                       + (f" in release {release}" if release is not None else ""),
                       hint="headway releases lists them; headway status shows what runs")

    def emit(inst: Any, line: str) -> None:
        if as_json:
            print(json.dumps({"instance": inst.id, "process": inst.process,
                              "release": inst.release, "line": line.rstrip("\n")}))
        else:
            print(f"{inst.id} | {line}", end="" if line.endswith("\n") else "\n")

    offsets = {}
    for inst in insts:
        if os.path.exists(inst.log):
            with open(inst.log, errors="replace") as f:
                for line in only.lines(f, os.path.getmtime(inst.log), lines):
                    emit(inst, line)
                offsets[inst.id] = f.tell()
    while follow:
        time.sleep(0.3)
        for inst in store.instances(app, env, release=release):
            if process not in {None, inst.process} or not os.path.exists(inst.log):
                continue
            with open(inst.log, errors="replace") as f:
                f.seek(offsets.get(inst.id, 0))
                for line in f:
                    if only.pattern is None or only.pattern.search(line):
                        emit(inst, line)
                offsets[inst.id] = f.tell()
        sys.stdout.flush()


def error(exc: HeadwayError) -> None:
    err.print("[bold red]error:[/bold red]", end=" ")
    err.print(exc.message, markup=False)
    if isinstance(exc, DeployFailed) and exc.log_tail:
        err.print("[dim]last lines of its log:[/dim]")
        err.print(exc.log_tail.rstrip(), markup=False)
    if exc.hint:
        err.print("[yellow]hint:[/yellow]", end=" ")
        err.print(exc.hint, markup=False)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in {"ts", "created", "deployed", "warm_until", "verified", "last_backup"} \
            and isinstance(value, float):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if key == "digest":
        return str(value)[:12]
    if key == "traffic":
        return f"{value}%"
    if key == "error_rate":
        return f"{value:.2%}"
    return str(value)
