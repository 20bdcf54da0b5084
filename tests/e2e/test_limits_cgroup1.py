"""The cgroup v1 backend (hybrid hosts, like this project's machine), checked from the
host: pid 1 joins its memory and pids cgroups itself, first thing, by writing "0" into
each one's tasks file (a single-thread self-migration, which the kernel does without
the global lock the parent's cgroup.procs write takes, and with it an RCU grace
period); every process and thread of the sandbox is held from then on. Skipped where
doctor names another backend (as nobody, without a delegated v2 subtree: rlimits)."""
import os
import re
import subprocess
import time

import pytest

from conftest import NESTBOX, SYSTEM_BINDS, have, run, traced_env

pytestmark = pytest.mark.sandbox

LIMITS = ["--memory", "256M", "--pids", "64"]


@pytest.fixture(scope="module", autouse=True)
def cgroup1():
    out = run(["doctor"]).stdout
    backends = re.findall(r"^\s+(memory|pids) limit\s+(\S+)", out, re.M)
    if dict(backends) != {"memory": "cgroup1", "pids": "cgroup1"}:
        pytest.skip(f"memory and pids are not both cgroup v1 here: {backends}")


def children(pid):
    """The pids whose parent is pid, from the host's /proc."""
    found = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        if d.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(d))
    return found


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def v1_cgroups(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/cgroup") as f:
        lines = [l.strip().split(":", 2) for l in f]
    return {ctrls: path for _, ctrls, path in lines if ctrls in ("memory", "pids")}


def test_every_task_of_the_sandbox_is_in_its_cgroups_from_pid_1_on(tmp_path):
    ready = tmp_path / "ready"
    tmp_path.chmod(0o777)
    # A process, a thread in another (python's), and pid 1 itself: all must be held.
    script = ("import os, threading, time\n"
              "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
              "if os.fork() == 0:\n"
              "    time.sleep(30)\n"
              "open('/shared/ready', 'w').close()\n"
              "time.sleep(30)\n")
    p = subprocess.Popen([str(NESTBOX), "sandbox", *SYSTEM_BINDS, "--bind", str(tmp_path), "/shared", *LIMITS,
                          "--", "/usr/bin/python3", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if ready.exists() or p.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), p.communicate(timeout=10)
        pids = descendants(p.pid)
        assert len(pids) >= 3, pids  # pid 1, the command, its child
        tasks = [(pid, int(t)) for pid in pids for t in os.listdir(f"/proc/{pid}/task")]
        assert len(tasks) >= 4, tasks  # and the command's thread
        groups = {v1_cgroups(pid, tid)["memory"] for pid, tid in tasks}
        assert len(groups) == 1 and re.search(r"/nestbox-\d+-\d+$", groups.pop()), tasks
        groups = {v1_cgroups(pid, tid)["pids"] for pid, tid in tasks}
        assert len(groups) == 1 and re.search(r"/nestbox-\d+-\d+$", groups.pop()), tasks
        # Not the supervisor: it stays where it was.
        assert not re.search(r"/nestbox-", v1_cgroups(p.pid, p.pid)["pids"])
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("pids, second", [(3, False), (4, True)])
def test_the_pids_limit_counts_pid_1_and_every_process_after_it(pids, second):
    # pid 1 and the shell are two: a limit of 3 leaves the shell one child, 4 two.
    r = run(["sandbox", *SYSTEM_BINDS, "--pids", str(pids), "--", "/bin/sh", "-c",
             "sleep 5 & if /bin/true; then echo second; fi; kill $!"])
    assert ("second" in r.stdout) == second, r.stdout + r.stderr


@pytest.mark.skipif(not have("strace"), reason="needs strace")
def test_pid_1_joins_itself_and_the_parent_writes_no_cgroup_procs(tmp_path):
    log = tmp_path / "strace"
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,write", "-o", str(log), str(NESTBOX), "sandbox",
                        *SYSTEM_BINDS, *LIMITS, "--", "/bin/true"], capture_output=True, text=True, timeout=120,
                       env=traced_env())
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    assert not re.search(r'openat\([^)]*cgroup\.procs", O_WRONLY', text), text
    # Each tasks file is opened by the supervisor, then written "0" by pid 1.
    opens = re.findall(r'^(\d+) +openat\(AT_FDCWD, "([^"]*/nestbox-\d+-\d+)/tasks", O_WRONLY[^=]*= (\d+)$',
                       text, re.M)
    assert len({cgroup for _, cgroup, _ in opens}) == 2, text
    supervisor = {int(pid) for pid, _, _ in opens}
    assert len(supervisor) == 1, opens
    for _, cgroup, fd in opens:
        writers = re.findall(rf'^(\d+) +write\({fd}, "0", 1\b', text, re.M)  # may be unfinished
        assert writers and all(int(w) not in supervisor for w in writers), (cgroup, text)
