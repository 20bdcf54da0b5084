"""The denial report of `nestbox test`: a test calling syscalls the policy denies shows
them, counted by the supervisor, in result.json, the junit properties and the summary;
and what a test reads of /proc/1 and mountinfo names nothing of the host."""
import json
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import run, warm_for_limited_targets
from workspace import build_wheelhouse, make_workspace

pytestmark = pytest.mark.sandbox

DENYING = {
    "src/app/__init__.py": "",
    "tests/test_denied.py": (
        "import ctypes, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n\n"
        "def test_mount_and_ptrace():\n"
        "    assert libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == -1\n"
        "    assert ctypes.get_errno() == errno.EPERM\n"
        "    for _ in range(3):\n"
        "        assert libc.ptrace(0, 0, 0, 0) == -1\n"
        "    assert ctypes.get_errno() == errno.EPERM\n"
        "    # a test cannot forge the report by printing one\n"
        "    print('denied: mount(2) x100')\n"),
}


@pytest.fixture(scope="module")
def resolve_dir(tmp_path_factory):
    return build_wheelhouse(tmp_path_factory.mktemp("resolve"))


@pytest.mark.parametrize("zygote", ["--no-zygote", "--zygote"])
def test_denials_show_in_result_junit_and_summary(tmp_path, resolve_dir, zygote):
    """Warm too: the zygote's own filter, stacked under the target's, denies with a
    lower-ranked action (sandbox/seccomp.c), so the target's report sees every call."""
    ws = make_workspace(tmp_path / "ws", resolve_dir, DENYING)
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "cache", "--output", out, zygote, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "    denied: mount(2) x1, ptrace(2) x3\n" in p.stdout, p.stdout
    result = json.loads((out / "app/tests/result.json").read_text())
    assert result["denied"] == {"mount": 1, "ptrace": 3}
    assert result.get("warm", False) == (zygote == "--zygote" and warm_for_limited_targets()), p.stderr
    props = {e.get("name"): e.get("value") for e in ET.parse(out / "app/tests/junit.xml").getroot().iter("property")}
    assert props["denied"] == "mount(2) x1, ptrace(2) x3"
    # A cache hit replays the same report.
    p = run(["test", "--cache", tmp_path / "cache", ws])
    assert "(cached)" in p.stdout and "    denied: mount(2) x1, ptrace(2) x3\n" in p.stdout, p.stdout


def test_no_denials_says_none(tmp_path, resolve_dir):
    files = {"src/app/__init__.py": "", "tests/test_ok.py": "def test_ok():\n    assert True\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "cache", "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "denied:" not in p.stdout
    assert json.loads((out / "app/tests/result.json").read_text())["denied"] == {}
    props = {e.get("name"): e.get("value") for e in ET.parse(out / "app/tests/junit.xml").getroot().iter("property")}
    assert props["denied"] == "none"


def test_proc_shows_nothing_of_the_host(tmp_path, resolve_dir):
    files = {"src/app/__init__.py": "",
             "tests/test_proc.py": "def test_proc():\n"
                                   "    print(repr(open('/proc/1/cmdline', 'rb').read()))\n"
                                   "    print(open('/proc/self/mountinfo').read())\n"
                                   "    assert False, 'show the output'\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    log = (out / "app/tests/log").read_text() + (out / "app/tests/junit.xml").read_text()
    assert "b'nestbox-init\\x00'" in log, log
    assert "/work " in log
    assert str(cache) not in log and str(tmp_path) not in log, log


def test_memory_limit_scope_is_said_plainly(tmp_path, resolve_dir):
    """rlimit (no cgroup could be had: as nobody here) binds each process alone: doctor,
    result.json and the summary say so. Run as root and as nobody by tests/run."""
    files = {"src/app/__init__.py": "", "tests/test_ok.py": "def test_ok():\n    assert True\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "cache", "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    limits = json.loads((out / "app/tests/result.json").read_text())["limits"]
    doctor = run(["doctor"]).stdout
    per_process = "    memory limited per process only (rlimit: no cgroup could be had)\n"
    if limits["memory_backend"] == "rlimit":
        assert limits["memory_scope"] == "per process only"
        assert per_process in p.stdout, p.stdout
        assert re.search(r"^  memory limit +rlimit \(memory limited per process only", doctor, re.M), doctor
    else:
        assert limits["memory_scope"] == "sandbox"
        assert per_process not in p.stdout
        assert "per process only" not in doctor
