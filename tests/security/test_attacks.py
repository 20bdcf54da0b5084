"""Each attack, its expected outcome inside, and a check from the host."""
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

from conftest import attack, nestbox

pytestmark = pytest.mark.sandbox

LIBC = ("import ctypes, errno, json, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def err(r):\n    return 'ok' if r != -1 else errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())\n")


def out_json(r):
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


# --- reading a host canary through /proc ---

@pytest.mark.parametrize("how", ["/proc/1/root", "/proc/self/root", "/proc/*/cwd", "/proc/self/fd", "/proc/1/fd"])
def test_canary_through_proc(canary, how):
    path, secret = canary
    code = (f"import glob, os, json\nfound = []\nfor base in glob.glob('{how}') + glob.glob('{how}/*'):\n"
            f"    for p in (base + '{path}', base):\n"
            "        try:\n            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)\n"
            "            found.append(os.read(fd, 4096).decode(errors='replace'))\n"
            "        except OSError:\n            pass\nprint(json.dumps(found))")
    r = attack(code)
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout


def test_canary_through_mountinfo_paths(canary):
    """Even knowing the host path, no mount source leads to it."""
    path, secret = canary
    r = attack(f"import os\nfor p in ('{path}', '/proc/1/root{path}', '/proc/1/cwd{path}'):\n"
               "    print(os.path.exists(p))")
    assert r.stdout.split() == ["False"] * 3, r.stdout


# --- syscalls that would leave the sandbox: each EPERM, and the report counts it ---

SYSCALLS = {
    "open_by_handle_at": "libc.open_by_handle_at(-100, ctypes.create_string_buffer(128), 0)",
    "mount": "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
    "fsopen": "libc.syscall(430, b'tmpfs', 0)",
    "open_tree": "libc.syscall(428, -100, b'/', 1)",
    "unshare": "libc.unshare(0x10000000)",  # CLONE_NEWUSER: a nested user namespace
    "setns": "libc.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0)",
    "ptrace": "libc.ptrace(16, 1, 0, 0)",  # PTRACE_ATTACH to pid 1
    "keyctl": "libc.syscall(250, 0, 0, 0, 0)",
    "bpf": "libc.syscall(321, 0, 0, 0)",
    "perf_event_open": "libc.syscall(298, ctypes.create_string_buffer(128), 0, -1, -1, 0)",
    "userfaultfd": "libc.syscall(323, 0)",
    "io_uring_setup": "libc.syscall(425, 1, ctypes.create_string_buffer(120))",
    "personality": "libc.personality(0x0040000)",  # ADDR_NO_RANDOMIZE
    "clock_settime": "libc.clock_settime(0, ctypes.create_string_buffer(16))",
    "ioctl": "libc.ioctl(0, 0x5412, ctypes.c_char_p(b'x'))",  # TIOCSTI
}


@pytest.mark.parametrize("name", sorted(SYSCALLS))
def test_denied_syscall(name, tmp_path):
    res = tmp_path / "r.json"
    r = attack(LIBC + f"print(json.dumps(err({SYSCALLS[name]})))", opts=["--result", res], stdin=subprocess.DEVNULL)
    assert out_json(r) == "EPERM", r.stdout
    denied = json.loads(res.read_text())["denied"]
    assert denied is None or denied.get(name, 0) >= 1, denied  # the host saw the attempt


# machine code run from an mmap'ed page: `int 0x80` (the i386 entry point) and the x32
# entry point, each calling mount; neither may get past the filter
I386_MOUNT = "b8 15 00 00 00 31 db 31 c9 31 d2 cd 80 c3"  # mov eax,21; int 0x80; ret
X32_MOUNT = "b8 a5 00 00 40 31 ff 31 f6 31 d2 0f 05 c3"    # mov eax,0x400000a5; syscall; ret
# personality(ADDR_NO_RANDOMIZE) through each: the personality rule covers them too
I386_PERSONALITY = "b8 88 00 00 00 bb 00 00 04 00 cd 80 c3"  # mov eax,136; mov ebx,0x40000; int 0x80
X32_PERSONALITY = "b8 87 00 00 40 bf 00 00 04 00 0f 05 c3"   # mov eax,0x40000087; mov edi,0x40000; syscall


@pytest.mark.parametrize("name, code", [("i386-mount", I386_MOUNT), ("x32-mount", X32_MOUNT),
                                        ("i386-personality", I386_PERSONALITY),
                                        ("x32-personality", X32_PERSONALITY)])
def test_compat_entry_points(name, code):
    if os.uname().machine != "x86_64":
        pytest.skip("x86-64 only")
    r = attack("import ctypes, mmap, json\n"
               f"code = bytes.fromhex('{code}')\n"
               "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
               "m.write(code)\naddr = ctypes.addressof(ctypes.c_char.from_buffer(m))\n"
               "f = ctypes.CFUNCTYPE(ctypes.c_int)(addr)\nprint(json.dumps(f()))")
    # -EPERM from the filter, or -ENOSYS where the kernel has no such entry point
    assert out_json(r) in (-1, -38), r.stdout


# --- the host's processes, ports and sockets ---

