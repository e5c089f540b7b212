"""A function's layers merged into one directory tree, for a backend that cannot stack
them with overlayfs at /opt (gVisor: its OCI mounts are binds, and binds do not merge).

The view is made of hard links to the layers' files (no data is copied; a copy only
where the trees are on another file system), directories of its own, and the layers'
symlinks as they are: the same tree an overlay of the layers shows, a later layer's
file winning over an earlier one's. Each sandbox makes its own in its directory and it
goes with the sandbox, so a layer's content collected later leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import shutil


def opt_file(sources: tuple[str, ...] | list[str], name: str) -> str | None:
    """The host path of the file a merged /opt shows at ``name`` (the last layer that has
    something there wins; a folder there is no file), or None."""
    for source in reversed(sources):
        path = os.path.join(source, name)
        if os.path.lexists(path):
            return path if os.path.isfile(path) else None
    return None


def merge_layers(sources: list[str], target: str) -> None:
    """Makes ``target`` (which must not exist) the merge of ``sources``, in order."""
    os.mkdir(target, 0o755)
    for source in sources:
        _merge(source, target)


def _merge(source: str, target: str) -> None:
    for entry in os.scandir(source):
        to = os.path.join(target, entry.name)
        if entry.is_dir(follow_symlinks=False):
            if os.path.lexists(to) and not (os.path.isdir(to) and not os.path.islink(to)):
                _remove(to)
            if not os.path.lexists(to):
                os.mkdir(to, 0o755)
            _merge(entry.path, to)
            continue
        if os.path.lexists(to):
            _remove(to)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), to)
            continue
        try:
            os.link(entry.path, to)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM):
                raise
            shutil.copy2(entry.path, to)


def _remove(path: str) -> None:
    """What an earlier layer had at a path a later one replaces."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
