"""`headway rollback [RELEASE]` across a fleet. The target is an artifact: the fleet's release
before its current one (as the hosts recorded it), or the artifact that release RELEASE was
made from (RELEASE as `headway releases` numbers it on the hosts, which must agree). Every
host switches to its own newest release of that artifact. Refused before any host changes
when a host is away or lacks a release of it; a host that fails its switch sends the hosts
that had switched back, so the fleet ends on one release. Never rebuilds."""

from __future__ import annotations

import time
from typing import Any

from headway.errors import ConfigError, DeployFailed, HeadwayError, NotFound
from headway.fleet.deploy import FleetOutcome, _undo
from headway.fleet.fleet import Fleet
from headway.fleet.hosts import Host


def _record(fleet: Fleet, host: Host) -> dict[str, Any]:
    found: dict[str, Any] = fleet.info[host.name]["headway"].get("fleet") or {}
    return found


def previous_artifact(fleet: Fleet) -> str:
    """The fleet's release before its current one, from the newest record over the hosts."""
    newest = max((_record(fleet, h) for h in fleet.hosts), key=lambda r: r.get("at", 0))
    history = newest.get("history", [])
    if len(history) < 2:
        raise NotFound(f"no earlier fleet release of {fleet.app} ({fleet.env}) is recorded",
                       hint="`headway releases` lists each host's releases")
    target: str = history[-2]
    return target


def artifact_of(fleet: Fleet, release: int) -> str:
    """The artifact the hosts' release `release` was made from; refused when no host has
    that release or when hosts numbered different code so."""
    found = {h.name: _record(fleet, h).get("releases", {}).get(str(release))
             for h in fleet.hosts}
    artifacts = {sha for sha in found.values() if sha}
    if not artifacts:
        raise NotFound(f"no host has a release {release} of {fleet.app} ({fleet.env}) made by "
                       "a fleet deploy", hint="`headway releases` lists each host's releases")
    if len(artifacts) > 1:
        which = ", ".join(f"{n}: artifact {sha[:12]}" for n, sha in found.items() if sha)
        raise ConfigError(f"rollback {release}: release {release} is not the same code on "
                          f"every host ({which})", hint="the hosts numbered their releases "
                          "differently (a converge, a failed deploy); `headway releases` "
                          "shows each host's number and artifact: roll back by a number "
                          "they share")
    sha: str = artifacts.pop()
    return sha


def plan(fleet: Fleet, target: str) -> dict[str, int | None]:
    """Each host's own release of `target` (its newest); None where it is live already.
    Refused, naming the host, when one has none."""
    steps: dict[str, int | None] = {}
    for host in fleet.hosts:
        releases = _record(fleet, host).get("releases", {})
        numbers = [int(n) for n, sha in releases.items() if sha == target]
        if not numbers:
            raise NotFound(f"{host.name}: has no release of artifact {target[:12]}: nothing "
                           "was rolled back on any host", hint="roll back to a release every "
                           "host has (`headway releases`), or deploy that code again")
        active = fleet.info[host.name]["headway"].get("active")
        steps[host.name] = None if active == max(numbers) else max(numbers)
    return steps


def rollback(fleet: Fleet, release: int | None = None) -> FleetOutcome:
    started = time.monotonic()
    fleet.probe_all()  # every host answers and runs this Headway, before any change
    target = previous_artifact(fleet) if release is None else artifact_of(fleet, release)
    steps = plan(fleet, target)
    before = {h.name: fleet.info[h.name]["headway"].get("active") for h in fleet.hosts}

    def switch(host: Host) -> int | None:
        number = steps[host.name]
        if number is not None:
            fleet.headway(host, ["--app", fleet.app, "rollback", str(number)],
                          what=f"headway rollback {number}", stream=True)
        flag = "--back" if release is None else "--current"
        fleet.remote(host, ["mark", fleet.app, fleet.env, target, flag], what="recording")
        return number if number is not None else before[host.name]

    with fleet.lock(f"headway rollback {fleet.app} --env {fleet.env}"):
        results = fleet.each(fleet.hosts, switch)
        failed = {n: r for n, r in results.items() if isinstance(r, HeadwayError)}
        if failed:
            switched = [h for h in fleet.hosts if steps[h.name] is not None
                        and not isinstance(results[h.name], HeadwayError)]
            notes = _undo(fleet, switched, before)
            exc = next(iter(failed.values()))
            raise DeployFailed(f"{exc.message}\nthe fleet rollback stopped there"
                               + "".join(f"\n{note}" for note in notes),
                               hint=exc.hint or "fix that host, then roll back again")
    live = {n: r for n, r in results.items() if not isinstance(r, HeadwayError)}
    changed = any(n is not None for n in steps.values())
    return FleetOutcome(fleet.app, fleet.env, target, live, changed,
                        f"artifact {target[:12]} is live again on {len(live)} host(s)" if changed
                        else f"artifact {target[:12]} was live on every host already",
                        time.monotonic() - started)
