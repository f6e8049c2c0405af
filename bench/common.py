"""Shared by the benchmarks: a private copy of the example app and $HEADWAY_HOME, the CLI as a
subprocess, wrk (loopback only, bounded in time, or until stopped) with its output parsed, the
router's own counters, and the machine with its load average."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]


class BenchApp:
    def __init__(self, port: int, *, replicas: int = 2, runtime: str = "process") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="headway-bench-"))
        self.dir = self.tmp / "hello"
        shutil.copytree(ROOT / "examples" / "hello", self.dir)
        toml = (self.dir / "headway.toml").read_text()
        toml = toml.replace("port = 18080", f'port = {port}\naddress = "127.0.0.1"')
        toml = toml.replace("replicas = 2", f"replicas = {replicas}")
        toml = toml.replace('runtime = "process"', f'runtime = "{runtime}"')
        toml = toml.replace('path = "/up"', 'path = "/up"\ninterval = "200ms"')
        toml += f"\n[observe]\nmetrics_port = {port + 1}\nrouter_metrics_port = {port + 2}\n"
        (self.dir / "headway.toml").write_text(toml)
        self.url = f"http://127.0.0.1:{port}/"
        self.env = dict(os.environ, HEADWAY_HOME=str(self.tmp / "home"))

    def headway(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "headway", *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=300, check=False)
        if check and proc.returncode != 0:
            raise SystemExit(f"headway {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def write(self, name: str, text: str | None) -> None:
        if text is None:
            (self.dir / name).unlink(missing_ok=True)
        else:
            (self.dir / name).write_text(text)

    def set(self, old: str, new: str) -> None:
        path = self.dir / "headway.toml"
        path.write_text(path.read_text().replace(old, new))

    def close(self) -> None:
        self.headway("destroy", "--yes", check=False)
        _stop_leftovers(str(self.tmp / "home"))
        shutil.rmtree(self.tmp, ignore_errors=True)


def _stop_leftovers(home: str) -> None:
    """Processes still running from this bench's home after destroy (seen: an HAProxy started
    again after `destroy` with an HTTPS site), stopped so they do not hold the next run's ports."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f"{home}/" in cmd:
            try:
                os.kill(int(entry), signal.SIGTERM)
            except ProcessLookupError:
                pass


def wrk(url: str, seconds: float, *, connections: int = 16) -> subprocess.Popen[str]:
    return subprocess.Popen(["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                             url], stdout=subprocess.PIPE, text=True)


class LongWrk:
    """wrk for as long as a sequence of steps takes: started with a long -d (an upper bound,
    `limit_s`) and stopped with SIGINT, on which wrk prints its summary over the time it ran."""

    def __init__(self, url: str, *, connections: int = 16, limit_s: float = 7200) -> None:
        self.started = time.monotonic()
        self.proc = wrk(url, limit_s, connections=connections)

    def stop(self) -> tuple[dict[str, float], float]:
        """wrk's parsed summary and the seconds it ran."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        stdout, _ = self.proc.communicate(timeout=60)
        return parse_wrk(stdout), round(time.monotonic() - self.started, 1)


def parse_wrk(text: str) -> dict[str, float]:
    def num(pattern: str) -> float:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else 0.0

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    connect, read, write, timeout = (int(x) for x in errors.groups()) if errors else (0, 0, 0, 0)
    return {"requests": num(r"(\d+) requests in"), "non_2xx": num(r"Non-2xx or 3xx responses: (\d+)"),
            "socket_errors": connect + read + write, "timeouts": timeout,
            "rps": num(r"Requests/sec:\s+([\d.]+)"), "p99_ms": _ms(text, "99%")}


def _ms(text: str, label: str) -> float:
    m = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", text)
    if not m:
        return 0.0
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False
                                      ).stdout.split("\n")[0], "date": time.strftime("%Y-%m-%d"),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


ROUTER_STATS = ("max_total_time_seconds", "max_connect_time_seconds",
                "max_response_time_seconds", "max_queue_time_seconds",
                "connection_errors_total", "response_errors_total", "retry_warnings_total",
                "redispatch_warnings_total", "http_responses_total")


def router_stats(metrics_port: int, backend: str = "") -> dict[str, float]:
    """The router's own view of a backend (HAProxy's Prometheus exporter): the longest
    request, connect and response times since it started, and its error, retry and
    redispatch counters (summed over the backends whose name contains `backend`)."""
    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics?scope=backend",
                         timeout=10).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for server, seconds in slow_servers(metrics_port, backend).items():
        out[f"slow_server {server}"] = seconds
    for line in text.splitlines():
        m = re.match(r'haproxy_backend_(\w+)\{proxy="([^"]+)"[^}]*\} (\S+)', line)
        if not m or m.group(1) not in ROUTER_STATS or backend not in m.group(2):
            continue
        value, key = float(m.group(3)), m.group(1)
        out[key] = max(out.get(key, 0.0), value) if key.startswith("max_") else \
            out.get(key, 0.0) + value
    return out


class TimedLoad:
    """GETs from a few threads, each answer recorded as (time, version, status); `rps` caps
    the total rate (0: as fast as they go). Loopback only, stopped by the caller or at 300 s."""

    def __init__(self, url: str, *, threads: int = 4, rps: float = 0) -> None:
        import threading

        self.url, self.rps = url, rps
        self.answers: list[tuple[float, str, int]] = []
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self._run, args=(threads,), daemon=True)
                        for _ in range(threads)]

    def __enter__(self) -> Self:
        for w in self.workers:
            w.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(timeout=10)

    def _run(self, threads: int) -> None:
        import httpx

        gap = threads / self.rps if self.rps else 0.0
        deadline = time.monotonic() + 300
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    resp = client.get(self.url)
                    version = resp.json().get("version", "?")
                    self.answers.append((time.time(), version, resp.status_code))
                except (httpx.HTTPError, ValueError):
                    self.answers.append((time.time(), "?", 0))
                if gap:
                    time.sleep(max(0.0, gap - (time.monotonic() - started)))


def slow_servers(metrics_port: int, backend: str = "", over: float = 1.0) -> dict[str, float]:
    """Servers (instances: name-r<release>-id) whose longest request took over `over` seconds
    since they were added, as HAProxy reports them while they exist."""
    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics?scope=server",
                         timeout=10).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'haproxy_server_max_total_time_seconds\{proxy="([^"]+)",server="([^"]+)"'
                     r'[^}]*\} (\S+)', line)
        if m and backend in m.group(1) and float(m.group(3)) > over:
            out[m.group(2)] = float(m.group(3))
    return out
