"""Memory and pids limits in a delegated cgroup v2 subtree, checked from the host.

Two kinds of subtree:
- a test-only fake (NESTBOX_TEST_CGROUP2_ROOT: a plain directory standing for the
  hierarchy, nestbox's own cgroup its top), where every file nestbox reads and writes
  can be set up and watched: a delegated subtree is found, nestbox moves into its
  leaf, writes memory.max/pids.max and the sandbox's pid for a child cgroup it removes
  afterwards, and refuses a subtree that is not the invoker's;
- a real cgroup made under the cgroup v2 mount and handed to nobody (as root), which
  checks the discovery against the kernel's own files, and, where the kernel hands
  memory and pids to it, that a memory bomb is OOM-killed as the memory limit.

The delegated path is the unprivileged invoker's: run as root, these tests run
nestbox as nobody."""
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import NESTBOX, SYSTEM_BINDS, is_root, run
from workspace import build_wheelhouse, make_workspace

NOBODY = 65534

# Run again as nobody by tests/run: then the invoker is nobody itself.
pytestmark = pytest.mark.sandbox


def invoker_uid():
    return NOBODY if is_root() else os.geteuid()


def as_invoker(args):
    """args run as the unprivileged invoker: nobody when we are root, else ourselves."""
    args = [str(a) for a in args]
    if is_root():
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *args]
    return args


def fake_tree(path, controllers="cpu memory pids", procs="", subtree="", owner=None):
    path.mkdir()
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.procs").write_text(procs)
    (path / "cgroup.subtree_control").write_text(subtree)
    uid = invoker_uid() if owner is None else owner
    for p in [path, *path.iterdir()]:
        os.chown(p, uid, -1)
    reachable(path.parent)
    return path


def reachable(path):
    """nobody must reach path through pytest's 0700 tmp directories."""
    if is_root():
        for p in [path, *path.parents][:-1]:
            os.chmod(p, os.stat(p).st_mode | 0o111)


