"""The agent's loop: supervise instances every 100 ms; once a second keep HAProxy up, retire
warm releases whose keep_previous ran out, and finish deploys whose command died. Keeping the
accessories up and scheduled backups run in threads of their own, since a server start or a
backup can take long. Exits (and stops HAProxy) when no app is left on the host."""

from __future__ import annotations

import fcntl
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from headway.accessories import backups, manage
from headway.agent.supervisor import Supervisor
from headway.engine import Engine, routing
from headway.engine.engine import Progress
from headway.errors import HeadwayError, LockedError, RuntimeFailure
from headway.observer.metrics import HeadwayCollector
from headway.observer.requests import RequestLog, sample_rows
from headway.router import HAProxy
from headway.store import Store


def run_agent(home: Path, *, log: Progress) -> None:
    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / "agent.lock", "a")  # noqa: SIM115 - held for the agent's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeFailure(f"an agent is already running for {home}") from None
    store = Store(home)
    router = HAProxy(home)
    engine = Engine(store, router, progress=log)
    supervisor = Supervisor(store)
    requests = RequestLog(router.log_socket)
    requests.start()
    metrics = MetricsServer(store, requests, log)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"running for {home}")
    last = 0.0
    # each can block for a while (a server start, a backup of minutes): off the main loop
    for work, every in ((manage.supervise, 1.0), (backups.scheduled, 5.0)):
        threading.Thread(target=background, args=(home, log, work, every), daemon=True).start()
    while not stopping:
        supervisor.tick()
        store.add_samples(sample_rows(requests.take_seconds(before=int(time.time()))))
        if time.monotonic() - last > 1:
            last = time.monotonic()
            metrics.follow(store.get(routing.OBSERVE))
            try:
                if not housekeeping(store, router, engine):
                    break
            except HeadwayError as exc:
                log(f"{exc.message}")
        time.sleep(0.1)
    if not store.apps():
        router.stop()
    requests.close()
    metrics.follow(None)
    log("agent: stopped")


def background(home: Path, log: Progress, work: Callable[[Store, Progress], None],
               every: float) -> None:
    """Run `work` every `every` seconds in a thread of its own, with its own store."""
    store = Store(home)
    while True:
        try:
            work(store, log)
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
            log(f"{work.__module__}.{work.__name__}: {exc}")
        time.sleep(every)


class MetricsServer:
    """Serves /metrics where the [observe] settings say, moving when they change."""

    def __init__(self, store: Store, requests: RequestLog, log: Progress) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(HeadwayCollector(store.home, requests))
        self.log = log
        self.where: tuple[str, int] | None = None
        self.server: WSGIServer | None = None

    def follow(self, observe: str | None) -> None:
        settings = json.loads(observe or "{}")
        where = (settings["metrics_address"], settings["metrics_port"]) \
            if settings.get("metrics_port") else None
        if where == self.where:
            return
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        self.where = where
        if where:
            try:
                self.server, _ = start_http_server(where[1], where[0], registry=self.registry)
                self.log(f"metrics at http://{where[0]}:{where[1]}/metrics")
            except OSError as exc:
                self.log(f"cannot serve metrics on {where[0]}:{where[1]}: {exc.strerror}")


def housekeeping(store: Store, router: HAProxy, engine: Engine) -> bool:
    """One slow round; False when there is nothing left to look after."""
    apps = store.apps()
    if not apps and not store.instances():
        return False
    if apps and not router.running():
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
