"""Content-addressed code storage: a zip is kept once per digest and unpacked once.

The unpacked tree is made read-only and shared by every sandbox of every version with
that digest; sandboxes mount it (or point at it) and never copy it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kindling.errors import ValidationError

#: Lambda's quotas for a .zip deployment package.
MAX_UNZIPPED_BYTES = 262_144_000
_UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."


@dataclass(frozen=True, slots=True)
class StoredCode:
    digest: str  # hex sha256, the storage key
    sha256_b64: str  # what Lambda reports as CodeSha256
    size: int


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or ":" in name:
        raise ValidationError(f"{_UNZIP_FAILED} The archive contains an unsafe path: {name!r}")


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
    """Keeps zips under ``root/zips`` and their read-only trees under ``root/trees``."""

    def __init__(self, root: Path) -> None:
        self._zips = root / "zips"
        self._trees = root / "trees"
        self._zips.mkdir(parents=True, exist_ok=True)
        self._trees.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> StoredCode:
        """Validates and stores a zip; raises ValidationError as Lambda would refuse it."""
        digest = hashlib.sha256(data)
        code = StoredCode(digest.hexdigest(), base64.b64encode(digest.digest()).decode(), len(data))
        self._validate(data)
        target = self._zips / f"{code.digest}.zip"
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        self.unpack(code.digest)
        return code

    def zip_path(self, digest: str) -> Path:
        return self._zips / f"{digest}.zip"

    def tree(self, digest: str) -> Path:
        """The unpacked, read-only tree of a stored zip (unpacked on first use)."""
        path = self._trees / digest
        return path if path.is_dir() else self.unpack(digest)

    def unpack(self, digest: str) -> Path:
        final = self._trees / digest
        if final.is_dir():
            return final
        work = self._trees / f".{digest}.{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        with zipfile.ZipFile(self.zip_path(digest)) as archive:
            for info in archive.infolist():
                self._extract(archive, info, work)
        inside = work.resolve()
        for dirpath, dirs, files in os.walk(work):
            for name in dirs + files:  # links that only lead out together are dropped too
                path = Path(dirpath, name)
                if path.is_symlink() and not path.resolve().is_relative_to(inside):
                    path.unlink()
            os.chmod(dirpath, 0o555)
        os.chmod(work, 0o555)
        try:
            os.rename(work, final)
        except OSError:  # another unpack won the race
            self._remove_tree(work)
        return final

    def remove(self, digest: str) -> None:
        self.zip_path(digest).unlink(missing_ok=True)
        self._remove_tree(self._trees / digest)

    @staticmethod
    def _remove_tree(path: Path) -> None:
        if not path.exists():
            return
        for dirpath, _dirs, _files in os.walk(path):
            os.chmod(dirpath, 0o755)
        shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _validate(data: bytes) -> None:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                infos = archive.infolist()
                total = 0
                for info in infos:
                    _check_member(info)
                    total += info.file_size
                if total > MAX_UNZIPPED_BYTES:
                    raise ValidationError(
                        f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes"
                    )
                bad = archive.testzip()
                if bad is not None:
                    raise ValidationError(f"{_UNZIP_FAILED} Corrupt member: {bad}")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
            raise ValidationError(_UNZIP_FAILED) from exc

    @staticmethod
    def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path) -> None:
        target = root / info.filename
        if _through_link(root, info.filename):
            return  # never written through a link, which could lead anywhere: dropped
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = (info.external_attr >> 16) & 0o777
        if _is_symlink(info):
            link = archive.read(info).decode()
            resolved = (target.parent / link).resolve()
            if PurePosixPath(link).is_absolute() or not resolved.is_relative_to(root.resolve()):
                return  # a link out of the package is dropped, never followed
            target.symlink_to(link)
            return
        with archive.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        executable = bool(mode & 0o111)
        os.chmod(target, 0o555 if executable else 0o444)
