"""-j N (issue 10): work items in parallel sandboxes, longest expected first, venvs
built once, the running items' memory limits kept under what is available."""
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import NESTBOX
from test_events import names, read_events
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

# Each test waits until the host lets it go (removes its /tmp/waiting): it can only pass when the host sees both
# sandboxes waiting at the same time, which -j 1 never gives.
GATED = {**PASSING, "gate/test_gate.py": "import os, time\n\ndef test_gate():\n"
                                         "    open('/tmp/waiting', 'w').close()\n"
                                         "    for _ in range(1200):\n"
                                         "        if not os.path.exists('/tmp/waiting'):\n"
                                         "            return\n"
                                         "        time.sleep(0.1)\n"
                                         "    raise AssertionError('never let go')\n"}
GATE = {"tests": ["gate/*.py"], "source_roots": ["src", "gate"]}


def waiting_sandboxes():
    """The /tmp of each sandboxed pytest whose gate test is waiting, seen by the host
    (root) through /proc/PID/root."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if b"test_gate.py" in (proc / "cmdline").read_bytes() and (proc / "root/tmp/waiting").exists():
                # The sandbox's init and its pytest share one /tmp: count it once.
                found.setdefault((proc / "root/tmp").stat().st_dev, proc / "root/tmp")
        except OSError:
            continue
    return list(found.values())


def run(args, env=None, timeout=600):
    return subprocess.run([str(NESTBOX), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_j2_runs_two_sandboxes_at_once(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, GATED, {"a/gate": GATE, "b/gate": GATE})
    ev = tmp_path / "ev.jsonl"
    proc = subprocess.Popen([str(NESTBOX), "test", "-j", "2", "--cache", str(tmp_path / "cache"), "--events", str(ev),
                             str(ws)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 300
    while len(waiting_sandboxes()) < 2 and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.05)
    gates = waiting_sandboxes()
    assert len(gates) == 2, "two sandboxes never waited at the same time"
    for tmp in gates:
        (tmp / "waiting").unlink(missing_ok=True)  # the host cannot create a file there, but can remove one
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    assert "a/gate  PASSED" in stdout and "b/gate  PASSED" in stdout
    kinds = [e["event"] for e in read_events(ev) if e["event"] in ("target_started", "target_finished")]
    assert kinds == ["target_started", "target_started", "target_finished", "target_finished"]


def test_a_venv_two_items_need_at_once_is_built_once(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {"a/tests": {}, "b/tests": {}, "c/tests": {}})
    ev = tmp_path / "ev.jsonl"
    p = run(["test", "-j", "3", "--cache", str(tmp_path / "cache"), "--events", str(ev), str(ws)])
    assert p.returncode == 0, p.stdout + p.stderr
    events = read_events(ev)
    assert len([e for e in events if e["event"] == "venv_built"]) == 1
    # All three were under way before the first finished: they shared the one build.
    kinds = [e["event"] for e in events if e["event"] in ("target_started", "target_finished")]
    assert kinds[:3] == ["target_started"] * 3
    assert len(list((tmp_path / "cache/venvs").iterdir())) == 1


def test_memory_limits_over_the_available_run_one_at_a_time(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING,
                        {"a/tests": {"memory": "600M"}, "b/tests": {"memory": "600M"}, "c/tests": {"memory": "3G"}})
    ev = tmp_path / "ev.jsonl"
    # NESTBOX_TEST_MEM_AVAILABLE stands in for the machine's MemAvailable (test-only).
    p = run(["test", "-j", "3", "--cache", str(tmp_path / "cache"), "--events", str(ev), str(ws)],
            env={"NESTBOX_TEST_MEM_AVAILABLE": "1G"})
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stderr.count("nestbox: memory: ") == 1, p.stderr  # said once
    assert "waits: the running targets' limits (600.0 MiB) and its own would exceed the 1024.0 MiB available" \
        in p.stderr, p.stderr
    # One at a time: each finishes before the next starts; c/tests (3G alone over the
    # budget) still runs, alone.
    kinds = [(e["event"], e["target"]) for e in read_events(ev) if e["event"] in ("target_started", "target_finished")]
    assert kinds == [("target_started", "a/tests"), ("target_finished", "a/tests"),
                     ("target_started", "b/tests"), ("target_finished", "b/tests"),
                     ("target_started", "c/tests"), ("target_finished", "c/tests")]
    # With room for both they overlap.
    p = run(["test", "-j", "2", "--force", "--cache", str(tmp_path / "cache"), "--events", str(ev), str(ws),
             "a/tests", "b/tests"], env={"NESTBOX_TEST_MEM_AVAILABLE": "2G"})
    assert p.returncode == 0 and "nestbox: memory" not in p.stderr, p.stderr
    kinds = [e["event"] for e in read_events(ev) if e["event"] in ("target_started", "target_finished")]
    assert kinds[:2] == ["target_started", "target_started"]


def test_longest_expected_starts_first(tmp_path, resolve_dir):  # noqa: F811
    slow = {**PASSING, "slow/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(2)\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, slow,
                        {"a/fast": {}, "b/slow": {"tests": ["slow/*.py"], "source_roots": ["src", "slow"]}})
    cache, ev = tmp_path / "cache", tmp_path / "ev.jsonl"
    # Nothing known yet: the order named.
    p = run(["test", "-j", "2", "--cache", str(cache), "--events", str(ev), str(ws)])
    assert p.returncode == 0, p.stdout + p.stderr
    assert names(read_events(ev), "target_started") == ["a/fast", "b/slow"]
    # Now b/slow's last time is known and longer: it starts first.
    out = tmp_path / "out"
    p = run(["test", "-j", "2", "--force", "--cache", str(cache), "--events", str(ev), "--output", str(out), str(ws)])
    assert p.returncode == 0, p.stdout + p.stderr
    assert names(read_events(ev), "target_started") == ["b/slow", "a/fast"]
    # The combined report keeps the order named, whatever order they ran and finished in.
    suites = [s.get("name") for s in ET.parse(out / "junit.xml").getroot().iter("testsuite")]
    assert suites == ["a/fast", "b/slow"]
    # -j 1 keeps the order named: serially the order changes nothing but what a person reads.
    p = run(["test", "-j", "1", "--force", "--cache", str(cache), "--events", str(ev), str(ws)])
    assert names(read_events(ev), "target_started") == ["a/fast", "b/slow"]
    assert p.stdout.index("a/fast  PASSED") < p.stdout.index("b/slow  PASSED")


@pytest.mark.parametrize("arg", ["0", "x", "-1", "2000"])
def test_bad_jobs_is_a_usage_error(arg):
    p = run(["test", "-j", arg])
    assert p.returncode == 2
    assert p.stderr == f"nestbox: -j {arg}: expected a number of targets from 1 to 1024\n"


def test_two_nestbox_processes_sharing_a_cache_build_the_venv_once(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {"a/tests": {}, "b/tests": {}})
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), "--events", str(tmp_path / f"ev{i}"),
                               str(ws), target], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, target in enumerate(["a/tests", "b/tests"])]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out + err
    built = [e for i in range(2) for e in read_events(tmp_path / f"ev{i}") if e["event"] == "venv_built"]
    assert len(built) == 1
    assert len(list((cache / "venvs").iterdir())) == 1
