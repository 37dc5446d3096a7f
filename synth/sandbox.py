"""A real sandbox for untrusted Python: bubblewrap namespaces + seccomp + rlimits.

Each program runs in its own process tree, started as::

    [setuid to a per-run uid when we are root] -> bwrap --unshare-all --unshare-user ... python3 -I -S -

and gets, on purpose, very little:

- **No network.** A new network namespace (only a down/unused loopback), and a seccomp filter
  that kills the process on ``socket(2)`` (and on ``io_uring``, which could bypass it).
- **No host files.** The mount namespace holds only the interpreter and its stdlib (read-only),
  the system shared libraries, a fresh ``/proc`` of its own pid namespace and a minimal ``/dev``.
  ``/etc``, ``/home``, ``/root``, ``/work``, ``/opt``... simply do not exist in there.
- **One writable place**: a private size-capped tmpfs at ``/tmp`` (also the cwd and ``$HOME``),
  thrown away with the sandbox. The root is remounted read-only.
- **Limits**: CPU seconds (``RLIMIT_CPU``), wall seconds (a timer in the parent), address space
  (``RLIMIT_AS``), processes (``RLIMIT_NPROC``; counted per uid, so as root every run gets its own
  uid from a high range nobody else uses), file size (``RLIMIT_FSIZE``), open files, no core
  dumps, and an output cap enforced by the parent while it reads the pipes.
- **Kill everything**: bwrap runs in its own session/process group; on any limit the parent
  SIGKILLs that group, and since the program is in a new pid namespace whose init is bwrap's
  child (``--die-with-parent``), everything inside dies with it — double-forked daemons too.
- **Seccomp** (a hand-assembled BPF program handed to bwrap): kills the process on network
  sockets, ptrace, mount/namespace/keyring/bpf/perf/module/kexec/reboot syscalls, x32 ABI calls
  and ``clone`` with namespace flags; ``clone3`` returns ENOSYS so libc falls back to ``clone``.

If any of this cannot be set up (no ``bwrap``, user namespaces disabled, seccomp refused), the
sandbox raises :class:`SandboxUnavailable`: nothing ever runs unsandboxed.

A program "answers" by printing; what the verifier reads is the last non-empty line of stdout.
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

#: exit status bwrap reports for a child killed by signal N is 128 + N
_SIGNAL_BASE = 128

# -- seccomp BPF ---------------------------------------------------------------------------------

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_CLONE_NAMESPACE_FLAGS = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

# x86_64 syscall numbers the sandbox kills on sight
_KILL_SYSCALLS = {
    "socket": 41, "ptrace": 101, "syslog": 103, "vhangup": 153, "pivot_root": 155, "chroot": 161,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176,
    "quotactl": 179, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_getfd": 438,
    "mount_setattr": 442,
}
_NR_CLONE = 56
_NR_CLONE3 = 435


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def seccomp_program() -> bytes:
    """The BPF filter (struct sock_filter[]) that bwrap installs with ``--seccomp FD``."""
    ld_w_abs, jeq_k, jge_k, jset_k, ret_k = 0x20, 0x15, 0x35, 0x45, 0x06
    prog = [
        _bpf(ld_w_abs, 0, 0, 4),                      # A = arch
        _bpf(jeq_k, 1, 0, _AUDIT_ARCH_X86_64),
        _bpf(ret_k, 0, 0, _RET_KILL_PROCESS),         # another ABI: kill
        _bpf(ld_w_abs, 0, 0, 0),                      # A = nr
        _bpf(jge_k, 0, 1, _X32_SYSCALL_BIT),
        _bpf(ret_k, 0, 0, _RET_KILL_PROCESS),         # x32 calls: kill
        _bpf(jeq_k, 0, 1, _NR_CLONE3),
        _bpf(ret_k, 0, 0, _RET_ERRNO | errno.ENOSYS),  # clone3: ENOSYS -> libc uses clone
    ]
    for nr in sorted(_KILL_SYSCALLS.values()):
        prog.append(_bpf(jeq_k, 0, 1, nr))
        prog.append(_bpf(ret_k, 0, 0, _RET_KILL_PROCESS))
    prog += [
        _bpf(jeq_k, 0, 3, _NR_CLONE),
        _bpf(ld_w_abs, 0, 0, 16),                     # A = low 32 bits of clone flags
        _bpf(jset_k, 0, 1, _CLONE_NAMESPACE_FLAGS),
        _bpf(ret_k, 0, 0, _RET_KILL_PROCESS),
        _bpf(ret_k, 0, 0, _RET_ALLOW),
    ]
    return b"".join(prog)


# -- limits and results ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits. Defaults fit short program-of-thought snippets."""

    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 512          # address space (RLIMIT_AS); CPython needs ~30 MB
    max_procs: int = 16           # processes+threads of the run's uid (RLIMIT_NPROC)
    max_output_bytes: int = 1_000_000   # stdout + stderr together
    max_file_mb: int = 16         # largest file it may write, and the size of its /tmp
    max_open_files: int = 64


