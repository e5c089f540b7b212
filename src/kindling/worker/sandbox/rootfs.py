"""A sandbox's root filesystem, built by its PID 1 (nsinit.py) in its own mount namespace:
the request-independent part ahead of the request (``build_shell``: host mirrors, /etc,
/dev, the masked /proc), the rest once it came (``finish_root``: code, runtime, /tmp,
/proc's memory and boot time). See ADR 0026.

Imports only ``os`` and the sandbox's own modules: it runs in every launcher.
"""

from __future__ import annotations

import os

from kindling.worker.sandbox import linux, procmask

SANDBOX_UID = 993
SANDBOX_GID = 990
ETC_PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    f"sbx_user1051:x:{SANDBOX_UID}:{SANDBOX_GID}::/tmp:/sbin/nologin\n"
)
ETC_GROUP = f"root:x:0:\nsbx_user1051:x:{SANDBOX_GID}:\n"
#: The character devices of /dev (major 1), by minor number.
DEVICES = (("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9))
_S_IFCHR = 0o020000
HOST_ETC = ("ld.so.cache", "ssl", "alternatives", "ca-certificates", "mime.types", "localtime")


def _mkdirs(root: str, *paths: str) -> None:
    for path in paths:
        os.makedirs(root + path, exist_ok=True)


def _write(path: str, text: str, mode: int = 0o444) -> None:
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _mirror(root: str, path: str) -> None:
    """A host top-level path as it is on the host: a symlink stays a symlink."""
    if os.path.islink(path):
        os.symlink(os.readlink(path), root + path)
    elif os.path.isdir(path):
        _mkdirs(root, path)
        linux.bind(path, root + path)


def _layered_view(sources: list[str], target: str, flags: int) -> None:
    """The function's layers merged read-only at ``target`` (/opt), in order: where two
    have the same path, the later one's wins, as on AWS. One read-only overlay whose
    lower layers are the trees, topmost (the last) first, passed as descriptor paths so
    the mount names none of them (as ``_unnamed_bind``). There is no fallback: binds
    cannot merge, and a wrong /opt is worse than a start that fails."""
    if len(sources) == 1:
        _unnamed_bind(sources[0], target, flags)
        return
    fds = [os.open(source, os.O_RDONLY | os.O_DIRECTORY) for source in reversed(sources)]
    try:
        lower = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        linux.mount("none", target, "overlay", linux.MS_RDONLY | flags, f"lowerdir={lower}")
    finally:
        for fd in fds:
            os.close(fd)


def _unnamed_bind(source: str, target: str, flags: int) -> None:
    """A read-only view of ``source`` at ``target`` that does not name ``source``.

    A bind mount shows its source's path on the host (the data dir's) in the sandbox's
    /proc/self/mountinfo. A read-only overlay of the same directory shows only the
    strings it was given: its layers are passed as descriptor paths (the directory, and
    the empty ``target`` itself as the second layer overlayfs needs without an upper
    one). Where overlayfs refuses (e.g. a data dir on a filesystem it cannot stack on),
    a bind it is."""
    lower = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    empty = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    layers = f"lowerdir=/proc/self/fd/{lower}:/proc/self/fd/{empty}"
    try:
        linux.mount("none", target, "overlay", linux.MS_RDONLY | flags, layers)
    except OSError:
        linux.bind(source, target, extra=flags)
    finally:
        os.close(lower)
        os.close(empty)


def build_shell(base: str) -> str:
    """The request-independent part of a sandbox's root, made ahead in a fresh mount
    namespace (see ``shell``): a staging tmpfs at ``base`` (outside the root: it leaves
    the sandbox's view with the old root), the root tmpfs at ``base``/root with the host
    mirrors, /etc, /dev and the masked /proc, whose ``meminfo`` and ``stat`` are bound
    from the staging tmpfs and written once the request is known. Returns the root."""
    linux.mount("tmpfs", base, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=64k,mode=700")
    root = base + "/root"
    os.mkdir(root)
    linux.mount("tmpfs", root, "tmpfs", linux.MS_NOSUID, "size=4m,mode=755")
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.lexists(top):
            _mirror(root, top)
    _mkdirs(root, "/etc", "/var/task", "/var/runtime", "/opt", "/tmp", "/proc", "/dev", "/root")
    _write(root + "/etc/passwd", ETC_PASSWD)
    _write(root + "/etc/group", ETC_GROUP)
    _write(root + "/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n")
    _write(root + "/etc/hostname", "sandbox\n")
    _write(root + "/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
    for name in HOST_ETC:
        host = f"/etc/{name}"
        if os.path.isdir(host):
            _mkdirs(root, host)
            linux.bind(host, root + host)
        elif os.path.isfile(host):
            open(root + host, "w").close()
            linux.bind(host, root + host)
    flags = linux.MS_NOSUID | linux.MS_NODEV
    linux.mount("tmpfs", root + "/dev", "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "mode=755")
    for name, minor in DEVICES:  # made, not bound: a bind would show the host's devtmpfs
        os.mknod(f"{root}/dev/{name}", _S_IFCHR | 0o666, os.makedev(1, minor))
        os.chmod(f"{root}/dev/{name}", 0o666)
    _mkdirs(root, "/dev/shm")
    linux.mount("tmpfs", root + "/dev/shm", "tmpfs", flags, "size=64m,mode=1777")
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{link}")
    procmask.mount_proc_ahead(root + "/proc", base)
    return root


def finish_root(cfg: dict[str, object], base: str, root: str) -> None:
    """The request's part of the root: its interpreter's prefix, resolv.conf, code,
    layers (/opt), runtime, sized /tmp, /proc's memory and boot time (and a template's
    hidden procfs)."""
    for extra in cfg.get("ro_paths", []):  # type: ignore[attr-defined]
        _mkdirs(root, str(extra))
        linux.bind(str(extra), root + str(extra))
    _write(root + "/etc/resolv.conf", str(cfg.get("resolv_conf", "")))
    flags = linux.MS_NOSUID | linux.MS_NODEV
    _unnamed_bind(str(cfg["code_dir"]), root + "/var/task", flags)
    layers = [str(tree) for tree in cfg.get("layer_dirs", [])]  # type: ignore[attr-defined]
    if layers:
        _layered_view(layers, root + "/opt", flags)
    if cfg.get("runtime_dir"):
        _unnamed_bind(str(cfg["runtime_dir"]), root + "/var/runtime", flags)
    linux.mount(
        "tmpfs",
        root + "/tmp",
        "tmpfs",
        flags,
        f"size={int(cfg['tmp_mb'])}m,mode=1777",  # type: ignore[call-overload]
    )
    memory_mb = int(cfg["env"].get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 128))  # type: ignore[attr-defined]
    procmask.stage(base, memory_mb)
    if cfg.get("control_fd") is not None:
        procmask.keep_mountable(root)


#: How often a launcher rehearses a shell's build before it forks any (``rehearse``).
REHEARSALS = 10


def rehearse(base: str, times: int = REHEARSALS) -> None:
    """Builds and finishes a shell's root ``times`` over in a mount namespace of its
    own, then returns to the caller's: a launcher does this once, before it forks any
    builder, so every shell forked from it runs code the interpreter has already
    specialized (CPython rewrites a function's bytecode in place as it learns its
    types, and in a freshly forked shell every such write copies a page). A shell's
    build costs ~30 % less this way; in a burst, where every start's work competes
    for the same CPUs, that is time off every start. Nothing of it outlives the call:
    its mounts go with the namespace, and ``base`` is empty again for the shells."""
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    try:
        linux.unshare(linux.CLONE_NEWNS)
        try:
            linux.mount("", "/", None, linux.MS_REC | linux.MS_PRIVATE)
            empty = base + "/root/opt"  # an empty directory of the rehearsal's own root
            cfg: dict[str, object] = {
                "ro_paths": [],
                "resolv_conf": "",
                "code_dir": empty,
                "runtime_dir": empty,
                "tmp_mb": 1,
                "env": {},
            }
            for _ in range(times):
                finish_root(cfg, base, build_shell(base))
                linux.umount(base)
        finally:
            linux.setns(own, linux.CLONE_NEWNS)  # a launcher is single-threaded: allowed
    finally:
        os.close(own)
