"""Fleet deploy (rollback is fleet/rollback.py, converge fleet/converge.py). A deploy builds
the release archive once, checks every host first (reachable, this Headway), takes the fleet
lock, ships the archive and secrets to every host, then runs each host's own `headway deploy`
(with the processes of its [servers] roles) in batches of [deploy] hosts_in_parallel, the
first host alone when it runs the release command for the whole fleet (release_once). The
first batch with a failure stops the rollout and the hosts that had switched go back to their
previous release: the fleet ends on one release. Never leaves the fleet lock behind; never
sends a secret anywhere but ssh's stdin."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headway.errors import ConfigError, DeployFailed, HeadwayError, NotFound
from headway.fleet import images, ssh
from headway.fleet.artifact import release_archive
from headway.fleet.fleet import Fleet
from headway.fleet.hosts import Host, batches
from headway.fleet.remote import IMAGE_VAR, PROCESSES_VAR, RELEASE_VAR
from headway.spec.models import Spec


@dataclass
class FleetOutcome:
    app: str
    env: str
    artifact: str
    releases: dict[str, int | None]  # the live release on each host, by host name
    changed: bool
    message: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def deploy(fleet: Fleet, source: Path, *, force: bool = False) -> FleetOutcome:
    started = time.monotonic()
    fleet.probe_all()  # before any change: an unreachable or unready host stops it here
    images.check_hosts(fleet)
    with tempfile.TemporaryDirectory(prefix="headway-fleet-") as tmp:
        image = None
        if images.is_container(fleet.spec):  # built once here, pulled by digest everywhere
            snapshot = release_archive(fleet.config, source, fleet.home, Path(tmp) / "s")[1]
            image = images.build_and_push(fleet, source, snapshot)
            fleet.progress(f"image {image}", step="image")
        archive, sha = release_archive(fleet.config, source, fleet.home, Path(tmp),
                                       image=image)
        fleet.progress(f"release archive {sha[:12]} ({archive.stat().st_size // 1024} KiB) "
                       f"for {len(fleet.hosts)} host(s)", step="archive")
        with fleet.lock(f"headway deploy {fleet.app} --env {fleet.env}"):
            secrets = _control_secrets(fleet)
            _raise_first(fleet.each(fleet.hosts, lambda h: _ship(fleet, h, archive, sha,
                                                                  secrets, image=image)))
            before = {h.name: fleet.info[h.name]["headway"].get("active") for h in fleet.hosts}
            after = _rollout(fleet, sha, before, force=force, image=image)
            for name, result in fleet.each(fleet.hosts, lambda h: fleet.remote(
                    h, ["mark", fleet.app, fleet.env, sha, "--current"],
                    what="recording the fleet's release")).items():
                if isinstance(result, HeadwayError):
                    fleet.progress(f"{name}: {result.message}", host=name)
    changed = any(after[n] != before[n] for n in after)
    took = time.monotonic() - started
    return FleetOutcome(fleet.app, fleet.env, sha, after, changed,
                        f"artifact {sha[:12]} is live on {len(after)} host(s)" if changed else
                        f"artifact {sha[:12]} was already live on every host: nothing to do",
                        took)


def destroy(fleet: Fleet, *, volumes: bool = False) -> dict[str, str]:
    """`headway destroy` on every host, under the fleet lock; what each host said, by host
    name. A host where the app is not deployed is not a failure."""
    fleet.probe_all()
    with fleet.lock(f"headway destroy {fleet.app} --env {fleet.env}"):
        return _everywhere(fleet, ["destroy", "--yes", *(["--volumes"] if volumes else [])],
                           instead="not deployed there")


def signal(fleet: Fleet, what: str) -> dict[str, str]:
    """`headway promote|abort` on every host (each one's running canary; no fleet lock: the
    deploy holds it); refused when no host has a deploy running."""
    fleet.probe_all()
    said = _everywhere(fleet, [what], instead="no deploy running there")
    if all(s == "no deploy running there" for s in said.values()):
        raise NotFound(f"no deploy of {fleet.app} ({fleet.env}) is running on any host",
                       hint="promote and abort act on a canary while `headway deploy` runs")
    return said


def _everywhere(fleet: Fleet, args: list[str], *, instead: str) -> dict[str, str]:
    """The hosts' own `headway --app APP ARGS`, all at once; each one's first line, or
    `instead` for a host that found nothing to act on (NotFound); other failures are
    raised."""
    done = fleet.each(fleet.hosts, lambda h: fleet.headway(h, ["--app", fleet.app, *args],
                                                           what=f"headway {args[0]}"))
    said = {}
    for name, result in done.items():
        if isinstance(result, HeadwayError) and not isinstance(result, NotFound):
            raise result
        said[name] = instead if isinstance(result, HeadwayError) else \
            (result.strip().splitlines() or [""])[0]
    return said


def _control_secrets(fleet: Fleet) -> str:
    """This machine's secrets of the app and environment, as JSON for ssh's stdin."""
    from headway.secrets import Vault, load_key
    from headway.store import Store

    store = Store(fleet.home)
    vault = Vault(store, load_key(store.home))
    names = vault.names(fleet.app, fleet.env)
    values = vault.values(fleet.app, fleet.env) if names else {}
    return json.dumps({n: v.reveal() for n, v in values.items()})


def _ship(fleet: Fleet, host: Host, archive: Path, sha: str, secrets: str, *,
          image: str | None = None) -> None:
    """The archive to the host (checked there against its sha256, unpacked), the secrets
    into its store (only changed ones are written) and, for a container release, the image
    pulled there by digest (the registry login on ssh's stdin)."""
    folder = f"{fleet.home_of(host)}/fleet/artifacts"
    fleet.ssh(host, ["mkdir", "-p", folder], what="making the artifacts folder")
    ssh.execute(fleet.conn.scp(host, archive, f"{folder}/{sha}.tar.gz"), host, fleet.conn,
                what="copying the release archive", timeout=1800)
    fleet.remote(host, ["receive", sha, fleet.app, fleet.env], stdin=secrets,
                 what="checking the release archive, setting the secrets")
    fleet.progress(f"{host.name}: archive {sha[:12]} checked, secrets set", host=host.name,
                   step="ship")
    if image:
        fleet.remote(host, ["pull", image, fleet.spec.app.runtime], stdin=images.pull_input(fleet),
                     what="pulling the image")
        fleet.progress(f"{host.name}: image pulled by digest", host=host.name, step="ship")


def check_shared_data(spec: Spec, hosts: list[Host], config: Path) -> None:
    """Refuse [accessories] on a fleet of more than one host: each host would run its own
    server, so the hosts' data would differ (a user seen by one host and not the next, a job
    queued on a web host that no worker host ever sees)."""
    if spec.accessories and len(hosts) > 1:
        first = next(iter(spec.accessories))
        url = spec.accessories[first].env_name
        raise ConfigError(
            f"{config}: accessories.{first}: with {len(hosts)} hosts in [servers] each host "
            "would run its own server and their data would differ",
            hint=f"run the database where every host reaches it and give its URL as the secret "
            f"{url} (`headway secrets set {url}`) instead of [accessories.{first}]; or deploy "
            "to one host")


def release_once(spec: Spec) -> bool:
    """Whether the release command (migrations) runs on the fleet's first host only: the
    hosts share their data (check_shared_data), so once is enough. The first host then deploys
    alone, before the others: two hosts migrating one database at once would race. (With
    [accessories], a fleet of one host: its own database, migrated by its own deploys.)"""
    return bool(spec.release.command) and not spec.accessories


def _deploy_host(fleet: Fleet, host: Host, sha: str, *, force: bool,
                 image: str | None = None, release: bool = True) -> int | None:
    """The host's own `headway deploy` of the unpacked archive (of the pulled `image`, not
    built there), with the processes of its roles and, unless `release` is False, its release
    command; its live release after."""
    config = f"{fleet.home_of(host)}/fleet/releases/{sha}/headway.toml"
    fleet.progress(f"{host.name}: deploying {sha[:12]}", host=host.name, step="deploy")
    variables = {PROCESSES_VAR: ",".join(host.processes)} | ({IMAGE_VAR: image} if image else {})
    if not release:
        variables[RELEASE_VAR] = "done"
    fleet.headway(host, ["-c", config, "deploy", *(["--force"] if force else [])],
                  what="headway deploy", stream=True, env=variables)
    record = fleet.remote(host, ["mark", fleet.app, fleet.env, sha],
                          what="recording its release")
    active: int | None = record.get("active")
    return active


def _rollout(fleet: Fleet, sha: str, before: dict[str, int | None], *,
             force: bool, image: str | None = None) -> dict[str, int | None]:
    after: dict[str, int | None] = {}
    first, once = fleet.hosts[0], release_once(fleet.spec)
    for batch in rollout_batches(fleet.spec, fleet.hosts):
        results = fleet.each(batch, lambda h: _deploy_host(
            fleet, h, sha, force=force, image=image, release=not once or h == first))
        failed = {n: r for n, r in results.items() if isinstance(r, HeadwayError)}
        after |= {n: r for n, r in results.items() if not isinstance(r, HeadwayError)}
        if failed:
            switched = [h for h in fleet.hosts if h.name in after
                        and after[h.name] != before[h.name]]
            notes = _undo(fleet, switched, before)
            name, exc = next(iter(failed.items()))
            untouched = [h.name for h in fleet.hosts if h.name not in results]
            if isinstance(exc, ssh.Unreachable):
                notes.append(f"{name}: stopped answering; what it did is known when it "
                             "answers again: `headway servers converge` then")
            raise DeployFailed(
                f"{exc.message}\nthe fleet deploy stopped there"
                + "".join(f"\n{note}" for note in notes)
                + (f"\nnot deployed: {', '.join(untouched)}" if untouched else ""),
                hint=exc.hint or "fix that host, then `headway deploy` again (or "
                "`headway servers converge` once it is back)")
    return after


def rollout_batches(spec: Spec, hosts: list[Host]) -> list[list[Host]]:
    """[deploy] hosts_in_parallel at a time; the first host alone when it runs the release
    command for the fleet (release_once)."""
    if release_once(spec) and len(hosts) > 1:
        return [hosts[:1], *batches(hosts[1:], spec.deploy.hosts_in_parallel)]
    return batches(hosts, spec.deploy.hosts_in_parallel)


def _undo(fleet: Fleet, switched: list[Host], before: dict[str, int | None]) -> list[str]:
    """Switched hosts back to the release they had (a warm switch when it is still warm)."""
    def back(host: Host) -> str:
        previous = before[host.name]
        if previous is None:
            return f"{host.name}: had no release before; left on the new one"
        fleet.headway(host, ["--app", fleet.app, "rollback", str(previous)],
                      what=f"headway rollback {previous}")
        return f"{host.name}: back on its release {previous}"
    notes = []
    for name, result in fleet.each(switched, back).items():
        notes.append(f"{name}: could not go back ({result.message}); `headway servers "
                     "converge` when it answers" if isinstance(result, HeadwayError)
                     else result)
    return notes


def _raise_first(results: dict[str, Any]) -> None:
    for result in results.values():
        if isinstance(result, HeadwayError):
            raise result
