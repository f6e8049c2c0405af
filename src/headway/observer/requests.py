"""Request metrics from HAProxy's per-request log. HAProxy sends one datagram per request
(`LOG_FORMAT`) to a unix socket the agent reads in a thread: the request path never waits on
us, and a slow agent only drops log lines, never requests. Lines are aggregated per app,
environment, release and second; whole seconds go to the store for `status` and the canary
judge, and running totals feed the Prometheus endpoint."""

from __future__ import annotations

import bisect
import json
import os
import re
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_FORMAT = "%b %s %ST %Ta"
# Latency buckets (seconds, then +Inf): fine enough around usual p99 limits for the judge.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
           0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
CLASSES = ("2xx", "3xx", "4xx", "5xx")
_SERVER = re.compile(r"^[a-z0-9-]+-r(\d+)-[0-9a-f]+$")


@dataclass(frozen=True)
class Request:
    app: str
    env: str
    release: int | None  # None: no server answered (HAProxy's own 503)
    code: str  # 2xx | 3xx | 4xx | 5xx
    seconds: float


@dataclass
class Counts:
    """Requests by status class and a latency histogram (len(BUCKETS) + 1 buckets)."""

    codes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    hist: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    seconds_sum: float = 0.0

    def add(self, code: str, seconds: float) -> None:
        self.codes[code] += 1
        self.hist[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.seconds_sum += seconds

    def merge(self, other: Counts) -> None:
        for k, v in other.codes.items():
            self.codes[k] += v
        self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)]
        self.seconds_sum += other.seconds_sum

    @property
    def total(self) -> int:
        return sum(self.codes.values())


def parse(line: str) -> Request | None:
    """One log line (`be_<app>_<env> <server> <status> <Ta ms>`) -> Request, or None."""
    parts = line.split()
    if len(parts) != 4 or not parts[0].startswith("be_"):
        return None
    app_env = parts[0][3:].split("_")
    if len(app_env) != 2:
        return None
    try:
        status, millis = int(parts[2]), int(parts[3])
    except ValueError:
        return None
    match = _SERVER.match(parts[1])
    code = f"{status // 100}xx" if 200 <= status < 600 else "5xx"
    return Request(app_env[0], app_env[1], int(match.group(1)) if match else None, code,
                   max(millis, 0) / 1000)


def quantile(hist: list[int], q: float) -> float | None:
    """The q-quantile of a histogram, as the upper bound of its bucket (conservative)."""
    total = sum(hist)
    if not total:
        return None
    rank, seen = q * total, 0
    for n, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return BUCKETS[n] if n < len(BUCKETS) else float("inf")
    return float("inf")


Key = tuple[str, str, int | None]  # app, env, release


class RequestLog:
    """Binds the log socket and aggregates what arrives, from a daemon thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self.sock.settimeout(0.5)
        self.lock = threading.Lock()
        self.totals: dict[Key, Counts] = defaultdict(Counts)
        self.pending: dict[tuple[Key, int], Counts] = defaultdict(Counts)
        self.stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="request-log", daemon=True).start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode(errors="replace").splitlines():
                req = parse(line)
                if req:
                    self.record(req, second=int(time.time()))

    def record(self, req: Request, *, second: int) -> None:
        key = (req.app, req.env, req.release)
        with self.lock:
            self.totals[key].add(req.code, req.seconds)
            self.pending[(key, second)].add(req.code, req.seconds)

    def take_seconds(self, *, before: int) -> list[tuple[Key, int, Counts]]:
        """Whole seconds older than `before`, handed over once."""
        with self.lock:
            done = [k for k in self.pending if k[1] < before]
            return [(key, second, self.pending.pop((key, second))) for key, second in done]

    def snapshot(self) -> dict[Key, Counts]:
        with self.lock:
            copy = {}
            for key, counts in self.totals.items():
                c = Counts(dict(counts.codes), list(counts.hist), counts.seconds_sum)
                copy[key] = c
            return copy

    def close(self) -> None:
        self.stopping.set()
        self.sock.close()


def sample_rows(taken: list[tuple[Key, int, Counts]]) -> list[tuple[object, ...]]:
    """Rows for Store.add_samples."""
    return [(app, env, release or 0, second, *(c.codes[k] for k in CLASSES),
             json.dumps(c.hist), c.seconds_sum) for (app, env, release), second, c in taken]


def by_release(rows: list[Any]) -> dict[int, Counts]:
    """Sample rows merged per release (0: requests no server answered)."""
    merged: dict[int, Counts] = defaultdict(Counts)
    for row in rows:
        merged[row["release"]].merge(Counts(
            {k: row[f"c{k[0]}"] for k in CLASSES}, json.loads(row["hist"]), row["seconds_sum"]))
    return merged


def release_stats(rows: list[Any], *, window: float) -> dict[int, dict[str, float | None]]:
    """Per release over the rows' window: requests, req/s, error rate (5xx share), p99 (ms)."""
    stats = {}
    for release, c in by_release(rows).items():
        p99 = quantile(c.hist, 0.99)
        stats[release] = {
            "requests": c.total, "rps": round(c.total / window, 2),
            "error_rate": round(c.codes["5xx"] / c.total, 4) if c.total else None,
            "p99_ms": None if p99 is None else round(p99 * 1000, 1)}
    return stats
