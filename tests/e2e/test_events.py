"""--events FILE|- on `test` and `run` (issue 10): JSON lines as things happen, each
valid against runner/action/schema/events.schema.json (nestbox.events/v1)."""
import json
import re
import subprocess

import jsonschema

from conftest import NESTBOX, ROOT
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

SCHEMA = json.loads((ROOT / "runner/action/schema/events.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

FAILING = {"tests2/test_b.py": "def test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2\n"}


def parse_events(text):
    """Every line one event, each valid against the schema."""
    events = [json.loads(line) for line in text.splitlines()]
    for e in events:
        VALIDATOR.validate(e)
    return events


def read_events(path):
    return parse_events(path.read_text())


def names(events, kind):
    return [e["target"] for e in events if e["event"] == kind]


def two_targets(tmp_path, resolve_dir):  # noqa: F811
    return make_workspace(tmp_path / "ws", resolve_dir, {**PASSING, **FAILING}, {
        "a/tests": {},
        "b/tests": {"tests": ["tests2/*.py"], "source_roots": ["src", "tests2"]},
    })


def test_events_of_a_run_then_of_its_replay(tmp_path, resolve_dir):  # noqa: F811
    ws = two_targets(tmp_path, resolve_dir)
    cache, ev = tmp_path / "cache", tmp_path / "events.jsonl"
    p = subprocess.run([str(NESTBOX), "test", "-j", "2", "--cache", str(cache), "--events", str(ev), str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    events = read_events(ev)
    assert events[0]["event"] == "run_started" and events[0]["items"] == 2 and events[0]["jobs"] == 2
    assert events[-1]["event"] == "run_finished"
    assert sorted(names(events, "target_started")) == ["a/tests", "b/tests"]
    assert len([e for e in events if e["event"] == "venv_built"]) == 1
    cases = {(e["target"], e["id"]): e["outcome"] for e in events if e["event"] == "testcase"}
    assert cases == {("a/tests", "tests.test_calc::test_add"): "passed", ("a/tests", "tests.test_calc::test_more"): "passed",
                     ("b/tests", "tests2.test_b::test_ok"): "passed", ("b/tests", "tests2.test_b::test_bad"): "failed"}
    finished = {e["target"]: e for e in events if e["event"] == "target_finished"}
    assert finished["a/tests"]["status"] == "PASSED" and finished["b/tests"]["status"] == "FAILED"
    assert finished["b/tests"]["failures"] == 1 and not finished["a/tests"]["cached"]
    # Each target's events come between its start and its finish; the venv (built by
    # the warm interpreter before either started) is told after its target's start.
    for t in ("a/tests", "b/tests"):
        kinds = [e["event"] for e in events if e.get("target") == t]
        assert kinds[0] == "target_started" and kinds[-1] == "target_finished", kinds
        assert set(kinds[1:-1]) <= {"testcase", "venv_built"}, kinds
    end = events[-1]
    assert end["summary"]["targets"] == 2 and end["summary"]["passed"] == 1 and end["summary"]["failed"] == 1
    assert end["exit_code"] == 1 and end["interrupted_by"] is None and end["not_run"] == [] and end["remote"] is None

    # The replay: the passing target is cached (no venv is built), the failing one runs again.
    p = subprocess.run([str(NESTBOX), "test", "--cache", str(cache), "--events", str(ev), str(ws)],
                       capture_output=True, text=True, timeout=600)
    events = read_events(ev)
    assert names(events, "target_cached") == ["a/tests"]
    assert not [e for e in events if e["event"] == "venv_built"]
    assert events[-1]["summary"]["cached"] == 1


def test_events_on_stdout_move_the_lines_to_stderr(tmp_path, resolve_dir):  # noqa: F811
    ws = two_targets(tmp_path, resolve_dir)
    p = subprocess.run([str(NESTBOX), "test", "--cache", str(tmp_path / "cache"), "--events", "-", str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    events = parse_events(p.stdout)  # nothing but events on stdout
    assert events[-1]["event"] == "run_finished"
    assert "a/tests  PASSED" in p.stderr and "2 targets: 1 passed, 1 failed" in p.stderr


def test_run_events(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    cache = tmp_path / "cache"
    action = subprocess.run([str(NESTBOX), "actions", str(ws)], capture_output=True, text=True, check=True).stdout
    (tmp_path / "a.json").write_text(action.splitlines()[0])
    p = subprocess.run([str(NESTBOX), "run", "--cache", str(cache), "--events", "-", str(tmp_path / "a.json")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    events = parse_events(p.stdout)
    assert [e["event"] for e in events] == ["run_started", "target_started", "venv_built", "testcase", "testcase",
                                            "target_finished", "run_finished"]
    assert events[0]["command"] == "run"
    result = events[-1]["result"]
    assert result["schema"] == "nestbox.result/v1" and result["status"] == "PASSED" and result["tests"] == 2
    # To a file, the result is printed as before.
    p = subprocess.run([str(NESTBOX), "run", "--cache", str(cache), "--events", str(tmp_path / "ev"),
                        str(tmp_path / "a.json")], capture_output=True, text=True, timeout=600)
    assert json.loads(p.stdout)["cached"] is True
    assert [e["event"] for e in read_events(tmp_path / "ev")][2] == "target_cached"


def test_an_item_that_gives_no_result_says_which_shard_and_run(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    out, ev = tmp_path / "out", tmp_path / "ev.jsonl"
    (out / "app").mkdir(parents=True)
    (out / "app/tests").write_text("a file where the target's folder goes\n")  # --output cannot empty it
    p = subprocess.run([str(NESTBOX), "test", "--cache", str(tmp_path / "c"), "--shards-per-target", "2",
                        "--runs-per-test", "2", "--output", str(out), "--events", str(ev), str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 3, p.stdout + p.stderr
    errors = [e for e in read_events(ev) if e["event"] == "target_finished"]
    assert sorted((e["shard"]["index"], e["shard"]["count"], e["run"]) for e in errors) == \
        [(1, 2, 1), (1, 2, 2), (2, 2, 1), (2, 2, 2)], errors
    assert all(e["status"] == "ERROR" and "--output: app/tests" in e["why"] for e in errors), errors
    assert all(line.startswith("nestbox: --output: app/tests") for line in p.stderr.splitlines()), p.stderr
    assert (out / "app/tests").read_text().startswith("a file")  # not the host's to replace


def test_events_that_cannot_be_written_fail_the_run_in_one_line(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    p = subprocess.run([str(NESTBOX), "test", "--cache", str(tmp_path / "c"), "--events", "/dev/full", str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 3 and "app/tests  PASSED" in p.stdout, p.stdout + p.stderr
    assert p.stderr == "nestbox: --events /dev/full: events were lost: No space left on device\n", p.stderr


def test_a_run_that_ends_before_it_began_still_ends_in_the_events(tmp_path, resolve_dir):  # noqa: F811
    # Shards: their plan needs the venv's digest, so the wheels are checked as the
    # actions are made, before any item starts.
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {"app/tests": {"shards": 2}})
    # A lockfile whose first hash is wrong.
    bad = ws / "bad"
    bad.mkdir()
    lock = (resolve_dir / "default.lock").read_text()
    digest = re.search(r"--hash=sha256:([0-9a-f]{64})", lock).group(1)
    (bad / "default.lock").write_text(lock.replace(digest, "0" * 64, 1))
    (bad / "wheelhouse").symlink_to(resolve_dir / "wheelhouse")
    doc = json.loads((ws / "nestbox.json").read_text())
    doc["resolves"]["default"] = {"lockfile": "bad/default.lock", "wheelhouse": "bad/wheelhouse"}
    (ws / "nestbox.json").write_text(json.dumps(doc))
    ev = tmp_path / "ev.jsonl"
    p = subprocess.run([str(NESTBOX), "test", "--cache", str(tmp_path / "c"), "--events", str(ev), str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    events = read_events(ev)
    assert [e["event"] for e in events] == ["run_started", "run_finished"], events
    assert events[1]["exit_code"] == 2 and events[1]["error"] == p.stderr[len("nestbox: "):].rstrip("\n")
    # A nestbox.json that is not JSON: the message went to stderr, the end is still told.
    (ws / "nestbox.json").write_text("{not json")
    p = subprocess.run([str(NESTBOX), "test", "--cache", str(tmp_path / "c"), "--events", str(ev), str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2, p.stderr
    events = read_events(ev)
    assert [e["event"] for e in events] == ["run_started", "run_finished"] and events[1]["exit_code"] == 2, events


# A conftest that replaces the junit.xml pytest wrote: a testcase named with a CSI
# (U+009B), a NEL (U+0085), DEL and a character outside the BMP.
FORGE = (
    "import pytest\n\n@pytest.hookimpl(trylast=True)\ndef pytest_unconfigure(config):\n"
    "    open('/out/junit.xml', 'w', encoding='utf-8').write({xml!r})\n")
ODD_NAME = "n\u009b2J\u0085x\x7fy\U0001f600"
FORGED_XML = ('<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="x" tests="1">'
              f'<testcase classname="c" name="{ODD_NAME}"/></testsuite>\n')


def test_events_escape_every_character_a_terminal_could_act_on(tmp_path, resolve_dir):  # noqa: F811
    files = {**PASSING, "tests/conftest.py": FORGE.format(xml=FORGED_XML)}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    ev = tmp_path / "ev.jsonl"
    p = subprocess.run([str(NESTBOX), "test", "--cache", str(tmp_path / "c"), "--events", str(ev), str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    raw = ev.read_bytes()
    assert all(0x20 <= b < 0x7f or b == 0x0a for b in raw), [b for b in raw if not 0x20 <= b < 0x7f and b != 0x0a]
    assert b"\\u009B2J\\u0085x\\u007Fy\\uD83D\\uDE00" in raw, raw
    # The same id once parsed, and every line still valid against the schema.
    ids = [e["id"] for e in read_events(ev) if e["event"] == "testcase"]
    assert ids == ["c::" + ODD_NAME], ids
