"""Attacks through the deployment package: paths out of the package, symlinks to the
host's files or composed to lead out while it is unpacked, zips that cannot be unpacked
(they must answer 400 and leave nothing), and a huge zip that must not stop the server
from answering while it unpacks."""

from __future__ import annotations

import io
import os
import stat
import threading
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import ROLE, client_error, make_zip, wait_active, wait_for

from .conftest import PRELUDE, Fleet, Victim
from .test_filesystem import PROBE

LINK = stat.S_IFLNK | 0o777
HANDLER = "def handler(event, context):\n    return {'ok': True}\n"


def escaping_links(tree: Path) -> list[str]:
    """Symlinks in an unpacked tree that resolve outside it, as the host would follow them."""
    inside = tree.resolve()
    found = []
    for dirpath, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(dirpath, name)
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                found.append(f"{path.relative_to(tree)} -> {os.readlink(path)}")
    return found


def zip_of(members: list[tuple[str, str, int]]) -> bytes:
    """A zip of (name, content, mode) in this order, the same name possibly twice (which
    ``make_zip``'s mapping cannot say)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name"
        for name, content, mode in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (mode if stat.S_IFMT(mode) else mode | stat.S_IFREG) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def unpacked(fleet: Fleet) -> set[str]:
    return set(os.listdir(fleet.data_dir / "code" / "trees"))


@pytest.fixture(scope="module")
def harmless(fleet: Fleet) -> Iterator[str]:
    """A plain function whose code the unsafe zips try to replace."""
    name = fleet.deploy("harmless", "namespace", {"app.py": HANDLER})
    yield name


UNSAFE = ["/tmp/evil.py", "../evil.py", "pkg/../../evil.py", "./../evil.py", "\\evil.py"]


@pytest.mark.parametrize("member", UNSAFE)
def test_paths_out_of_the_package_are_refused_at_upload(
    member: str, fleet: Fleet, harmless: str
) -> None:
    trees = unpacked(fleet)
    code = make_zip({"app.py": HANDLER, member: "print('escaped')\n"})
    name = f"sec-unsafe-{uuid.uuid4().hex[:6]}"
    with client_error("InvalidParameterValueException", 400):
        fleet.lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": code},
        )
    with client_error("InvalidParameterValueException", 400):
        fleet.lam.update_function_code(FunctionName=harmless, ZipFile=code)
    with client_error("ResourceNotFoundException", 404):
        fleet.lam.get_function(FunctionName=name)
    assert unpacked(fleet) == trees  # nothing was unpacked
    data = fleet.data_dir
    for place in (data.parent, data, data / "code", Path("/tmp")):
        assert not (place / "evil.py").exists(), place


#: What each link the event names is, and what reading it gives (PROBE).
SYMLINKS = (
    PROBE
    + """
def handler(event, context):
    return {name: [os.path.lexists(name), probe(name)] for name in event["links"]}
"""
)


def test_symlinks_in_the_zip_lead_nowhere_outside(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    db = str(fleet.data_dir / "kindling.db")
    links = {
        "shadow": "/etc/shadow",
        "passwd": "../../../../../../etc/passwd",
        "up": "../..",
        "database": db,
        "victim": str(victim.code_dir / "secret.txt"),
        "inside": "app.py",  # a link within the package works as usual
    }
    files: dict[str, Any] = {"app.py": PRELUDE + SYMLINKS}
    files.update({name: (target, LINK) for name, target in links.items()})
    name = fleet.deploy("symlinks", backend, files)
    tree = fleet.code_tree(name)
    assert escaping_links(tree) == []
    seen = fleet.run(name, {"links": list(links)})

    assert seen.pop("inside") == [True, "ok:" + (PRELUDE + SYMLINKS)[:300]]
    # every link out of the package was dropped when it was unpacked
    assert seen == {link: [False, "ENOENT"] for link in links if link != "inside"}


def test_symlinks_cannot_carry_writes_out_of_the_package(fleet: Fleet) -> None:
    """Links that each stay inside when unpacked but lead out together ('b' -> '.' turns
    'a' into the data dir): nothing may be written through them, and they are not kept."""
    written = f"PWNED-{uuid.uuid4().hex[:8]}"
    through = f"PWNED-{uuid.uuid4().hex[:8]}"
    climb = "b/b/b/c/d/e/../../../../../.."  # inside while 'b' is not yet unpacked
    members = [  # in this order, so that each link is checked before 'b' exists
        ("app.py", HANDLER, 0o644),
        ("a", climb, LINK),
        ("y", f"{climb}/{through}", LINK),
        ("b", ".", LINK),
        ("c/d/e/", "", stat.S_IFDIR | 0o755),
        (f"a/{written}", "written through the link 'a'", 0o644),
        ("y", "written through the link 'y'", 0o644),  # the same name again: a file
    ]
    name = f"sec-compose-{uuid.uuid4().hex[:6]}"
    fleet.lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": zip_of(members)},
    )
    fleet.deployed[("compose", "-")] = name
    wait_active(fleet.lam, name)
    tree = fleet.code_tree(name)

    data = fleet.data_dir  # where 'a' and 'y' would lead: <data>/code/trees/<digest>/../../..
    assert (tree / "../../..").resolve() == data.resolve()
    assert not (data / written).exists(), "a member was written through a symlink"
    assert not (data / through).exists(), "a member was written through a symlink"
    assert escaping_links(tree) == []
    assert (tree / "app.py").read_text() == HANDLER


def names_zip(names: list[str], content: bytes = b"x") -> bytes:
    """A zip of these member names in this order (a name ending in '/' is a folder)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", HANDLER)
        for name in names:
            archive.writestr(zipfile.ZipInfo(name), b"" if name.endswith("/") else content)
    return buffer.getvalue()


