"""The process that becomes a sandbox. Run by the worker as host root; ends as the runtime.

Steps, in this order because each needs the privilege the next one gives up:

1. join the sandbox's cgroups and its prepared network namespace;
2. new UTS, IPC, PID and cgroup namespaces; fork, so the child is PID 1 of the new
   PID namespace;
3. the child makes its own mount namespace and a fresh root on a tmpfs (host runtime
   files read-only, code at /var/task read-only, a sized /tmp, a minimal /dev), mounts
   its /proc, pivots into the new root, drops supplementary groups
   and enters a new user namespace; the parent maps the child's uid 993 to an
   unprivileged host uid, reports the child's pid to the worker and exits;
4. the child becomes uid/gid 993 with no capabilities and ``no_new_privs``, loads the
   seccomp program, and execs the runtime, or, in a runtime zygote, starts the runtime
   client it already imported.

It runs as a launcher (``--serve``, see launcher.py) that forks a builder per request;
the builder reads its instructions (marshalled) from the config pipe it was handed and
reports one line on a status pipe: ``pid <host pid>`` or ``error <message>``.
"""

from __future__ import annotations

import marshal  # not json: importing json costs ~10 ms of every sandbox start
import os
import resource
import sys

BASE_PATH = sys.path[1:]  # what `python -S script` has after the script's own directory
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))

from kindling.worker.sandbox import copymounts, forkserver, linux, procmask  # noqa: E402

TYPE_CHECKING = False  # typing itself costs an import on every sandbox start
if TYPE_CHECKING:
    from typing import Any

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


def build_root(cfg: dict[str, object]) -> str:
    root = str(cfg["root"])
    linux.mount("tmpfs", root, "tmpfs", linux.MS_NOSUID, "size=4m,mode=755")
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.lexists(top):
            _mirror(root, top)
    for extra in cfg.get("ro_paths", []):  # type: ignore[attr-defined]
        _mkdirs(root, str(extra))
        linux.bind(str(extra), root + str(extra))
    _mkdirs(root, "/etc", "/var/task", "/var/runtime", "/opt", "/tmp", "/proc", "/dev", "/root")
    _write(root + "/etc/passwd", ETC_PASSWD)
    _write(root + "/etc/group", ETC_GROUP)
    _write(root + "/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n")
    _write(root + "/etc/hostname", "sandbox\n")
    _write(root + "/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
    _write(root + "/etc/resolv.conf", str(cfg.get("resolv_conf", "")))
    for name in HOST_ETC:
        host = f"/etc/{name}"
        if os.path.isdir(host):
            _mkdirs(root, host)
            linux.bind(host, root + host)
        elif os.path.isfile(host):
            open(root + host, "w").close()
            linux.bind(host, root + host)
    flags = linux.MS_NOSUID | linux.MS_NODEV
    _unnamed_bind(str(cfg["code_dir"]), root + "/var/task", flags)
    if cfg.get("runtime_dir"):
        _unnamed_bind(str(cfg["runtime_dir"]), root + "/var/runtime", flags)
    linux.mount(
        "tmpfs",
        root + "/tmp",
        "tmpfs",
        flags,
        f"size={int(cfg['tmp_mb'])}m,mode=1777",  # type: ignore[call-overload]
    )
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
    return root


def child(cfg: dict[str, object], program: bytes, go_r: int, ready_w: int) -> None:
    """PID 1 of the sandbox: build the root, drop everything, become the runtime (by
    exec, or in-process from a runtime zygote)."""
    linux.unshare(linux.CLONE_NEWNS)  # its own: pivot_root must not move the parent's root
    linux.mount("", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    root = build_root(cfg)
    memory_mb = int(cfg["env"].get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 128))  # type: ignore[attr-defined]
    procmask.mount_proc(root + "/proc", memory_mb)
    if cfg.get("control_fd") is not None:
        procmask.keep_mountable(root)
    linux.sethostname("sandbox")
    nofile = int(cfg["max_open_files"])  # type: ignore[call-overload]
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))  # hard too: for good
    os.chdir(root)
    os.mkdir(".old")
    linux.pivot_root(".", ".old")
    os.chdir("/")
    linux.umount("/.old")
    os.rmdir("/.old")
    linux.mount("", "/", None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | linux.MS_NOSUID)
    argv = [str(a) for a in cfg["argv"]]  # type: ignore[attr-defined]
    env = {str(k): str(v) for k, v in cfg["env"].items()}  # type: ignore[attr-defined]
    in_process = bool(cfg.get("in_process"))
    if in_process:
        linux.set_process_image(argv, env)  # before seccomp, which refuses prctl(PR_SET_MM)
    os.setgroups([])
    linux.unshare(linux.CLONE_NEWUSER)
    os.write(ready_w, b"u")
    if os.read(go_r, 1) != b"k":
        os._exit(121)
    linux.drop_bounding_capabilities()
    os.setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID)
    os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    # as an exec would: the uid change made it undumpable, so its /proc/self files were
    # root's (and hide_host_ids could not write its own maps)
    linux.prctl(linux.PR_SET_DUMPABLE, 1)
    # hide_host_ids ends with no capability: the uid change does not clear them (our old
    # uid, host root, is unmapped in this user namespace, so the kernel's "every uid left
    # 0" rule does not apply, and a zygote's fork has no exec to do it), and its nested
    # user namespace hands every one back, bounding set included.
    hide_host_ids()
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    linux.load_seccomp(program)
    control = cfg.get("control_fd")
    if control is not None:  # a snapshot template: its control socket becomes fd 3
        os.dup2(int(control), forkserver.CONTROL_FD)  # type: ignore[call-overload]
    os.closerange(3 if control is None else 4, 65536)
    os.chdir("/var/task")
    if in_process:
        server = None
        if control is not None:
            server = forkserver.ForkServer(cfg["restored_program"], SANDBOX_UID, SANDBOX_GID)  # type: ignore[arg-type]
        run_in_process(argv, env, server)
    os.execve(argv[0], argv, env)


