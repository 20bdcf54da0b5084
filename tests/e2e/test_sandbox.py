"""`nestbox sandbox`: every containment property of the README's sandbox contract ("What a test sees"),
proven from inside the sandbox and checked from the host, in the manner of
bubblewrap's tests/test-run.sh. Each test fails if the property it names is broken.

All of them also run as the unprivileged user nobody (tests/run, marker `sandbox`).
As root the sandbox's uid 1000 is host nobody, so anything the sandbox must reach on
the host (bind sources, writable directories) is made accessible to nobody."""
import errno
import json
import os
import platform
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import NESTBOX, SYSTEM_BINDS, is_root, run, sandbox, sh

pytestmark = pytest.mark.sandbox

PY = "/usr/bin/python3"
ASAN = NESTBOX.exists() and b"__asan_init" in NESTBOX.read_bytes()


def py(code, *args, opts=(), **kw):
    """Runs a python snippet inside the sandbox."""
    return sandbox(PY, "-c", code, *args, opts=opts, **kw)


def open_to_nobody(path, mode):
    """chmods path to mode. Bind sources are opened with the caller's credentials, but
    as root what the sandbox then reads or writes in them it does as host nobody."""
    os.chmod(path, mode)


@pytest.fixture
def shared(tmp_path):
    """A host directory the sandbox may bind and write to (mode 0777)."""
    d = tmp_path / "shared"
    d.mkdir()
    open_to_nobody(d, 0o777)
    return d


def one_error_line(proc, rc=2):
    """The CLI's error convention: exit rc, nothing on stdout, one `nestbox: ` line."""
    assert proc.returncode == rc, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nestbox: "), proc.stderr
    return lines[0]


def result_json(path):
    return json.loads(Path(path).read_text())


def host_pids_with(token):
    """Host pids with token as one whole argument (this process excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if token.encode() in cmdline.split(b"\0"):
            found.append(int(entry))
    return found


# ---- filesystem: nothing of the host unless bound ----------------------------------------

def test_host_files_are_invisible(tmp_path):
    token = uuid.uuid4().hex
    canary = tmp_path / "canary"
    canary.write_text(token)
    open_to_nobody(tmp_path, 0o755)
    canary.chmod(0o644)
    paths = [str(canary)]
    etc_canary = Path("/etc") / f"nestbox-canary-{token}"
    if is_root():
        etc_canary.write_text(token)
        paths.append(str(etc_canary))
    try:
        for p in paths:
            r = sh(f'cat {p}; echo "rc=$?"')
            assert token not in r.stdout
            assert "rc=1" in r.stdout
            assert "No such file or directory" in r.stderr, r.stderr
        # Binding a sibling does not reveal the canary next to it.
        (tmp_path / "sub").mkdir(mode=0o755)
        r = sh("ls -a /data/..; cat /data/../canary", opts=["--ro-bind", tmp_path / "sub", "/data"])
        assert "canary" not in r.stdout and token not in r.stdout
        assert "No such file or directory" in r.stderr
    finally:
        if is_root():
            etc_canary.unlink()


def test_etc_is_generated():
    host_passwd = Path("/etc/passwd").read_text()
    r = sh("cat /etc/passwd; echo ---; ls -a /etc")
    assert r.returncode == 0, r.stderr
    passwd, listing = r.stdout.split("---\n")
    assert passwd == ("root:x:0:0:root:/root:/bin/sh\n"
                      "nestbox:x:1000:1000:nestbox:/tmp/home:/bin/sh\n"
                      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    # The host's lines (root's real entry, daemon, ...) do not appear.
    for line in host_passwd.splitlines():
        name = line.split(":")[0]
        if name not in ("root", "nobody"):
            assert f"\n{name}:" not in "\n" + passwd, name
    host_root = next(l for l in host_passwd.splitlines() if l.startswith("root:"))
    if host_root != "root:x:0:0:root:/root:/bin/sh":
        assert host_root not in passwd
    assert set(listing.split()) - {".", ".."} <= {"passwd", "group", "hosts", "nsswitch.conf"}
    assert "shadow" not in listing


def test_ro_bind_root_and_dev_are_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "existing").write_text("keep")
    open_to_nobody(ro, 0o777)
    (ro / "existing").chmod(0o666)  # writable but for the mount flag
    r = sh("echo x > /ro/new; echo x > /ro/existing; touch /newfile; mkdir /newdir; "
           "touch /dev/newnode; ln -s /x /dev/newlink; echo done",
           opts=["--ro-bind", ro, "/ro"])
    assert r.stdout.strip() == "done", r.stderr
    errs = r.stderr.splitlines()
    assert len(errs) == 6, r.stderr
    for line in errs:
        assert "Read-only file system" in line, r.stderr
    assert sorted(os.listdir(ro)) == ["existing"]
    assert (ro / "existing").read_text() == "keep"


def test_rw_bind_is_writable_and_visible_on_host(shared):
    token = uuid.uuid4().hex
    r = sh(f"echo {token} > /data/out && mkdir /data/d && echo ok > /data/d/f",
           opts=["--bind", shared, "/data"])
    assert r.returncode == 0, r.stderr
    assert (shared / "out").read_text() == token + "\n"
    assert (shared / "d" / "f").read_text() == "ok\n"
    # Written as the sandbox's user: the caller, or nobody when the caller is root.
    expected = 65534 if is_root() else os.geteuid()
    assert (shared / "out").stat().st_uid == expected


# ---- network -------------------------------------------------------------------------------

@pytest.fixture
def host_server():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    yield srv.getsockname()[1]
    srv.close()


CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print("connected")
except OSError as e:
    print("failed", e.errno)
"""


