"""Content-addressed code storage: a zip is kept once per digest and unpacked once.

The unpacked tree is made read-only and shared by every sandbox of every version with
that digest; sandboxes mount it (or point at it) and never copy it.

A zip is checked and unpacked in a thread of this store's own (``CODE_UNPACK_WORKERS``),
never on the event loop: a zip of many files takes seconds. Its members are checked
from the central directory first (count, unzipped size, names, file/folder clashes),
then it is unpacked into a temporary folder that is always removed; only a complete
tree is renamed into place, and only then is the zip kept, so a refused upload leaves
nothing behind. A digest being stored is pinned until its caller has recorded it, so
collecting unreferenced code never removes what a create is about to reference.

Control nodes that share a store (PostgreSQL) share their code through it (``SharedZips``,
``control/codetable.py``; ADR 0024): a zip stored here is written there too, and a zip
this node lacks (uploaded through another node) is read from there, then kept and
unpacked here like one uploaded here. A single node (SQLite) keeps files only.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import errno
import hashlib
import io
import os
import shutil
import stat
import struct
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from kindling.errors import KindlingError, ValidationError
from kindling.limits import (
    CODE_ENTRIES,
    CODE_NAME_BYTES,
    CODE_PATH_BYTES,
    CODE_UNPACK_WORKERS,
    CODE_UNZIPPED_BYTES,
)

#: Lambda's words for a zip it cannot unpack; ours add what was wrong.
UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."
#: Failures of unpacking that come from the zip's names, not from this host.
_NAME_ERRNOS = {
    errno.ENAMETOOLONG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.EINVAL,
    errno.ELOOP,
    errno.EILSEQ,
}


@dataclass(frozen=True, slots=True)
class StoredCode:
    digest: str  # hex sha256, the storage key
    sha256_b64: str  # what Lambda reports as CodeSha256
    size: int


class SharedZips(Protocol):
    """Zips by digest in a store every control node reads (``codetable.CodeTable``)."""

    def put(self, digest: str, data: bytes) -> None: ...
    def get(self, digest: str) -> bytes | None: ...
    def present(self, digests: Iterable[str]) -> set[str]: ...
    def digests(self) -> set[str]: ...
    def delete(self, digest: str) -> float | None: ...
    def keep(self, digest: str, until: float | None) -> None: ...


def unzipped_size(data: bytes) -> int:
    """The bytes a zip's members declare together (what Lambda's unzipped bound counts),
    read from its central directory; 0 for a zip ``CodeStore.put`` would refuse."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return 0


def _refuse(why: str) -> ValidationError:
    return ValidationError(f"{UNZIP_FAILED} {why}")


def _check_member(info: zipfile.ZipInfo) -> PurePosixPath:
    """A member's path, refused unless it is a plain relative path of bounded length."""
    name = info.filename
    shown = name[:80]
    if name.startswith(("/", "\\")) or ":" in name:
        raise _refuse(f"The archive contains an unsafe path: {shown!r}")
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        raise _refuse(f"The archive contains an unsafe path: {shown!r}")
    if any(part in ("", ".") for part in parts) or "\0" in name:
        raise _refuse(f"The archive contains an invalid path: {shown!r}")
    if len(name.encode("utf-8", "surrogateescape")) > CODE_PATH_BYTES:
        raise _refuse(f"A path in the archive is longer than {CODE_PATH_BYTES} bytes: {shown!r}")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > CODE_NAME_BYTES:
            raise _refuse(
                f"A name in the archive is longer than {CODE_NAME_BYTES} bytes: {part[:80]!r}"
            )
    return PurePosixPath(*parts)


def _entry_count(data: bytes) -> int:
    """Members in a zip's central directory, counted without building them.

    ``zipfile`` builds an object per member before anyone can count them: a 50 MB zip of
    empty members is ~600,000 of them, ~300 MB and seconds. Anything malformed counts
    as 0 here and is left to ``zipfile`` to refuse."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if end < 0 or end + 22 > len(data):
        return 0
    cd_size = struct.unpack_from("<L", data, end + 12)[0]
    location = end
    if end >= 20 and data[end - 20 : end - 16] == b"PK\x06\x07":  # ZIP64's records too
        location = end - 20 - 56
        if location < 0 or data[location : location + 4] != b"PK\x06\x06":
            return 0
        cd_size = struct.unpack_from("<Q", data, location + 40)[0]
    position = location - cd_size
    if position < 0:
        return 0
    count = 0
    while position + 46 <= location and count <= CODE_ENTRIES:
        if data[position : position + 4] != b"PK\x01\x02":
            return count
        name, extra, comment = struct.unpack_from("<3H", data, position + 28)
        position += 46 + name + extra + comment
        count += 1
    return count


def _check_archive(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Everything the central directory tells, before one byte is unpacked."""
    infos = archive.infolist()
    if len(infos) > CODE_ENTRIES:
        raise _refuse(f"The archive has {len(infos)} entries; at most {CODE_ENTRIES} are allowed.")
    total = 0
    files: set[PurePosixPath] = set()
    folders: set[PurePosixPath] = set()
    for info in infos:
        path = _check_member(info)
        total += info.file_size
        folders.update(path.parents)
        if info.is_dir():
            folders.add(path)
        elif not _is_symlink(info):
            files.add(path)
    if total >= CODE_UNZIPPED_BYTES:
        raise ValidationError(f"Unzipped size must be smaller than {CODE_UNZIPPED_BYTES} bytes")
    clash = files & folders
    if clash:
        shown = str(sorted(clash)[0])[:80]
        raise _refuse(f"The archive has {shown!r} as both a file and a folder.")
    return infos


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _through_link(root: Path, name: str) -> bool:
    """Whether a member's path (itself included) meets a link already unpacked."""
    path = root
    for part in PurePosixPath(name).parts:
        path = path / part
        if path.is_symlink():
            return True
    return False