def test_signal_to_a_host_pid():
    victim = subprocess.Popen(["sleep", "60"])
    try:
        r = attack(LIBC + f"print(json.dumps([err(libc.kill({victim.pid}, 9)), err(libc.kill(-1, 9))]))")
        assert r.returncode in (0, -9, 137), r.stderr
        time.sleep(0.05)
        assert victim.poll() is None, "a host process was killed from the sandbox"
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_host_loopback_port(kind):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    if kind == "tcp":
        s.listen()
    s.setblocking(False)
    try:
        r = attack("import socket, json\nres = []\nfor host in ('127.0.0.1', '::1', '10.0.2.2'):\n"
                   "    try:\n"
                   f"        c = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.{'SOCK_STREAM' if kind == 'tcp' else 'SOCK_DGRAM'})\n"
                   "        c.settimeout(1)\n"
                   f"        c.connect((host, {port})); c.send(b'attack'); res.append('sent')\n"
                   "    except OSError as e:\n        res.append(type(e).__name__)\nprint(json.dumps(res))")
        assert r.returncode == 0, r.stderr
        with pytest.raises(BlockingIOError):
            s.accept() if kind == "tcp" else s.recv(100)  # the host got nothing
    finally:
        s.close()


def test_host_abstract_unix_socket():
    name = f"\0nestbox-canary-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(name)
    s.listen()
    s.setblocking(False)
    try:
        r = attack("import socket, json\nc = socket.socket(socket.AF_UNIX)\n"
                   f"try:\n    c.connect({name!r}); print(json.dumps('connected'))\n"
                   "except OSError as e:\n    print(json.dumps(type(e).__name__))")
        assert out_json(r) != "connected"
        with pytest.raises(BlockingIOError):
            s.accept()
    finally:
        s.close()


# --- machine-wide knobs ---

def test_proc_sys_and_sys_and_cgroup_writes():
    before = open("/proc/sys/kernel/hostname").read()
    r = attack("import json\nres = {}\nfor p in ('/proc/sys/kernel/hostname', '/proc/sysrq-trigger', "
               "'/sys/fs/cgroup/cgroup.procs', '/sys/kernel/mm/transparent_hugepage/enabled'):\n"
               "    try:\n        open(p, 'w').write('pwned'); res[p] = 'written'\n"
               "    except OSError as e:\n        res[p] = e.errno\nprint(json.dumps(res))")
    assert "written" not in out_json(r).values(), r.stdout
    assert open("/proc/sys/kernel/hostname").read() == before


def test_setuid_binary_gives_nothing():
    r = attack("import os, json, subprocess\n"
               "nnp = [l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0].split()[1]\n"
               "p = subprocess.run(['/usr/bin/su', '-c', 'id -u', 'root'], capture_output=True, text=True, stdin=subprocess.DEVNULL)\n"
               "print(json.dumps([nnp, p.returncode, p.stdout.strip()]))")
    nnp, rc, out = out_json(r)
    assert nnp == "1" and out != "0", r.stdout


# --- exhaustion: the sandbox ends, the host is untouched ---

def test_fork_bomb():
    r = attack("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        os._exit(0)",
               opts=["--pids", "64", "--timeout", "20", "--kill-grace", "1"], timeout=60)
    assert r.returncode in (0, 4) or r.returncode > 128, r.stderr


def test_memory_bomb():
    r = attack("x = []\nwhile True:\n    x.append(bytearray(16 << 20))", opts=["--memory", "128M", "--timeout", "20"])
    assert r.returncode != 0  # MemoryError or OOM kill; the host lives on


@pytest.mark.parametrize("where", ["/tmp", "/out"])
def test_filling_tmpfs(where):
    r = attack(f"import errno, json\nf = open('{where}/fill', 'wb')\ntry:\n"
               "    while True:\n        f.write(b'x' * (1 << 20)); f.flush()\n"
               "except OSError as e:\n    print(json.dumps(errno.errorcode[e.errno]))",
               opts=["--tmpfs", f"{where}:16M"] if where != "/tmp" else ["--tmp-size", "16M"])
    assert out_json(r) == "ENOSPC"


def test_fd_exhaustion():
    r = attack("import os, json\nfds = []\ntry:\n    while True:\n        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
               "except OSError as e:\n    print(json.dumps(e.errno))")
    assert out_json(r) == 24  # EMFILE, inside only


def test_double_forked_setsid_daemon():
    marker = f"{uuid.uuid4().hex}"
    r = attack(f"import os, subprocess\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
               f"        os.execv('/bin/sleep', ['sleep', '300', '{marker}'])\n    os._exit(0)\nos.wait()\nprint('parent exits')")
    assert r.returncode == 0, r.stderr
    time.sleep(0.1)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", "a daemon outlived its sandbox"


def test_stdout_flood_is_bounded_by_the_reader():
    """64 MiB of output: the sandbox blocks on its pipe, never on a host file."""
    r = attack("import sys\nfor _ in range(64):\n    sys.stdout.buffer.write(b'x' * (1 << 20))",
               capture_output=True, text=False, timeout=60)
    assert r.returncode == 0 and len(r.stdout) == 64 << 20
