"""The process that becomes a sandbox. Run by the worker as host root; ends as the runtime.

Steps, in this order because each needs the privilege the next one gives up:

1. ahead of any request (a parked builder, see ``serve``): new UTS, IPC and PID
   namespaces, and the fork of the sandbox's PID 1, its "shell", which makes its own
   mount namespace and builds the request-independent part of its root on a tmpfs
   (host runtime files read-only, /etc, a minimal /dev, the masked /proc), then waits
   on a socketpair with its builder (ADR 0026);
2. on a request the builder moves the shell into the sandbox's cgroups and hands it the
   config, its log pipe and its network namespace; the shell joins that namespace, makes
   its cgroup namespace (now rooted at its own cgroup), mounts what the request decides
   (code at /var/task read-only, the runtime, a sized /tmp, /proc's memory and boot
   time), pivots into the new root, drops supplementary groups and enters a new user
   namespace; the builder maps the child's uid 993 to an unprivileged host uid, reports
   the child's pid to the worker and exits;
3. the child becomes uid/gid 993 with no capabilities and ``no_new_privs``, loads the
   seccomp program, and execs the runtime, or, in a runtime zygote, starts the runtime
   client it already imported.

It runs as a launcher (``--serve``, see launcher.py) that keeps builders forked ahead;
a builder reads its instructions (marshalled) from the config pipe it was handed and
reports one line on a status pipe: ``pid <host pid>`` or ``error <message>``.
"""

from __future__ import annotations

import marshal  # not json: importing json costs ~10 ms of every sandbox start
import os
import resource
import sys

BASE_PATH = sys.path[1:]  # what `python -S script` has after the script's own directory
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))

from kindling.worker.sandbox import copymounts, forkserver, linux, rootfs  # noqa: E402
from kindling.worker.sandbox.rootfs import SANDBOX_GID, SANDBOX_UID  # noqa: E402

TYPE_CHECKING = False  # typing itself costs an import on every sandbox start
if TYPE_CHECKING:
    from typing import Any


def shell(base: str, sock: Any) -> None:
    """PID 1 of a sandbox, forked ahead by a parked builder: builds the shell (its mount
    namespace and the request-independent root, ``build_shell``), then waits on ``sock``
    (its builder's socketpair) for the request: the config and the fds it needs (log,
    network namespace, a template's control socket). EOF (its builder ended without a
    request for it) ends it. Never returns."""
    import socket

    try:
        linux.unshare(linux.CLONE_NEWNS)  # its own: pivot_root must not move the parent's root
        linux.mount("", "/", None, linux.MS_REC | linux.MS_PRIVATE)
        root = rootfs.build_shell(base)
    except BaseException as exc:
        os.write(2, f"kindling sandbox shell failed: {exc}\n".encode())
        os._exit(120)
    while True:
        try:
            data, fds, flags, _addr = socket.recv_fds(sock, CONFIG_BYTES, 3)
        except InterruptedError:
            continue
        break
    if not data or flags & socket.MSG_TRUNC or len(fds) not in (2, 3):
        os._exit(0)
    try:
        cfg = marshal.loads(data)
        log_fd, netns_fd = fds[:2]
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        linux.setns(netns_fd, linux.CLONE_NEWNET)
        os.close(netns_fd)
        linux.unshare(linux.CLONE_NEWCGROUP)  # made now: its root is the sandbox's cgroup
        if len(fds) == 3:
            cfg["control_fd"] = fds[2]
        with open(str(cfg["seccomp"]), "rb") as fh:
            program = fh.read()
        if cfg.get("seccomp_restored"):  # a template: its copies' program, read while we can
            with open(str(cfg["seccomp_restored"]), "rb") as fh:
                cfg["restored_program"] = fh.read()
        rootfs.finish_root(cfg, base, root)
        child(cfg, program, root, sock.fileno())
    except BaseException as exc:
        os.write(2, f"kindling sandbox init failed: {exc}\n".encode())
    os._exit(120)


def child(cfg: dict[str, object], program: bytes, root: str, sock_fd: int) -> None:
    """The rest of PID 1's start, its root built: drop everything, become the runtime
    (by exec, or in-process from a runtime zygote)."""
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
    await_maps(sock_fd)
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


