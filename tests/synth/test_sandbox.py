"""Escape attempts against the sandbox: each must be contained, named, and leave the host as it was."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from synth.sandbox import UID_BASE, Sandbox, SandboxLimits, SandboxUnavailable, seccomp_program
from synth.verify import judge


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    s = Sandbox(SandboxLimits(wall_s=6, cpu_s=2, memory_mb=256, max_procs=16, max_output_bytes=200_000))
    s.check()
    return s


def _live_sandbox_procs() -> list[str]:
    """Non-zombie processes that run under a sandbox uid (there must be none after a run)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{d}")
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        if st.st_uid >= UID_BASE and stat.rsplit(")", 1)[1].split()[0] != "Z":
            out.append(f"{d}: {stat[:80]}")
    return out


def _no_leftovers() -> None:
    deadline = time.monotonic() + 3
    while _live_sandbox_procs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_sandbox_procs() == []


def test_plain_program_runs_and_answers(sb):
    r = sb.run("from fractions import Fraction\nprint('work')\nprint(Fraction(1, 3) + Fraction(1, 6))")
    assert r.status == "ok", r
    assert r.last_line == "1/2"
    assert judge(r, "0.5").verdict == "verified"


def test_socket_to_host_listener_is_blocked(sb):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    got: list[object] = []

    def accept() -> None:
        try:
            got.append(srv.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    prog = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')\nprint('connected')"
    r = sb.run(prog)
    t.join()
    srv.close()
    assert got == [], "the sandbox reached a listener on the host"
    assert r.status == "violation" and "forbidden system call" in r.reason
    assert "connected" not in r.stdout


def test_network_namespace_is_empty_even_without_seccomp(sb):
    # a socket created by socketpair (allowed) cannot reach anything; interfaces show only lo
    r = sb.run("import os\nprint(sorted(os.listdir('/proc/net/dev_snmp6')) if os.path.exists('/proc/net/dev_snmp6') "
               "else open('/proc/net/dev').read().count(':'))")
    assert r.status == "ok", r
    assert r.last_line in ("1", "['lo']")  # only loopback lives in its network namespace


def test_write_outside_temp_is_refused_and_host_unchanged(sb, tmp_path):
    target = tmp_path / "escaped.txt"
    prog = (
        "import os\n"
        "open('/tmp/inside.txt', 'w').write('ok')\n"          # the private /tmp works
        "print(os.path.exists('/tmp/inside.txt'))\n"
        f"open({str(target)!r}, 'w').write('x')\n"
    )
    r = sb.run(prog)
    assert not target.exists()
    assert not Path("/tmp/inside.txt").exists()
    assert r.stdout.splitlines()[0] == "True"
    assert r.status in ("violation", "error") and r.status != "ok"
    r2 = sb.run("open('/usr/lib/assay-escape', 'w').write('x')")
    assert r2.status == "violation" and "read-only" in r2.reason
    assert not Path("/usr/lib/assay-escape").exists()


def test_host_secrets_are_invisible(sb):
    ssh = Path.home() / ".ssh"
    made_dir = not ssh.exists()
    ssh.mkdir(mode=0o700, exist_ok=True)
    canary = ssh / f"assay-canary-{uuid.uuid4().hex}"
    secret = uuid.uuid4().hex
    canary.write_text(secret)
    try:
        prog = (
            "import os, glob\n"
            f"print(os.listdir(os.path.expanduser('~')), os.path.exists({str(ssh)!r}), os.path.exists('/etc/passwd'), "
            "os.path.exists('/work'), os.path.exists('/root'))\n"
            f"print(open({str(canary)!r}).read())\n"
        )
        r = sb.run(prog)
        assert secret not in r.stdout + r.stderr
        assert r.stdout.splitlines()[0] == "[] False False False False"
        assert r.status == "error" and "FileNotFoundError" in r.reason
    finally:
        canary.unlink()
        if made_dir:
            ssh.rmdir()


def test_fork_bomb_is_contained(sb):
    t0 = time.monotonic()
    r = sb.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    assert time.monotonic() - t0 < 15
    assert r.status in ("timeout", "violation"), r
    _no_leftovers()
    r3 = sb.run("import os\nwhile True: os.fork()")
    assert r3.status == "violation" and "process limit" in r3.reason
    _no_leftovers()


def test_infinite_loop_hits_cpu_limit(sb):
    # a generous wall limit so that the CPU limit (1 s) is what stops it even on a loaded machine
    r = Sandbox(SandboxLimits(wall_s=60, cpu_s=1)).run("while True:\n    pass")
    assert r.status == "timeout" and "cpu-time" in r.reason, r
    assert judge(r, "1").verdict == "timeout"


def test_sleeping_program_hits_wall_limit(sb):
    t0 = time.monotonic()
    r = sb.run("import time\ntime.sleep(60)")
    assert r.status == "timeout" and "wall-time" in r.reason
    assert time.monotonic() - t0 < 10


def test_memory_bomb(sb):
    r = sb.run("x = bytearray(4 * 1024**3)\nprint(len(x))")
    assert r.status == "violation" and "memory" in r.reason
    r2 = sb.run("xs = []\nwhile True:\n    xs.append(' ' * 10**6)")
    assert r2.status == "violation" and "memory" in r2.reason


def test_hundred_megabytes_of_output_is_cut(sb):
    t0 = time.monotonic()
    r = sb.run("import sys\nfor _ in range(100):\n    sys.stdout.write('y' * 1_000_000)\nprint(42)")
    assert r.status == "violation" and "output limit" in r.reason
    assert len(r.stdout) + len(r.stderr) <= 200_000
    assert time.monotonic() - t0 < 8


def test_kill_of_parent_and_everyone(sb):
    me = os.getpid()
    r = sb.run(f"import os, signal\nfor pid in ({me}, os.getppid(), 1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
               "    except OSError as e:\n        print('refused', pid, e.errno)\nprint('done')")
    assert r.status == "ok" and r.last_line == "done"
    r2 = sb.run("import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('after')")
    assert r2.status == "error" and "after" not in r2.stdout
    assert os.getpid() == me  # the test process (the sandbox's parent) is alive and well


def test_ctypes_raw_syscalls_are_blocked(sb):
    r = sb.run("import ctypes\nlibc = ctypes.CDLL(None)\nprint(libc.socket(2, 1, 0))")
    assert r.status == "violation" and "seccomp" in r.reason
    r2 = sb.run("import ctypes\nlibc = ctypes.CDLL(None)\nprint(libc.syscall(101, 16, 1, 0, 0))")  # ptrace(ATTACH, 1)
    assert r2.status == "violation"
    r3 = sb.run("import ctypes\nlibc = ctypes.CDLL(None)\nprint(libc.unshare(0x40000000))")  # CLONE_NEWNET
    assert r3.status == "violation"
    r4 = sb.run("import ctypes\nctypes.string_at(0)")
    assert r4.status == "error" and "SIGSEGV" in r4.reason


def test_daemon_escape_is_killed_with_the_group(sb):
    r = sb.run("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(300)\n"
               "    os._exit(0)\nprint('parent done')")
    assert r.status == "ok"
    _no_leftovers()


def test_seccomp_filter_is_well_formed():
    prog = seccomp_program()
    assert len(prog) % 8 == 0 and 0 < len(prog) // 8 < 4096


def test_missing_bwrap_fails_loudly(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        Sandbox()
