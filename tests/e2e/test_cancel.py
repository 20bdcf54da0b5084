"""Cancellation (issue 15): CI cancels with SIGTERM, a person presses ^C. The first
signal stops everything: the running sandbox gets the timeout treatment, nothing new
starts, nothing interrupted is stored, the summary names what did not run."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import NESTBOX, descendants, have, is_root
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def wait_for(pred, what, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    pytest.fail(f"never happened: {what}")


def sleeping(procs):
    """The hanging tests in their sleep: each left /tmp/sleeping-now in its sandbox,
    which the host (root) sees through /proc/PID/root of the sandboxed pytest. The log
    is a pipe the supervisor drains, so it cannot be watched from outside."""
    found = []
    for proc in procs:
        try:
            if b"test_hang.py" in (proc / "cmdline").read_bytes() and (proc / "root/tmp/sleeping-now").exists():
                found.append(proc)
        except OSError:
            continue
    return found


def sleeping_sandboxes(nestbox):
    return sleeping(descendants(nestbox.pid))


def started(nestbox):
    return len(sleeping_sandboxes(nestbox)) > 0


HANG = {**PASSING, "hang/test_hang.py": "import time\n\ndef test_hang():\n    print('sleeping now', flush=True)\n"
                                        "    open('/tmp/sleeping-now', 'w').close()\n"
                                        "    time.sleep(600)\n"}


def hang_ws(tmp_path, resolve_dir):  # noqa: F811
    # "a/hang" sorts before "b/tests", so it runs first and b/tests never starts.
    return make_workspace(tmp_path / "ws", resolve_dir, HANG, {
        "a/hang": {"tests": ["hang/*.py"], "source_roots": ["src", "hang"], "pytest_args": ["-s"]},
        "b/tests": {},
    })


@pytest.mark.parametrize("sig,code,name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_first_signal_stops_everything(tmp_path, resolve_dir, cache, sig, code, name):  # noqa: F811
    ws = hang_ws(tmp_path, resolve_dir)
    out = tmp_path / "out"
    proc = subprocess.Popen([str(NESTBOX), "test", "-j", "1", "--cache", str(cache), "--output", str(out), str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: started(proc), "the hanging test started")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stdout + stderr
    assert "a/hang  INTERRUPTED" in stdout and f"interrupted by {name}" in stdout, stdout
    assert f"interrupted by {name}; not run (1): b/tests" in stdout, stdout
    assert "b/tests  " not in stdout
    assert re.search(r'File "/work/hang/test_hang.py", line [56] in test_hang', stdout), stdout  # faulthandler's stack
    # Nothing interrupted is stored: a rerun with --cache-failures runs it again.
    ac = cache / "ac"
    assert not [p for p in ac.rglob("*") if p.is_file() and b'"artifact"' in p.read_bytes()]
    assert not (out / "a/hang").exists()


def test_an_interrupted_target_leaves_no_earlier_output(tmp_path, resolve_dir, cache):  # noqa: F811
    """--output DIR/<target>/ holds this run's files only: a target interrupted this
    time must not keep the result.json of an earlier pass, which merge would count."""
    ws = hang_ws(tmp_path, resolve_dir)
    out = tmp_path / "out"
    hang = ws / "hang/test_hang.py"
    hanging = hang.read_text()
    hang.write_text("def test_hang():\n    pass\n")
    p = subprocess.run([str(NESTBOX), "test", "--cache", str(cache), "--output", str(out), str(ws), "a/hang"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and (out / "a/hang/result.json").exists(), p.stdout + p.stderr
    hang.write_text(hanging)
    proc = subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), "--output", str(out), str(ws), "a/hang"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: started(proc), "the hanging test started")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "a/hang  INTERRUPTED" in stdout, stdout + stderr
    assert not (out / "a/hang/result.json").exists() and not (out / "a/hang/junit.xml").exists()
    m = subprocess.run([str(NESTBOX), "merge", "-o", str(tmp_path / "m"), str(out)], capture_output=True, text=True)
    assert m.returncode != 0 and "PASSED" not in m.stdout, m.stdout + m.stderr


def test_second_signal_kills_at_once(tmp_path, resolve_dir, cache):  # noqa: F811
    ws = hang_ws(tmp_path, resolve_dir)
    proc = subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: started(proc), "the hanging test started")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "INTERRUPTED" in stdout


def test_sigint_during_setup_leaves_nothing_in_tmp(tmp_path, resolve_dir, cache):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    proc = subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The venv is being built under tmp/ (or the tree: whichever comes first).
    wait_for(lambda: (cache / "tmp").exists() and any((cache / "tmp").iterdir()), "set-up started")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted by SIGINT" in stdout
    assert list((cache / "tmp").iterdir()) == []
    assert not [p for p in (cache / "ac").rglob("*") if p.is_file() and b'"artifact"' in p.read_bytes()]


def test_sigterm_with_j2_stops_every_running_sandbox(tmp_path, resolve_dir, cache):  # noqa: F811
    """-j 2: both running sandboxes get the timeout treatment, the third target never
    starts, nothing interrupted is stored or written to --output."""
    hang = {"tests": ["hang/*.py"], "source_roots": ["src", "hang"], "pytest_args": ["-s"]}
    ws = make_workspace(tmp_path / "ws", resolve_dir, HANG, {"a/hang": hang, "b/hang": {**hang, "env": ["B"]},
                                                             "c/tests": {}})
    out = tmp_path / "out"
    proc = subprocess.Popen([str(NESTBOX), "test", "-j", "2", "--cache", str(cache), "--output", str(out), str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(sleeping_sandboxes(proc)) >= 2, "both hanging tests started")
    sandboxes = sleeping_sandboxes(proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stdout + stderr
    assert "a/hang  INTERRUPTED" in stdout and "b/hang  INTERRUPTED" in stdout, stdout
    assert "interrupted by SIGTERM; not run (1): c/tests" in stdout, stdout
    # Both stacks (the signal may land just before the sleep: line 5 or 6).
    assert len(re.findall(r'File "/work/hang/test_hang.py", line [56] in test_hang', stdout)) == 2, stdout
    assert not [p for p in (cache / "ac").rglob("*") if p.is_file() and b'"artifact"' in p.read_bytes()]
    assert not (out / "a/hang").exists() and not (out / "b/hang").exists()
    assert sleeping(sandboxes) == []


def compiling_bytecode(nestbox):
    for proc in descendants(nestbox.pid):
        try:
            if b"compileall" in (proc / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_sigint_while_a_venv_compiles_is_a_cancel(tmp_path, resolve_dir, cache):  # noqa: F811
    """The venv's bytecode is compiled in a sandbox of its own, whose supervisor takes
    the signal to hand it on: the run must still hear of it, and store nothing."""
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    proc = subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not compiling_bytecode(proc) and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before its venv's bytecode was compiled"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted by SIGINT" in stdout and "PASSED" not in stdout, stdout
    assert not [p for p in (cache / "ac").rglob("*") if p.is_file() and b'"artifact"' in p.read_bytes()]
    assert list((cache / "tmp").iterdir()) == []
    # Review: compileall takes a ^C for an interruption and exits 1, as for a file that
    # does not compile; the venv was published with its bytecode half made, for good.
    assert not (cache / "venvs").exists() or list((cache / "venvs").iterdir()) == []


# A directory beneath /usr that nestbox, in a mount namespace of its own, sees with the
# test's slow interpreter bound over it: the interpreter nestbox.json names must be
# beneath the system directories, and the host's /usr is not the test's to write.
PROBE_MOUNT = Path("/usr/local/src")
SLOW = "#!/bin/sh\nsleep 601\nexec /usr/bin/python3 \"$@\"\n"
FAST = "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n"


def in_probe_mount(interp_dir, args):
    """nestbox (same pid: unshare and sh exec) with interp_dir seen at PROBE_MOUNT."""
    return ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"', str(interp_dir),
            str(PROBE_MOUNT), str(NESTBOX), *map(str, args)]


def interp_ws(tmp_path, resolve_dir, text):  # noqa: F811
    if not (is_root() and have("unshare") and PROBE_MOUNT.is_dir()):
        pytest.skip(f"needs root, unshare and {PROBE_MOUNT} to bind a slow interpreter over")
    interp = tmp_path / "interp"
    interp.mkdir()
    (interp / "python3").write_text(text)
    (interp / "python3").chmod(0o755)
    interp.chmod(0o755)
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    doc = json.loads((ws / "nestbox.json").read_text())
    doc["python"] = str(PROBE_MOUNT / "python3")
    (ws / "nestbox.json").write_text(json.dumps(doc))
    return ws, interp


def probing(nestbox):
    for proc in descendants(nestbox.pid):
        try:
            if (proc / "cmdline").read_bytes() == b"sleep\x00601\x00":
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("sig,code,name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_during_the_interpreter_probe_is_a_cancel(tmp_path, resolve_dir, cache, sig, code, name):  # noqa: F811
    """Shards are planned before anything runs, and planning asks the interpreter what
    it is, in a sandbox of its own: a ^C then stops the probe, which says nothing about
    the interpreter; the run ends interrupted, with nothing half-made in tmp/."""
    ws, interp = interp_ws(tmp_path, resolve_dir, SLOW)
    proc = subprocess.Popen(in_probe_mount(interp, ["test", "--cache", cache, "--shards-per-target", "2", ws]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: probing(proc) or proc.poll() is not None, "the interpreter probe started")
    assert proc.poll() is None, proc.communicate()
    # The probe asked again answers at once (a new file: the running shell keeps the old).
    (interp / "python3.new").write_text(FAST)
    (interp / "python3.new").chmod(0o755)
    (interp / "python3.new").rename(interp / "python3")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stdout + stderr
    assert "probe" not in stderr and f"interrupted by {name}; not run (1): app/tests" in stdout, stdout + stderr
    assert "PASSED" not in stdout, stdout
    assert list((cache / "tmp").iterdir()) == []
    assert not [p for p in (cache / "ac").rglob("*") if p.is_file() and b'"artifact"' in p.read_bytes()]


def test_an_interpreter_probe_killed_by_a_signal_is_not_the_interpreters_fault(tmp_path, resolve_dir, cache):  # noqa: F811
    ws, interp = interp_ws(tmp_path, resolve_dir, "#!/bin/sh\nkill -KILL $$\n")
    p = subprocess.run(in_probe_mount(interp, ["test", "--cache", cache, "--shards-per-target", "2", ws]),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "the interpreter probe was killed by signal 9" in p.stderr, p.stderr
