"""The host's copy of a SnapStart template's /tmp into a restored copy's
(copymounts.py): regular files, directories and symlinks with their modes, handed to the
sandbox's ids; nothing followed through a symlink, nothing but those kinds copied, and
a tree past its bounds not copied at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kindling.worker.sandbox import copymounts

OWNER = (4321, 4322)


def _tree(source: Path, outside: Path) -> None:
    (source / "dir" / "sub").mkdir(parents=True)
    (source / "dir" / "sub").chmod(0o750)
    (source / "dir" / "sub" / "data").write_bytes(b"x" * 5000)
    (source / "dir" / "sub" / "data").chmod(0o640)
    (source / "setgid").write_text("s")
    (source / "setgid").chmod(0o2755)
    (outside / "secret").write_text("the host's")
    (source / "to-file").symlink_to(outside / "secret")
    (source / "to-dir").symlink_to(outside)
    os.mkfifo(source / "fifo")  # opening it would block the host


def _copy(source: Path, target: Path, budget: int = 1 << 20) -> None:
    src = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    dst = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copymounts._copy_tree(src, dst, [budget], OWNER)
    finally:
        os.close(src)
        os.close(dst)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    if os.geteuid() != 0:
        pytest.skip("handing files to other ids needs root")
    made = tuple(tmp_path / name for name in ("source", "target", "outside"))
    for path in made:
        path.mkdir()
    return made  # type: ignore[return-value]


def test_files_keep_modes_and_go_to_the_sandbox(dirs: tuple[Path, Path, Path]) -> None:
    source, target, outside = dirs
    _tree(source, outside)
    _copy(source, target)
    assert sorted(os.listdir(target)) == ["dir", "setgid", "to-dir", "to-file"]
    for path, mode in (("dir/sub", 0o750), ("dir/sub/data", 0o640), ("setgid", 0o2755)):
        info = (target / path).lstat()
        assert stat.S_IMODE(info.st_mode) == mode, path
        assert (info.st_uid, info.st_gid) == OWNER, path
    assert (target / "dir" / "sub" / "data").read_bytes() == b"x" * 5000
    for link in ("to-file", "to-dir"):  # recreated, never followed
        assert (target / link).is_symlink()
        assert (target / link).lstat().st_uid == OWNER[0]
    assert os.readlink(target / "to-file") == str(outside / "secret")


def test_the_byte_budget_holds_even_if_a_file_grew(dirs: tuple[Path, Path, Path]) -> None:
    source, target, _outside = dirs
    (source / "big").write_bytes(b"y" * 10_000)
    _copy(source, target, budget=4096)
    assert (target / "big").stat().st_size == 4096


@pytest.mark.parametrize(
    ("entries", "depth", "limit", "copied"),
    [
        (100, 10, 1 << 20, True),
        (3, 10, 1 << 20, False),
        (100, 1, 1 << 20, False),
        (100, 10, 10, False),
    ],
)
def test_a_tree_past_a_bound_is_not_copied(
    dirs: tuple[Path, Path, Path], entries: int, depth: int, limit: int, copied: bool
) -> None:
    source, _target, _outside = dirs
    (source / "a" / "b" / "c").mkdir(parents=True)
    (source / "a" / "b" / "c" / "f").write_bytes(b"z" * 100)
    top = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    try:
        total = copymounts._size(top, entries, depth, limit)
    finally:
        os.close(top)
    assert (total == 100) if copied else (total is None)