def test_host_loopback_unreachable(host_server):
    # The control: from the host, the server is reachable.
    c = socket.create_connection(("127.0.0.1", host_server), timeout=5)
    c.close()
    r = py(CONNECT, host_server)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("failed"), r.stdout
    assert r.stdout.split()[1] == str(errno.ECONNREFUSED)


LOOPBACK = """
import socket, threading
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
def serve():
    c, _ = srv.accept()
    c.sendall(c.recv(100).upper())
    c.close()
t = threading.Thread(target=serve)
t.start()
try:
    cl = socket.create_connection(("127.0.0.1", port), timeout=5)
except OSError as e:
    print("failed", e.errno)
    raise SystemExit(0)
cl.sendall(b"ping")
print(cl.recv(100).decode())
t.join()
"""


def test_loopback_inside_works():
    r = py(LOOPBACK)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "PING"


def test_network_none_has_no_loopback():
    r = py("""
import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    socket.create_connection(s.getsockname(), timeout=5)
    print("connected")
except OSError as e:
    print("failed", e.errno)
""", opts=["--network", "none"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("failed"), r.stdout


@pytest.mark.parametrize("mode", ["loopback", "none"])
def test_only_lo_exists(mode):
    r = sh("cat /proc/net/dev; ls /sys/class/net 2>/dev/null; true", opts=["--network", mode])
    assert r.returncode == 0, r.stderr
    ifaces = [l.split(":")[0].strip() for l in r.stdout.splitlines()[2:] if ":" in l]
    assert ifaces == ["lo"], r.stdout
    # The host has more than lo, else this proves little.
    host = [l.split(":")[0].strip() for l in Path("/proc/net/dev").read_text().splitlines()[2:]]
    if len(host) == 1:
        pytest.skip("the host itself has only lo")


# ---- credentials, capabilities, seccomp ----------------------------------------------------

def test_uid_gid_caps_nnp_seccomp():
    r = sh("id -u; id -g; id -G; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["1000", "1000", "1000"]
    fields = dict(re.split(r":\s+", l) for l in lines[3:])
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields[cap])
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


SYSCALLS = r"""
import ctypes, errno, json, os, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[a if isinstance(a, bytes) else ctypes.c_long(a) for a in args])
    if r == 0 and nr == 56:       # a clone that went through: we are the child
        os._exit(0)
    if r > 0 and nr == 56:
        os.waitpid(r, 0)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]

def in_child(nr, *args):
    # PTRACE_TRACEME makes our parent the tracer: do it in a child of ours, not in
    # the command itself, whose parent is the sandbox's init.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, call(nr, *args).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    return os.read(r, 100).decode()

CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
out = {
    "mount": call(165, b"none", b"/tmp", b"tmpfs", 0, 0),
    "unshare": call(272, CLONE_NEWUSER),
    "ptrace": in_child(101, 0, 0, 0, 0),
    "bpf": call(321, 5, 0, 0),
    "keyctl": call(250, 0, -3, 0),
    "clone3": call(435, 0, 0),
    "tiocsti": call(16, 0, 0x5412, 0),
    "tiocgwinsz": call(16, 0, 0x5413, 0),
    "clone_newuser": call(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "setns": call(308, 0, 0),
}
pid = os.fork()
if pid == 0:
    os._exit(7)
out["fork"] = os.WEXITSTATUS(os.waitpid(pid, 0)[1])
box = []
t = threading.Thread(target=lambda: box.append("ran"))
t.start(); t.join()
out["thread"] = box
print(json.dumps(out))
"""


def syscalls(opts=()):
    r = py(SYSCALLS, opts=opts, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 syscall numbers")
def test_seccomp_denies():
    out = syscalls()
    for name in ("mount", "unshare", "ptrace", "bpf", "keyctl", "tiocsti", "clone_newuser", "setns"):
        assert out[name] == "EPERM", (name, out)
    assert out["clone3"] == "ENOSYS"
    # fd 0 is /dev/null: any other ioctl says so, so the EPERM above is the filter's.
    assert out["tiocgwinsz"] == "ENOTTY"
    assert out["fork"] == 7
    assert out["thread"] == ["ran"]  # pthread_create falls back from clone3 to clone


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 syscall numbers")
def test_allow_syscall_lifts_a_denial():
    out = syscalls(opts=["--allow-syscall", "keyctl", "--allow-syscall", "ptrace"])
    assert out["keyctl"] != "EPERM", out
    assert out["ptrace"] == "ok", out  # PTRACE_TRACEME: the EPERM was seccomp's
    assert out["mount"] == "EPERM" and out["unshare"] == "EPERM"


TRACEME = """
import ctypes, os, signal, sys
assert ctypes.CDLL(None, use_errno=True).syscall(101, 0, 0, 0, 0) == 0   # PTRACE_TRACEME
pid = os.fork()                     # its SIGCHLD is a ptrace stop reported to init
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print("survived", flush=True)
os.kill(os.getpid(), int(sys.argv[1]))
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 syscall numbers")
def test_traced_command_stops_are_not_exits(tmp_path):
    # With ptrace allowed the command may make init its tracer; a ptrace stop is
    # neither an exit nor a death: the command runs on, its signals delivered.
    res = tmp_path / "result.json"
    r = py(TRACEME, int(signal.SIGUSR1), opts=["--allow-syscall", "ptrace", "--timeout", "30",
                                                "--result", res])
    assert r.stdout == "survived\n", (r.returncode, r.stdout, r.stderr)
    assert r.returncode == 128 + signal.SIGUSR1
    j = result_json(res)
    assert j["signal"] == signal.SIGUSR1 and j["timed_out"] is False, j


def test_allow_unknown_syscall_is_a_usage_error():
    r = sandbox("/bin/true", opts=["--allow-syscall", "nosuchcall"])
    line = one_error_line(r)
    assert "nosuchcall" in line


# ---- timeout -------------------------------------------------------------------------------

def test_timeout_kills_everything(shared):
    token = f"nestbox-timeout-{uuid.uuid4().hex}"
    grandchild = (
        "import os, signal, sys, time\n"
        "os.setsid()\n"
        "for s in (signal.SIGTERM, signal.SIGABRT, signal.SIGHUP, signal.SIGINT):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "open('/data/started', 'w').write(str(os.getpid()))\n"
        "while True:\n"
        "    time.sleep(1000)\n")
    # The command itself ignores SIGABRT and SIGTERM too: only SIGKILL can end it.
    script = f"trap '' ABRT TERM; ( {PY} -c \"$G\" {token} & ); exec sleep 100000"
    res = shared / "result.json"
    cmd = [str(NESTBOX), "sandbox", *SYSTEM_BINDS, "--bind", str(shared), "/data",
           "--setenv", "G", grandchild, "--timeout", "5", "--kill-grace", "1",
           "--result", str(res), "--", "/bin/sh", "-c", script]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The grandchild really runs (the 5 s timeout leaves Python time to start on a
        # loaded machine), and this scan does find it while it does.
        deadline = time.monotonic() + 60
        while not (shared / "started").exists() or not host_pids_with(token):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the grandchild never started"
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, (out, err)
    j = result_json(res)
    assert j["timed_out"] is True
    assert host_pids_with(token) == []


def test_timeout_sends_sigabrt_first():
    # faulthandler prints the stack on SIGABRT; a ready line proves it is armed.
    code = "import time\nprint('ready', flush=True)\ntime.sleep(1000)\n"
    r = sandbox(PY, "-c", code, opts=["--setenv", "PYTHONFAULTHANDLER", "1",
                                      "--timeout", "5", "--kill-grace", "5"])
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert r.stdout == "ready\n"
    assert "Fatal Python error: Aborted" in r.stderr, r.stderr
    assert "Current thread" in r.stderr or "most recent call first" in r.stderr.lower()
    assert "time.sleep" in r.stderr or 'File "<string>", line 3' in r.stderr


# ---- limits --------------------------------------------------------------------------------

def test_memory_limit(tmp_path):
    res = tmp_path / "result.json"
    r = sandbox(PY, "-c", "b = b'x' * (512 << 20); print('allocated', len(b))",
                opts=["--memory", "64M", "--result", res])
    assert "allocated" not in r.stdout
    assert r.returncode != 0
    j = result_json(res)
    backend = j["limits"]["memory"]
    if is_root():
        assert backend in ("cgroup1", "cgroup2"), j
        assert j["oom_killed"] is True, j
        assert r.returncode == 128 + 9 and j["signal"] == 9, (r.returncode, j)
    else:
        assert backend in ("rlimit", "cgroup1", "cgroup2"), j
        # Under ASan the sandbox's own init (nestbox code) cannot live within
        # RLIMIT_AS next to ASan's shadow mappings: it is stopped before Python is.
        if backend == "rlimit" and not ASAN:
            assert r.returncode == 1 and "MemoryError" in r.stderr, r.stderr


FORK_BOMB = """
import os, time
r, w = os.pipe()
failed = started = 0
for i in range(300):
    try:
        pid = os.fork()
    except BlockingIOError:
        failed += 1
        continue
    if pid == 0:
        os.close(w)
        os.read(r, 1)    # every child lives until the bomb is over
        os._exit(0)
    started += 1
os.close(w)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
print(started, failed)
"""


def test_fork_bomb_is_bounded(tmp_path):
    res = tmp_path / "result.json"
    r = sandbox(PY, "-c", FORK_BOMB, opts=["--pids", "64", "--timeout", "20", "--result", res])
    assert r.returncode == 0, r.stderr
    started, failed = map(int, r.stdout.split())
    assert failed > 0 and started < 64, (started, failed)
    j = result_json(res)
    assert j["limits"]["pids"] != "none", j
    assert j["timed_out"] is False


# ---- environment, names, exit codes --------------------------------------------------------

def test_environment_is_rebuilt():
    leak = f"NESTBOX_HOST_LEAK_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, **{leak: "secret", "HOME": "/root-of-host", "PATH": os.environ.get("PATH", "/usr/bin")})
    r = sandbox("/usr/bin/env", opts=["--setenv", "A", "1", "--setenv", "B", "two words"], env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == ["A=1", "B=two words"]
    r = sh("env", opts=["--setenv", "ONLY", "me"], env=env)
    assert sorted(r.stdout.splitlines()) == ["ONLY=me", "PWD=/"]
    assert leak not in r.stdout and "HOME" not in r.stdout


def test_hostname_and_hosts():
    r = sh("cat /proc/sys/kernel/hostname; uname -n; grep -w localhost /etc/hosts")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["nestbox", "nestbox"]
    assert any(l.split()[0] == "127.0.0.1" for l in lines[2:]), r.stdout
    r = py("import socket; print(socket.gethostbyname('localhost'), socket.gethostname())",
           opts=["--hostname", "other"])
    assert r.stdout.split() == ["127.0.0.1", "other"], r.stderr


def test_exit_codes(tmp_path):
    assert sh("exit 7").returncode == 7
    res = tmp_path / "result.json"
    r = sh("kill -SEGV $$", opts=["--result", res])
    assert r.returncode == 128 + 11
    j = result_json(res)
    assert j["signal"] == 11 and j["timed_out"] is False


@pytest.mark.parametrize("cmd", ["/nope/not-a-command", "no-such-command-anywhere"])
def test_command_not_found(cmd):
    line = one_error_line(sandbox(cmd))
    assert cmd in line


# ---- processes -----------------------------------------------------------------------------

ZOMBIES = """
import os, time
for i in range(20):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:      # the grandchild: orphaned, then exits
            time.sleep(0.05)
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)

def zombies():
    z = []
    for e in os.listdir('/proc'):
        if e.isdigit():
            try:
                st = open(f'/proc/{e}/stat').read()
            except OSError:
                continue
            if st.rsplit(')', 1)[1].split()[0] == 'Z':
                z.append(e)
    return z

for _ in range(100):
    time.sleep(0.1)
    if not zombies():
        break
print('zombies', len(zombies()), 'procs', sum(e.isdigit() for e in os.listdir('/proc')))
"""


def test_orphans_are_reaped():
    r = py(ZOMBIES)
    assert r.returncode == 0, r.stderr
    _, z, _, procs = r.stdout.split()
    assert int(z) == 0
    assert int(procs) <= 3  # init and this python (the orphans are gone)


def test_only_stdio_fds_cross(tmp_path):
    f = tmp_path / "secret"
    f.write_text("x")
    fd = os.open(f, os.O_RDONLY)
    os.dup2(fd, 42, inheritable=True)
    try:
        r = sandbox("/bin/ls", "/proc/self/fd", pass_fds=(42,))
        # the control: the extra fd does reach a plain child of the host
        host = subprocess.run(["/bin/ls", "/proc/self/fd"], pass_fds=(42,), capture_output=True, text=True)
    finally:
        os.close(42)
        os.close(fd)
    assert "42" in host.stdout.split()
    assert r.returncode == 0, r.stderr
    fds = sorted(map(int, r.stdout.split()))
    assert fds in ([0, 1, 2], [0, 1, 2, 3]), fds  # 3: ls's own directory fd


PID1_FDS = r"""
import os
reached = []
try:
    names = os.listdir('/proc/1/fd')
except OSError as e:
    names = []
    print('listdir', e.errno)
for n in names:
    try:
        reached.append(os.readlink('/proc/1/fd/' + n))
    except OSError:
        pass
print('reached', reached)
"""


def test_pid1_holds_no_host_descriptor(tmp_path):
    """The sandbox's pid 1 never execs: a host fd it kept would be reachable through
    /proc/1/fd by the command (same uid when nestbox runs unprivileged)."""
    d = tmp_path / "hostdir"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.dup2(fd, 43, inheritable=True)
    try:
        r = py(PID1_FDS, pass_fds=(43,))
    finally:
        os.close(43)
        os.close(fd)
    assert r.returncode == 0, r.stderr
    assert str(d) not in r.stdout and str(tmp_path) not in r.stdout, r.stdout
    # Either pid 1's fd table cannot be listed at all, or nothing in it is a host path.
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("reached")][0]
    assert "/" not in line.replace("'/dev/null'", ""), line


def test_no_controlling_terminal():
    import fcntl
    import termios
    master, slave = os.openpty()

    def take_tty():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    probe = ("import os\n"
             "try:\n"
             "    os.open('/dev/tty', os.O_RDWR); print('tty')\n"
             "except OSError as e:\n"
             "    print('no-tty', e.errno)\n"
             "print(os.getsid(0) == os.getpid())\n")
    try:
        # The control: with this setup a plain host child has the pty as its terminal.
        host = subprocess.run([PY, "-c", probe], preexec_fn=take_tty, stdin=slave,
                              capture_output=True, text=True, timeout=60)
        assert host.stdout.split()[0] == "tty", host
        r = subprocess.run([str(NESTBOX), "sandbox", *SYSTEM_BINDS, "--", PY, "-c", probe],
                           preexec_fn=take_tty, stdin=slave, capture_output=True, text=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["no-tty", str(errno.ENXIO), "True"], r.stdout


# ---- /proc ---------------------------------------------------------------------------------

PROC = """
import errno, json, os
out = {}
try:
    with open('/proc/sys/kernel/hostname', 'w') as f:
        f.write('hacked')
    out['write_hostname'] = 'ok'
except OSError as e:
    out['write_hostname'] = errno.errorcode[e.errno]
try:
    with open('/proc/sysrq-trigger', 'w') as f:
        f.write('h')
    out['sysrq'] = 'ok'
except OSError as e:
    out['sysrq'] = errno.errorcode[e.errno]
out['ro'] = {p: bool(os.statvfs('/proc/' + p).f_flag & os.ST_RDONLY)
             for p in ('sys', 'sysrq-trigger', 'irq', 'bus') if os.path.exists('/proc/' + p)}
out['proc_ro'] = bool(os.statvfs('/proc').f_flag & os.ST_RDONLY)
out['masked'] = {}
for p in ('kcore', 'keys', 'timer_list', 'sched_debug', 'kallsyms', 'kmsg'):
    try:
        with open('/proc/' + p, 'rb') as f:
            out['masked'][p] = len(f.read(4096))
    except FileNotFoundError:
        out['masked'][p] = 'absent'
    except OSError as e:
        out['masked'][p] = errno.errorcode[e.errno]
out['pids'] = sorted(int(e) for e in os.listdir('/proc') if e.isdigit())
out['hostname'] = open('/proc/sys/kernel/hostname').read().strip()
print(json.dumps(out))
"""


def test_proc_is_hardened():
    r = py(PROC, os.getpid())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["write_hostname"] != "ok" and out["hostname"] == "nestbox"
    assert out["sysrq"] in ("ENOENT", "EROFS", "EACCES", "EPERM"), out["sysrq"]
    assert out["ro"].get("sys") is True, out["ro"]
    if os.path.exists("/proc/sysrq-trigger"):  # this kernel may have no magic SysRq
        assert out["ro"].get("sysrq-trigger") is True, out["ro"]
    assert all(out["ro"].values()), out["ro"]
    assert out["proc_ro"] is False  # the rest of /proc is a normal procfs
    for name, n in out["masked"].items():
        assert n in (0, "absent"), (name, n)
    # Only the sandbox's own processes: init and the python; not the test runner.
    assert len(out["pids"]) <= 3, out["pids"]
    assert os.getpid() not in out["pids"] or os.getpid() <= 3


def test_host_processes_invisible():
    me = os.getpid()
    r = sh(f"test -e /proc/{me} && echo visible || echo hidden; ls /proc | grep -c '^[0-9]'")
    assert r.returncode == 0, r.stderr
    seen, count = r.stdout.split()
    if me > 10:
        assert seen == "hidden"
    assert int(count) <= 4  # init, sh, ls, grep


# ---- the command line ----------------------------------------------------------------------

def test_missing_bind_source_message():
    r = sandbox("/bin/true", opts=["--ro-bind", "/nope", "/x"])
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == "nestbox: --ro-bind /nope: No such file or directory\n"


@pytest.mark.parametrize("args,message", [
    (["--frobnicate", "--", "/bin/true"], "--frobnicate: unknown option or missing argument; see 'nestbox sandbox --help'"),
    (["--timeout", "abc", "--", "/bin/true"], "--timeout abc: expected a positive number of seconds"),
    (["--timeout", "-1", "--", "/bin/true"], "--timeout -1: expected a positive number of seconds"),
    (["--memory", "12x", "--", "/bin/true"], "--memory 12x: expected a size like 512M"),
    (["--pids", "0", "--", "/bin/true"], "--pids 0: expected a positive integer"),
    (["--network", "host", "--", "/bin/true"], "--network host: expected none or loopback"),
    (["--bind", "/tmp"], "--bind needs two arguments; see 'nestbox sandbox --help'"),
    ([], "no command given; see 'nestbox sandbox --help'"),
    (["--"], "no command given; see 'nestbox sandbox --help'"),
], ids=["unknown", "timeout-abc", "timeout-neg", "memory-12x", "pids-0", "network-host",
        "bind-one-arg", "no-command", "empty-command"])
def test_bad_options(args, message):
    """A usage error is one line that names the option and value at fault and what was
    expected, exit 2, nothing run."""
    r = run(["sandbox", *args])
    assert one_error_line(r) == "nestbox: " + message


def test_doctor():
    r = run(["doctor"])
    assert r.returncode == 0, r.stderr
    m = re.search(r"^\s*memory limit\s+(\S+)", r.stdout, re.M)
    assert m and m.group(1) in ("cgroup1", "cgroup2", "rlimit"), r.stdout
    r = run(["doctor", "--syscalls"])
    assert r.returncode == 0, r.stderr
    m = re.search(r"^\s+ptrace\s+(\S.*)$", r.stdout, re.M)
    assert m and len(m.group(1)) > 10, r.stdout


def test_no_user_namespaces_is_a_clear_error_naming_the_sysctl():
    """Inside a user namespace whose user.max_user_namespaces is 0, nestbox cannot make
    its own: the error says so and names the knobs, and doctor fails on it."""
    script = (f"echo 0 > /proc/sys/user/max_user_namespaces || exit 99; "
              f"{NESTBOX} sandbox --ro-bind /usr /usr -- /usr/bin/true; echo rc=$?; "
              f"{NESTBOX} doctor; echo doctor=$?")
    p = subprocess.run(["unshare", "--user", "--map-root-user", "/bin/sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    if p.returncode == 99:
        pytest.skip("cannot lower user.max_user_namespaces here")
    assert "rc=3" in p.stdout and "doctor=3" in p.stdout, p.stdout + p.stderr
    first = p.stderr.splitlines()[0]
    assert first.startswith("nestbox: cannot create a user namespace") and "user.max_user_namespaces" in first
    assert "user namespaces        no" in p.stdout


# --- the sandbox's own gaps: personality and socket families (seccomp.c) ---

LIBC = "import ctypes, errno; libc = ctypes.CDLL(None, use_errno=True)\n"


@pytest.mark.parametrize("persona, allowed", [
    (0x0040000, False),  # ADDR_NO_RANDOMIZE: ASLR off for what the test execs
    (0x0400000, False),  # READ_IMPLIES_EXEC
    (0x1_0040_0000, False),  # high bits the kernel ignores do not smuggle it past
    (0x0, True), (0x8, True), (0x20000, True), (0x20008, True), (0xffffffff, True),
])
def test_personality_only_dockers_values(persona, allowed):
    r = py(LIBC + f"libc.personality.argtypes = [ctypes.c_ulong]\n"
           f"v = libc.personality({persona}); print(v, errno.errorcode.get(ctypes.get_errno(), 0) if v == -1 else 0)")
    assert r.returncode == 0, r.stderr
    value, err = r.stdout.split()
    if allowed:
        assert value != "-1", r.stdout
    else:
        assert (value, err) == ("-1", "EPERM"), r.stdout


@pytest.mark.parametrize("family, type_, proto, allowed", [
    (socket.AF_VSOCK, socket.SOCK_STREAM, 0, False),
    (socket.AF_PACKET, socket.SOCK_RAW, 0, False),
    (15, socket.SOCK_RAW, 2, False),  # AF_KEY
    (socket.AF_ALG, socket.SOCK_SEQPACKET, 0, False),
    (31, socket.SOCK_STREAM, 0, False),  # AF_BLUETOOTH
    (30, socket.SOCK_DGRAM, 0, False),  # AF_TIPC
    (3, socket.SOCK_DGRAM, 0, False),  # AF_AX25
    (socket.AF_NETLINK, socket.SOCK_RAW, 9, False),  # NETLINK_AUDIT
    (socket.AF_NETLINK, socket.SOCK_RAW, 15, False),  # NETLINK_KOBJECT_UEVENT
    (socket.AF_NETLINK, socket.SOCK_RAW, 0, True),  # NETLINK_ROUTE: getifaddrs
    (socket.AF_INET, socket.SOCK_STREAM, 0, True),
    (socket.AF_INET6, socket.SOCK_DGRAM, 0, True),
    (socket.AF_UNIX, socket.SOCK_STREAM, 0, True),
])
def test_socket_families(family, type_, proto, allowed):
    r = py("import socket, errno, sys\n"
           f"try:\n    socket.socket({family}, {type_}, {proto}).close(); print('ok')\n"
           "except OSError as e:\n    print(errno.errorcode[e.errno])")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("ok" if allowed else "EPERM"), (family, proto, r.stdout)


def test_doctor_gives_each_family_a_reason():
    r = run(["doctor", "--syscalls"])
    assert r.returncode == 0, r.stderr
    section = r.stdout.split("socket address families refused\n", 1)[1]
    for name in ("AF_VSOCK", "AF_PACKET", "AF_KEY", "AF_ALG", "AF_BLUETOOTH", "AF_NETLINK"):
        line = next(l for l in section.splitlines() if l.split()[0] == name)
        assert len(line.split(None, 1)[1]) > 20, line
    assert re.search(r"^  personality +only 0, PER_LINUX32", r.stdout, re.M)


# --- Landlock (landlock.c) ---

def landlock_abi():
    m = re.search(r"landlock +ABI (\d+)", run(["doctor"]).stdout)
    return int(m.group(1)) if m else 0


def test_doctor_reports_the_landlock_abi():
    r = run(["doctor"])
    assert re.search(r"^  landlock +(ABI \d+|no)$", r.stdout, re.M), r.stdout
    r = run(["doctor"], env={**os.environ, "NESTBOX_TEST_NO_LANDLOCK": "1"})
    assert re.search(r"^  landlock +no \(NESTBOX_TEST_NO_LANDLOCK\)$", r.stdout, re.M), r.stdout
    assert "landlock rules         none: namespaces and seccomp only" in r.stdout


WRITE_WRONG = ("import errno\ntry:\n    open('/wrong/planted', 'w').write('x'); print('written')\n"
               "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
               "try:\n    open('/wrong/canary').read(); print('read')\n"
               "except OSError as e:\n    print(errno.errorcode[e.errno])\n")


def test_landlock_refuses_a_write_through_a_wrong_mount(shared, tmp_path):
    if landlock_abi() < 1:
        pytest.skip("no Landlock in this kernel")
    (shared / "canary").write_text("host secret")
    open_to_nobody(shared / "canary", 0o666)
    res = tmp_path / "r.json"
    r = py(WRITE_WRONG, opts=["--test-wrong-mount", shared, "/wrong", "--result", res])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["EACCES", "EACCES"], r.stdout
    assert not (shared / "planted").exists()  # the host side: nothing was written
    assert json.loads(res.read_text())["landlock_abi"] >= 1


def test_without_landlock_nestbox_runs_and_says_so(shared, tmp_path):
    (shared / "canary").write_text("host secret")
    open_to_nobody(shared / "canary", 0o666)
    res = tmp_path / "r.json"
    r = py(WRITE_WRONG, opts=["--test-wrong-mount", shared, "/wrong", "--result", res],
           env={**os.environ, "NESTBOX_TEST_NO_LANDLOCK": "1"})
    assert r.returncode == 0, r.stderr
    # Only the mount table stands now, and the deliberate mistake in it shows.
    assert r.stdout.split() == ["written", "read"], r.stdout
    assert "nestbox: warning: no Landlock on this kernel" in r.stderr
    assert json.loads(res.read_text())["landlock_abi"] == 0


def test_landlock_keeps_ordinary_work_working(tmp_path):
    """What tests do: write /tmp and /out-like tmpfs, /dev/null, list /, run a local server."""
    r = sh("echo x > /tmp/a && mv /tmp/a /tmp/b && cat /tmp/b && echo y > /dev/null && "
           "ls / > /dev/null && echo z > /scratch/c && cat /scratch/c", opts=["--tmpfs", "/scratch"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["x", "z"]
    r = py("import socket, threading\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
           "threading.Thread(target=lambda: s.accept()[0].sendall(b'hi'), daemon=True).start()\n"
           "c = socket.create_connection(s.getsockname()); print(c.recv(2).decode())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "hi"


# --- /proc/1 shows nothing of the host (init.c) ---

def test_proc_1_cmdline_is_neutral(tmp_path):
    marker = f"host-marker-{uuid.uuid4().hex}"
    r = py("print(open('/proc/1/cmdline', 'rb').read()); print(open('/proc/1/comm').read().strip())",
           opts=["--setenv", "X", marker])
    assert r.returncode == 0, r.stderr
    cmdline, comm = r.stdout.splitlines()
    assert cmdline == repr(b"nestbox-init\x00"), cmdline
    assert comm == "nestbox-init"
    assert marker not in r.stdout and "--setenv" not in r.stdout


# --- the denial report (denials.c) ---

DENIED = LIBC + ("libc.mount(b'none', b'/tmp', b'tmpfs', 0, None); e1 = ctypes.get_errno()\n"
                 "for _ in range(3):\n    libc.ptrace(0, 0, 0, 0)\n"
                 "e2 = ctypes.get_errno(); print(errno.errorcode[e1], errno.errorcode[e2])\n")


def test_denial_report_counts_what_the_test_called(tmp_path):
    res = tmp_path / "r.json"
    r = py(DENIED, opts=["--result", res])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["EPERM", "EPERM"]  # what the test sees is unchanged
    assert json.loads(res.read_text())["denied"] == {"mount": 1, "ptrace": 3}


def test_denial_report_off_still_denies(tmp_path):
    res = tmp_path / "r.json"
    r = py(DENIED, opts=["--result", res, "--no-denial-report"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["EPERM", "EPERM"]
    assert json.loads(res.read_text())["denied"] is None


def test_denial_report_is_empty_without_denials(tmp_path):
    res = tmp_path / "r.json"
    r = py("import os; os.fork() or os._exit(0); os.wait(); print('ok')", opts=["--result", res])
    assert r.returncode == 0, r.stderr
    assert json.loads(res.read_text())["denied"] == {}  # clone3's ENOSYS is libc's cue, not a denial


def test_mountinfo_does_not_name_the_bind_sources(shared):
    """A read-only bind somewhere else than its host path shows "/" as its root, not
    the host path (an overlay of its detached clone: mounts_overlay.c)."""
    (shared / "f").write_text("seen")
    open_to_nobody(shared / "f", 0o644)
    r = sh("cat /proc/self/mountinfo /proc/1/mountinfo; cat /data/f", opts=["--ro-bind", shared, "/data"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("seen")
    assert str(shared) not in r.stdout and str(shared.parent) not in r.stdout, r.stdout
    line = next(l for l in r.stdout.splitlines() if " /data " in l)
    assert line.split()[3] == "/", line
