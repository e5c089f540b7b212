import asyncio
import base64
import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from kindling.control.codestore import CodeStore
from kindling.errors import ValidationError


def make_zip(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def test_put_is_content_addressed_and_unpacks_read_only(tmp_path: Path) -> None:
    store = CodeStore(tmp_path)
    data = make_zip({"app.py": (b"x = 1\n", 0o644), "bootstrap": (b"#!/bin/sh\n", 0o755)})
    code = store.put_now(data)
    assert code.digest == hashlib.sha256(data).hexdigest()
    assert code.sha256_b64 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert store.put_now(data) == code
    tree = store.tree(code.digest)
    assert (tree / "app.py").read_bytes() == b"x = 1\n"
    assert os.access(tree / "bootstrap", os.X_OK)
    assert not os.access(tree / "app.py", os.X_OK)
    assert stat.S_IMODE((tree / "app.py").stat().st_mode) & 0o222 == 0
    assert stat.S_IMODE(tree.stat().st_mode) & 0o222 == 0


@pytest.mark.parametrize("name", ["../evil.py", "/etc/passwd", "a/../../b", "C:\\x"])
def test_unsafe_paths_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError, match="unsafe path"):
        CodeStore(tmp_path).put_now(make_zip({name: (b"x", 0o644)}))


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="Could not unzip"):
        CodeStore(tmp_path).put_now(b"this is not a zip")


def test_remove_deletes_zip_and_tree(tmp_path: Path) -> None:
    store = CodeStore(tmp_path)
    code = store.put_now(make_zip({"a.py": (b"", 0o644)}))
    store.remove(code.digest)
    assert store.zip_path(code.digest).exists(), "removed while its create still runs"
    store.release(code.digest)  # the create has recorded it (or given up)
    store.remove(code.digest)
    assert not store.zip_path(code.digest).exists()
    assert not (tmp_path / "trees" / code.digest).exists()