@dataclass
class SandboxResult:
    """What happened: ``status`` is ok | error | timeout | violation (see ``reason``)."""

    status: str
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    stdout_truncated: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def last_line(self) -> str | None:
        lines = [ln.strip() for ln in self.stdout.splitlines() if ln.strip()]
        return lines[-1] if lines else None


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up here; nothing was run."""


# Python exceptions whose text in stderr tells which limit a program ran into. A program can
# only make its own verdict worse by faking one, so reading them from stderr is safe.
_LIMIT_SIGNS = (
    ("MemoryError", "memory limit (address space) exceeded"),
    ("Resource temporarily unavailable", "process limit reached (fork/thread refused)"),
    ("Read-only file system", "write outside the sandbox's private /tmp refused (read-only file system)"),
    ("File too large", "file size limit exceeded"),
    ("No space left on device", "private /tmp is full"),
    ("Too many open files", "open-file limit reached"),
    ("Operation not permitted", "operation not permitted in the sandbox"),
    ("Permission denied", "permission denied in the sandbox"),
)

_uid_lock = threading.Lock()
_uid_next = 0
#: uids handed to sandboxed runs when we are root: unused by any real account
UID_BASE = 1_000_000_000


def _fresh_uid() -> int:
    global _uid_next
    with _uid_lock:
        _uid_next = (_uid_next + 1) % 100_000
        return UID_BASE + (os.getpid() % 10_000) * 100_000 + _uid_next


def _default_python() -> tuple[str, list[str]]:
    """(interpreter, read-only folders it needs): the system python3 with only its stdlib."""
    for exe in ("/usr/bin/python3",):
        if os.path.exists(exe):
            real = os.path.realpath(exe)
            ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
            libdir = f"/usr/lib/{Path(real).name}"
            if not os.path.isdir(libdir):
                libdir = f"/usr/lib/{ver}"
            return real, [libdir]
    base = os.path.realpath(sys.base_prefix)
    exe = os.path.realpath(os.path.join(base, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}"))
    return exe, [base]


class Sandbox:
    """Runs Python source in a fresh bubblewrap sandbox per call. Thread-safe; one process each."""

    def __init__(self, limits: SandboxLimits | None = None, python: str | None = None):
        self.limits = limits or SandboxLimits()
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (`bwrap`) is not installed; install it (Debian: apt-get install bubblewrap). "
                "assay never runs generated code without a sandbox."
            )
        if python is None:
            self.python, self.ro_paths = _default_python()
        else:
            self.python = os.path.realpath(python)
            self.ro_paths = [str(Path(self.python).parent.parent)]
        self._filter = seccomp_program()
        self._checked = False

    # -- public -----------------------------------------------------------------------------------

    def check(self) -> None:
        """Prove the sandbox works here (runs, no network, seccomp active); else raise."""
        if self._checked:
            return
        self._checked = True
        r = self.run("import os\nprint(sum(range(10)), os.getuid() != 0)")
        if r.status != "ok" or r.last_line != "45 True":
            raise SandboxUnavailable(f"the sandbox could not run a trivial program: {r.status}: {r.reason} {r.stderr[-500:]}")
        r = self.run("import socket\nsocket.socket()\nprint('escaped')")
        if r.status != "violation" or "escaped" in r.stdout:
            raise SandboxUnavailable(f"seccomp is not enforced in the sandbox ({r.status}: {r.reason}); refusing to run code")

    def run(self, source: str) -> SandboxResult:
        lim = self.limits
        seccomp_r, seccomp_w = os.pipe()
        os.write(seccomp_w, self._filter)  # < 64 KiB: fits the pipe buffer
        os.close(seccomp_w)
        argv = self._argv(seccomp_r)
        as_root = os.geteuid() == 0
        uid = _fresh_uid() if as_root else os.getuid()
        nproc = lim.max_procs + 3  # bwrap, its pid-1 and the interpreter
        if not as_root:
            nproc += _count_procs(uid)

        def preexec() -> None:
            os.setsid()
            resource.setrlimit(resource.RLIMIT_CPU, (lim.cpu_s, lim.cpu_s + 1))
            resource.setrlimit(resource.RLIMIT_AS, (lim.memory_mb << 20, lim.memory_mb << 20))
            resource.setrlimit(resource.RLIMIT_FSIZE, (lim.max_file_mb << 20, lim.max_file_mb << 20))
            resource.setrlimit(resource.RLIMIT_NOFILE, (lim.max_open_files, lim.max_open_files))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if as_root:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(seccomp_r,), preexec_fn=preexec, close_fds=True, env={},
            )
        except OSError as e:
            raise SandboxUnavailable(f"cannot start bwrap: {e}") from None
        finally:
            os.close(seccomp_r)
        try:
            return self._supervise(proc, source, t0)
        finally:
            _kill_group(proc)

    # -- internals ----------------------------------------------------------------------------------

    def _argv(self, seccomp_fd: int) -> list[str]:
        lim = self.limits
        argv = [
            self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
        ]
        libs: list[str] = []
        for p in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
            real = os.path.realpath(p)
            if os.path.isdir(real) and real not in libs:
                libs.append(real)
                argv += ["--ro-bind", real, real]
        for p, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/bin", "usr/bin")):
            if os.path.islink(p):
                argv += ["--symlink", target, p]
        for p in [*self.ro_paths, self.python]:
            argv += ["--ro-bind", p, p]
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(lim.max_file_mb << 20), "--tmpfs", "/tmp",
            "--remount-ro", "/", "--chdir", "/tmp",
            "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "PYTHONHASHSEED", "0", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--seccomp", str(seccomp_fd),
            "--", self.python, "-I", "-S", "-B", "-",
        ]
        return argv

    def _supervise(self, proc: subprocess.Popen[bytes], source: str, t0: float) -> SandboxResult:
        lim = self.limits
        assert proc.stdin and proc.stdout and proc.stderr
        try:
            proc.stdin.write(source.encode("utf-8", "replace"))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        bufs: dict[str, bytearray] = {"out": bytearray(), "err": bytearray()}
        total = 0
        over = False
        timed_out = False
        deadline = t0 + lim.wall_s
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                total += len(chunk)
                room = lim.max_output_bytes - (len(bufs["out"]) + len(bufs["err"]))
                bufs[key.data] += chunk[: max(room, 0)]
                if total > lim.max_output_bytes:
                    over = True
                    break
            if over:
                break
        sel.close()
        if timed_out or over:
            _kill_group(proc)
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic() + 1.0))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            timed_out = True
            rc = proc.wait()
        wall = time.monotonic() - t0
        out = bufs["out"].decode("utf-8", "replace")
        err = bufs["err"].decode("utf-8", "replace")
        if over:
            return SandboxResult("violation", f"output limit: more than {lim.max_output_bytes:,} bytes printed",
                                 rc, out, err, wall, stdout_truncated=True)
        if timed_out:
            return SandboxResult("timeout", f"wall-time limit: still running after {lim.wall_s:g} s", rc, out, err, wall)
        if rc == 0:
            return SandboxResult("ok", "", rc, out, err, wall)
        if rc is not None and rc > _SIGNAL_BASE:
            sig = rc - _SIGNAL_BASE
            if sig == signal.SIGSYS:
                return SandboxResult("violation", "forbidden system call (seccomp killed the program: network, "
                                     "ptrace, mount, namespaces...)", rc, out, err, wall)
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and wall >= 0.9 * lim.cpu_s):
                return SandboxResult("timeout", f"cpu-time limit: more than {lim.cpu_s} s of CPU", rc, out, err, wall)
            if sig == signal.SIGXFSZ:
                return SandboxResult("violation", "file size limit exceeded", rc, out, err, wall)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            return SandboxResult("error", f"killed by {name}", rc, out, err, wall)
        tail = err.strip().splitlines()[-1] if err.strip() else ""
        for sign, why in _LIMIT_SIGNS:
            if sign in tail:
                return SandboxResult("violation", f"{why}: {tail[:300]}", rc, out, err, wall)
        return SandboxResult("error", f"exit status {rc}: {tail[:300]}" if tail else f"exit status {rc}", rc, out, err, wall)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL bwrap's whole process group; its pid namespace dies with its init."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for f in (proc.stdout, proc.stderr, proc.stdin):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _count_procs(uid: int) -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n
