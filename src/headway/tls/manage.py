"""Keeping the router's certificates: which sites the live releases ask for (recorded in
tls/sites.json, which the HAProxy driver renders), issuing or renewing an ACME certificate when
it is missing, names other hosts or expires within 30 days, installing a user's own files when
they change, and loading each into HAProxy: by the runtime API (`set ssl cert`, no reload)
when HAProxy already serves that file, else by a config reload (a new HTTPS listener). Used by
the agent (`maintain`, in a thread of its own) and by `headway tls renew`, one at a time (the
store's "tls" lock). A failure leaves the router serving what it served. Never prints."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headway.engine import routing
from headway.errors import ConfigError, HeadwayError, LockedError, NotFound, RouterError
from headway.router import HAProxy
from headway.spec.models import RouterSpec
from headway.store import Store
from headway.tls import sites as files
from headway.tls.sites import CertInfo, Site

AGENT_RETRY = 3600.0  # after a refused issuance the agent waits this long (ACME rate limits)
FILES_RETRY = 30.0  # and this long after a user's unreadable or mismatched files
Log = Callable[..., None]


@dataclass(frozen=True)
class Outcome:
    site: Site
    action: str  # issued | renewed | installed
    info: CertInfo
    reloaded: bool  # False: loaded by the runtime API


def desired(store: Store) -> list[Site]:
    """The sites the live release of each app asks for ([router] tls)."""
    result = []
    for row in store.apps():
        if not row["router_port"]:  # a fleet host that runs no web process of the app
            continue
        live = next((r for r in store.releases(row["app"], row["env"])
                     if r.status == "active"), None)
        router = _router_spec(live.spec) if live else None
        if router is None or router.tls is None:
            continue
        own = router.tls if not isinstance(router.tls, str) else None
        result.append(Site(
            app=row["app"], env=row["env"], https_port=router.https_port,
            mode="files" if own else "acme", hosts=[h.lower() for h in router.hosts],
            http_port=router.port,
            hsts=router.hsts, email=router.acme.email, directory=router.acme.directory,
            ca_bundle=router.acme.ca_bundle, cert_file=own.cert if own else None,
            key_file=own.key if own else None))
    return result


@functools.lru_cache(maxsize=64)
def _router_spec(recorded: str) -> RouterSpec | None:
    """The [router] table a release recorded, validated alone (a record from another Headway
    version may not validate whole); None if even that fails."""
    try:
        return RouterSpec.model_validate(json.loads(recorded)["spec"]["router"])
    except (ValueError, KeyError, TypeError):
        return None


def sync(store: Store, router: HAProxy) -> list[Site]:
    """Record the live releases' sites; render the router again when they changed (so that
    it answers ACME challenges before anything is ordered)."""
    sites = desired(store)
    if sites != files.load(store.home):
        files.save(store.home, sites)
        routing.configure(store, router)
    return sites


def ensure(store: Store, router: HAProxy, site: Site, *, force: bool,
           now: float) -> Outcome | None:
    """Issue, renew or install the site's certificate if it needs it (or `force`); None when
    the one installed is good."""
    home = store.home
    have = files.installed_info(home, site)
    if site.mode == "files":
        pem = user_pem(site)
        if not force and _installed_text(home, site) == pem:
            return None
        action = "installed"
    else:
        if files.source(home, site) != "acme":
            have = None  # the user's own certificate until now: order one
        if not force and have and not have.due(now) and set(have.names) == set(site.hosts):
            return None
        from headway.tls import acme  # requests, josepy, pyOpenSSL: only when ordering

        pem = acme.issue(home, site, publish=router.put_challenge,
                         unpublish=router.drop_challenge)
        action = "renewed" if have else "issued"
    reloaded = install(store, router, site, pem)
    files.record_failure(home, site, None)
    return Outcome(site, action, files.info(pem), reloaded)


def install(store: Store, router: HAProxy, site: Site, pem: str) -> bool:
    """Write the file (0600), then load it: True if that took a reload."""
    path = files.cert_path(store.home, site)
    files.write_cert(store.home, site, pem)
    files.set_source(store.home, site)
    if router.running() and router.serves(path):
        router.replace_certificate(path, pem)
        return False
    routing.configure(store, router)
    return True


def user_pem(site: Site) -> str:
    """The user's certificate chain and key as one PEM, checked to belong together."""
    assert site.cert_file and site.key_file
    texts = []
    for key, path in (("cert", site.cert_file), ("key", site.key_file)):
        try:
            texts.append(Path(path).read_text().strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"[router] tls.{key}: cannot read {path} ({exc})",
                              hint="the file must exist on this host, readable by the agent"
                              ) from None
    cert, key = texts
    try:
        ok = files.key_matches(cert, key)
    except (ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"[router] tls: {site.cert_file} / {site.key_file} are not a PEM "
                          f"certificate and an unencrypted PEM key ({exc})",
                          hint="give the certificate chain and its private key, PEM") from None
    if not ok:
        raise ConfigError(f"[router] tls: the key {site.key_file} does not belong to the "
                          f"certificate {site.cert_file}", hint="give the matching key")
    return f"{cert}\n{key}\n"