def code_files(fleet: Fleet) -> set[str]:
    """Every zip, tree and work entry the code store holds."""
    root = fleet.data_dir / "code"
    return {f"{p.parent.name}/{p.name}" for p in root.glob("*/*")}


BAD_ZIPS = {
    "dot member": ["x/."],
    "file and folder": ["a", "a/b.py"],
    "folder and file": ["a/b.py", "a"],
    "name over 255 bytes": ["d/" + "n" * 300],
    "path over 1024 bytes": ["/".join(["d" * 250] * 8)],
}


@pytest.mark.parametrize("case", list(BAD_ZIPS))
def test_zips_that_cannot_unpack_answer_400_and_leave_nothing(
    case: str, fleet: Fleet, harmless: str
) -> None:
    """Each answered 500 and left its zip and partial tree on disk for ever."""
    before = code_files(fleet)
    code = names_zip(BAD_ZIPS[case])
    name = f"sec-badzip-{uuid.uuid4().hex[:6]}"
    with client_error("InvalidParameterValueException", 400) as info:
        fleet.lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": code},
        )
    assert info.value.response["Error"]["Message"].startswith("Could not unzip uploaded file.")
    with client_error("InvalidParameterValueException", 400):
        fleet.lam.update_function_code(FunctionName=harmless, ZipFile=code)
    assert code_files(fleet) == before


def test_a_refused_create_leaves_no_code(fleet: Fleet, harmless: str) -> None:
    before = code_files(fleet)
    with client_error("ResourceConflictException", 409):
        fleet.lam.create_function(
            FunctionName=harmless,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": HANDLER + "# another\n"})},
        )
    assert code_files(fleet) == before


def test_the_server_answers_while_a_huge_zip_unpacks(fleet: Fleet, harmless: str) -> None:
    """Unpacking a 200,000-file zip froze every API call and invoke for 12 s. Now, while
    one as large as allowed unpacks, another function is read and invoked."""
    from kindling.limits import CODE_ENTRIES

    fleet.run(harmless)  # warm
    files = [f"pkg/d{i % 64}/m{i}.py" for i in range(CODE_ENTRIES - 1)]
    code = names_zip(files, b"")
    name = f"sec-hugezip-{uuid.uuid4().hex[:6]}"
    created: list[Any] = []

    def create() -> None:
        try:
            created.append(
                fleet.lam.create_function(
                    FunctionName=name,
                    Runtime="python3.11",
                    Handler="app.handler",
                    Role=ROLE,
                    Code={"ZipFile": code},
                )
            )
        except Exception as exc:  # reported below
            created.append(exc)

    before = code_files(fleet)
    thread = threading.Thread(target=create)
    thread.start()
    try:  # the unpack has begun once the code store holds something new
        wait_for(lambda: code_files(fleet) - before or created, timeout=120, interval=0.005)
        assert not created, f"the create ended before its unpack was seen: {created}"
        fleet.lam.get_function(FunctionName=harmless)
        assert fleet.run(harmless) == {"ok": True}
        fleet.lam.list_functions(MaxItems=5)
        assert thread.is_alive() and not created, "the calls waited for the unpack"
    finally:
        thread.join(timeout=300)
    assert created and isinstance(created[0], dict), created
    wait_active(fleet.lam, name)
    fleet.deployed[("hugezip", "-")] = name
    assert (fleet.code_tree(name) / "pkg" / "d3" / "m3.py").exists()
