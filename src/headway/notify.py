"""Deploy notifications: the agent forwards this host's events to each app's [notify] urls
through apprise (Slack, e-mail, JSON webhooks and the rest apprise knows).

Only the agent sends, after the event is in the store, so a notification target that is slow,
down or wrong never fails or delays a deploy: it is logged, recorded as a `notify.failed`
event (never itself sent) and the next event goes on. What is sent is the event's own text,
which never holds a secret; a URL given as `secret:NAME` is read from the app's secrets when
sending and only its scheme and host are ever logged. Where each app's urls are: its latest
release's spec. The first agent round starts after the newest event: history is not sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from headway.store import Store

LAST = "notify.last_event"  # kv: the id of the last event forwarded
BATCH = 100
TITLES = {
    "deploy.started": "deploy started", "deploy.succeeded": "deploy succeeded",
    "deploy.failed": "deploy failed", "deploy.fallback": "fell back to the previous release",
    "deploy.recovered": "interrupted deploy recovered", "rollback": "rolled back",
    "backup.failed": "backup failed", "backup.copy_failed": "backup copy failed",
    "agent.restarted": "agent restarted", "instance.replaced": "instance replaced",
    "accessory.restarted": "accessory restarted", "analysis.passed": "canary step passed",
    "tls.failed": "certificate not issued",
}


def forward(store: Store, log: Callable[..., None]) -> None:
    """The agent's round: send the events recorded since the last round."""
    last = store.get(LAST)
    if last is None:  # first round: from now on
        (newest,) = store.q("SELECT COALESCE(MAX(id), 0) FROM events")[0]
        store.put(LAST, str(newest))
        return
    rows = store.q("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", int(last), BATCH)
    targets = _Targets(store)
    for row in rows:
        urls = targets.urls(row["app"], row["env"], row["kind"])
        if urls:
            failed = send(urls, title(row), body(row))
            for where in failed:
                log(f"notify: sending {row['kind']} of {row['app']} ({row['env']}) to {where} "
                    "failed", app=row["app"], env=row["env"])
                store.event(row["app"], row["env"], "notify.failed",
                            f"{row['kind']} not delivered to {where}", release=row["release"])
        store.put(LAST, str(row["id"]))


class _Targets:
    """Each app's notify settings, from its latest release's spec (read once per round)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}

    def urls(self, app: str, env: str, kind: str) -> list[str]:
        if (app, env) not in self.cache:
            rows = self.store.q("SELECT spec FROM releases WHERE app=? AND env=? "
                                "ORDER BY number DESC LIMIT 1", app, env)
            spec = json.loads(rows[0]["spec"])["spec"] if rows else {}
            self.cache[(app, env)] = spec.get("notify") or {}
        notify = self.cache[(app, env)]
        if kind not in notify.get("events", []) or not notify.get("urls"):
            return []
        return [self._resolve(app, env, url) for url in notify["urls"]]

    def _resolve(self, app: str, env: str, url: str) -> str:
        if not url.startswith("secret:"):
            return url
        from headway.secrets import Vault, load_key

        vault = Vault(self.store, load_key(self.store.home, create=False))
        value = vault.values(app, env).get(url.removeprefix("secret:"))
        return value.reveal() if value else url  # an unset secret: fails as an unknown URL


def title(event: Any) -> str:
    what = TITLES.get(event["kind"], event["kind"])
    release = f" release {event['release']}" if event["release"] else ""
    return f"{event['app']} ({event['env']}){release}: {what}"


def body(event: Any) -> str:
    return f"{event['message']}\n\n{event['app']} · {event['env']} · {event['kind']}"


def send(urls: list[str], title: str, body: str) -> list[str]:
    """Deliver to every URL (a few seconds' timeout each); the ones that failed, as a scheme
    and host with no credentials or path."""
    import apprise

    quiet = logging.getLogger("apprise")  # its own log lines may hold a URL's token
    quiet.handlers, quiet.propagate = [logging.NullHandler()], False
    failed = []
    for url in urls:
        target = apprise.Apprise()
        if not target.add(url):
            failed.append(f"{url.split(':', 1)[0]}:// (not a URL apprise knows)")
            continue
        if not target.notify(title=title, body=body):
            failed.append(where(url))
    return failed


def where(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}"
