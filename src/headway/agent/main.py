"""The agent's loop: supervise instances every 100 ms; once a second keep HAProxy up, retire
warm releases whose keep_previous ran out, and finish deploys whose command died. Keeping the
accessories up, scheduled backups and the health watch (restart_after, fallback_after) run in
threads of their own, since a server start, a backup or a hung probe can take long. Every
hour (and before each deploy, from the store) a copy of the store is kept.

Never exits on an error in one round (a locked or full store, a corrupted file, HAProxy
refusing a command): it logs it, waits a little longer each time (up to MAX_BACKOFF) and
tries again, supervising all along. Exits (and stops HAProxy) only when no app is left on
the host, or on SIGTERM/SIGINT."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

from headway import notify
from headway.accessories import backups, manage
from headway.agent.supervisor import Supervisor
from headway.agent.watchdog import Watchdog
from headway.dashboard import wsgi as dashboard
from headway.engine import Engine, routing
from headway.engine.engine import Progress
from headway.errors import LockedError, RuntimeFailure
from headway.observer.metrics import HeadwayCollector
from headway.observer.requests import RequestLog, sample_rows
from headway.router import HAProxy
from headway.store import Store, leftovers, ports, snapshots
from headway.tls import manage as tls

MAX_BACKOFF = 5.0
SLOW_ROUND = 1.0  # seconds between housekeeping rounds
CLEANUP_EVERY = 60.0  # seconds between sweeps of half-built virtualenvs
HEALTH_FILE = "agent.health"  # the agent's last error, for `headway doctor` and status
STORE_WAIT = 2.0  # longest wait for a write lock: supervision must not stall behind one


def run_agent(home: Path, *, log: Progress) -> None:
    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / "agent.lock", "a")  # noqa: SIM115 - held for the agent's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeFailure(f"an agent is already running for {home}") from None
    log = quiet_on_full_disk(log)
    pidfile = home / "agent.pid"  # removed by a clean stop: still here, the last agent died
    died = pidfile.read_text().strip() if pidfile.exists() else None
    _write(pidfile, f"{os.getpid()}\n")
    agent = Agent(home, log)
    if died:
        agent._round("recording the restart", lambda: agent.restarted(died))
    agent.run()


def quiet_on_full_disk(log: Progress) -> Progress:
    """The agent's log is a file on the same disk as the store: a full disk must not kill it."""
    def safe(message: str, /, **fields: object) -> None:
        try:
            log(message, **fields)
        except OSError:
            pass
    return safe