class CodeStore:
    """Keeps zips under ``root/zips`` and their read-only trees under ``root/trees``;
    unpacks in ``root/work``, which holds nothing once no upload is under way. A worker
    host keeps trees only (``keep_zips=False``): it fetches a zip again if it needs it."""

    def __init__(
        self,
        root: Path,
        workers: int = CODE_UNPACK_WORKERS,
        shared: SharedZips | None = None,
        keep_zips: bool = True,
    ) -> None:
        self._shared = shared
        self._keep_zips = keep_zips
        self._zips = root / "zips"
        self._trees = root / "trees"
        self._work = root / "work"
        for folder in (self._zips, self._trees, self._work):
            folder.mkdir(parents=True, exist_ok=True)
        for left in self._work.iterdir():  # a previous process died while unpacking
            self._remove_tree(left)
        for left in self._trees.glob(".*"):  # the same, from before ``work`` existed
            self._remove_tree(left)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="kindling-unpack")
        self._lock = threading.Lock()
        self._pins: collections.Counter[str] = collections.Counter()

    async def put(self, data: bytes) -> StoredCode:
        """Validates, stores and unpacks a zip off the loop; raises ValidationError as
        Lambda would refuse it. The digest stays pinned until ``release``."""
        return await asyncio.wrap_future(self._pool.submit(self.put_now, data))

    def put_now(self, data: bytes) -> StoredCode:
        """``put`` in the calling thread (the pool's, or a caller with no event loop)."""
        digest = hashlib.sha256(data)
        code = StoredCode(digest.hexdigest(), base64.b64encode(digest.digest()).decode(), len(data))
        with self._lock:
            self._pins[code.digest] += 1
        try:
            kept = not self._keep_zips or self.zip_path(code.digest).is_file()
            if not (kept and self.has_tree(code.digest)):
                self._store(code.digest, data)
            if self._shared is not None:  # checked above: only a zip that unpacks is shared
                self._shared.put(code.digest, data)
        except BaseException:
            self.release(code.digest)
            raise
        return code

    def release(self, digest: str) -> None:
        """The caller has recorded (or given up on) a digest it stored."""
        with self._lock:
            self._pins[digest] -= 1
            if self._pins[digest] <= 0:
                del self._pins[digest]

    def zip_path(self, digest: str) -> Path:
        return self._zips / f"{digest}.zip"

    def tree_path(self, digest: str) -> Path:
        """Where a digest's tree is (or would be), without unpacking it."""
        return self._trees / digest

    def has_tree(self, digest: str) -> bool:
        return (self._trees / digest).is_dir()

    def tree(self, digest: str) -> Path:
        """The unpacked, read-only tree of a stored zip (unpacked again if it went, read
        from the shared store if this node never had it); FileNotFoundError if none."""
        path = self._trees / digest
        if path.is_dir():
            return path
        with self._lock:
            self._pins[digest] += 1
        try:
            try:
                data = self.zip_path(digest).read_bytes()
            except FileNotFoundError:
                data = self._from_shared(digest)
            self._store(digest, data)
        finally:
            self.release(digest)
        return path

    def zip_bytes(self, digest: str) -> bytes:
        """A stored zip as uploaded (kept here, with its tree, if it came from the shared
        store); FileNotFoundError if there is none."""
        try:
            return self.zip_path(digest).read_bytes()
        except FileNotFoundError:
            if self._shared is None:
                raise
        self.tree(digest)
        return self.zip_path(digest).read_bytes()

    def prefetch(self, digest: str) -> None:
        """Brings a digest of the shared store here in the pool, ahead of its first use
        (which would otherwise read and unpack it in the caller's thread)."""
        if self._shared is not None and not self.has_tree(digest):
            self._pool.submit(self._prefetch, digest)

    def _prefetch(self, digest: str) -> None:
        with contextlib.suppress(OSError, KindlingError):
            self.tree(digest)  # gone meanwhile, or the store is down: its first use says so

    def _from_shared(self, digest: str) -> bytes:
        data = self._shared.get(digest) if self._shared is not None else None
        if data is None:
            raise FileNotFoundError(f"no code {digest} here or in the store")
        if hashlib.sha256(data).hexdigest() != digest:
            raise FileNotFoundError(f"the store's code {digest} does not match its digest")
        return data

    def known(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` the control plane still keeps (in the shared store, or
        here on a single control node): a worker may drop the others."""
        if self._shared is not None:
            return self._shared.present(digests)
        return {d for d in digests if self.zip_path(d).is_file() or self.has_tree(d)}

    def keep_shared(self, digest: str, until: float | None) -> None:
        """Keeps a digest in the shared store until ``until`` (unix time; None: no more),
        whatever other nodes' collections find: code replaced, in its grace."""
        if self._shared is not None:
            self._shared.keep(digest, until)

    def unshare(self, digest: str) -> float | None:
        """Deletes an unreferenced digest from the shared store, unless this node is
        storing it now; returns the seconds until it may be (it is young), else None."""
        if self._shared is None:
            return None
        with self._lock:
            if self._pins[digest] > 0:
                return None
        return self._shared.delete(digest)

    def discard(self, digest: str) -> Future[None]:
        """Removes a digest's zip and tree in the pool, unless a store pinned it."""
        return self._pool.submit(self.remove, digest)

    def remove(self, digest: str) -> None:
        with self._lock:
            if self._pins[digest] > 0:
                return  # being stored again: it is about to be referenced
            self._pins.pop(digest, None)
            self.zip_path(digest).unlink(missing_ok=True)
            tree = self._trees / digest
            gone = self._work / f"gone-{digest}-{threading.get_ident()}"
            try:
                os.rename(tree, gone)  # out of sight at once; deleted outside the lock
            except FileNotFoundError:
                return
        self._remove_tree(gone)

    def digests(self) -> set[str]:
        """Every digest with a zip or a tree here, or in the shared store."""
        found = {path.name for path in self._trees.iterdir() if not path.name.startswith(".")}
        found.update(path.stem for path in self._zips.glob("*.zip"))
        if self._shared is not None:
            found.update(self._shared.digests())
        return found

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _store(self, digest: str, data: bytes) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"{digest[:16]}-", dir=self._work))
        try:
            tree = work / "tree"
            tree.mkdir()
            try:
                if _entry_count(data) > CODE_ENTRIES:
                    raise _refuse(f"The archive has more than {CODE_ENTRIES} entries.")
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    infos = _check_archive(archive)
                    unzipped = 0
                    for info in infos:
                        unzipped += self._extract(archive, info, tree)
                        if unzipped >= CODE_UNZIPPED_BYTES:  # headers that lied
                            raise ValidationError(
                                f"Unzipped size must be smaller than {CODE_UNZIPPED_BYTES} bytes"
                            )
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
                raise ValidationError(UNZIP_FAILED) from exc
            except (UnicodeError, ValueError) as exc:
                raise _refuse(str(exc)[:200]) from exc
            except OSError as exc:
                if exc.errno in _NAME_ERRNOS:
                    raise _refuse(f"A path cannot be unpacked: {exc.strerror}") from exc
                raise
            self._seal(tree)
            kept = work / "code.zip"
            if self._keep_zips:
                kept.write_bytes(data)
                os.chmod(kept, 0o600)
            with self._lock:  # a remove of this digest waits, or went before
                if self._keep_zips:
                    os.replace(kept, self.zip_path(digest))
                with contextlib.suppress(OSError):  # another upload of it was first
                    os.rename(tree, self._trees / digest)
        finally:
            self._remove_tree(work)

    @staticmethod
    def _seal(tree: Path) -> None:
        """Drops links that lead out (alone or together) and makes every folder read-only."""
        inside = tree.resolve()
        for dirpath, dirs, files in os.walk(tree):
            for name in dirs + files:  # links that only lead out together are dropped too
                path = Path(dirpath, name)
                if path.is_symlink() and not path.resolve().is_relative_to(inside):
                    path.unlink()
            os.chmod(dirpath, 0o555)

    @staticmethod
    def _remove_tree(path: Path) -> None:
        if not path.exists():
            return
        if path.is_dir() and not path.is_symlink():
            for dirpath, _dirs, _files in os.walk(path):
                os.chmod(dirpath, 0o755)
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    @staticmethod
    def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path) -> int:
        """Unpacks one member; returns the bytes it wrote."""
        name = info.filename.rstrip("/")
        target = root / name
        if _through_link(root, name):
            return 0  # never written through a link, which could lead anywhere: dropped
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return 0
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = (info.external_attr >> 16) & 0o777
        if _is_symlink(info):
            link = archive.read(info).decode()
            resolved = (target.parent / link).resolve()
            if PurePosixPath(link).is_absolute() or not resolved.is_relative_to(root.resolve()):
                return 0  # a link out of the package is dropped, never followed
            if target.is_symlink() or target.is_file():
                target.unlink()
            target.symlink_to(link)
            return 0
        if target.is_symlink():
            return 0  # a file of the same name as a link: dropped with the link's path
        if target.exists():
            target.unlink()  # the same name twice: the last one is kept, as unzip does
        with archive.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            written = dst.tell()
        os.chmod(target, 0o555 if mode & 0o111 else 0o444)
        return written
