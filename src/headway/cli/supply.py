"""`headway sbom [RELEASE]` and `headway scan [RELEASE]`: a release's bill of materials as
CycloneDX JSON, and its packages matched against the [scan] db OSV database. The release is
the one live in --env unless RELEASE names another. Prints; the work is in headway.supply."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import click

from headway.cli.main import json_option, pass_ctx
from headway.errors import ConfigError, NotFound, ScanFailed

UNBUILT = {"building", "failed"}


def pick_release(ctx: Any, number: int | None) -> Any:
    """RELEASE, else the live release, else the newest built one; NotFound names what is not
    there (an app never deployed, a number that does not exist, a release never built)."""
    store, app = ctx.recovered_store(), ctx.app()
    releases = store.releases(app, ctx.env)
    if number is not None:
        release = store.release(app, ctx.env, number)
        if release is None:
            known = ", ".join(str(r.number) for r in releases[:5]) or "none"
            raise NotFound(f"{app} ({ctx.env}) has no release {number}",
                           hint=f"its releases, newest first: {known} (`headway releases`)")
    else:
        built = [r for r in releases if r.status not in UNBUILT]
        release = next((r for r in built if r.status == "active"), built[0] if built else None)
        if release is None:
            raise NotFound(f"{app} ({ctx.env}) has no built release yet",
                           hint="run `headway deploy` first")
    if release.status in UNBUILT or not release.path or not Path(release.path).is_dir():
        why = f" ({release.failure})" if release.failure else ""
        raise NotFound(f"release {release.number} of {app} ({ctx.env}) was not built or is "
                       f"pruned: status {release.status}{why}",
                       hint="name a built release (`headway releases`), or deploy again")
    return release


def _packages(ctx: Any, number: int | None) -> tuple[Any, list[Any], str]:
    from headway.supply.sbom import release_packages

    release = pick_release(ctx, number)
    packages, read = release_packages(Path(release.path))
    return release, packages, read


@click.command()
@click.argument("release", type=int, required=False)
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=None,
              help="write the SBOM here instead of stdout")
@pass_ctx
def sbom(ctx: Any, release: int | None, out: Path | None) -> None:
    """CycloneDX JSON of a release's OS, Python and Node packages (the live one by default)."""
    from headway.supply.sbom import bom_json

    chosen, packages, read = _packages(ctx, release)
    text = bom_json(packages, ctx.app(), str(chosen.number))
    if out is None:
        click.echo(text)
        return
    try:
        out.write_text(text + "\n")
    except OSError as exc:
        raise ConfigError(f"-o {out}: cannot write ({exc.strerror})") from None
    click.echo(f"wrote {out}: {len(packages)} packages of release {chosen.number} ({read})",
               err=True)


@click.command()
@click.argument("release", type=int, required=False)
@click.option("--update", is_flag=True, help="download the OSV exports into [scan] db "
              "([scan] update_url) and stop")
@click.option("--ecosystem", "ecosystems", multiple=True,
              type=click.Choice(["PyPI", "npm", "Debian"]),
              help="with --update: only this ecosystem (repeatable) [default: all three]")
@json_option
@pass_ctx
def scan(ctx: Any, release: int | None, update: bool, ecosystems: tuple[str, ...],
         as_json: bool) -> None:
    """Match a release's packages against the [scan] db OSV database; fail at [scan] fail_on."""
    from headway.supply import scan as scanner

    spec = ctx.spec()
    db = database(ctx, spec)
    if update:
        counts = scanner.update(db, spec.scan.update_url, ecosystems or scanner.UPDATE_ECOSYSTEMS)
        click.echo(f"updated {db}: " + ", ".join(f"{e} {n} advisories" for e, n in counts.items()))
        return
    stale(spec, db)
    chosen, packages, read = _packages(ctx, release)
    result = scanner.scan(packages, db, spec.scan.ignore)
    failing = scanner.reaching(result, spec.scan.fail_on)
    if as_json:
        click.echo(json.dumps({"release": chosen.number, "packages": len(packages),
                               "fail_on": spec.scan.fail_on, "failing": len(failing),
                               "unmatched_ecosystems": result.unmatched,
                               "expired_ignores": result.expired,
                               "findings": [_finding(f) for f in result.findings]}, indent=2))
    else:
        _report(chosen.number, read, len(packages), result)
    if failing:
        ids = ", ".join(sorted({f.id for f in failing}))
        raise ScanFailed(f"release {chosen.number}: {len(failing)} finding(s) at or above "
                         f"[scan] fail_on = {spec.scan.fail_on}: {ids}",
                         hint="upgrade to a fixed version, or add an [[scan.ignore]] entry "
                         "with a reason and an until date")


