"""Backups: `headway backup create` / `restore --into` on a PostgreSQL database of about 1 GB
made by this script, against plain pg_dump / pg_restore with the same flags run by hand in
the same run, alternating (ratio; target <= 1.1); and the time a deploy with a release
command adds over one without (with and without its backup); and `backup create` / `restore`
of a 50 MB volume against GNU tar -czf / -xzf by hand (`--volume`: that case alone, in about
a minute). Prints JSON."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchApp, machine
from headway.accessories import manage
from headway.accessories.servers import DRIVERS
from headway.store import Store

ROWS = 7_000_000  # about 1 GB with its index: an id, a timestamp and two md5 texts a row
TABLE = (f"CREATE TABLE events AS SELECT g AS id, now() - g * interval '1 second' AS at, "
         f"md5(g::text) AS a, md5((g * 7)::text) || md5(random()::text) AS b "
         f"FROM generate_series(1, {ROWS}) g; ALTER TABLE events ADD PRIMARY KEY (id);")


def timed(fn: object) -> float:
    t0 = time.monotonic()
    fn()  # type: ignore[operator]
    return time.monotonic() - t0


def main() -> None:
    app = BenchApp(18190, replicas=1)
    try:
        app.set("[router]", '[accessories.db]\ntype = "postgres"\n\n[router]')
        app.headway("deploy")
        deploys = release_overhead(app)
        psql(app, TABLE)
        size = int(psql(app, "SELECT pg_database_size(current_database())"))
        store = Store(Path(app.env["HEADWAY_HOME"]))
        (acc,) = manage.load(store, "hello", "production", "db")
        pg = DRIVERS["postgres"]
        dump, restore = (pg.tool(acc, t) for t in ("pg_dump", "pg_restore"))
        by_hand = app.tmp / "by-hand.pgdump"
        dump_h, dump_m, restore_h, restore_m = [], [], [], []
        for _ in range(2):
            dump_h.append(timed(lambda: app.headway("backup", "create", "db")))
            dump_m.append(timed(lambda: subprocess.run(
                [*dump, "-Fc", "-d", acc.database, "-f", str(by_hand)], check=True)))
        newest = json.loads(app.headway("backup", "list", "db", "--json").stdout)[0]
        for n in range(2):
            restore_h.append(timed(lambda n=n: app.headway(
                "backup", "restore", "db", newest["id"], "--into", f"headway_{n}")))
            psql(app, f"CREATE DATABASE by_hand_{n}")
            restore_m.append(timed(lambda n=n: subprocess.run(
                [*restore, "--no-owner", "--exit-on-error", "-d",
                 f"by_hand_{n}", str(by_hand)], check=True)))
        print(json.dumps({
            "benchmark": "backup", "database_bytes": size, "rows": ROWS,
            "backup_bytes": newest["size"], "by_hand_bytes": by_hand.stat().st_size,
            "backup_s": {"headway": dump_h, "by_hand": dump_m,
                         "ratio": statistics.median(dump_h) / statistics.median(dump_m)},
            "restore_s": {"headway": restore_h, "by_hand": restore_m,
                          "ratio": statistics.median(restore_h) / statistics.median(restore_m)},
            "deploy_s": deploys,
            "volume": volume_case(),
            "note": "headway times are whole CLI commands (Python start included); restore "
                    "--into a new database on both sides; pg_restore is "
                    "pg_dump's sibling, same flags",
            "machine": machine()}, indent=2))
    finally:
        app.close()


def release_overhead(app: BenchApp) -> dict[str, float]:
    """Median of 3 forced deploys each: no release command, a no-op one with its backup of
    the (small) database, and the same without the backup."""
    variants = {"no_release_command": "",
                "release_command_with_backup": '[release]\ncommand = "python3 -c pass"\n',
                "release_command_no_backup": '[release]\ncommand = "python3 -c pass"\n'
                                             'backup = []\n'}
    toml = app.dir / "headway.toml"
    base = toml.read_text()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(3):
        for name, extra in variants.items():
            toml.write_text(base + "\n" + extra)
            times[name].append(timed(lambda: app.headway("deploy", "--force")))
    toml.write_text(base)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["added_by_release_command_s"] = out["release_command_no_backup"] - \
        out["no_release_command"]
    out["added_with_backup_s"] = out["release_command_with_backup"] - out["no_release_command"]
    return out


VOLUME_MB = 50


def fill(folder: Path, megabytes: int) -> None:
    """Half incompressible (photos, archives), half text-like (JSON, logs), in 256 KiB files."""
    line = b'{"id": 1234, "name": "an uploaded document", "tags": ["a", "b"]}\n'
    for n in range(megabytes * 4):
        sub = folder / f"d{n % 8}"
        sub.mkdir(exist_ok=True)
        body = os.urandom(1 << 18) if n % 2 else (line * ((1 << 18) // len(line) + 1))[:1 << 18]
        (sub / f"f{n}.bin").write_bytes(body)


def volume_case() -> dict[str, object]:
    """backup create / restore of a VOLUME_MB volume, 2 runs each, alternating with tar by
    hand (GNU tar, gzip level 6 as Headway's archives)."""
    app = BenchApp(18196, replicas=1)
    try:
        app.set("[router]", '[volumes]\nuploads = "uploads"\n\n[router]')
        app.headway("deploy")
        folder = Path(app.headway("run", "--", "readlink", "-f", "uploads").stdout.strip())
        fill(folder, VOLUME_MB)
        by_hand = app.tmp / "by-hand.tar.gz"
        backup_h, backup_m, restore_h, restore_m = [], [], [], []
        for _ in range(2):
            backup_h.append(timed(lambda: app.headway("backup", "create", "uploads")))
            backup_m.append(timed(lambda: subprocess.run(
                ["tar", "-czf", str(by_hand), "-C", str(folder), "."], check=True)))
        newest = json.loads(app.headway("backup", "list", "uploads", "--json").stdout)[0]
        for _ in range(2):
            restore_h.append(timed(lambda: app.headway("backup", "restore", "uploads",
                                                       newest["id"], "--yes")))
            into = tempfile.mkdtemp(dir=folder.parent, prefix=".by-hand-")
            restore_m.append(timed(lambda into=into: subprocess.run(
                ["tar", "-xzf", str(by_hand), "-C", into], check=True)))
        return {"volume_bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
                "archive_bytes": newest["size"], "by_hand_bytes": by_hand.stat().st_size,
                "backup_s": {"headway": backup_h, "by_hand": backup_m,
                             "ratio": statistics.median(backup_h) / statistics.median(backup_m)},
                "restore_s": {"headway": restore_h, "by_hand": restore_m,
                              "ratio": statistics.median(restore_h) / statistics.median(restore_m)},
                "note": "headway times are whole CLI commands (Python start included); its "
                        "restore also checks the checksum and every member, fsyncs and swaps "
                        "the folder in; tar by hand extracts into a new folder, no checks"}
    finally:
        app.close()


def psql(app: BenchApp, query: str) -> str:
    return app.headway("accessory", "psql", "db", "--", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                       "-c", query).stdout.strip()


if __name__ == "__main__":
    if "--volume" in sys.argv[1:]:
        print(json.dumps({"benchmark": "backup", "volume": volume_case(), "machine": machine()},
                         indent=2))
    else:
        main()
