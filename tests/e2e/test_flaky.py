"""Flaky tests: --runs-per-test, --attempts (FLAKY, Surefire's flaky and rerun
elements), --until-failure, --shuffle, and the seed and repro hint on failure lines."""
import json
import re
import xml.etree.ElementTree as ET

import pytest

import surefire
from conftest import ROOT, run
from workspace import build_wheelhouse, make_workspace

jsonschema = pytest.importorskip("jsonschema")


def schema(path):
    v = jsonschema.Draft202012Validator(json.loads((ROOT / path).read_text()))
    return v.validate


RESULT = schema("runner/action/schema/result.schema.json")
ACTION = schema("runner/action/schema/action.schema.json")
WORKSPACE = schema("runner/workspace/nestbox.schema.json")

# Fails for some seeds, passes for others: what --runs-per-test finds.
SEEDED = (
    "import os\n\n"
    "def test_steady():\n    assert True\n\n"
    "def test_seeded():\n"
    "    seed = int(os.environ['TEST_RANDOM_SEED'])\n"
    "    run = os.environ['TEST_RUN_NUMBER']\n"
    "    assert seed % 3 != 0, f'run {run}: seed {seed} is a multiple of 3'\n"
)
# Fails on a run's first attempt only: real non-determinism as far as the seed goes
# (the retry keeps the seed), what --attempts turns into FLAKY.
FIRST_ATTEMPT = (
    "import os\n\n"
    "def test_steady():\n    assert True\n\n"
    "def test_also_steady():\n    assert True\n\n"
    "def test_cold_start():\n"
    "    print('attempt', os.environ['NESTBOX_ATTEMPT'])\n"
    "    assert os.environ['NESTBOX_ATTEMPT'] != '1', 'cold on the first attempt'\n"
)
ALWAYS = (
    "import os\n\n"
    "def test_broken():\n"
    "    attempt, seed = os.environ['NESTBOX_ATTEMPT'], os.environ['PYTHONHASHSEED']\n"
    "    assert False, f'attempt {attempt} seed {seed}'\n"
)
ORDERED = "".join(f"def test_{i:02d}():\n    pass\n\n" for i in range(12))

TARGETS = {
    "app/seeded": {"tests": ["tests/test_seeded.py"]},
    "app/first": {"tests": ["tests/test_first.py"]},
    "app/always": {"tests": ["tests/test_always.py"]},
    "app/ordered": {"tests": ["tests/test_ordered.py"]},
    "app/retried": {"tests": ["tests/test_first.py"], "attempts": 2},
}
FILES = {
    "src/app/__init__.py": "",
    "tests/test_seeded.py": SEEDED,
    "tests/test_first.py": FIRST_ATTEMPT,
    "tests/test_always.py": ALWAYS,
    "tests/test_ordered.py": ORDERED,
}