def database(ctx: Any, spec: Any) -> Path:
    if not spec.scan.db:
        raise ConfigError(f"{ctx.config}: [scan] db is not set",
                          hint='db = "osv" (a folder or zip of OSV JSON files, relative to '
                          "headway.toml)")
    return (Path(ctx.config).parent / str(spec.scan.db)).resolve()


def stale(spec: Any, db: Path) -> None:
    """A warning on stderr when the database is older than [scan] max_age."""
    from headway.supply.scan import age

    if spec.scan.max_age is None:
        return
    old = age(db)
    if old > spec.scan.max_age:
        click.echo(f"warning: [scan] db {db} is {old / 86400:.1f} days old, older than [scan] "
                   f"max_age ({spec.scan.max_age / 86400:g} days): findings published since "
                   "are missed; `headway scan --update` refreshes it", err=True)


def gate_image(ctx: Any, spec: Any, image_id: str, binary: str = "podman") -> None:
    """[scan] fail_on: ScanFailed (exit 8) when the image has a finding at or above it,
    before it is pushed. Nothing to do without fail_on."""
    from headway.supply import scan as scanner
    from headway.supply.sbom import folder_packages, mounted

    if not spec.scan.fail_on:
        return
    db = database(ctx, spec)
    stale(spec, db)
    workdir = subprocess.run([binary, "image", "inspect", "--format", "{{.Config.WorkingDir}}",
                              image_id], capture_output=True, text=True, check=False).stdout
    with mounted(binary, image_id) as root:
        packages = folder_packages(root, app_dir=root / (workdir.strip().lstrip("/") or "app"),
                                   os_packages=True)
    failing = scanner.reaching(scanner.scan(packages, db, spec.scan.ignore), spec.scan.fail_on)
    if failing:
        found = ", ".join(sorted({f"{f.id} ({f.package.name} {f.package.version}, "
                                  f"{f.severity})" for f in failing}))
        raise ScanFailed(f"image {image_id[:12]}: {len(failing)} finding(s) at or above [scan] "
                         f"fail_on = {spec.scan.fail_on}: {found}; refused (not pushed)",
                         hint="upgrade to a fixed version (`headway scan` lists them), or add an "
                         "[[scan.ignore]] entry with a reason and an until date")


def _finding(f: Any) -> dict[str, Any]:
    return {"id": f.id, "aliases": list(f.aliases), "package": f.package.name,
            "version": f.package.version, "purl": f.package.purl, "severity": f.severity,
            "severity_from": f.severity_from, "fixed": list(f.fixed), "summary": f.summary,
            "ignored": f.ignored}


def _report(number: int, read: str, count: int, result: Any) -> None:
    from headway.supply.scan import LEVELS

    click.echo(f"release {number} ({read}): {count} packages, {len(result.findings)} findings")
    for level in (*reversed(LEVELS), "unknown"):
        found = [f for f in result.findings if f.severity == level]
        if found:
            click.echo(f"{level}:")
        for f in found:
            fixed = ", ".join(f.fixed) or "no fix yet"
            note = f"  [ignored: {f.ignored}]" if f.ignored else ""
            click.echo(f"  {f.id}  {f.package.name} {f.package.version} -> fixed in {fixed}"
                       f"  (severity: {f.severity_from}){note}")
    for entry in result.expired:
        click.echo(f"ignore expired, counted again: {entry}")
    for ecosystem in result.unmatched:
        click.echo(f"{ecosystem} packages not matched: no version comparison for them here "
                   "(python-debian is not installed)")


def register(group: click.Group) -> None:
    group.add_command(sbom)
    group.add_command(scan)
