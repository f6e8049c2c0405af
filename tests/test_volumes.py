"""[volumes]: a folder of the app kept outside every release (and image), seen by every
instance and one-off command of every release, surviving deploys, a rollback and the pruning
of old releases; deleted only by `destroy --volumes`, confirmed; backed up by `headway backup`
as a checksummed archive and restored from one, refusing a damaged or crafted archive with
nothing changed. Both runtimes, real HAProxy, processes and podman."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

from headway.runtime.appuser import releases_root, volumes_root
from tests.conftest import App, wait_for
from tests.test_containers import base_images, podman_app  # noqa: F401 - fixtures


def read(app: App, how: str, name: str) -> str:
    return app.run(how, "--", "cat", f"data/{name}").stdout


def statuses(app: App) -> dict[int, str]:
    return {r["number"]: r["status"] for r in json.loads(app.run("releases", "--json").stdout)}


def survives(app: App) -> Path:
    """Write through an instance and a one-off command; deploy twice, roll back, prune."""
    (app.dir / "data").mkdir()
    (app.dir / "data" / "seed.txt").write_text("seed v1")
    app.configure(volumes='data = "data"', deploy='keep_releases = 2\nkeep_previous = "0s"')
    app.run("deploy")
    volume = volumes_root(app.home, "hello", "production") / "data"
    assert (volume / "seed.txt").read_text() == "seed v1"  # seeded from the first release
    app.run("exec", "--", "python3", "-c", "open('data/note', 'w').write('from release 1')")
    (app.dir / "data" / "seed.txt").write_text("seed v2")
    for version in ("v2", "v3"):
        app.set_version(version)
        app.run("deploy")
    assert read(app, "exec", "note") == "from release 1"
    assert read(app, "run", "seed.txt") == "seed v1"  # seeded once, never overwritten
    app.run("run", "--", "python3", "-c", "open('data/run', 'w').write('one-off')")
    app.run("rollback")
    assert app.version() == "v2"
    assert read(app, "exec", "note") == "from release 1"
    assert read(app, "exec", "run") == "one-off"
    wait_for(lambda: statuses(app)[1] == "pruned", "release 1 to be pruned")
    assert not (releases_root(app.home, "hello", "production") / "1").exists()
    assert (volume / "note").read_text() == "from release 1"
    refused = app.run("destroy", "--volumes", check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert app.version() == "v2"
    return volume


@pytest.mark.integration
def test_a_volume_survives_deploys_rollback_pruning_and_destroy_on_processes(app: App) -> None:
    volume = survives(app)
    release = releases_root(app.home, "hello", "production") / "2" / "data"
    assert release.is_symlink() and release.resolve() == volume.resolve()
    app.run("destroy", "--yes")
    assert (volume / "note").exists()  # only --volumes deletes the data
    app.run("deploy")
    assert read(app, "run", "note") == "from release 1"
    app.run("destroy", "--volumes", "--yes")
    assert not volume.exists()


@pytest.mark.integration
def test_a_volume_survives_deploys_rollback_and_pruning_in_containers(
        podman_app: App) -> None:  # noqa: F811
    volume = survives(podman_app)
    assert (volume / "note").stat().st_uid == 10001  # owned by the image's user
    podman_app.run("backup", "create", "data")
    (volume / "note").unlink()
    restored = podman_app.run("backup", "restore", "data", "--yes")
    assert "running containers keep the replaced folder" in " ".join(restored.stderr.split())
    assert (volume / "note").stat().st_uid == 10001  # restored files: still the image's user's
    assert read(podman_app, "run", "note") == "from release 1"  # a new container sees them
    podman_app.run("destroy", "--volumes", "--yes")
    assert not volume.exists()


def sh(app: App, script: str) -> str:
    return app.run("run", "--", "sh", "-c", script).stdout


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() if p.is_file() else "<dir>"
            for p in sorted(folder.rglob("*"))}


def crafted(members: list[tuple[str, bytes | str]]) -> bytes:
    """A gzip tar whose members are (name, file contents) or (name, symlink target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            if isinstance(body, str):
                info.type, info.linkname = tarfile.SYMTYPE, body
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@pytest.mark.integration
def test_backup_and_restore_of_volumes_on_processes(app: App) -> None:
    app.configure(volumes='data = "data"\nempty = "empty"',
                  release="command = \"sh -c 'echo migrated > data/log'\"")
    deployed = app.run("deploy")
    volumes = volumes_root(app.home, "hello", "production")
    before = [b for b in json.loads(app.run("backup", "list", "--json").stdout)
              if b["reason"] == "before release 1"]  # the volumes as the release command found them
    assert sorted(b["accessory"] for b in before) == ["data", "empty"]
    assert all(f"backup {b['id']} of {b['accessory']} taken" in deployed.stderr + deployed.stdout
               for b in before)
    sh(app, "echo first > data/f && mkdir data/sub && echo deep > data/sub/g")
    made = json.loads(app.run("backup", "create", "--json").stdout)
    assert {(b["accessory"], b["type"]) for b in made} == {("data", "volume"),
                                                          ("empty", "volume")}
    for b in made:  # an empty volume still gets its archive, beside the accessories' backups
        archive = Path(b["path"])
        assert archive.parent == app.home / "backups" / "hello" / "production" / b["accessory"]
        assert archive.name == f"{b['id']}.tar.gz" and b["id"].startswith(b["accessory"] + "-")
    data = next(b for b in made if b["accessory"] == "data")
    checked = json.loads(app.run("backup", "verify", "data", "--json").stdout)[0]
    assert checked["details"]["contents"]["files"] == 3
    assert hashlib.sha256(Path(data["path"]).read_bytes()).hexdigest().startswith(
        checked["sha256"])  # the recorded checksum (shown: its first 12 hex digits)

    sh(app, "echo changed > data/f && rm -r data/sub && echo new > data/h")
    restored = app.run("backup", "restore", "data", "--yes")
    assert f"restored from backup {data['id']}" in restored.stdout
    assert tree(volumes / "data") == {"f": "first\n", "log": "migrated\n", "sub": "<dir>",
                                      "sub/g": "deep\n"}
    assert sh(app, "cat data/f data/sub/g && echo after > data/f") == "first\ndeep\n"
    (kept,) = volumes.glob(".data.replaced-*")  # the replaced files, named in the output
    assert str(kept) in restored.stdout and (kept / "h").read_text() == "new\n"

    # a damaged archive: refused before anything changes, naming the file
    second = json.loads(app.run("backup", "create", "data", "--json").stdout)[0]
    before = tree(volumes / "data"), sorted(p.name for p in volumes.iterdir())
    archive = Path(second["path"])
    archive.write_bytes(archive.read_bytes()[:-8] + b"damaged!")
    refused = app.run("backup", "restore", "data", second["id"], "--yes", check=False)
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 6, said
    assert str(archive) in "".join(said.split()) and "recorded checksum" in said  # the file
    assert (tree(volumes / "data"), sorted(p.name for p in volumes.iterdir())) == before

    # archives that would write outside the volume, recorded with a matching checksum
    db = sqlite3.connect(app.home / "state.db")
    for bad, member in ([("./ok", b"ok"), ("../evil", b"evil")], "../evil"), \
                       ([("/tmp/evil", b"evil")], "/tmp/evil"), \
                       ([("./link", "../../../../evil")], "./link"):
        body = crafted(bad)
        archive.write_bytes(body)
        with db:
            db.execute("UPDATE backups SET sha256=?, size=? WHERE id=?",
                       (hashlib.sha256(body).hexdigest(), len(body), second["id"]))
        refused = app.run("backup", "restore", "data", second["id"], "--yes", check=False)
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 6, said
        assert f"member {member!r}" in said and "nothing was restored" in said
        assert (tree(volumes / "data"), sorted(p.name for p in volumes.iterdir())) == before
        assert not list(app.home.rglob("evil")) and not list(volumes.parent.rglob("evil"))
        assert not Path("/tmp/evil").exists()
    db.close()


def test_archive_round_trip_keeps_inner_links_and_refuses_a_hard_link_out(tmp_path: Path) -> None:
    from headway.accessories import archives
    from headway.errors import RuntimeFailure

    live = tmp_path / "vol"
    (live / "sub").mkdir(parents=True)
    (live / "a").write_text("A")
    (live / "sub" / "ln").symlink_to("../a")
    archives.write(live, tmp_path / "v.tar.gz")
    got = archives.extract(tmp_path / "v.tar.gz", tmp_path / "out", owner=None)
    assert (got.files, got.links) == (1, 1)
    assert (tmp_path / "out" / "sub" / "ln").read_text() == "A"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("./hard")
        info.type, info.linkname = tarfile.LNKTYPE, "../../secret"
        tar.addfile(info)
    (tmp_path / "bad.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(RuntimeFailure, match="member './hard'"):
        archives.extract(tmp_path / "bad.tar.gz", tmp_path / "never", owner=None)
    assert not (tmp_path / "never").exists()


def test_a_failed_swap_puts_the_old_volume_back(tmp_path: Path) -> None:
    from headway.accessories import archives

    live, fresh, kept = (tmp_path / n for n in ("vol", ".vol.restoring", ".vol.replaced"))
    for folder, text in ((live, "old"), (fresh, "new"), (kept, "in the way")):
        folder.mkdir()
        (folder / "f").write_text(text)
    with pytest.raises(OSError):
        archives.swap_in(fresh, live, kept)
    assert [(p / "f").read_text() for p in (live, fresh, kept)] == ["old", "new", "in the way"]
    archives.swap_in(fresh, live, tmp_path / ".vol.replaced-2")
    assert (live / "f").read_text() == "new" and not fresh.exists()
    assert (tmp_path / ".vol.replaced-2" / "f").read_text() == "old"