REPRO = re.compile(r"  seed (\d+)  nestbox repro ([0-9a-f]{12})$")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    resolve = build_wheelhouse(tmp_path_factory.mktemp("resolve"))
    return make_workspace(tmp_path_factory.mktemp("flaky") / "ws", resolve, FILES, TARGETS)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def table_rows(stdout):
    """The flake table's rows: {test id: (runs, failures, rate, [seeds])}."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r" +(\d+) +(\d+) +([\d.]+)%  (\S+) (\S+)  seeds:((?: \d+)+)$", line)
        if m:
            rows[m[5]] = (int(m[1]), int(m[2]), float(m[3]), [int(s) for s in m[6].split()])
    return rows


def test_runs_per_test_reports_flake_rate_and_failing_seeds(ws, cache):
    p = run(["test", "--cache", cache, ws, "app/seeded", "--runs-per-test", "20"], timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = [l for l in p.stdout.splitlines() if l.startswith("app/seeded  ")]
    assert len(lines) == 20, p.stdout
    # The last line counts the runs (one target, twenty runs of it).
    assert re.search(r"^20 runs: \d+ passed, \d+ failed", p.stdout, re.M), p.stdout
    failed = {}
    for l in lines:
        run_no = int(re.search(r"  run (\d+)/20", l)[1])
        if " FAILED in " in l:
            m = REPRO.search(l)
            assert m, l  # every failure line ends with its seed and the command that reproduces it
            failed[run_no] = int(m[1])
    # Each run has its own seed, so some fail and some pass...
    assert 0 < len(failed) < 20, p.stdout
    assert all(s % 3 == 0 for s in failed.values())
    # ...and the test saw its own run number (TEST_RUN_NUMBER) and seed.
    for run_no, seed in failed.items():
        assert f"run {run_no}: seed {seed} is a multiple of 3" in p.stdout
    rows = table_rows(p.stdout)
    assert set(rows) == {"tests.test_seeded::test_seeded"}, p.stdout
    runs, failures, rate, seeds = rows["tests.test_seeded::test_seeded"]
    assert (runs, failures) == (20, len(failed))
    assert rate == pytest.approx(100 * len(failed) / 20, abs=0.05)
    assert seeds == sorted(failed.values())

    # Every run is its own action: none of the 20 was a cache hit of another, and the
    # passing ones replay on a second invocation.
    again = run(["test", "--cache", cache, ws, "app/seeded", "--runs-per-test", "20"], timeout=600)
    assert again.stdout.count("(cached)") == 20 - len(failed), again.stdout


def test_seed_fixes_every_run(ws, cache, tmp_path):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/seeded", "--runs-per-test", "3", "--seed", "9"])
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout.count("  seed 9  nestbox repro ") == 3, p.stdout
    digests = set(re.findall(r"nestbox repro ([0-9a-f]{12})", p.stdout))
    assert len(digests) == 3  # the run number is in the action
    assert table_rows(p.stdout)["tests.test_seeded::test_seeded"] == (3, 3, 100.0, [9])
    # The combined report keeps the runs apart, and so does DIR/<target>/: run-R/ each.
    suites = [e.get("name") for e in ET.parse(out / "junit.xml").getroot().iter("testsuite")]
    assert suites == ["app/seeded", "app/seeded run 2", "app/seeded run 3"]
    for r in (1, 2, 3):
        assert json.loads((out / f"app/seeded/run-{r}/result.json").read_text())["run"] == r


def test_attempts_make_a_flaky_target(ws, cache, tmp_path):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/first", "--attempts", "3"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "app/first  FLAKY in " in p.stdout and "after 2 attempts" in p.stdout, p.stdout
    assert "  FLAKY  tests.test_first::test_cold_start (failed 1 of 2 attempts)" in p.stdout
    assert "1 flaky" in p.stdout.splitlines()[-1]
    assert table_rows(p.stdout)["tests.test_first::test_cold_start"][:3] == (2, 1, 50.0)

    xml = (out / "app/first/junit.xml").read_bytes()
    assert surefire.check(xml) == []
    assert surefire.check((out / "junit.xml").read_bytes()) == []
    root = ET.fromstring(xml)
    props = {e.get("name"): e.get("value") for e in root.iter("property")}
    assert props["attempt"] == "2"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"test_steady", "test_also_steady", "test_cold_start"}
    cold = cases["test_cold_start"]
    assert cold.find("failure") is None
    flaky = cold.findall("flakyFailure")
    assert len(flaky) == 1
    assert "cold on the first attempt" in flaky[0].get("message")
    assert flaky[0].get("type") == "AssertionError"
    assert "cold on the first attempt" in flaky[0].find("stackTrace").text
    assert not cases["test_steady"].findall("flakyFailure")

    r = json.loads((out / "app/first/result.json").read_text())
    RESULT(r)
    assert r["status"] == "FLAKY" and r["exit_code"] == 0 and r["attempt"] == 2
    assert [a["status"] for a in r["attempts"]] == ["FAILED", "PASSED"]
    assert r["action"] == r["attempts"][0]["action"]
    # Only the failed test ran again.
    log = (out / "app/first/log").read_text()
    assert "attempt 2 of run 1" in log and "2 deselected / 1 selected" in log, log

    # The FLAKY record is the first attempt's action: `nestbox repro` re-runs that, and
    # it fails again as the first attempt did.
    rp = run(["repro", "--cache", cache, r["action"][:12]])
    assert rp.returncode == 1, rp.stdout + rp.stderr
    assert "(recorded FLAKY)" in rp.stdout and "cold on the first attempt" in rp.stdout

    # Cached as flaky; --flaky-fails makes it exit 1.
    again = run(["test", "--cache", cache, ws, "app/first", "--attempts", "3", "--flaky-fails"])
    assert again.returncode == 1, again.stdout + again.stderr
    assert "app/first  FLAKY in " in again.stdout and "(cached)" in again.stdout


def test_attempts_from_nestbox_json(ws, cache):
    p = run(["test", "--cache", cache, ws, "app/retried"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "app/retried  FLAKY in " in p.stdout


def test_a_run_that_never_passes_has_rerun_failures_with_its_seed(ws, cache, tmp_path):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/always", "--attempts", "3"])
    assert p.returncode == 1, p.stdout + p.stderr
    line = next(l for l in p.stdout.splitlines() if l.startswith("app/always  "))
    assert " FAILED in " in line and "after 3 attempts" in line and REPRO.search(line), line
    xml = (out / "app/always/junit.xml").read_bytes()
    assert surefire.check(xml) == []
    tc = ET.fromstring(xml).find(".//testcase")
    seed = REPRO.search(line)[1]
    assert tc.find("failure").get("message").startswith(f"AssertionError: attempt 1 seed {seed}")
    reruns = tc.findall("rerunFailure")
    # A retry keeps its run's seed: only the attempt number moves.
    assert [e.get("message").split("\n")[0] for e in reruns] == [
        f"AssertionError: attempt 2 seed {seed}", f"AssertionError: attempt 3 seed {seed}"]
    r = json.loads((out / "app/always/result.json").read_text())
    RESULT(r)
    assert r["status"] == "FAILED" and r["failed_node_ids"] == ["tests/test_always.py::test_broken"]
    # The failure line's hint works: the run fails the same way every time.
    rp = run(["repro", "--cache", cache, REPRO.search(line)[2], "--runs", "3"])
    assert rp.returncode == 1, rp.stdout + rp.stderr
    assert "3 of 3 runs failed (recorded FAILED)" in rp.stdout
    assert rp.stdout.count(f"attempt 1 seed {seed}") >= 3


def test_until_failure_stops_at_the_first_failing_run(ws, cache):
    p = run(["test", "--cache", cache, ws, "app/seeded", "--until-failure", "--max-runs", "40"], timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = [l for l in p.stdout.splitlines() if l.startswith("app/seeded  ")]
    assert all(" PASSED in " in l for l in lines[:-1]) and " FAILED in " in lines[-1], p.stdout
    m = re.search(r"until-failure: run (\d+) failed \(seed (\d+)\); reproduce it: nestbox repro ([0-9a-f]{12})",
                  p.stdout)
    assert m, p.stdout
    assert int(m[1]) == len(lines) and int(m[2]) % 3 == 0
    assert REPRO.search(lines[-1])[2] == m[3]


def test_until_failure_without_a_failure(ws, cache):
    p = run(["test", "--cache", cache, ws, "app/ordered", "--until-failure", "--max-runs", "3"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "until-failure: no failure in 3 runs" in p.stdout
    assert "flake table: no test failed in any run" in p.stdout


def order_of(cache, ws, tmp_path, *opts):
    out = tmp_path / "o"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/ordered", *opts])
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads((out / "app/ordered/result.json").read_text())
    ran = [c.get("name") for c in ET.parse(out / "app/ordered/junit.xml").getroot().iter("testcase")]
    return r, ran


def test_shuffle_is_stable_given_the_seed(ws, cache, tmp_path):
    plain, ran = order_of(cache, ws, tmp_path)
    assert ran == [f"test_{i:02d}" for i in range(12)] and "order" not in plain and plain["shuffle"] is False
    r7, ran7 = order_of(cache, ws, tmp_path, "--shuffle", "--seed", "7")
    RESULT(r7)
    assert r7["shuffle"] is True
    assert [o.split("::")[1] for o in r7["order"]] == ran7  # the recorded order is the order they ran in
    assert sorted(ran7) == ran and ran7 != ran
    again, _ = order_of(cache, ws, tmp_path, "--shuffle", "--seed", "7")
    assert again["cached"] and again["order"] == r7["order"]
    fresh, ran_fresh = order_of(cache, ws, tmp_path, "--shuffle", "--seed", "7", "--no-cache")
    assert not fresh["cached"] and ran_fresh == ran7
    r8, ran8 = order_of(cache, ws, tmp_path, "--shuffle", "--seed", "8")
    assert ran8 != ran7 and sorted(ran8) == ran
    assert r8["action"] != r7["action"]


def test_new_fields_follow_their_schemas(ws):
    WORKSPACE(json.loads((ws / "nestbox.json").read_text()))  # "attempts", a category timeout
    p = run(["actions", ws, "app/ordered", "--shuffle", "--test-timeout", "long"])
    assert p.returncode == 0, p.stderr
    a = json.loads(p.stdout)
    assert a["shuffle"] is True and a["policy"]["timeout"] == 900
    ACTION(a)
    ACTION({**a, "attempt": 2, "select": ["tests/test_ordered.py::test_03"], "policy": {"timeout": "short"}})


def test_surefire_check_catches_what_it_should():
    bad = b"""<testsuites><testsuite name="s" tests="1">
      <testcase name="t"><flakyFailure message="m">trace</flakyFailure><failure/></testcase>
      <testcase classname="c"><rerunFailure type="x"/></testcase>
    </testsuite></testsuites>"""
    problems = "\n".join(surefire.check(bad))
    assert "lacks the required type attribute" in problems
    assert "has text of its own" in problems
    assert "<failure> comes after <flakyFailure>" in problems
    assert "lacks the required name attribute" in problems
    assert "<rerunFailure> in a testcase that did not fail" in problems


@pytest.mark.parametrize("opt,value,message", [
    ("--runs-per-test", "0", "--runs-per-test 0: expected an integer from 1 to 100000"),
    ("--attempts", "101", "--attempts 101: expected an integer from 1 to 100"),
    ("--max-runs", "x", "--max-runs x: expected an integer from 1 to 100000"),
])
def test_bad_counts_are_usage_errors(ws, cache, opt, value, message):
    p = run(["test", "--cache", cache, ws, opt, value])
    assert p.returncode == 2
    assert p.stderr.strip() == f"nestbox: {message}"
