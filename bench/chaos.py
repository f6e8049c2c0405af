"""Faults under load: each one injected while wrk sends requests through the router, and the
failed requests it cost (non-2xx, socket errors, timeouts) reported per fault; target 0, except
killing HAProxy itself, where the outage length is reported. Prints JSON.

Faults: the store locked by another process, the agent killed, HAProxy killed, an instance
killed, an instance hung (SIGSTOP, replaced after restart_after), a deploy killed during its
build, the live release going bad (back on the warm one after fallback_after), a corrupted
store (restored from the agent's copy as `headway doctor` says). Loopback only."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import BenchApp, machine, parse_wrk, wrk

HOLD_LOCK = ("import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None);"
             " db.execute('BEGIN IMMEDIATE'); print('locked', flush=True);"
             " time.sleep(float(sys.argv[2]))")


class Chaos:
    def __init__(self, app: BenchApp) -> None:
        self.app = app
        self.home = Path(app.env["HEADWAY_HOME"])

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.app.headway("status", "--json", check=False).stdout or "{}"))

    def web_pids(self, release: int | None = None) -> list[int]:
        return [i["pid"] for i in self.status().get("instances", [])
                if i["pid"] and (release is None or i["release"] == release)]

    def agent_pid(self) -> int:
        return int((self.home / "agent.pid").read_text())

    def wait(self, check: Callable[[], bool], timeout: float = 30) -> float:
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > timeout:
                raise SystemExit("chaos: timed out waiting for recovery")
            time.sleep(0.05)
        return time.monotonic() - started

    def serves(self) -> bool:
        import httpx

        try:
            return httpx.get(self.app.url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    # the faults ---------------------------------------------------------------------------------
    def store_locked(self) -> dict[str, Any]:
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(self.home / "state.db"),
                                   "120"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        holder.stdout.readline()
        env = dict(self.app.env, HEADWAY_STORE_TIMEOUT="2")
        self.app.write("VERSION", "locked\n")
        code = subprocess.run([sys.executable, "-m", "headway", "deploy"], cwd=self.app.dir,
                              env=env, capture_output=True, check=False).returncode
        time.sleep(2)  # the agent meets the lock a few more times
        holder.kill()
        holder.wait()
        return {"deploy_exit_code": code}

    def agent_killed(self) -> dict[str, Any]:
        os.kill(self.agent_pid(), signal.SIGKILL)
        time.sleep(1)
        self.app.headway("status")  # starts it again
        return {}

    def haproxy_killed(self) -> dict[str, Any]:
        pid = int((self.home / "router" / "haproxy.pid").read_text().split()[0])
        for line in subprocess.run(["pgrep", "-f", str(self.home / "router" / "haproxy.cfg")],
                                   capture_output=True, text=True, check=False).stdout.split():
            os.kill(int(line), signal.SIGKILL)
        os.kill(pid, signal.SIGKILL) if pid else None
        time.sleep(0.05)
        return {"outage_seconds": round(self.wait(self.serves), 2)}

    def instance_killed(self) -> dict[str, Any]:
        os.kill(self.web_pids()[0], signal.SIGKILL)
        time.sleep(3)
        return {}

    def instance_hung(self) -> dict[str, Any]:
        pid = self.web_pids()[0]
        os.kill(pid, signal.SIGSTOP)
        took = self.wait(lambda: pid not in self.web_pids(), 30)
        return {"replaced_after_seconds": round(took, 1)}

    def build_killed(self) -> dict[str, Any]:
        req = self.app.dir / "requirements.txt"
        req.write_text(req.read_text() + "six\n")
        self.app.write("VERSION", "build-killed\n")
        cli = subprocess.Popen([sys.executable, "-m", "headway", "deploy"], cwd=self.app.dir,
                               env=self.app.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        self.wait(lambda: bool(self.unfinished_venvs()), 60)
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        rels = json.loads(self.app.headway("releases", "--json").stdout)
        left = self.unfinished_venvs()
        return {"release_status": rels[0]["status"], "leftovers": len(left)}

    def unfinished_venvs(self) -> list[Path]:
        venvs = self.home / "venvs"
        return [d for d in venvs.glob("*") if d.is_dir() and d.name != "tools"
                and not (d / ".complete").exists()] if venvs.is_dir() else []

    def release_goes_bad(self) -> dict[str, Any]:
        self.app.write("VERSION", "goes-bad\n")
        self.app.headway("deploy")
        active = self.status()["active_release"]
        folder = self.home / "apps" / "hello" / "production" / "releases" / str(active)
        (folder / "BROKEN").write_text("unhealthy")
        for pid in self.web_pids(active):
            os.kill(pid, signal.SIGKILL)
        took = self.wait(lambda: self.status().get("active_release") != active, 60)
        return {"fell_back_after_seconds": round(took, 1)}

    def store_corrupted(self) -> dict[str, Any]:
        db = self.home / "state.db"
        copy = max((self.home / "store-backups").glob("state-*.db"),
                   key=lambda p: p.stat().st_mtime)
        db.write_bytes(b"garbage!" * (db.stat().st_size // 8))
        for suffix in ("-wal", "-shm"):
            db.with_name(f"state.db{suffix}").unlink(missing_ok=True)
        code = self.app.headway("status", check=False).returncode
        time.sleep(2)
        os.kill(self.agent_pid(), signal.SIGTERM)
        time.sleep(1)
        db.rename(db.with_name("state.db.damaged"))
        db.write_bytes(copy.read_bytes())
        restored = self.app.headway("status", check=False).returncode
        return {"status_exit_code": code, "status_after_restore": restored}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15, help="wrk time per fault")
    parser.add_argument("--only", nargs="*", help="fault names")
    args = parser.parse_args()
    app = BenchApp(18281)
    app.set('path = "/up"\ninterval = "200ms"', 'path = "/up"\ninterval = "200ms"\n'
            'restart_after = "3s"')
    app.set('strategy = "blue-green"', 'strategy = "blue-green"\nfallback_after = "3s"')
    chaos = Chaos(app)
    faults = [f for f in ("store_locked", "agent_killed", "haproxy_killed", "instance_killed",
                          "instance_hung", "build_killed", "release_goes_bad", "store_corrupted")
              if not args.only or f in args.only]
    results = []
    try:
        app.headway("deploy")
        app.write("VERSION", "v2\n")
        app.headway("deploy")
        for name in faults:
            load = wrk(app.url, args.seconds, connections=4)
            time.sleep(1)
            extra = getattr(chaos, name)()
            stdout, _ = load.communicate()
            r = parse_wrk(stdout)
            results.append({"fault": name, "requests": int(r["requests"]),
                            "failed_requests": int(r["non_2xx"] + r["socket_errors"]
                                                   + r["timeouts"]), **extra})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        print(json.dumps({"benchmark": "chaos", "seconds_per_fault": args.seconds,
                          "faults": results, "machine": machine()}, indent=2))
    finally:
        done = app.headway("destroy", "--yes", check=False)
        if done.returncode:
            print(f"chaos: destroy failed: {done.stderr}", file=sys.stderr)
            kill_leftovers(chaos.home)
        app.close()


def kill_leftovers(home: Path) -> None:
    """Every process of the home (agent, HAProxy, instances) when destroy could not stop them."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            seen = (proc / "environ").read_bytes() + (proc / "cmdline").read_bytes() \
                + os.readlink(proc / "cwd").encode()
        except OSError:
            continue
        if str(home).encode() in seen:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