def hide_host_ids() -> None:
    """A nested user namespace that maps the sandbox's ids to themselves, so its
    /proc/self/uid_map reads ``993 993 1`` instead of naming the host uid the parent
    mapped it to (ADR 0015). Making it hands this process every capability in it and a
    full bounding set (the kernel resets both for a new user namespace): all dropped at
    once, bounding set first (dropping it needs CAP_SETPCAP)."""
    linux.unshare(linux.CLONE_NEWUSER)
    with open("/proc/self/setgroups", "w") as fh:
        fh.write("deny")
    with open("/proc/self/uid_map", "w") as fh:
        fh.write(f"{SANDBOX_UID} {SANDBOX_UID} 1\n")
    with open("/proc/self/gid_map", "w") as fh:
        fh.write(f"{SANDBOX_GID} {SANDBOX_GID} 1\n")
    linux.drop_bounding_capabilities()
    linux.drop_capabilities()


def run_in_process(
    argv: list[str], env: dict[str, str], template: forkserver.ForkServer | None = None
) -> None:
    """Becomes ``python -u -S <runtime client>`` without the exec: the zygote imported the
    client's modules already. What a fresh interpreter would differ in is reset here:
    environment, argv, sys.path, __main__; ``random`` reseeds itself at fork. The worker
    only asks for this when the function's environment has no PYTHON* variable that
    changes interpreter start-up (PYTHONPATH excepted: it is applied here)."""
    import atexit

    script = argv[-1]
    os.environ.clear()
    os.environ.update(env)
    _coerce_locale(env)
    sys.argv = [script]
    sys.orig_argv = list(argv)
    extra = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    sys.path[:] = [os.path.dirname(script), *extra, *BASE_PATH]
    for name in [n for n in sys.modules if n == "kindling" or n.startswith("kindling.")]:
        del sys.modules[name]
    main = type(sys)("__main__")
    main.__file__ = script
    if template is not None:  # the client serves forks after init (see forkserver.py)
        main.KINDLING_SNAPSHOT = template  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    status: object = 0
    try:
        exec(PRELOADED[0], main.__dict__)
    except SystemExit as exc:
        status = exc.code
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with _suppress():
            stream.flush()
    if status is None:
        os._exit(0)
    if isinstance(status, int):
        os._exit(status & 0xFF)
    with _suppress():
        sys.stderr.write(f"{status}\n")
    os._exit(1)


