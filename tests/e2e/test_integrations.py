"""examples/integrations as a user runs them: the Makefile (`make -j2 check`) and the
worker driver, on a copy of the example workspace with a temporary cache."""
import json
import re
import shutil
import subprocess

import pytest

from conftest import NESTBOX
from test_action import EXAMPLE_TARGETS, RESULT_SCHEMA, assert_valid
from test_target import resolve_dir  # noqa: F401  (session fixture)
from workspace import copy_examples

FAILING_TEST = "\n\ndef test_made_to_fail():\n    assert 1 + 1 == 3, 'broken on purpose'\n"


@pytest.fixture
def ex(tmp_path, resolve_dir):  # noqa: F811
    ex = copy_examples(tmp_path / "examples", resolve_dir)
    assert (ex / "integrations/Makefile").exists()
    shutil.rmtree(ex / "integrations/out", ignore_errors=True)  # from a run in the source tree
    return ex


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def break_project2(ex):
    test = ex / "project2/test/python/billing/test_invoice.py"
    test.write_text(test.read_text() + FAILING_TEST)


def make(ex, cache, *goals):
    return subprocess.run(["make", "-j2", "-C", ex / "integrations", f"NESTBOX={NESTBOX}", f"CACHE={cache}",
                           "PYTHON=/usr/bin/python3", *goals],
                          capture_output=True, text=True, timeout=600)


def driver(ex, cache, *targets):
    return subprocess.run(["/usr/bin/python3", ex / "integrations/worker_driver.py", "--nestbox", NESTBOX,
                           "--cache", cache, "-j", "2", ex, *targets],
                          capture_output=True, text=True, timeout=600)


def make_results(ex):
    out = ex / "integrations/out"
    return {t: json.loads((out / t / "result.json").read_text())
            for t in EXAMPLE_TARGETS if (out / t / "result.json").exists()}


def summary(stdout):
    """The `<target>  STATUS[  (cached)]` lines, as {target: (status, cached)}."""
    lines = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S+)  (PASSED|FAILED|TIMEOUT|ERROR)(  \(cached\))?", line)
        if m:
            assert m[1] not in lines, f"{m[1]} reported twice:\n{stdout}"
            lines[m[1]] = (m[2], bool(m[3]))
    return lines


def test_make_check_runs_every_target_then_replays(ex, cache):
    p = make(ex, cache, "check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout) == {t: ("PASSED", False) for t in EXAMPLE_TARGETS}, p.stdout
    results = make_results(ex)
    assert sorted(results) == EXAMPLE_TARGETS
    for t, r in results.items():
        assert_valid(RESULT_SCHEMA, r)
        assert r["target"] == t and r["status"] == "PASSED" and r["tests"] > 0
        assert (ex / "integrations/out" / t / "junit.xml").exists()
        action = json.loads((ex / "integrations/out/actions" / f"{t}.json").read_text())
        assert action["target"] == t and action["root"] == str(ex.resolve())
    assert cache.is_dir() and list((cache / "ac").rglob("*"))  # CACHE was passed as --cache

    again = make(ex, cache, "check")
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary(again.stdout) == {t: ("PASSED", True) for t in EXAMPLE_TARGETS}, again.stdout
    assert all(r["cached"] is True for r in make_results(ex).values())
    # The same cache entries as nestbox test's.
    t = subprocess.run([NESTBOX, "test", "--cache", cache, ex], capture_output=True, text=True, timeout=600)
    assert t.returncode == 0 and t.stdout.count("(cached)") == 3, t.stdout + t.stderr


def test_make_one_target(ex, cache):
    p = make(ex, cache, "project1/tests")
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout) == {"project1/tests": ("PASSED", False)}
    assert sorted(make_results(ex)) == ["project1/tests"]


def test_make_check_fails_when_a_target_fails(ex, cache):
    break_project2(ex)
    p = make(ex, cache, "-k", "check")  # -k: the other targets still run
    assert p.returncode != 0, p.stdout + p.stderr
    lines = summary(p.stdout)
    assert lines["project2/tests"] == ("FAILED", False), p.stdout
    assert lines.get("lib/tests", ("",))[0] == "PASSED" and lines.get("project1/tests", ("",))[0] == "PASSED", p.stdout + p.stderr
    r = make_results(ex)["project2/tests"]
    assert_valid(RESULT_SCHEMA, r)
    assert r["status"] == "FAILED" and r["failures"] == 1 and r["exit_code"] == 1
    assert "all 3 targets passed" not in p.stdout
    # Without -k too.
    assert make(ex, cache, "check").returncode != 0


def test_make_without_a_working_nestbox_fails(ex, cache, tmp_path):
    p = subprocess.run(["make", "-C", ex / "integrations", f"NESTBOX={tmp_path}/no-nestbox", "check"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "no targets" in p.stderr, p.stdout + p.stderr


def test_worker_driver_runs_every_target_then_replays(ex, cache):
    p = driver(ex, cache)
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout) == {t: ("PASSED", False) for t in EXAMPLE_TARGETS}, p.stdout
    again = driver(ex, cache)
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary(again.stdout) == {t: ("PASSED", True) for t in EXAMPLE_TARGETS}, again.stdout
    one = driver(ex, cache, "lib/tests")
    assert one.returncode == 0 and summary(one.stdout) == {"lib/tests": ("PASSED", True)}, one.stdout


def test_worker_driver_fails_when_a_target_fails(ex, cache):
    break_project2(ex)
    p = driver(ex, cache)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = summary(p.stdout)
    assert lines == {"lib/tests": ("PASSED", False), "project1/tests": ("PASSED", False),
                     "project2/tests": ("FAILED", False)}, p.stdout


def test_worker_driver_unknown_target(ex, cache):
    p = driver(ex, cache, "nope/tests")
    assert p.returncode == 2 and "nope/tests" in p.stderr, p.stdout + p.stderr
