"""`headway logs` and `headway events` across a fleet: each host's own command (`--json`),
run on every host at once, its rows tagged with the host's name. Never changes a host; a host
that does not answer is a row (events) or an error the caller reports (logs) — the other
hosts' rows are never lost to it. Never prints: rows go to the caller's callback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from headway.errors import HeadwayError
from headway.fleet.fleet import Fleet
from headway.fleet.hosts import Host

Row = dict[str, Any]


def events(fleet: Fleet, limit: int) -> list[Row]:
    """The newest `limit` events over every host, oldest first, each with its host."""
    def one(host: Host) -> list[Row]:
        fleet.probe(host)
        out = fleet.headway(host, ["--app", fleet.app, "events", "--json", "-n", str(limit)],
                            what="events", timeout=120)
        return [{"host": host.name, **row} for row in json.loads(out)]
    rows: list[Row] = []
    failed: list[Row] = []
    for name, result in fleet.each(fleet.hosts, one).items():
        if isinstance(result, HeadwayError):
            failed.append({"host": name, "ts": None, "release": None, "kind": "unreachable",
                           "message": result.message.splitlines()[0]})
        else:
            rows += result
    rows.sort(key=lambda r: r.get("ts") or 0)
    return rows[-limit:] + failed if limit else rows + failed


def log_args(*, process: str | None, lines: int | None, since: str | None, grep: str | None,
             release: int | None, follow: bool) -> list[str]:
    """`headway logs` options as a host's own command takes them (JSON lines)."""
    args = ["logs", "--json"]
    for flag, value in (("--process", process), ("-n", lines), ("--since", since),
                        ("--grep", grep), ("--release", release)):
        if value is not None:
            args += [flag, str(value)]
    return args + (["--follow"] if follow else [])


def logs(fleet: Fleet, args: list[str], emit: Callable[[Row], None]) -> dict[str, HeadwayError]:
    """Each host's log lines as rows (host, instance, process, release, line) to `emit`: with
    --follow as they come from any host (one at a time), else host after host in [servers]
    order. The hosts that failed, by name."""
    follow = "--follow" in args
    lock = threading.Lock()

    def one(host: Host) -> list[Row]:
        fleet.probe(host)
        rows: list[Row] = []

        def line(text: str) -> None:
            try:
                row = {"host": host.name, **json.loads(text)}
            except ValueError:  # not one of its rows: said as a line of that host
                row = {"host": host.name, "instance": "-", "line": text}
            if follow:
                with lock:
                    emit(row)
            else:
                rows.append(row)
        fleet.headway(host, ["--app", fleet.app, *args], what="logs",
                      timeout=24 * 3600 if follow else 300, on_line=line)
        return rows
    results = fleet.each(fleet.hosts, one)
    for result in results.values():
        if not isinstance(result, HeadwayError):
            for row in result:
                emit(row)
    return {n: r for n, r in results.items() if isinstance(r, HeadwayError)}
