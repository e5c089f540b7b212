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
    code = store.put(data)
    assert code.digest == hashlib.sha256(data).hexdigest()
    assert code.sha256_b64 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert store.put(data) == code
    tree = store.tree(code.digest)
    assert (tree / "app.py").read_bytes() == b"x = 1\n"
    assert os.access(tree / "bootstrap", os.X_OK)
    assert not os.access(tree / "app.py", os.X_OK)
    assert stat.S_IMODE((tree / "app.py").stat().st_mode) & 0o222 == 0
    assert stat.S_IMODE(tree.stat().st_mode) & 0o222 == 0


@pytest.mark.parametrize("name", ["../evil.py", "/etc/passwd", "a/../../b", "C:\\x"])
def test_unsafe_paths_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError, match="unsafe path"):
        CodeStore(tmp_path).put(make_zip({name: (b"x", 0o644)}))


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="Could not unzip"):
        CodeStore(tmp_path).put(b"this is not a zip")


def test_remove_deletes_zip_and_tree(tmp_path: Path) -> None:
    store = CodeStore(tmp_path)
    code = store.put(make_zip({"a.py": (b"", 0o644)}))
    store.remove(code.digest)
    assert not store.zip_path(code.digest).exists()
    assert not (tmp_path / "trees" / code.digest).exists()
