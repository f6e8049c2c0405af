"""Archives of [volumes] folders for `headway backup`: a gzip tar streamed into a hidden temp
file while its SHA-256 is computed, fsynced, then renamed into place; and the way back: extracted
into a fresh folder beside the volume with every member checked as it comes (no absolute
path, no `..`, no link or hard link leaving the folder, no device: tarfile's "data" filter;
one refused member discards the whole folder), given the volume's owner, then swapped in with
one atomic rename. Never changes a volume before its archive has passed every check; never
leaves it half-restored."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import gzip
import hashlib
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from headway.errors import RuntimeFailure
from headway.secrets.vault import fsync_dir

EXT = "tar.gz"
LEVEL = 6  # gzip's own default: most of level 9's size at a fraction of its time


class _Hashing:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def write(folder: Path, dest: Path) -> tuple[int, str]:
    """Archive folder's contents into dest atomically; (size, sha256). An empty folder still
    gives an archive (its one member is the folder itself)."""
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with open(tmp, "wb") as out:
            hashing = _Hashing(out)
            with gzip.GzipFile(fileobj=hashing, mode="wb", compresslevel=LEVEL, mtime=0) as packed, \
                    tarfile.open(fileobj=packed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(folder, arcname=".", recursive=True)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RuntimeFailure(f"backup of volume {folder}: {exc.strerror or exc}: "
                             f"{exc.filename or dest}; no backup was written, earlier ones are "
                             "untouched") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    return hashing.size, hashing.digest.hexdigest()


@dataclass
class Contents:
    files: int = 0
    folders: int = 0
    links: int = 0
    bytes: int = 0


def _refuse(path: Path, member: tarfile.TarInfo, why: str) -> RuntimeFailure:
    return RuntimeFailure(f"{path}: member {member.name!r} {why}; nothing was restored",
                          hint="this archive was not written by `headway backup`, or was "
                               "altered after it; restore another backup")


class _Guard:
    """tarfile's "data" filter, plus a refusal of absolute names and `..` (which it would
    strip or resolve rather than refuse), counting what passes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = Contents()

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
            raise _refuse(self.path, member, "is an absolute path or climbs out with '..'")
        try:
            passed = tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise _refuse(self.path, member, f"is refused ({exc})") from exc
        self.seen.files += member.isreg()
        self.seen.folders += member.isdir()
        self.seen.links += member.issym() or member.islnk()
        self.seen.bytes += member.size if member.isreg() else 0
        return passed


def _unreadable(path: Path, exc: BaseException) -> RuntimeFailure:
    return RuntimeFailure(f"{path}: not a readable gzip tar archive ({exc}); nothing was "
                          "restored")


def check(path: Path, scratch: Path) -> Contents:
    """Every member of the archive at path, as extracting it under `scratch` would treat it:
    RuntimeFailure naming the first member that would land outside or is not plain data."""
    guard = _Guard(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                guard(member, str(scratch))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise _unreadable(path, exc) from exc
    return guard.seen


def extract(path: Path, dest: Path, *, owner: tuple[int, int] | None) -> Contents:
    """Extract the archive into dest (which must not exist), every member passed through the
    guard first, then owned by `owner` (uid, gid) when given and fsynced. On any failure, a
    refused member included, dest is removed: nothing of a bad archive is left anywhere."""
    guard = _Guard(path)
    dest.mkdir(mode=0o755)
    try:
        with tarfile.open(path, "r:gz") as tar:
            tar.extractall(dest, filter=guard)
        if owner is not None:
            _chown_tree(dest, owner)
        _fsync_tree(dest)
    except BaseException as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, (tarfile.TarError, EOFError, zlib.error)):
            raise _unreadable(path, exc) from exc
        if isinstance(exc, OSError):
            raise RuntimeFailure(f"{path}: extracting into {dest} failed ({exc}); nothing was "
                                 "restored") from exc
        raise
    return guard.seen


def _chown_tree(root: Path, owner: tuple[int, int]) -> None:
    """Give every entry the volume's owner: under podman the folder is bind-mounted with
    `:U`, owned by the image's user; a restore keeps it so (links themselves, not targets)."""
    if os.geteuid() != 0:
        return  # an unprivileged user's files are already theirs
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            os.chown(os.path.join(folder, name) if name else folder, *owner,
                     follow_symlinks=False)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(Path(folder))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system
    or file system cannot."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    call = getattr(libc, "renameat2", None)
    if call is None:
        return False
    if call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP}:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def swap_in(fresh: Path, live: Path, kept: Path) -> None:
    """Put `fresh` at `live`; what was at `live` moves to `kept`. `live` always names a whole
    volume, the old one or the new one, even if the machine stops half-way (where renameat2
    works); on an error the old one is back at `live` and `fresh` holds the restored files."""
    if not live.exists():
        os.replace(fresh, live)
    elif _exchange(fresh, live):
        try:
            os.replace(fresh, kept)  # fresh now holds the old data
        except OSError:
            _exchange(fresh, live)  # back as it was: `fresh` holds only the restored files
            raise
    else:  # two renames: a crash between them leaves the old data at `kept`
        os.replace(live, kept)
        try:
            os.replace(fresh, live)
        except OSError:
            os.replace(kept, live)
            raise
    fsync_dir(live.parent)
