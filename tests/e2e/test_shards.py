"""Shards inside a target (issue 10): `shards` / --shards-per-target, the split by
learned durations, the plan in each shard's result, and a second run a cache hit."""
import hashlib
import json
import xml.etree.ElementTree as ET

import pytest

from conftest import run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

MANY = "import pytest\n\n@pytest.mark.parametrize('i', range(40))\ndef test_i(i):\n    pass\n"


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def cases(path):
    root = ET.parse(path).getroot()
    return [(c.get("classname"), c.get("name"), outcome(c)) for c in root.iter("testcase")]


def outcome(case):
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def shard_run(cache, ws, out, *extra):
    p = run(["test", "--cache", cache, "--output", out, *extra, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    return p


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    files = {**PASSING, "tests/test_many.py": MANY}
    return make_workspace(tmp_path / "ws", resolve_dir, files)


@pytest.mark.parametrize("n", [2, 3])
def test_shards_together_run_exactly_the_unsharded_tests(tmp_path, ws, cache, n):
    whole = shard_run(cache, ws, tmp_path / "whole")
    assert "(42 tests)" in whole.stdout, whole.stdout
    expected = sorted(cases(tmp_path / "whole/app/tests/junit.xml"))
    p = shard_run(cache, ws, tmp_path / "sharded", "--shards-per-target", str(n), "-v")
    got = []
    for k in range(1, n + 1):
        d = tmp_path / f"sharded/app/tests/shard-{k}-of-{n}"
        got += cases(d / "junit.xml")
        res = json.loads((d / "result.json").read_text())
        assert res["shard"] == {"index": k, "count": n}
        plan = res["shard_plan"]
        assert plan["collected"] == 42 and plan["tests"] == len(cases(d / "junit.xml"))
        assert plan["known"] == plan["tests"]  # the unsharded run taught every duration
    assert sorted(got) == expected  # each test once, none lost
    assert p.stdout.count("  plan: shard ") == n, p.stdout
    # The top junit.xml folds the shards into one suite for the target.
    top = ET.parse(tmp_path / "sharded/junit.xml").getroot()
    suites = top.findall("testsuite")
    assert [s.get("name") for s in suites] == ["app/tests"] and suites[0].get("tests") == "42"
    assert f"{n} targets" not in p.stdout and "42 tests" in p.stdout.splitlines()[-1]


def test_second_identical_sharded_run_is_a_cache_hit(tmp_path, ws, cache):
    first = shard_run(cache, ws, tmp_path / "o1", "--shards-per-target", "2")
    assert "(cached)" not in first.stdout
    shard_run(cache, ws, tmp_path / "o2")  # learns new durations meanwhile
    again = shard_run(cache, ws, tmp_path / "o3", "--shards-per-target", "2")
    assert again.stdout.count("(cached)") == 2, again.stdout


def test_shards_in_the_target_and_bazel_variables(tmp_path, resolve_dir, cache):  # noqa: F811
    files = {**PASSING, "tests/test_env.py":
             "import os\n\ndef test_env():\n"
             "    assert os.path.exists(os.environ['TEST_SHARD_STATUS_FILE'])\n"
             "    assert os.environ['TEST_TOTAL_SHARDS'] == '2'\n"
             "    assert os.environ['TEST_SHARD_INDEX'] in ('0', '1')\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {"app/tests": {"shards": 2}})
    p = shard_run(cache, ws, tmp_path / "out")
    assert p.stdout.count("app/tests [shard ") == 2 and "[shard 2/2]  PASSED" in p.stdout, p.stdout
    assert (tmp_path / "out/app/tests/shard-2-of-2/junit.xml").exists()
    bad = make_workspace(tmp_path / "bad", resolve_dir, PASSING, {"app/tests": {"shards": 0}})
    p = run(["test", "--cache", cache, bad])
    assert p.returncode == 2 and ".shards: expected an integer from 1 to 1000" in p.stderr, p.stderr
    p = run(["test", "--cache", cache, "--shards-per-target", "0", ws])
    assert p.returncode == 2 and "--shards-per-target 0" in p.stderr


FROZEN = ("import gc, pytest\n\n@pytest.mark.parametrize('i', range(4))\ndef test_frozen(i):\n"
          "    assert gc.get_freeze_count() > 1000\n")


def test_every_shard_starts_with_pytest_frozen_out_of_the_collector(tmp_path, resolve_dir, cache):  # noqa: F811
    """A shard's fixed cost: the full collections that collection and the tests set
    off do not walk the interpreter's and pytest's objects again (gc.freeze before
    pytest.main, as the warm interpreter does), in a shard and unsharded alike."""
    ws = make_workspace(tmp_path / "ws", resolve_dir, {"src/app/__init__.py": "", "tests/test_frozen.py": FROZEN})
    for extra in ([], ["--shards-per-target", "2"]):
        p = shard_run(cache, ws, tmp_path / ("out%d" % len(extra)), "--no-cache", *extra)
        assert "4 tests" in p.stdout.splitlines()[-1] and "0 failed" in p.stdout, p.stdout


def test_plan_balances_one_long_test_among_many_fast(tmp_path, resolve_dir, cache):  # noqa: F811
    """One 4.6 s test among 700 fast ones: once their durations are learned, the
    largest shard's planned load is within 10% of the ideal. Asserted on the plan."""
    files = {
        "src/app/__init__.py": "",
        "tests/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(4.6)\n",
        "tests/test_fast.py": "import time, pytest\n\n@pytest.mark.parametrize('i', range(700))\n"
                              "def test_fast(i):\n    time.sleep(0.005)\n",
    }
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    shard_run(cache, ws, tmp_path / "learn")
    shard_run(cache, ws, tmp_path / "out", "--shards-per-target", "2")
    plans = [json.loads((tmp_path / f"out/app/tests/shard-{k}-of-2/result.json").read_text())["shard_plan"]
             for k in (1, 2)]
    assert sum(p["tests"] for p in plans) == 701
    ideal = plans[0]["ideal_sec"]
    assert ideal >= 4.6 and plans[0]["largest_sec"] <= 1.1 * ideal, plans
    # The slow test's shard holds few others: the split is by duration, not by count.
    assert min(p["tests"] for p in plans) < 300, plans


def test_unused_pins_are_pruned_used_ones_kept(tmp_path, ws, cache):
    import os
    import time
    shard_run(cache, ws, tmp_path / "o1", "--shards-per-target", "2")
    [pin] = list((cache / "plans").iterdir())
    old = time.time() - 40 * 24 * 3600
    os.utime(pin, (old, old))
    shard_run(cache, ws, tmp_path / "o2", "--shards-per-target", "2")  # a use touches it
    assert pin.stat().st_mtime > old + 24 * 3600
    os.utime(pin, (old, old))
    (ws / "tests/test_new.py").write_text("def test_new():\n    pass\n")  # a new group, a new pin
    shard_run(cache, ws, tmp_path / "o3", "--shards-per-target", "2")
    assert not pin.exists() and len(list((cache / "plans").iterdir())) == 1


@pytest.mark.parametrize("damage", ["torn", "not json", "a link", "a folder"])
def test_a_damaged_pin_is_replaced_not_fatal(tmp_path, ws, cache, damage):
    # Review: a pin torn (or anything else not a pin) stayed in plans/ for good, and
    # every sharded run of its group failed with exit 3 on it.
    import os
    import shutil
    shard_run(cache, ws, tmp_path / "o1", "--shards-per-target", "2")
    [pin] = list((cache / "plans").iterdir())
    good = json.loads(pin.read_text())
    pin.chmod(0o644)
    if damage == "torn":
        pin.write_bytes(pin.read_bytes()[:20])
    elif damage == "not json":
        pin.write_text('{"schema": "nope"}')
    elif damage == "a link":
        pin.unlink()
        os.symlink("/etc/passwd", pin)
    else:
        pin.unlink()
        pin.mkdir()
        (pin / "x").write_text("")
    for attempt in range(2):
        p = run(["test", "--cache", cache, "--output", tmp_path / f"o{2 + attempt}", "--shards-per-target", "2",
                 "--force", ws])
        assert p.returncode == 0, (attempt, p.stdout + p.stderr)
    assert pin.is_file() and not pin.is_symlink(), damage
    assert json.loads(pin.read_text())["schema"] == good["schema"]
    assert os.path.exists("/etc/passwd")
    shutil.rmtree(tmp_path / "o1")


def test_actions_of_a_shard_carry_the_pinned_durations(tmp_path, ws, cache):
    shard_run(cache, ws, tmp_path / "learn")
    shard_run(cache, ws, tmp_path / "o", "--shard", "1/2")  # pins the learned durations
    p = run(["actions", "--cache", cache, "--shard", "1/2", ws])
    assert p.returncode == 0, p.stderr
    action = json.loads(p.stdout)
    assert len(action["shard"]["durations"]) == 42 and all(v >= 1 for v in action["shard"]["durations"].values())
    (tmp_path / "a.json").write_text(p.stdout)
    r = run(["run", "--cache", cache, tmp_path / "a.json"])
    assert r.returncode == 0 and json.loads(r.stdout)["cached"] is True, r.stdout + r.stderr
    bad = dict(action, shard={"index": 1, "count": 2, "durations": {"x": -1}})
    (tmp_path / "b.json").write_text(json.dumps(bad))
    r = run(["run", "--cache", cache, tmp_path / "b.json"])
    assert r.returncode == 2 and ".shard.durations: expected an object" in r.stderr, r.stderr


GONE = "def test_gone_a():\n    pass\n\ndef test_gone_b():\n    pass\n"
NEW = '''import pytest


@pytest.fixture(params=["a", "b", "c"])
def letter(request):
    return request.param


def test_fixture_params(letter):
    assert letter in "abc"


@pytest.mark.parametrize("x", [1])
def test_single(x):
    pass


@pytest.mark.parametrize("x", [1, 1, 2], ids=["same", "same", "other"])
def test_duplicate_ids(x):
    pass


@pytest.mark.parametrize("y", range(5))
class TestGrid:
    def test_m(self, y):
        pass

    @pytest.mark.parametrize("z", range(3))
    def test_n(self, y, z):
        pass


def test_plain():
    pass
'''
# Each item pytest makes, as it makes it: what a shard's collection cost.
MADE = ("import os\n\ndef pytest_itemcollected(item):\n"
        "    with open(os.path.join(os.environ['TEST_UNDECLARED_OUTPUTS_DIR'], 'made'), 'a') as f:\n"
        "        f.write(item.nodeid + '\\n')\n")


def test_every_test_runs_once_after_tests_were_added_and_removed(tmp_path, resolve_dir, cache):  # noqa: F811
    """The plan is made from the durations learned before the change: it names the
    tests of a removed file and not the new ones (placed by the hash of their id). With
    3 shards every test of the changed suite runs exactly once, parametrized, fixture-
    parametrized, class-parametrized, duplicate ids and all, and a shard makes items
    only of its own tests of the big parametrized function."""
    files = {**PASSING, "tests/test_many.py": MANY, "tests/test_gone.py": GONE, "tests/conftest.py": MADE}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    shard_run(cache, ws, tmp_path / "learn")
    (ws / "tests/test_gone.py").unlink()
    (ws / "tests/test_new.py").write_text(NEW)
    (ws / "tests/test_many.py").write_text(MANY + "\n\n@pytest.mark.parametrize('j', range(7))\n"
                                           "def test_added(j):\n    pass\n")
    p = shard_run(cache, ws, tmp_path / "sharded", "--shards-per-target", "3")
    [plan_file] = cache.glob("trees/*/plan.json")
    plan = json.loads(plan_file.read_text())
    assert plan["schema"] == "nestbox.shard-plan/v1" and plan["shards"] == 3
    assert "tests.test_gone::test_gone_a" in plan["tests"]  # the removed file's tests are planned
    assert not any("test_added" in k or "test_new" in k for k in plan["tests"])  # the new ones are not
    whole = shard_run(cache, ws, tmp_path / "whole", "--no-cache")  # --no-cache: learns nothing
    expected = sorted(cases(tmp_path / "whole/app/tests/junit.xml"))
    assert len(expected) == 2 + 40 + 7 + 3 + 1 + 3 + 5 + 15 + 1, expected
    got, known = [], 0
    for k in (1, 2, 3):
        d = tmp_path / f"sharded/app/tests/shard-{k}-of-3"
        mine = cases(d / "junit.xml")
        got += mine
        res = json.loads((d / "result.json").read_text())["shard_plan"]
        assert res["collected"] == len(expected) and res["tests"] == len(mine), res
        known += res["known"]
        made = (d / "undeclared/made").read_text().splitlines()
        many = [n for n in made if "test_many.py::test_i[" in n]
        assert len(many) == sum(1 for c in mine if c[1].startswith("test_i[")), (k, many)
    assert sorted(got) == expected, p.stdout  # each test once, none lost
    assert known == 42  # the tests that were there before the change: the plan placed them
    assert all(o == "passed" for _, _, o in got)
    # The shards that passed whole forgot the removed file's tests and learned the new.
    learned = json.loads((cache / "durations" / (hashlib.sha256(b"app/tests").hexdigest() + ".json")).read_text())
    assert len(learned["tests"]) == len(expected) and "tests.test_gone::test_gone_a" not in learned["tests"]
    assert sorted(learned["tests"]) == sorted(f"{c}::{n}" for c, n, _ in expected)


def test_the_shard_planned_longest_starts_first(tmp_path, resolve_dir, cache):  # noqa: F811
    """-j orders work items by the durations store: a shard by its plan's load. The
    first sharded run of a/fast and b/slow (learned unsharded before) starts the
    shard of b/slow that holds the slow test, although a/fast is named first."""
    files = {**PASSING, "tests/test_many.py": MANY,
             "tests/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(1.5)\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files,
                        {"a/fast": {"tests": ["tests/test_calc.py"]}, "b/slow": {}})
    shard_run(cache, ws, tmp_path / "learn")
    ev = tmp_path / "ev.jsonl"
    shard_run(cache, ws, tmp_path / "out", "--shards-per-target", "2", "-j", "2", "--events", ev)
    plans = {k: json.loads((tmp_path / f"out/b/slow/shard-{k}-of-2/result.json").read_text())["shard_plan"]
             for k in (1, 2)}
    slow = max(plans, key=lambda k: plans[k]["expected_sec"])
    assert plans[slow]["expected_sec"] >= 1.5, plans
    started = [(e["target"], e["shard"]["index"]) for e in map(json.loads, ev.read_text().splitlines())
               if e["event"] == "target_started"]
    assert len(started) == 4 and started[0] == ("b/slow", slow), started
