"""Deploy notifications reach a webhook on loopback, a dead target never fails a deploy, and a
URL kept as a secret stays out of every log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import App, agent_pid, free_port, wait_for


class Receiver:
    """An HTTP server on loopback that records each POST: (path, JSON body)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str]]] = []
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self, path: str) -> list[str]:
        return [body["title"] for where, body in self.got if where.startswith(path)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.mark.integration
def test_deploy_events_reach_the_webhooks_and_a_dead_one_fails_nothing(
        app: App, receiver: Receiver) -> None:
    token = "hooktoken" + os.urandom(8).hex()
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "TEAM_HOOK"],
                   input=f"json://127.0.0.1:{receiver.port}/team/{token}", cwd=app.dir,
                   env=app.env(), check=True, capture_output=True, text=True)
    dead = free_port()  # nothing listens there
    app.configure(notify=f'urls = ["json://127.0.0.1:{receiver.port}/ops", '
                         f'"json://127.0.0.1:{dead}/gone", "secret:TEAM_HOOK"]')
    app.run("deploy")
    app.set_version("v2")
    app.run("deploy")
    wait_for(lambda: len(receiver.titles("/ops")) >= 2, "the second deploy's notifications", 20)
    assert app.version() == "v2"  # the dead target did not hold the deploy back
    ops = receiver.titles("/ops")
    assert "hello (production) release 2: deploy started" in ops
    wait_for(lambda: "hello (production) release 2: deploy succeeded" in receiver.titles("/ops"),
             "deploy succeeded", 20)
    started = next(b for p, b in receiver.got if b["title"].endswith("2: deploy started"))
    assert " by " in started["message"]  # who deployed
    assert receiver.titles(f"/team/{token}") == receiver.titles("/ops")  # the secret URL works

    app.run("rollback")
    wait_for(lambda: "hello (production) release 1: rolled back" in receiver.titles("/ops"),
             "the rollback's notification", 20)
    os.kill(agent_pid(app), signal.SIGKILL)
    app.run("status")  # starts the agent again
    wait_for(lambda: any(t.endswith("agent restarted") for t in receiver.titles("/ops")),
             "agent restarted", 20)

    events = app.run("events", "-n", "100").stdout
    assert f"not delivered to json://127.0.0.1:{dead}" in events
    for text in (events, (app.home / "agent.log").read_text(), app.run("config", "show").stdout):
        assert token not in text


def test_a_notify_url_that_is_not_one_is_refused_naming_the_key(app: App) -> None:
    app.configure(notify='urls = ["hooks.example.com/x"]')
    check = app.run("config", "check", check=False)
    assert check.returncode == 2
    assert "notify.urls" in check.stderr and "apprise URL" in check.stderr