def _coerce_locale(env: dict[str, str]) -> None:
    """The locale a fresh interpreter would have under ``env``: LC_CTYPE from it, and
    PEP 538's coercion of a plain "C" to UTF-8 (it also exports LC_CTYPE)."""
    import _locale

    try:
        current = _locale.setlocale(_locale.LC_CTYPE, "")
    except Exception:  # _locale.Error
        current = _locale.setlocale(_locale.LC_CTYPE, "C")
    if current != "C" or env.get("LC_ALL"):
        return
    for target in ("C.UTF-8", "C.utf8", "UTF-8"):
        try:
            _locale.setlocale(_locale.LC_CTYPE, target)
        except Exception:  # _locale.Error
            continue
        os.environ["LC_CTYPE"] = target
        return


class _suppress:
    """contextlib.suppress(Exception) without importing contextlib into every zygote."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *rest: object) -> bool:
        return kind is not None and issubclass(kind, Exception)  # type: ignore[arg-type]


#: The runtime client's code object, in a runtime zygote (``--preload``).
PRELOADED: list[Any] = []


def preload(path: str) -> None:
    """Runs the client's module body once (its imports: json, socket, io...) so every
    fork starts with them loaded; each fork runs it again as __main__, which is cheap
    with the imports cached."""
    with open(path, "rb") as fh:
        code = marshal.loads(fh.read()[16:])  # a .pyc: 16 bytes of header, then the code
    sys.path.insert(0, os.path.dirname(path))  # its sibling modules, imported here once
    try:
        exec(code, {"__name__": "kindling_runtime_preload", "__file__": path})
    finally:
        del sys.path[0]
    PRELOADED.append(code)


def supervise(argv: list[str], procs: str) -> None:
    """Runs ``argv`` (runsc) as a child and reaps all that is orphaned below it. runsc's
    processes die in any order (all at once when the Sentry crashes), and the worker, a
    subreaper too, would otherwise inherit their zombies. Once runsc is gone, the rest of
    the sandbox is killed; this process then ends as runsc did."""
    import contextlib  # here, not at the top: the namespace path must not pay for them
    import signal

    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child == 0:
        os.execve(argv[0], argv, {"PATH": "/usr/bin:/bin"})
    ended = 0
    while True:
        try:
            pid, ended_as = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            ended = ended_as
            with open(procs) as fh:
                for other in {int(p) for p in fh.read().split()} - {os.getpid()}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(other, signal.SIGKILL)
    if os.WIFSIGNALED(ended):
        signal.signal(os.WTERMSIG(ended), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(ended))
    os._exit(os.WEXITSTATUS(ended) if os.WIFEXITED(ended) else 1)


#: Builders a launcher keeps forked ahead, each waiting on the socket itself.
PARKED_BUILDERS = 2


def serve(sock_fd: int) -> None:
    """The launcher: one long-lived nsinit, so no sandbox pays for an interpreter start
    and these imports (~21 ms of a cold start, bench coldstart).

    It keeps ``PARKED_BUILDERS`` children forked ahead, each blocked on the socket (a
    seqpacket datagram goes to exactly one reader), so a request finds its builder
    forked already (~2 ms); each builder that takes one says so on a pipe, and the
    launcher forks its replacement while it works. A request is one datagram whose
    passed fds are the sandbox's config pipe, network namespace, status pipe and log
    pipe (and a snapshot template's control socket); the config is read by the builder,
    never here. A request ``m`` is a restored SnapStart copy's mounts instead
    (copymounts.py: its config pipe, mount and PID namespaces, status pipe). The
    worker closing its end ends the launcher and its parked builders.
    """
    import signal
    import socket

    # builders exit as soon as their sandbox runs: reap them then, not at the next request
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: forkserver.reap_children())
    sock = socket.socket(fileno=sock_fd)
    took_r, took_w = os.pipe()
    parked = 0
    while True:
        while parked < PARKED_BUILDERS:
            if os.fork() == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a runtime waits for its own
                os.close(took_r)
                _parked_builder(socket, sock, took_w)
            parked += 1
        try:
            said = os.read(took_r, 1)
        except InterruptedError:
            continue
        forkserver.reap_children()
        if said != b"t":  # the worker hung up (or every builder is gone)
            os._exit(0)
        parked -= 1


def _parked_builder(socket: Any, sock: Any, took_w: int) -> None:
    """Waits for one request, then builds that sandbox; never returns."""
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 16, 8)
        except InterruptedError:
            continue
        break
    sock.close()
    with _suppress():  # EPIPE: the launcher ended first (a hang-up reaches every builder)
        os.write(took_w, b"t" if data else b"h")
    os.close(took_w)
    if data == b"m" and len(fds) == 4:  # a SnapStart copy's mounts (copymounts.py)
        with os.fdopen(fds[0], "rb") as fh:
            copymounts.prepare(marshal.loads(fh.read()), fds[1], fds[2], fds[3])
    if data != b"s" or len(fds) not in (4, 5):
        for fd in fds:
            os.close(fd)
        os._exit(0)
    config_fd, netns_fd, status_fd, log_fd = fds[:4]
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    with os.fdopen(config_fd, "rb") as fh:
        cfg = marshal.loads(fh.read())
    cfg["netns_fd"], cfg["status_fd"] = netns_fd, status_fd
    if len(fds) == 5:
        cfg["control_fd"] = fds[4]
    run(cfg)


def main() -> None:
    """``nsinit --serve FD [--preload CLIENT.pyc] [--join CGROUP_PROCS]...``

    It joins its cgroups first, before it imports or forks anything: the crash sweep of
    its instance finds it, and every builder it forks, there."""
    options = sys.argv[3:]
    pairs = list(zip(options[::2], options[1::2], strict=False))
    for flag, value in pairs:
        if flag == "--join":
            with open(value, "w") as fh:
                fh.write(str(os.getpid()))
    for flag, value in pairs:
        if flag == "--preload":
            preload(value)
    serve(int(sys.argv[2]))


def run(cfg: dict[str, Any]) -> None:
    """Builds one sandbox from its config; never returns."""
    status = os.fdopen(int(cfg["status_fd"]), "w", buffering=1)
    try:
        for procs in cfg["cgroup_procs"]:
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))
        linux.setns(int(cfg["netns_fd"]), linux.CLONE_NEWNET)
        os.close(int(cfg["netns_fd"]))
        if cfg.get("exec"):  # gVisor: runsc builds the sandbox in this cgroup and netns
            pid = os.fork()
            if pid == 0:
                status.close()
                supervise([str(a) for a in cfg["exec"]], str(cfg["cgroup_procs"][0]))
            status.write(f"pid {pid}\n")
            status.flush()
            os._exit(0)
        linux.unshare(
            linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWPID | linux.CLONE_NEWCGROUP
        )
        with open(str(cfg["seccomp"]), "rb") as fh:
            program = fh.read()
        if cfg.get("seccomp_restored"):  # a template: its copies' program, read while we can
            with open(str(cfg["seccomp_restored"]), "rb") as fh:
                cfg["restored_program"] = fh.read()
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                status.close()
                child(cfg, program, go_r, ready_w)
            except BaseException as exc:
                os.write(2, f"kindling sandbox init failed: {exc}\n".encode())
            os._exit(120)
        os.close(ready_w)  # so that a child dying early reads as EOF, not as a hang
        os.close(go_r)
        if os.read(ready_r, 1) != b"u":
            raise RuntimeError("sandbox child died before entering its user namespace")
        host_uid = int(cfg["host_uid"])
        with open(f"/proc/{pid}/setgroups", "w") as fh:
            fh.write("deny")
        with open(f"/proc/{pid}/uid_map", "w") as fh:
            fh.write(f"{SANDBOX_UID} {host_uid} 1\n")
        with open(f"/proc/{pid}/gid_map", "w") as fh:
            fh.write(f"{SANDBOX_GID} {host_uid} 1\n")
        os.write(go_w, b"k")
        status.write(f"pid {pid}\n")
    except BaseException as exc:
        status.write(f"error {type(exc).__name__}: {exc}\n")
        status.flush()
        os._exit(1)
    status.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
