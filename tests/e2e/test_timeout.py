"""Timeouts: Bazel's categories in nestbox.json, action files and --test-timeout, and
the report of a run that timed out: the test that was running, every thread's stack."""
import json
import xml.etree.ElementTree as ET

import pytest

from conftest import run
from workspace import build_wheelhouse, make_workspace

HANGS = (
    "import threading, time\n\n"
    "def test_quick():\n    assert True\n\n"
    "def helper_waits_forever():\n    time.sleep(3600)\n\n"
    "def test_sleeps_forever():\n"
    "    threading.Thread(target=helper_waits_forever, daemon=True).start()\n"
    "    time.sleep(3600)\n\n"
    "def test_never_reached():\n    assert True\n"
)
QUICK = "def test_ok():\n    assert True\n"
# A test that forges the driver's records, then hangs: the host must not follow its
# links or believe its control characters.
FORGER = (
    "import os, time\n\n"
    "def test_forges():\n"
    "    for name in ('.nestbox-current', '.nestbox-stack'):\n"
    "        os.unlink('/out/' + name) if os.path.lexists('/out/' + name) else None\n"
    "        os.symlink('/etc/passwd', '/out/' + name)\n"
    "    time.sleep(3600)\n"
)

TARGETS = {
    "app/hang": {"tests": ["tests/test_hang.py"], "timeout": 3},
    "app/short": {"tests": ["tests/test_quick.py"], "timeout": "short"},
    "app/eternal": {"tests": ["tests/test_quick.py"], "timeout": "eternal"},
    "app/forger": {"tests": ["tests/test_forger.py"], "timeout": 3},
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    resolve = build_wheelhouse(tmp_path_factory.mktemp("resolve"))
    files = {"src/app/__init__.py": "", "tests/test_hang.py": HANGS, "tests/test_quick.py": QUICK,
             "tests/test_forger.py": FORGER}
    return make_workspace(tmp_path_factory.mktemp("timeout") / "ws", resolve, files, TARGETS)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_a_timeout_names_the_running_test_and_carries_every_stack(ws, cache, tmp_path):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/hang"], timeout=120)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "app/hang  TIMEOUT in " in p.stdout and "nestbox repro " in p.stdout
    assert "timed out after 3s in tests/test_hang.py::test_sleeps_forever (SIGABRT, then SIGKILL)" in p.stdout
    cases = list(ET.parse(out / "app/hang/junit.xml").getroot().iter("testcase"))
    assert len(cases) == 1
    tc = cases[0]
    assert (tc.get("classname"), tc.get("name")) == ("tests.test_hang", "test_sleeps_forever")
    err = tc.find("error")
    assert "tests/test_hang.py::test_sleeps_forever" in err.get("message")
    stack = err.text
    # faulthandler on the sandbox's SIGABRT: the main thread in the test, the helper
    # thread in its own function.
    assert "Current thread" in stack, stack
    assert 'File "/work/tests/test_hang.py", line 11 in test_sleeps_forever' in stack, stack
    assert 'line 7 in helper_waits_forever' in stack, stack
    assert stack.count("Thread 0x") >= 1
    r = json.loads((out / "app/hang/result.json").read_text())
    assert r["status"] == "TIMEOUT" and r["pytest"]["timed_out"] and r["limits"]["timeout"] == 3


def test_categories_in_nestbox_json(ws, cache, tmp_path):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/short", "app/eternal"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads((out / "app/short/result.json").read_text())["limits"]["timeout"] == 60
    assert json.loads((out / "app/eternal/result.json").read_text())["limits"]["timeout"] == 3600


@pytest.mark.parametrize("opt", ["--test-timeout", "--timeout"])
def test_test_timeout_overrides(ws, cache, tmp_path, opt):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/short", opt, "long"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads((out / "app/short/result.json").read_text())["limits"]["timeout"] == 900
    p = run(["test", "--cache", cache, "--output", out, ws, "app/short", opt, "12.5"])
    assert json.loads((out / "app/short/result.json").read_text())["limits"]["timeout"] == 12.5


def test_a_bad_category_is_a_usage_error(ws, cache):
    p = run(["test", "--cache", cache, ws, "--test-timeout", "quick"])
    assert p.returncode == 2
    assert p.stderr.strip() == ("nestbox: --test-timeout quick: expected a positive number of seconds "
                                "(at most a week) or short, moderate, long, eternal")


def test_categories_in_action_files(ws, cache, tmp_path):
    p = run(["actions", ws, "app/short"])
    assert p.returncode == 0, p.stderr
    action = json.loads(p.stdout)
    assert action["policy"]["timeout"] == 60
    action["policy"]["timeout"] = "moderate"
    r = run(["run", "--cache", cache, "-"], input=json.dumps(action))
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["limits"]["timeout"] == 300
    action["policy"]["timeout"] = "forever"
    r = run(["run", "--cache", cache, "-"], input=json.dumps(action))
    assert r.returncode == 2
    assert "policy.timeout: \"forever\": expected seconds or one of short, moderate, long, eternal" in r.stderr


def test_a_bad_category_in_nestbox_json(tmp_path, ws, cache):
    doc = json.loads((ws / "nestbox.json").read_text())
    doc["targets"]["app/short"]["timeout"] = "brief"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "nestbox.json").write_text(json.dumps(doc))
    (bad / "3rdparty").symlink_to(ws / "3rdparty")
    p = run(["test", "--cache", cache, bad, "app/short"])
    assert p.returncode == 2
    assert ('targets."app/short".timeout: "brief": expected seconds or one of short, moderate, long, eternal'
            in p.stderr), p.stderr


def test_forged_records_are_not_followed(ws, cache, tmp_path):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/forger"], timeout=120)
    assert p.returncode == 4, p.stdout + p.stderr
    # Neither link is followed: no test is named, and the report's text is the log's.
    assert "timed out after 3s (SIGABRT, then SIGKILL)" in p.stdout, p.stdout
    assert "root:" not in p.stdout and "root:" not in (out / "app/forger/junit.xml").read_text()
    tc = ET.parse(out / "app/forger/junit.xml").getroot().find(".//testcase")
    assert tc.get("name") == "nestbox"