def renew(store: Store, app: str, env: str, *, force: bool, now: float,
          log: Log) -> Outcome | None:
    """`headway tls renew`: the app's certificate now if due (or `force`)."""
    router = HAProxy(store.home)
    if not router.running():
        raise RouterError("the router is not running", hint="`headway deploy` starts it")
    with store.lock("tls", f"headway tls renew {app} --env {env}", wait=120):
        site = next((s for s in sync(store, router) if (s.app, s.env) == (app, env)), None)
        if site is None:
            raise NotFound(f"{app} ({env}) does not serve HTTPS: its live release sets no "
                           "[router] tls", hint='set [router] tls = "acme" (and hosts), '
                           "then `headway deploy`")
        return _attempt(store, router, site, force=force, now=now, log=log, quiet=True)


def maintain(store: Store, log: Log) -> None:
    """The agent's round: sites in step with the live releases, certificates issued and
    renewed 30 days before expiry, users' files reloaded when they change."""
    if not desired(store) and not files.load(store.home):
        return  # no app asks for HTTPS: no lock taken, nothing written
    router = HAProxy(store.home)
    if not router.running():
        return  # the agent's housekeeping starts it
    now = files.time_now()
    try:
        with store.lock("tls", "agent: certificates"):
            failed = files.failures(store.home)
            for site in sync(store, router):
                last = failed.get(site.name)
                wait = AGENT_RETRY if site.mode == "acme" else FILES_RETRY
                if last and last.get("mode") == site.mode and now - last["at"] < wait:
                    continue
                try:
                    _attempt(store, router, site, force=False, now=now, log=log)
                except HeadwayError:
                    continue  # recorded, logged and an event: tried again later
    except LockedError:
        return  # `headway tls renew` is at work


def _attempt(store: Store, router: HAProxy, site: Site, *, force: bool, now: float,
             log: Log, quiet: bool = False) -> Outcome | None:
    """ensure(), with its failure recorded (status, event, and a log line once per new
    message unless `quiet`: the command that raises it shows it)."""
    try:
        outcome = ensure(store, router, site, force=force, now=now)
    except HeadwayError as exc:
        last = files.failures(store.home).get(site.name)
        files.record_failure(store.home, site, exc.message)
        if not last or last["error"] != exc.message:
            store.event(site.app, site.env, "tls.failed", exc.message)
            if not quiet:
                log(f"certificate for {site.app} ({site.env}): {exc.message}", app=site.app,
                    env=site.env, step="tls")
        raise
    if outcome:
        how = "config reload (new HTTPS listener)" if outcome.reloaded else "runtime API"
        message = (f"certificate {outcome.action} for {', '.join(outcome.info.names)}: "
                   f"{outcome.info.issuer}, expires {files.date(outcome.info.not_after)}; "
                   f"loaded by {how}")
        store.event(site.app, site.env, f"tls.{outcome.action}", message)
        log(message, app=site.app, env=site.env, step="tls")
    return outcome


def _installed_text(home: Path, site: Site) -> str | None:
    try:
        return files.cert_path(home, site).read_text()
    except OSError:
        return None