def await_maps(sock_fd: int) -> None:
    """Tells the builder its user namespace exists and waits until the builder wrote
    its uid/gid maps (``write_maps``)."""
    os.write(sock_fd, b"u")
    if os.read(sock_fd, 1) != b"k":
        os._exit(121)


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
#: The nice value of a parked builder and its shell while they work ahead of a request.
AHEAD_NICE = 19
#: The largest config a pre-built shell takes: the worker writes it into a pipe whose
#: buffer (64 KB) holds it (launcher.py), so no config is larger.
CONFIG_BYTES = 65536


def serve(sock_fd: int, base: str) -> None:
    """The launcher: one long-lived nsinit, so no sandbox pays for an interpreter start
    and these imports (~21 ms of a cold start, bench coldstart).

    It keeps ``PARKED_BUILDERS`` children forked ahead, each blocked on the socket (a
    seqpacket datagram goes to exactly one reader) with its sandbox's shell pre-built
    (``_parked_builder``), so a request finds that work done; each builder that takes
    one says so on a pipe, and the launcher forks its replacement while it works. A
    request is one datagram whose passed fds are the sandbox's config pipe, network
    namespace, status pipe and log pipe (and a snapshot template's control socket); the
    config is read by the builder, never here. A request ``m`` is a restored SnapStart
    copy's mounts instead (copymounts.py: its config pipe, mount and PID namespaces,
    status pipe). The worker closing its end ends the launcher and its parked builders,
    and each builder's shell with it.
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
                try:
                    _parked_builder(socket, sock, took_w, base)
                finally:  # never back into this loop in a builder
                    os._exit(1)
            parked += 1
        try:
            said = os.read(took_r, 1)
        except InterruptedError:
            continue
        forkserver.reap_children()
        if said != b"t":  # the worker hung up (or every builder is gone)
            os._exit(0)
        parked -= 1


def _parked_builder(socket: Any, sock: Any, took_w: int, base: str) -> None:
    """Pre-builds a sandbox's shell, waits for one request, then finishes that sandbox;
    never returns.

    Ahead of the request (ADR 0026): new UTS, IPC and PID namespaces (not the cgroup
    one: it must be made once the sandbox's cgroups are joined), and the fork of PID 1,
    which builds what no request changes (``shell``). A request that does not use the
    shell (gVisor's ``exec``, a copy's mounts ``m``, a hang-up) kills it first."""
    # The shell's build yields to the starts being served: a replacement builds it while
    # the request that replaced it is still on its way, on the same CPUs; its shell
    # gets the launcher's priority back with a request. The builder itself never runs
    # niced: in a burst, a niced fork would park the next builder only once the CPUs
    # are free, and every request would wait for that.
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    own = [os.open(f"/proc/self/ns/{ns}", os.O_RDONLY) for ns in ("pid", "uts", "ipc")]
    linux.unshare(linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWPID)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        for fd in (took_w, *own):
            os.close(fd)
        sock.close()
        ours.close()
        shell(base, theirs)
    theirs.close()
    os.setpriority(os.PRIO_PROCESS, pid, AHEAD_NICE)  # before a request can promote it
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 16, 8)
        except InterruptedError:
            continue
        break
    os.setpriority(os.PRIO_PROCESS, pid, priority)  # so it ends its build at full speed
    sock.close()
    with _suppress():  # EPIPE: the launcher ended first (a hang-up reaches every builder)
        os.write(took_w, b"t" if data else b"h")
    os.close(took_w)
    if data == b"s" and len(fds) in (4, 5):
        os.dup2(fds[3], 1)  # the builder's own errors go to the sandbox's log too
        os.dup2(fds[3], 2)
        with os.fdopen(fds[0], "rb") as fh:
            raw = fh.read()
        cfg = marshal.loads(raw)
        if not cfg.get("exec"):
            for fd in own:
                os.close(fd)
            hand_over(socket, cfg, raw, pid, ours, fds)
        _discard(pid, ours, own)
        run_exec(cfg, fds[1], fds[2])
    _discard(pid, ours, own)
    if data == b"m" and len(fds) == 4:  # a SnapStart copy's mounts (copymounts.py)
        with os.fdopen(fds[0], "rb") as fh:
            copymounts.prepare(marshal.loads(fh.read()), fds[1], fds[2], fds[3])
    for fd in fds:
        os.close(fd)
    os._exit(0)


def _discard(pid: int, ours: Any, own: list[int]) -> None:
    """Kills the pre-built shell (its mounts go with its mount namespace) and returns
    this builder to its launcher's PID, UTS and IPC namespaces, for a request that does
    not use the shell."""
    import signal

    with _suppress():
        os.kill(pid, signal.SIGKILL)
    with _suppress():
        os.waitpid(pid, 0)
    ours.close()
    kinds = (linux.CLONE_NEWPID, linux.CLONE_NEWUTS, linux.CLONE_NEWIPC)
    for fd, kind in zip(own, kinds, strict=True):
        linux.setns(fd, kind)
        os.close(fd)


def hand_over(
    socket: Any, cfg: dict[str, Any], raw: bytes, pid: int, ours: Any, fds: list[int]
) -> None:
    """Gives the pre-built shell ``pid`` its request: moves it into the sandbox's cgroups,
    passes it the config and its fds (log, network namespace, a template's control
    socket), writes its uid/gid maps when it asks; reports ``pid <pid>`` or
    ``error <why>`` on the status pipe. Never returns."""
    _config, netns_fd, status_fd, log_fd = fds[:4]
    status = os.fdopen(status_fd, "w", buffering=1)
    try:
        for procs in cfg["cgroup_procs"]:
            with open(procs, "w") as fh:
                fh.write(str(pid))
        socket.send_fds(ours, [raw], [log_fd, netns_fd, *fds[4:]])
        for fd in (netns_fd, log_fd, *fds[4:]):
            os.close(fd)
        write_maps(ours.fileno(), pid, int(cfg["host_uid"]))
        status.write(f"pid {pid}\n")
    except BaseException as exc:
        import signal

        with _suppress():
            os.kill(pid, signal.SIGKILL)
        status.write(f"error {type(exc).__name__}: {exc}\n")
        status.flush()
        os._exit(1)
    status.flush()
    os._exit(0)


def write_maps(sock_fd: int, pid: int, host_uid: int) -> None:
    """Once the shell made its user namespace (``await_maps``), maps its 993 to the
    sandbox's host uid and lets it go on."""
    if os.read(sock_fd, 1) != b"u":
        raise RuntimeError("sandbox child died before entering its user namespace")
    with open(f"/proc/{pid}/setgroups", "w") as fh:
        fh.write("deny")
    with open(f"/proc/{pid}/uid_map", "w") as fh:
        fh.write(f"{SANDBOX_UID} {host_uid} 1\n")
    with open(f"/proc/{pid}/gid_map", "w") as fh:
        fh.write(f"{SANDBOX_GID} {host_uid} 1\n")
    release(sock_fd)


def release(sock_fd: int) -> None:
    """Lets the shell go on past ``await_maps`` (the bench's trace times this alone:
    the child may run before this builder returns from it)."""
    os.write(sock_fd, b"k")


def main() -> None:
    """``nsinit --serve FD --root DIR [--preload CLIENT.pyc] [--join CGROUP_PROCS]...``

    It joins its cgroups first, before it imports or forks anything: the crash sweep of
    its instance finds it, and every builder it forks, there. ``--root``: an empty
    directory each pre-built shell mounts its tmpfs on, in its own mount namespace."""
    options = sys.argv[3:]
    pairs = list(zip(options[::2], options[1::2], strict=False))
    for flag, value in pairs:
        if flag == "--join":
            with open(value, "w") as fh:
                fh.write(str(os.getpid()))
    base = ""
    for flag, value in pairs:
        if flag == "--preload":
            preload(value)
        elif flag == "--root":
            base = value
    if not base:
        raise SystemExit("nsinit --serve needs --root DIR")
    rootfs.rehearse(base)
    serve(int(sys.argv[2]), base)


def run_exec(cfg: dict[str, Any], netns_fd: int, status_fd: int) -> None:
    """A sandbox whose own runtime builds it (gVisor's runsc, ``exec``): joins its
    cgroups and network namespace and runs it under ``supervise``. Never returns."""
    status = os.fdopen(status_fd, "w", buffering=1)
    try:
        for procs in cfg["cgroup_procs"]:
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))
        linux.setns(netns_fd, linux.CLONE_NEWNET)
        os.close(netns_fd)
        pid = os.fork()
        if pid == 0:
            status.close()
            supervise([str(a) for a in cfg["exec"]], str(cfg["cgroup_procs"][0]))
        status.write(f"pid {pid}\n")
    except BaseException as exc:
        status.write(f"error {type(exc).__name__}: {exc}\n")
        status.flush()
        os._exit(1)
    status.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