def _names_zip(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(zipfile.ZipInfo(name), b"" if name.endswith("/") else b"x")
    return buffer.getvalue()


def _left(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


BAD_ZIPS = {
    "dot member": (["app.py", "x/."], "invalid path"),
    "dot folder": (["./app.py"], "invalid path"),
    "empty part": (["a//b.py"], "invalid path"),
    "file then folder": (["a", "a/b.py"], "both a file and a folder"),
    "folder then file": (["a/b.py", "a"], "both a file and a folder"),
    "name over 255 bytes": (["d/" + "n" * 256], "longer than 255 bytes"),
    "name over 255 bytes, multibyte": (["é" * 128], "longer than 255 bytes"),
    "path over 1024 bytes": (["/".join(["d" * 200] * 6)], "longer than 1024 bytes"),
}


@pytest.mark.parametrize("case", list(BAD_ZIPS))
def test_zips_that_cannot_unpack_are_refused_and_leave_nothing(tmp_path: Path, case: str) -> None:
    """Each answered 500 and left its zip and partial tree on disk for ever."""
    names, why = BAD_ZIPS[case]
    store = CodeStore(tmp_path)
    with pytest.raises(ValidationError, match=why) as info:
        store.put_now(_names_zip(names))
    assert info.value.message.startswith("Could not unzip uploaded file.")
    assert _left(tmp_path) == []
    assert not list((tmp_path / "trees").iterdir())
    assert not list((tmp_path / "work").iterdir())


def test_too_many_entries_are_refused_before_unpacking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kindling.control.codestore.CODE_ENTRIES", 10)
    with pytest.raises(ValidationError, match="more than 10 entries"):
        CodeStore(tmp_path).put_now(_names_zip([f"f{i}" for i in range(11)]))
    assert _left(tmp_path) == []


def test_unzipped_size_must_be_smaller_than_lambdas_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kindling.control.codestore.CODE_UNZIPPED_BYTES", 100)
    store = CodeStore(tmp_path)
    with pytest.raises(ValidationError) as info:  # Lambda's words: smaller, so 100 is out
        store.put_now(make_zip({"a": (b"x" * 100, 0o644)}))
    assert info.value.message == "Unzipped size must be smaller than 100 bytes"
    store.put_now(make_zip({"a": (b"x" * 99, 0o644)}))


def test_a_member_larger_than_its_header_says_is_cut_by_the_size_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The central directory's sizes are the zip's word; the bytes unpacked are counted."""
    monkeypatch.setattr("kindling.control.codestore.CODE_UNZIPPED_BYTES", 1000)
    data = bytearray(make_zip({"a": (b"x" * 5000, 0o644)}))
    # the central directory says 10 bytes; the local header still says 5000
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    with pytest.raises(ValidationError):
        CodeStore(tmp_path).put_now(bytes(data))
    assert _left(tmp_path) == []


def test_a_duplicate_name_keeps_the_last(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("a.py", b"first")
        archive.writestr("a.py", b"second")
    store = CodeStore(tmp_path)
    code = store.put_now(buffer.getvalue())
    assert (store.tree(code.digest) / "a.py").read_bytes() == b"second"


def test_put_unpacks_off_the_event_loop(tmp_path: Path) -> None:
    """A 200,000-file zip froze every API call for 12 s: the loop keeps running."""
    store = CodeStore(tmp_path)
    data = _names_zip([f"d{i % 50}/f{i}.py" for i in range(5_000)])

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await store.put(data)
        task.cancel()
        return ticks

    assert asyncio.run(scenario()) > 10  # the loop ran while the zip was unpacked
    store.close()


def test_the_same_zip_stored_at_once_by_many_ends_as_one_tree(tmp_path: Path) -> None:
    import concurrent.futures

    store = CodeStore(tmp_path)
    data = _names_zip([f"d/f{i}.py" for i in range(500)])
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = set(pool.map(store.put_now, [data] * 4))
    assert len(codes) == 1
    digest = codes.pop().digest
    assert os.listdir(tmp_path / "trees") == [digest]
    assert len(os.listdir(store.tree(digest) / "d")) == 500
    assert not list((tmp_path / "work").iterdir())


def test_a_truncated_zip_is_refused(tmp_path: Path) -> None:
    data = _names_zip([f"f{i}" for i in range(100)])
    with pytest.raises(ValidationError, match="Could not unzip"):
        CodeStore(tmp_path).put_now(data[: len(data) // 2])
    assert _left(tmp_path) == []


def test_entries_are_counted_before_zipfile_builds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zipfile builds an object per member first: 600,000 empty members in 50 MB cost
    ~300 MB and seconds before a count could refuse them. They are counted first."""
    from kindling.control import codestore

    monkeypatch.setattr(codestore, "CODE_ENTRIES", 1000)
    data = _names_zip([f"{i:x}" for i in range(1001)])
    built: list[int] = []
    real = zipfile.ZipFile.__init__

    def counting(self: zipfile.ZipFile, *args: object, **kwargs: object) -> None:
        built.append(1)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "__init__", counting)
    with pytest.raises(ValidationError, match="more than 1000 entries"):
        CodeStore(tmp_path).put_now(data)
    assert built == []
    assert codestore._entry_count(data) == 1001


@pytest.mark.parametrize("count", [0, 1, 7, 1000, 70_000])  # 70,000: ZIP64 records
def test_the_count_agrees_with_zipfile(count: int) -> None:
    from kindling.control import codestore
    from kindling.limits import CODE_ENTRIES

    data = _names_zip([f"d/{i}" for i in range(count)])
    counted = len(zipfile.ZipFile(io.BytesIO(data)).infolist())
    assert codestore._entry_count(data) == min(counted, CODE_ENTRIES + 1)  # it stops there
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", allowZip64=True) as archive:
        for i in range(count):
            archive.writestr(f"e/{i}", b"")
        archive.comment = b"a comment"
    data = buffer.getvalue()
    assert codestore._entry_count(data) == min(count, CODE_ENTRIES + 1)
