"""A small load generator for tests: a few threads send GETs through the router and count
every answer by status, and every connection error. Bounded in time; loopback only."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Self

import httpx


class Load:
    def __init__(self, url: str, *, threads: int = 4, rate: float | None = None) -> None:
        """`rate`: requests per second in all (paced), else as fast as answers come."""
        self.url, self.threads = url, threads
        self.interval = threads / rate if rate else 0.0  # per thread
        self.codes: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()  # 200s by the version that answered
        self.answers: Counter[tuple[str, int]] = Counter()  # (version, status), any status
        self.failures: list[str] = []  # "HH:MM:SS.mmm what", to set beside the logs
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Self:
        for w in self._workers:
            w.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(timeout=10)

    def _run(self) -> None:
        deadline, due = time.monotonic() + 300, time.monotonic()
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self.interval:
                    due += self.interval
                    self._stop.wait(max(0.0, due - time.monotonic()))
                try:
                    resp = client.get(self.url)
                    version = _version(resp)
                    with self._lock:
                        self.codes[resp.status_code] += 1
                        self.answers[(version, resp.status_code)] += 1
                        if resp.status_code == 200:
                            self.versions[version] += 1
                        else:
                            self._failed(str(resp.status_code))
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors[type(exc).__name__] += 1
                        self._failed(type(exc).__name__)

    def _failed(self, what: str) -> None:
        now = time.time()
        self.failures.append(f"{time.strftime('%H:%M:%S', time.localtime(now))}"
                             f".{int(now % 1 * 1000):03d} {what}")

    @property
    def total(self) -> int:
        return sum(self.codes.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 200) + sum(self.errors.values())


def _version(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["version"])
    except (ValueError, KeyError):
        return "?"