class Agent:
    def __init__(self, home: Path, log: Progress) -> None:
        self.home, self.log = home, log
        self.stopping = False
        self.trouble = Trouble(home, log)
        self.store = self._open_store()
        self.router = HAProxy(home)
        self.engine = Engine(self.store, self.router, progress=log)
        self.supervisor = Supervisor(self.store)
        self.requests = RequestLog(self.router.log_socket)
        self.metrics = MetricsServer(self.store, self.requests, log)
        self.unsaved: list[tuple[Any, ...]] = []  # request samples the store refused, kept
        self.watchdog: Watchdog | None = None

    def _open_store(self) -> Store:
        """The store, once it opens (it may be locked, full or damaged when the agent starts)."""
        while True:
            try:
                return Store(self.home, timeout=STORE_WAIT)
            except Exception as exc:  # noqa: BLE001 - waits for the store, whatever is wrong
                time.sleep(self.trouble.failed("opening the store", exc))

    def run(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.requests.start()
        self.log(f"running for {self.home}")
        # each can block for a while (a server start, a backup of minutes, a hung probe)
        for work, every in ((manage.supervise, 1.0), (backups.scheduled, 5.0),
                            (self._watch, 0.2), (notify.forward, 1.0)):
            threading.Thread(target=background, args=(self.home, self.log, work, every),
                             daemon=True).start()
        threading.Thread(target=background, args=(self.home, self.log, tls.maintain, 2.0),
                         daemon=True).start()  # HTTPS certificates: issue, renew, reload
        self._round("reading the live router", self._reconcile)
        last = cleaned = 0.0
        while not self.stopping:
            pause = 0.1
            if not self._round("supervising instances", self.supervisor.tick):
                pause = self.trouble.backoff
            self._round("recording request samples", self._save_samples)
            if time.monotonic() - last > SLOW_ROUND:
                last = time.monotonic()
                self._round("serving metrics", lambda: self.metrics.follow(
                    self.store.get(routing.OBSERVE)))
                more = self._round("housekeeping", lambda: housekeeping(
                    self.store, self.router, self.engine))
                if more is False:
                    break
                if time.monotonic() - cleaned > CLEANUP_EVERY:
                    cleaned = time.monotonic()
                    self._round("keeping a copy of the store", self._hourly)
            time.sleep(pause)
        self._shutdown()

    def _round(self, what: str, work: Callable[[], Any]) -> Any:
        """Run one piece of the loop; on any error log it and return None (the loop goes on)."""
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - the agent outlives any one failure
            self.trouble.failed(what, exc)
            return None
        self.trouble.ok(what)
        return True if result is None else result

    def _reconcile(self) -> None:
        """At start, believe a running HAProxy over the store about which servers it has (a
        store put back from a copy may remember servers a later switch removed)."""
        if self.router.running():
            for app in self.store.apps():
                routing.sync_from_router(self.store, self.router, app["app"], app["env"])

    def _save_samples(self) -> None:
        self.unsaved += sample_rows(self.requests.take_seconds(before=int(time.time())))
        self.unsaved = self.unsaved[-20000:]  # a store that stays down loses the oldest
        self.store.add_samples(self.unsaved)
        self.unsaved = []

    def _hourly(self) -> None:
        leftovers.sweep(self.home)
        if snapshots.due(self.home):
            self.store.snapshot("hourly")

    def _watch(self, store: Store, log: Progress) -> None:
        """The health watch, in its own thread with its own store connection."""
        if self.watchdog is None or self.watchdog.store is not store:
            router = HAProxy(self.home)
            self.watchdog = Watchdog(store, Engine(store, router, progress=log), router, log)
        self.watchdog.round()

    def restarted(self, died: str) -> None:
        for app in self.store.apps():
            self.store.event(app["app"], app["env"], "agent.restarted",
                             f"the agent (pid {died}) had stopped without shutting down; "
                             f"running again as pid {os.getpid()}")

    def _shutdown(self) -> None:
        try:
            if not self.store.apps():
                self.router.stop()
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            self.trouble.failed("stopping", exc)
        self.requests.close()
        self.metrics.follow(None)
        (self.home / "agent.pid").unlink(missing_ok=True)
        self.log("agent: stopped")


class Trouble:
    """What went wrong in the agent's loop: logged once per new error (and each minute while
    it lasts), written to agent.health, and the backoff to wait before the next try."""

    def __init__(self, home: Path, log: Progress) -> None:
        self.path, self.log = home / HEALTH_FILE, log
        self.errors: dict[str, tuple[str, float, float]] = {}  # what -> (message, since, logged)
        self.backoff = 0.1

    def failed(self, what: str, exc: BaseException) -> float:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        now = time.time()
        old = self.errors.get(what)
        if old is None or old[0] != message or now - old[2] > 60:
            self.log(f"{what} failed: {message}; retrying", step="agent")
            self.errors[what] = (message, old[1] if old else now, now)
            self._save()
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        return self.backoff

    def ok(self, what: str) -> None:
        if what in self.errors:
            _, since, _ = self.errors.pop(what)
            self.log(f"{what} works again (failed for {time.time() - since:.0f}s)", step="agent")
            self._save()
        if not self.errors:
            self.backoff = 0.1

    def _save(self) -> None:
        _write(self.path, json.dumps({what: {"error": m, "since": s}
                                      for what, (m, s, _) in self.errors.items()}))


def _write(path: Path, text: str) -> None:
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass  # a full disk: the log says it already


def health(home: Path) -> dict[str, dict[str, Any]]:
    """The errors the agent is retrying now ({} when none): for doctor and status."""
    try:
        return dict(json.loads((home / HEALTH_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def background(home: Path, log: Progress, work: Callable[[Store, Progress], None],
               every: float) -> None:
    """Run `work` every `every` seconds in a thread of its own, with its own store (opened
    again whenever it fails), logging each new error once."""
    store: Store | None = None
    last = ""
    while True:
        try:
            store = store or Store(home)
            work(store, log)
            last = ""
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
            message = f"{work.__module__}.{work.__name__}: {exc}"
            if message != last:
                log(message)
                last = message
            time.sleep(min(every * 5, MAX_BACKOFF))
        time.sleep(every)


class MetricsServer:
    """Serves /metrics where the [observe] settings say, moving when they change, and the web
    dashboard at / of the same address when [observe] dashboard is on; a port another home's
    agent serves is left to it (store.ports) and said so."""

    def __init__(self, store: Store, requests: RequestLog, log: Progress) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(HeadwayCollector(store.home, requests))
        self.home, self.log = store.home, log
        self.where: tuple[str, int, bool] | None = None
        self.server: WSGIServer | None = None

    def follow(self, observe: str | None) -> None:
        settings = json.loads(observe or "{}")
        where = (settings["metrics_address"], settings["metrics_port"],
                 bool(settings.get("dashboard"))) if settings.get("metrics_port") else None
        if where == self.where:
            return
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        self.where = where
        if where:
            other = ports.claim_service(self.home, where[1])
            if other:
                self.log(f"cannot serve metrics on {where[0]}:{where[1]}: the agent of {other} "
                         "serves that port; set another [observe] metrics_port")
                return
            try:
                app = dashboard.Dashboard(self.home, make_wsgi_app(self.registry),
                                          address=where[0], port=where[1], enabled=where[2],
                                          log=self.log)
                self.server = dashboard.serve(where[0], where[1], app)
                self.log(f"metrics at http://{where[0]}:{where[1]}/metrics"
                         + (f", dashboard at http://{where[0]}:{where[1]}/" if where[2] else ""))
            except OSError as exc:
                self.log(f"cannot serve metrics on {where[0]}:{where[1]}: {exc.strerror}")


def housekeeping(store: Store, router: HAProxy, engine: Engine) -> bool:
    """One slow round; False when there is nothing left to look after."""
    apps = store.apps()
    if not apps and not store.instances():
        return False
    if any(a["router_port"] for a in apps) and not router.running():  # 0: not routed here
        routing.configure(store, router)
    if store.get(routing.PENDING):
        routing.purge(store, router)
    now = time.time()
    store.prune_samples(before=int(now) - 3600)
    for app in apps:
        name, env = app["app"], app["env"]
        expired = [r for r in store.releases(name, env)
                   if r.status == "previous" and (r.warm_until or 0) < now]
        if not expired and not store.interrupted_deploys(name, env) and \
                not engine.prunable(name, env):
            continue
        try:
            with store.lock(f"app:{name}:{env}", "agent housekeeping"):
                engine.recover(name, env)
                engine.prune(name, env)
                for rel in expired:
                    if store.release(name, env, rel.number) == rel:
                        engine.retire(rel)
                        store.event(name, env, "release.retired",
                                    f"release {rel.number} stopped: keep_previous ran out",
                                    release=rel.number)
        except LockedError:
            continue  # a command is working on this app; look again next round
    return True
