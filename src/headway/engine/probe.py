"""One HTTP health probe over a plain socket, for a deploy's health gate (observer.health),
the agent's health watch and a warm rollback alike, so all three judge by one rule. Cheap
enough for the agent's watch to run on every instance at its interval (httpx.get builds a
client and an SSL context per call: four fifths of an idle agent's CPU), and light enough to
import before a warm rollback's switch (http.client alone costs a CLI 70 ms of CPU). HTTP/1.0,
GET only: never follows redirects, never sends a body, reads only the status line."""

from __future__ import annotations

import re
import socket
import time

STATUS = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})")


def probe(port: int, path: str, *, timeout: float, expect: str = "2xx") -> str | None:
    """None when 127.0.0.1:port answers GET path as `expect` says (2xx: 2xx or 3xx;
    below-500: anything below 500), else why not."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
                         "User-Agent: headway-probe\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head and len(head) < 1024:
                conn.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = conn.recv(1024)
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    match = STATUS.match(head)
    if not match:
        return f"GET {path}: not an HTTP answer"
    status = int(match.group(1))
    limit = 500 if expect == "below-500" else 400
    return None if status < limit else f"GET {path} answered {status}"
