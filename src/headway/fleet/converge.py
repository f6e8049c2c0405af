"""`headway servers converge`, and the fleet's reads (status, releases across hosts). Converge
finds the fleet's release (the newest one a fleet deploy or rollback recorded on any host that
answers) and deploys that same artifact, copied from a host that has it, to every host that is
on another. Reads never change a host; a host that does not answer is a row saying so."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from headway.errors import DeployFailed, HeadwayError, NotFound
from headway.fleet import ssh
from headway.fleet.artifact import archive_image
from headway.fleet.deploy import (
    FleetOutcome,
    _control_secrets,
    _deploy_host,
    _ship,
    check_shared_data,
    release_once,
)
from headway.fleet.fleet import Fleet, installed_problem
from headway.fleet.hosts import Host, batches


def fleet_release(infos: dict[str, dict[str, Any]]) -> str | None:
    """The artifact recorded last as the fleet's, over the hosts that answered."""
    records = [i["headway"].get("fleet") or {} for i in infos.values() if i.get("headway")]
    newest = max((r for r in records if r.get("current")), key=lambda r: r.get("at", 0),
                 default=None)
    return newest["current"] if newest else None


def on_artifact(info: dict[str, Any]) -> str | None:
    """The artifact a host's live release was deployed from, as it recorded."""
    there = info.get("headway") or {}
    found: str | None = (there.get("fleet") or {}).get("releases", {}).get(
        str(there.get("active")))
    return found


def converge(fleet: Fleet, *, force: bool = False) -> FleetOutcome:
    started = time.monotonic()
    check_shared_data(fleet.spec, fleet.hosts, fleet.config)
    probed = fleet.each(fleet.hosts, fleet.probe)
    gone = {n: r for n, r in probed.items() if isinstance(r, HeadwayError)}
    up = [h for h in fleet.hosts if h.name not in gone]
    if not up:
        raise next(iter(gone.values()))
    for host in up:
        if problem := installed_problem(host.name, fleet.info[host.name]):
            raise problem
    infos = {h.name: fleet.info[h.name] for h in up}
    sha = fleet_release(infos)
    if sha is None:
        raise NotFound(f"no fleet deploy of {fleet.app} ({fleet.env}) is recorded on any host "
                       "that answers", hint="`headway deploy` deploys every host")
    behind = [h for h in up if force or on_artifact(infos[h.name]) != sha]
    notes = [f"{n}: not reached ({e.message.splitlines()[0]})" for n, e in gone.items()]
    releases: dict[str, int | None] = {h.name: infos[h.name]["headway"].get("active")
                                       for h in up}
    if behind:
        with fleet.lock(f"headway servers converge {fleet.app} --env {fleet.env}", host=up[0]), \
                tempfile.TemporaryDirectory(prefix="headway-fleet-") as tmp:
            archive = _fetch(fleet, [h for h in up if h not in behind] or up, sha, Path(tmp))
            secrets, image = _control_secrets(fleet), archive_image(archive)
            for batch in batches(behind, fleet.spec.deploy.hosts_in_parallel):
                done = fleet.each(batch, lambda h: _bring(fleet, h, archive, sha, secrets,
                                                          image))
                for name, result in done.items():
                    if isinstance(result, HeadwayError):
                        raise DeployFailed(f"{name}: {result.message}", hint=result.hint)
                    releases[name] = result
    fleet.each(up, lambda h: fleet.remote(h, ["mark", fleet.app, fleet.env, sha, "--current"],
                                          what="recording the fleet's release"))
    return FleetOutcome(fleet.app, fleet.env, sha, releases, bool(behind),
                        f"{len(behind)} host(s) brought to artifact {sha[:12]}" if behind else
                        f"every host that answers is on artifact {sha[:12]}: nothing to do",
                        time.monotonic() - started, notes)


def _bring(fleet: Fleet, host: Host, archive: Path, sha: str, secrets: str,
           image: str | None) -> int | None:
    _ship(fleet, host, archive, sha, secrets, image=image)
    # the fleet's release went live on a host before: its release command ran
    return _deploy_host(fleet, host, sha, force=False, image=image,
                        release=not release_once(fleet.spec))


def _fetch(fleet: Fleet, sources: list[Host], sha: str, tmp: Path) -> Path:
    """The artifact from the first host that still has it, checked against its sha256."""
    local = tmp / f"{sha}.tar.gz"
    for host in sources:
        remote = f"{fleet.home_of(host)}/fleet/artifacts/{sha}.tar.gz"
        try:
            ssh.execute(fleet.conn.scp_from(host, remote, local), host, fleet.conn,
                        what="copying the fleet's release archive", timeout=1800)
        except HeadwayError:
            continue
        if hashlib.sha256(local.read_bytes()).hexdigest() == sha:
            return local
    raise NotFound(f"no host that answers still has the fleet's release archive {sha[:12]}",
                   hint="`headway deploy` ships a new one to every host")


# reads ---------------------------------------------------------------------------------------
def status(fleet: Fleet) -> dict[str, Any]:
    """Each host's `headway status --json`, under its name; an error in place of one that
    does not answer."""
    def one(host: Host) -> dict[str, Any]:
        fleet.probe(host)
        out = fleet.headway(host, ["--app", fleet.app, "status", "--json"], what="status",
                            timeout=120)
        found: dict[str, Any] = json.loads(out)
        return found
    hosts = []
    for name, result in fleet.each(fleet.hosts, one).items():
        hosts.append({"host": name, "error": result.message.splitlines()[0]}
                     if isinstance(result, HeadwayError) else {"host": name, **result})
    return {"app": fleet.app, "env": fleet.env, "hosts": hosts}


def releases(fleet: Fleet) -> list[dict[str, Any]]:
    """Each host's releases, newest first, with its host and the artifact each came from."""
    def one(host: Host) -> list[dict[str, Any]]:
        info = fleet.probe(host)
        out = fleet.headway(host, ["--app", fleet.app, "releases", "--json"], what="releases",
                            timeout=120)
        artifacts = ((info.get("headway") or {}).get("fleet") or {}).get("releases", {})
        return [{"host": host.name, **row, "artifact": artifacts.get(str(row["number"]))}
                for row in json.loads(out)]
    rows: list[dict[str, Any]] = []
    for name, result in fleet.each(fleet.hosts, one).items():
        rows += [{"host": name, "status": "unreachable",
                  "failure": result.message.splitlines()[0]}] \
            if isinstance(result, HeadwayError) else result
    return rows