def doctor(env):
    r = subprocess.run(as_invoker([NESTBOX, "doctor"]), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def line(out, label):
    m = re.search(rf"^  {re.escape(label)} +(.*)$", out, re.M)
    assert m, out
    return m.group(1)


def fake_env(root):
    return dict(os.environ, NESTBOX_TEST_CGROUP2_ROOT=str(root))


def test_fake_delegated_subtree_holds_each_sandbox(tmp_path):
    root = fake_tree(tmp_path / "cg")
    env = fake_env(root)
    out = doctor(env)
    assert line(out, "memory limit") == f"cgroup2 (delegated subtree {root})"
    assert line(out, "pids limit") == "cgroup2"
    assert line(out, "cgroup v2 subtree").startswith(f"{root}: a run moves nestbox into its nestbox-supervisor leaf")
    assert "per process only" not in out
    # doctor changed nothing
    assert sorted(p.name for p in root.iterdir()) == ["cgroup.controllers", "cgroup.procs",
                                                       "cgroup.subtree_control"]

    res = tmp_path / "result.json"
    res.touch()
    os.chown(res, invoker_uid(), -1)
    p = subprocess.Popen(as_invoker([NESTBOX, "sandbox", *SYSTEM_BINDS, "--memory", "64M", "--pids", "50",
                                     "--result", res, "--", "/bin/sh", "-c", "read x; echo ran"]),
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        child = None
        for _ in range(600):  # until the sandbox has joined its cgroup, or a minute
            found = [d for d in root.glob("nestbox-*-*") if (d / "cgroup.procs").exists()]
            if found and (found[0] / "cgroup.procs").read_text().strip():
                child = found[0]
                break
            assert p.poll() is None, p.communicate()
            time.sleep(0.1)
        assert child, list(root.rglob("*"))
        assert child.name.startswith(f"nestbox-{p.pid}-")
        assert (child / "memory.max").read_text() == str(64 << 20)
        assert (child / "pids.max").read_text() == "50"
        assert (child / "memory.swap.max").read_text() == "0"
        # the pid written is the sandbox's pid 1, seen from the host
        pid = int((child / "cgroup.procs").read_text())
        nspid = re.search(r"^NSpid:\s+(.*)$", Path(f"/proc/{pid}/status").read_text(), re.M).group(1).split()
        assert nspid[0] == str(pid) and nspid[-1] == "1", nspid
        # nestbox moved itself into the leaf first and handed both controllers down
        assert (root / "nestbox-supervisor" / "cgroup.procs").read_text() == str(p.pid)
        assert set((root / "cgroup.subtree_control").read_text().split()) == {"+memory", "+pids"}
        stdout, stderr = p.communicate("go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, stderr
    assert stdout == "ran\n"
    assert not child.exists(), list(root.iterdir())
    limits = json.loads(res.read_text())["limits"]
    assert limits == {"memory": "cgroup2", "pids": "cgroup2"}, limits


@pytest.mark.parametrize("setup, why", [
    (dict(owner=0), "{root} belongs to uid 0, not to uid {uid}: not delegated to this user"),
    (dict(controllers="cpu pids"), "{root}: memory and pids are not among its controllers (it has: cpu pids)"),
    (dict(procs="1\n"), "{root} holds 1 other process: a cgroup hands memory and pids to its children only "
                        "while it holds no process, so nestbox must be its delegated cgroup's only process"),
], ids=["not-owned", "no-memory-controller", "other-processes"])
def test_fake_subtree_that_is_not_delegated_is_refused(tmp_path, setup, why):
    if setup.get("owner") == 0 and not is_root():
        pytest.skip("a tree owned by root needs root to make")
    root = fake_tree(tmp_path / "cg", **setup)
    env = fake_env(root)
    before = {p.name: p.read_text() for p in root.iterdir()}
    out = doctor(env)
    assert line(out, "cgroup v2 subtree") == "none: " + why.format(root=root, uid=invoker_uid())
    assert line(out, "memory limit").startswith("rlimit (memory limited per process only")
    assert "systemd-run --user --scope -p Delegate=yes nestbox ..." in out

    r = subprocess.run(as_invoker([NESTBOX, "sandbox", *SYSTEM_BINDS, "--memory", "64M", "--pids", "50",
                                   "--", "/bin/true"]), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # nothing of the refused cgroup was touched
    assert {p.name: p.read_text() for p in root.iterdir()} == before


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare(1)")
def test_root_of_a_user_namespace_is_a_delegatee(tmp_path):
    """uid 0 of a rootless container is no host root: a cgroup handed to the uid mapped
    to it is delegated, one that is not (the v2 top, shown as the overflow uid) is not."""
    root = fake_tree(tmp_path / "cg")
    r = subprocess.run(as_invoker(["unshare", "-r", NESTBOX, "doctor"]), env=fake_env(root),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert line(r.stdout, "memory limit") == f"cgroup2 (delegated subtree {root})"
    if is_root():  # handed to host root, which no user namespace of nobody's maps
        os.chown(root, 0, -1)
        r = subprocess.run(as_invoker(["unshare", "-r", NESTBOX, "doctor"]), env=fake_env(root),
                           capture_output=True, text=True, timeout=60)
        assert line(r.stdout, "cgroup v2 subtree") == (
            f"none: {root} belongs to uid {NOBODY}, not to uid 0: not delegated to this user")


def test_root_uses_a_subtree_only_when_it_hands_out_both(tmp_path):
    if not is_root():
        pytest.skip("root's rule")
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "cgroup.procs").write_text("")
    (root / "cgroup.subtree_control").write_text("")
    env = fake_env(root)
    r = run(["doctor"], env=env)
    assert line(r.stdout, "cgroup v2 subtree") == (
        f"none: {root}: memory and pids are not handed to its children (cgroup.subtree_control); "
        "as root nestbox uses its own cgroup v2 only when they are, and never moves")
    (root / "cgroup.subtree_control").write_text("memory pids\n")
    r = run(["doctor"], env=env)
    assert line(r.stdout, "memory limit") == f"cgroup2 (delegated subtree {root})"
    assert line(r.stdout, "cgroup v2 subtree") == str(root)  # nothing to move: it is ready
    res = tmp_path / "result.json"
    r = run(["sandbox", *SYSTEM_BINDS, "--memory", "64M", "--result", res, "--", "/bin/true"], env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(res.read_text())["limits"]["memory"] == "cgroup2"
    assert not (root / "nestbox-supervisor").exists()
    assert not list(root.glob("nestbox-*-*"))


@pytest.fixture(scope="module")
def resolve_dir(tmp_path_factory):
    return build_wheelhouse(tmp_path_factory.mktemp("resolve"))


@pytest.mark.skipif(not is_root(), reason="root's rule: a tree that hands out both already")
def test_test_verb_reports_a_sandbox_wide_limit_in_a_subtree(tmp_path, resolve_dir):
    """`nestbox test` with a ready subtree: result.json says cgroup2 and the summary says
    nothing of a per-process limit (as root: the fake tree hands out both already)."""
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("memory pids\n")
    (root / "cgroup.procs").write_text("")
    (root / "cgroup.subtree_control").write_text("memory pids\n")
    files = {"src/app/__init__.py": "", "tests/test_ok.py": "def test_ok():\n    assert True\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "cache", "--output", out, ws], env=fake_env(root))
    assert p.returncode == 0, p.stdout + p.stderr
    limits = json.loads((out / "app/tests/result.json").read_text())["limits"]
    assert limits["memory_backend"] == "cgroup2" and limits["memory_scope"] == "sandbox", limits
    assert "per process only" not in p.stdout
    assert not list(root.glob("nestbox-*-*"))


# ---- a real cgroup v2 subtree handed to nobody ----------------------------------------

def cgroup2_mount():
    for m in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.exists(f"{m}/cgroup.controllers"):
            return Path(m)
    return None


@pytest.fixture
def real_subtree():
    """A cgroup under the v2 mount's top for nobody: its directory, cgroup.procs,
    cgroup.subtree_control and cgroup.threads chowned (what Delegate=yes does)."""
    mnt = cgroup2_mount()
    if not is_root() or not mnt or not os.access(mnt, os.W_OK):
        pytest.skip("needs root and a writable cgroup v2 mount to make a cgroup for nobody")
    cg = mnt / f"nestbox-test-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    try:
        yield cg
    finally:
        # whatever a test left inside: children first
        for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
        cg.rmdir()


def delegate(cg):
    for p in (cg, cg / "cgroup.procs", cg / "cgroup.subtree_control", cg / "cgroup.threads"):
        os.chown(p, NOBODY, -1)


def in_cgroup(cg, args, **kw):
    """Runs args as nobody, started in cg by root (moving a process needs write access
    to the common ancestor's cgroup.procs, which is root's), alone there."""
    script = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'
    cmd = ["sh", "-c", script, "sh", str(cg), "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
           *[str(a) for a in args]]
    env = dict(os.environ)
    env.pop("NESTBOX_TEST_CGROUP2_ROOT", None)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)


def test_real_subtree_is_judged_by_the_kernels_files(real_subtree):
    cg = real_subtree
    r = in_cgroup(cg, [NESTBOX, "doctor"])
    assert r.returncode == 0, r.stderr
    assert line(r.stdout, "cgroup v2 subtree") == (
        f"none: {cg} belongs to uid 0, not to uid {NOBODY}: not delegated to this user")

    delegate(cg)
    r = in_cgroup(cg, [NESTBOX, "doctor"])
    assert r.returncode == 0, r.stderr
    ctrl = (cg / "cgroup.controllers").read_text().split()
    if "memory" in ctrl and "pids" in ctrl:
        assert line(r.stdout, "memory limit") == f"cgroup2 (delegated subtree {cg})"
        assert line(r.stdout, "cgroup v2 subtree").startswith(f"{cg}: a run moves nestbox")
    else:
        assert line(r.stdout, "cgroup v2 subtree") == (
            f"none: {cg}: memory and pids are not among its controllers (it has: {' '.join(ctrl) or 'none'})")
        assert line(r.stdout, "memory limit").startswith("rlimit (memory limited per process only")
    # doctor moved nothing: the only process ever in it has gone, and no leaf was made
    assert not [p for p in cg.iterdir() if p.is_dir()]


def test_real_subtree_with_another_process_is_refused(real_subtree):
    cg = real_subtree
    delegate(cg)
    if "memory" not in (cg / "cgroup.controllers").read_text().split():
        pytest.skip(f"{cg} has no memory controller here (cgroup.controllers: "
                    f"{(cg / 'cgroup.controllers').read_text().strip() or 'none'}): the check comes later")
    sleeper = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs; exec sleep 600'])
    try:
        for _ in range(100):
            if str(sleeper.pid) in (cg / "cgroup.procs").read_text().split():
                break
            time.sleep(0.05)
        r = in_cgroup(cg, [NESTBOX, "doctor"])
        assert line(r.stdout, "cgroup v2 subtree") == (
            f"none: {cg} holds 1 other process: a cgroup hands memory and pids to its children only while it "
            "holds no process, so nestbox must be its delegated cgroup's only process")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_real_memory_bomb_is_killed_by_the_subtrees_limit(real_subtree, tmp_path):
    """Where the kernel hands memory and pids to a cgroup nobody owns, nestbox run as
    nobody alone in it limits the whole sandbox: the bomb is OOM-killed and the result
    says so. Skipped where v2 memory cannot be delegated (this hybrid machine: v1
    memory, v2 with hugetlb only)."""
    cg = real_subtree
    ctrl = (cg / "cgroup.controllers").read_text().split()
    if "memory" not in ctrl or "pids" not in ctrl:
        pytest.skip(f"the kernel hands {cg} no memory and pids controllers (cgroup.controllers: "
                    f"{' '.join(ctrl) or 'none'}): no cgroup v2 memory limit can be enforced here")
    delegate(cg)
    res = tmp_path / "result.json"
    res.touch()
    os.chown(res, NOBODY, -1)
    reachable(tmp_path)
    bomb = "import os\nchunks = []\nfor _ in range(64):\n    chunks.append(b'x' * (16 << 20))\nprint('survived')\n"
    r = in_cgroup(cg, [NESTBOX, "sandbox", *SYSTEM_BINDS, "--memory", "64M", "--result", res, "--",
                       "/usr/bin/python3", "-c", bomb])
    j = json.loads(res.read_text())
    assert j["limits"]["memory"] == "cgroup2", j
    assert "survived" not in r.stdout
    assert j["oom_killed"] is True, j
    assert not [p for p in cg.iterdir() if p.is_dir() and p.name.startswith("nestbox-") and
                p.name != "nestbox-supervisor"]


# ---- NESTBOX_CGROUP=systemd-scope ----------------------------------------------------

FAKE_SYSTEMD_RUN = """#!/bin/sh
# records its arguments, then does what systemd-run --scope does once the scope exists:
# execs the command after --, in this same process
printf '%s\\n' "$@" >> "$FAKE_RECORD"
while [ "$1" != "--" ]; do shift; done
shift
exec "$@"
"""


@pytest.fixture
def scope_env(tmp_path):
    """PATH with a fake systemd-run and an XDG_RUNTIME_DIR with a user manager's socket,
    for the invoker; a fake cgroup tree that is not delegated (no memory controller)."""
    import socket
    os.chmod(tmp_path, 0o777)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "systemd-run").write_text(FAKE_SYSTEMD_RUN)
    (bindir / "systemd-run").chmod(0o755)
    runtime = tmp_path / "run"
    (runtime / "systemd").mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(runtime / "systemd" / "private"))
    root = fake_tree(tmp_path / "cg", controllers="cpu")
    record = tmp_path / "record"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", XDG_RUNTIME_DIR=str(runtime),
               NESTBOX_CGROUP="systemd-scope", NESTBOX_TEST_CGROUP2_ROOT=str(root), FAKE_RECORD=str(record))
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    env.pop("NESTBOX_CGROUP_SCOPED", None)
    yield env, record, root
    sock.close()


def test_systemd_scope_runs_nestbox_again_in_a_delegated_scope(scope_env):
    env, record, _ = scope_env
    r = subprocess.run(as_invoker([NESTBOX, "sandbox", *SYSTEM_BINDS, "--memory", "64M", "--",
                                   "/bin/sh", "-c", "echo inside; exit 7"]),
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 7, r.stderr
    assert r.stdout == "inside\n"
    args = record.read_text().splitlines()
    # once: the second start does not ask again
    assert args == ["--user", "--scope", "--quiet", "--collect", "-p", "Delegate=yes", "--", str(NESTBOX),
                    "sandbox", *SYSTEM_BINDS, "--memory", "64M", "--", "/bin/sh", "-c", "echo inside; exit 7"]


def test_systemd_scope_is_not_asked_for_from_a_delegated_subtree(scope_env, tmp_path):
    env, record, _ = scope_env
    env["NESTBOX_TEST_CGROUP2_ROOT"] = str(fake_tree(tmp_path / "delegated"))
    r = subprocess.run(as_invoker([NESTBOX, "doctor"]), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert line(r.stdout, "memory limit").startswith("cgroup2 (delegated subtree")
    assert not record.exists()


def test_systemd_scope_without_a_user_manager_warns_and_runs(scope_env):
    env, record, _ = scope_env
    del env["XDG_RUNTIME_DIR"]
    r = subprocess.run(as_invoker([NESTBOX, "sandbox", *SYSTEM_BINDS, "--", "/bin/true"]),
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ("nestbox: warning: NESTBOX_CGROUP=systemd-scope: no systemd user manager to ask: neither "
                        "XDG_RUNTIME_DIR nor DBUS_SESSION_BUS_ADDRESS is set; memory is limited per process only\n")
    assert not record.exists()
    out = doctor(env)
    assert "(not here: no systemd user manager to ask" in out


def test_systemd_scope_bad_value_is_a_usage_error(scope_env):
    env, _, _ = scope_env
    env["NESTBOX_CGROUP"] = "systemd"
    r = subprocess.run([str(NESTBOX), "doctor"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == "nestbox: NESTBOX_CGROUP=systemd: expected systemd-scope or auto\n"
