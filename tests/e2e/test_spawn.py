"""The spawn's fast path (issue 14) keeps what a user checks: pid 1 makes its net
namespace in a thread and is single-threaded again before anything of the command's
runs; the result still counts the command's CPU time and memory when nestbox leaves
before pid 1's own teardown; and the front door loads no library but libc."""
import json
import os
import subprocess

import pytest

from conftest import NESTBOX, sandbox, sh

NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1)

NET_OWNER = r"""
import fcntl, os
net = os.open("/proc/self/ns/net", os.O_RDONLY)
owner = fcntl.ioctl(net, %d)
print(os.fstat(owner).st_ino == os.stat("/proc/self/ns/user").st_ino)
print(os.readlink("/proc/self/ns/net"))
with open("/proc/1/status") as f:
    print([l.split()[1] for l in f if l.startswith("Threads:")][0])
""" % NS_GET_USERNS


@pytest.mark.sandbox
def test_net_namespace_is_new_owned_by_the_sandbox_and_pid1_has_one_thread():
    r = sandbox("/usr/bin/python3", "-c", NET_OWNER)
    assert r.returncode == 0, r.stderr
    owned, net, threads = r.stdout.split()
    assert owned == "True"  # made inside the sandbox's user namespace, not the host's
    assert net != os.readlink("/proc/self/ns/net")
    assert threads == "1"  # the net thread was joined before the command started
    lo = sandbox("/usr/bin/python3", "-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
                 "s.listen(); socket.create_connection(s.getsockname()); print('lo ok')")
    assert lo.stdout == "lo ok\n", lo.stderr


@pytest.mark.sandbox
def test_the_command_is_pid_2_though_a_thread_came_first():
    """The net thread took pid 2 of the namespace; the command still gets it, as in
    the warm interpreter's sandboxes (ns_last_pid is set back, net.c)."""
    r = sh("echo $$")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "2\n"


@pytest.mark.sandbox
@pytest.mark.parametrize("opts", [[], ["--memory", "512M"]], ids=["no-cgroup", "memory-limit"])
def test_result_counts_the_command_whether_or_not_nestbox_waits_for_pid1(tmp_path, opts):
    """Without limits nestbox returns before pid 1's teardown (sandbox/teardown.c) and
    takes the usage from pid 1's report; with a cgroup it waits as before. Both count
    the command's memory and CPU."""
    result = tmp_path / "result.json"
    r = sandbox("/usr/bin/python3", "-c",
                "x = bytearray(64 << 20)\nn = 0\nfor i in range(3_000_000): n += i\nraise SystemExit(5)",
                opts=["--result", result, *opts])
    assert r.returncode == 5, r.stderr
    res = json.loads(result.read_text())
    assert res["exit_code"] == 5
    assert res["peak_rss_bytes"] >= 64 << 20
    assert res["user_sec"] + res["sys_sec"] > 0.05


@pytest.mark.sandbox
def test_nothing_left_running_after_nestbox_returns(tmp_path):
    marker = "sleep 1000.%d" % os.getpid()
    r = sh("%s & exit 0" % marker)
    assert r.returncode == 0, r.stderr
    ps = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert ps.stdout == "", ps.stdout


def test_front_door_loads_only_libc():
    """`nestbox` links the sandbox's libraries statically: the dynamic loader maps libc
    alone before a sandbox starts."""
    out = subprocess.run(["readelf", "-d", str(NESTBOX)], capture_output=True, text=True, check=True).stdout
    needed = sorted(l.split("[")[1].rstrip("]") for l in out.splitlines() if "(NEEDED)" in l)
    # A sanitizer build (tests/run's ASAN_OPTIONS) adds its runtimes, nothing else.
    needed = [n for n in needed if not n.startswith(("libasan", "libubsan", "libm.", "libgcc_s"))]
    assert needed == ["libc.so.6"], needed


@pytest.fixture(scope="module")
def resolve_dir(tmp_path_factory):
    from workspace import build_wheelhouse
    return build_wheelhouse(tmp_path_factory.mktemp("resolve"))


def test_driver_loads_no_more_than_a_target_needs(tmp_path, resolve_dir):
    """The driver's own imports on the cold path: no _hashlib (libcrypto) unless a
    sharded run needs its stable hash; the running test's record is one file kept open."""
    from workspace import make_workspace
    files = {"src/app/__init__.py": "",
             "tests/test_lean.py": "import os, sys\n\n"
                                   "def test_no_hashlib():\n    assert '_hashlib' not in sys.modules\n\n"
                                   "def test_current_is_kept_open():\n"
                                   "    fds = os.listdir('/proc/self/fd')  # one of them is listdir's own\n"
                                   "    names = [os.readlink('/proc/self/fd/' + f) for f in fds\n"
                                   "             if os.path.exists('/proc/self/fd/' + f)]\n"
                                   "    assert '/out/.nestbox-current' in names\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    out = tmp_path / "out"
    p = subprocess.run([str(NESTBOX), "test", "--cache", tmp_path / "cache", "--output", out, ws],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(2 tests)" in p.stdout
