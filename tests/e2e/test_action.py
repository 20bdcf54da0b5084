"""Actions as values: `nestbox actions` prints them, `nestbox run` runs one and prints its
result, both as the versioned JSON of runner/action/schema/; they share cache entries
with `nestbox test`; bad action input is one line naming the field, exit 2."""
import copy
import errno
import itertools
import os
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from conftest import ROOT, run
from test_cli import faulty_env
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import copy_examples, make_workspace

SCHEMAS = ROOT / "runner/action/schema"
EXAMPLE_TARGETS = ["lib/tests", "project1/tests", "project2/tests"]


def validator(name):
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


ACTION_SCHEMA = validator("action.schema.json")
RESULT_SCHEMA = validator("result.schema.json")


def assert_valid(v, doc):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
    assert not errors, errors


def nb_actions(ws, targets=(), opts=(), env=None):
    p = run(["actions", *opts, ws, *targets], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.endswith("\n") and p.stderr == "", p.stdout + p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()]


_serial = itertools.count()


def nb_run(cache, action, *opts, cwd=None):
    """Runs `nestbox run` on an action (a dict is written to a file first); returns the
    process and the parsed result (None when stdout is not one JSON object)."""
    if isinstance(action, dict):
        path = cache.parent / f"action-{next(_serial)}.json"
        path.write_text(json.dumps(action))
        action = path
    p = run(["run", "--cache", cache, *opts, action], cwd=cwd, timeout=300)
    result = None
    if p.stdout.endswith("\n") and p.stdout.count("\n") == 1:
        result = json.loads(p.stdout)
    return p, result


@pytest.fixture(scope="module")
def examples(tmp_path_factory, resolve_dir):  # noqa: F811
    """One copy of the example workspace for the tests that only read it."""
    return copy_examples(tmp_path_factory.mktemp("ex") / "examples", resolve_dir)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def expand(ws, patterns):
    return sorted({str(p.relative_to(ws)) for pat in patterns for p in ws.glob(pat) if p.is_file()})


def test_actions_prints_one_valid_action_per_target(examples):
    printed = nb_actions(examples)
    assert sorted(a["target"] for a in printed) == EXAMPLE_TARGETS
    declared = json.loads((examples / "nestbox.json").read_text())["targets"]
    for a in printed:
        assert_valid(ACTION_SCHEMA, a)
        t = declared[a["target"]]
        assert a["root"] == str(examples.resolve())
        assert a["resolve"]["lockfile"] == str(examples.resolve() / "3rdparty/python/default.lock")
        assert a["resolve"]["wheelhouse"] == str(examples.resolve() / "3rdparty/python/wheelhouse")
        assert a["python"] == "/usr/bin/python3"
        assert a["tests"] == expand(examples, t["tests"]) and a["tests"]
        assert a.get("sources", []) == expand(examples, t["sources"])
        assert a.get("source_roots", []) == t["source_roots"]
        assert a.get("policy", {}).get("timeout", 300) == t["timeout"]


def test_actions_of_one_target_is_one_document_with_the_options(examples, tmp_path):
    # Its own empty cache: a shard's action carries the durations its cache has learned.
    p = run(["actions", "--cache", tmp_path / "c", "--seed", "7", "--shard", "2/3", "--coverage", examples,
             "project1/tests"])
    assert p.returncode == 0, p.stdout + p.stderr
    a = json.loads(p.stdout)  # the whole output is one JSON document
    assert_valid(ACTION_SCHEMA, a)
    assert a["target"] == "project1/tests"
    assert a["seed"] == 7 and a["shard"] == {"index": 2, "count": 3} and a["coverage"] is True
    assert "project1/test/python/inventory/test_stock.py" in a["tests"]


def test_actions_passes_declared_env_by_value(tmp_path, resolve_dir, monkeypatch):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {"app/tests": {"env": ["NB_TEST_KNOB"]}})
    monkeypatch.setenv("NB_TEST_KNOB", "on")
    monkeypatch.setenv("NB_NOT_DECLARED", "x")
    [a] = nb_actions(ws)
    assert_valid(ACTION_SCHEMA, a)
    assert a["env"] == {"NB_TEST_KNOB": "on"}


def test_actions_unknown_target_is_an_error(examples):
    p = run(["actions", examples, "nope/tests"])
    assert p.returncode == 2 and p.stdout == "", p.stdout + p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("nestbox: ") and "nope/tests" in p.stderr


def test_run_passing_then_cached(examples, cache, tmp_path):
    [action] = nb_actions(examples, ["lib/tests"])
    p, first = nb_run(cache, action, "--result", tmp_path / "r.json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert first is not None, p.stdout
    assert_valid(RESULT_SCHEMA, first)
    assert first["status"] == "PASSED" and first["exit_code"] == 0 and first["target"] == "lib/tests"
    assert first["tests"] > 0 and first["failures"] == 0 and not first.get("cached", False)
    assert json.loads((tmp_path / "r.json").read_text()) == first
    p, second = nb_run(cache, action)
    assert p.returncode == 0, p.stdout + p.stderr
    assert_valid(RESULT_SCHEMA, second)
    assert second["cached"] is True
    assert (second["action"], second["tests"], second["status"]) == (first["action"], first["tests"], "PASSED")


def test_run_reads_stdin(examples, cache, tmp_path):
    [action] = nb_actions(examples, ["project2/tests"])
    p = run(["run", "--cache", cache, "-"], input=json.dumps(action))
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert_valid(RESULT_SCHEMA, r)
    assert r["target"] == "project2/tests" and r["status"] == "PASSED"
    # The same action from a file is the same action: a hit.
    p, again = nb_run(cache, action)
    assert again["cached"] is True and again["action"] == r["action"]


def test_run_failing_and_cache_failures(tmp_path, resolve_dir, cache):  # noqa: F811
    files = dict(PASSING)
    files["tests/test_bad.py"] = "def test_wrong():\n    assert 41 == 42\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    [action] = nb_actions(ws)
    for _ in range(2):  # a failure is not replayed by default
        p, r = nb_run(cache, action)
        assert p.returncode == 1, p.stdout + p.stderr
        assert_valid(RESULT_SCHEMA, r)
        assert r["status"] == "FAILED" and r["exit_code"] == 1 and r["failures"] == 1 and r["tests"] == 3
        assert not r.get("cached", False)
    p, r = nb_run(cache, action, "--cache-failures")
    assert p.returncode == 1, p.stdout + p.stderr
    assert_valid(RESULT_SCHEMA, r)
    assert r["cached"] is True and r["status"] == "FAILED"


def test_run_force_and_no_cache(examples, cache):
    [action] = nb_actions(examples, ["lib/tests"])
    assert nb_run(cache, action)[0].returncode == 0
    for opt in ("--force", "--no-cache"):
        p, r = nb_run(cache, action, opt)
        assert p.returncode == 0, p.stdout + p.stderr
        assert_valid(RESULT_SCHEMA, r)
        assert not r.get("cached", False), opt
    fresh = cache.parent / "fresh"
    p, r = nb_run(fresh, action, "--no-cache")
    assert p.returncode == 0 and r["artifact"] is None
    p, r = nb_run(fresh, action)
    assert not r.get("cached", False)  # --no-cache stored nothing


def test_run_with_output_dir(examples, cache, tmp_path):
    [action] = nb_actions(examples, ["project1/tests"])
    out = tmp_path / "out"
    for attempt in ("ran", "cached"):
        p, r = nb_run(cache, action, "--output", out)
        assert p.returncode == 0, p.stdout + p.stderr
        assert_valid(RESULT_SCHEMA, r)
        assert r.get("cached", False) == (attempt == "cached")
        o = r["outputs"]
        for key in ("dir", "junit", "log"):
            assert (o[key] + "/").startswith(str(out.resolve()) + "/") and Path(o[key]).exists(), (key, o)
        cases = list(ET.parse(o["junit"]).getroot().iter("testcase"))
        assert len(cases) == r["tests"] and "test_total_value" in {c.get("name") for c in cases}
        assert "project1/test/python/inventory/test_stock.py" in Path(o["log"]).read_text()


def test_timeout_result(tmp_path, resolve_dir, cache):  # noqa: F811
    files = dict(PASSING)
    files["tests/test_slow.py"] = "import time\n\ndef test_sleep():\n    time.sleep(600)\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {"app/tests": {"timeout": 2}})
    [action] = nb_actions(ws)
    assert action.get("policy", {}).get("timeout", 300) == 2
    p, r = nb_run(cache, action)
    assert p.returncode == 4, p.stdout + p.stderr
    assert_valid(RESULT_SCHEMA, r)
    assert r["status"] == "TIMEOUT" and r["exit_code"] == 4 and r["pytest"]["timed_out"] is True
    assert "timed out" in (r["why"] or "")


@pytest.mark.parametrize("opts", [[], ["--seed", "5", "--shard", "1/2"], ["--coverage"]],
                         ids=["defaults", "seed-and-shard", "coverage"])
def test_run_and_test_share_the_action_digest(examples, tmp_path, opts):
    target = "project1/tests"
    # The same cache for all three: a shard's action carries the durations pinned there
    # (whatever the default cache has learned, say from examples/run, is not in it).
    c1 = tmp_path / "c1"
    [action] = nb_actions(examples, [target], ["--cache", c1, *opts])
    # nestbox run first, then nestbox test: a hit
    p, r = nb_run(c1, action)
    assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "out"
    t = run(["test", "--cache", c1, "--output", out, *opts, examples, target])
    assert t.returncode == 0, t.stdout + t.stderr
    assert t.stdout.splitlines()[0].endswith("(cached)"), t.stdout
    sub = out / target / ("shard-1-of-2" if "--shard" in opts else "")  # a shard has its own folder
    from_test = json.loads((sub / "result.json").read_text())
    assert_valid(RESULT_SCHEMA, from_test)
    assert from_test["action"] == r["action"]
    # nestbox test first, then nestbox run: a hit
    c2 = tmp_path / "c2"
    t = run(["test", "--cache", c2, *opts, examples, target])
    assert t.returncode == 0 and "(cached)" not in t.stdout, t.stdout + t.stderr
    p, r2 = nb_run(c2, action)
    assert p.returncode == 0 and r2["cached"] is True and r2["action"] == r["action"], p.stdout + p.stderr


# ---- bad input: one line naming the field, exit 2 -------------------------------------

def put(doc, path, value):
    *parents, last = path.split(".")
    for k in parents:
        doc = doc[k]
    doc[last] = value


def drop(doc, path):
    *parents, last = path.split(".")
    for k in parents:
        doc = doc[k]
    del doc[last]


# (id, field path the error must name, mutation of a valid action)
MISSING = [(f, f, lambda a, f=f: drop(a, f)) for f in
           ("schema", "target", "tests", "resolve", "python", "root", "resolve.lockfile",
            "resolve.wheelhouse", "shard.count", "shard.index")]
WRONG_TYPE = [(f, f, lambda a, f=f, v=v: put(a, f, v)) for f, v in [
    ("schema", 1), ("target", 5), ("root", 5), ("tree", 5), ("sources", "lib/x.py"),
    ("tests", "lib/test_x.py"), ("source_roots", "lib"), ("resolve", "python-default"),
    ("resolve.lockfile", 5), ("resolve.wheelhouse", ["/w"]), ("python", 3),
    ("pytest_args", "-x"), ("env", ["A"]), ("policy", "strict"), ("policy.timeout", "10"),
    ("policy.memory", ["512M"]), ("policy.pids", "10"), ("policy.network", "no"), ("shard", "1/2"),
    ("shard.index", "1"), ("shard.count", 2.5), ("seed", "7"), ("coverage", "yes"), ("run", "1"),
    ("attempt", "2"), ("shuffle", "yes"), ("select", "tests/test_x.py::test_a"),
]] + [
    ("select item", "select[0]", lambda a: put(a, "select", [3])),
    ("resolve.venv", "resolve.venv", lambda a: put(a, "resolve", {"venv": 5})),
    ("env value", "env.NB_A", lambda a: put(a, "env", {"NB_OK": "x", "NB_A": 5})),
    ("pytest_args item", "pytest_args[1]", lambda a: put(a, "pytest_args", ["-q", 5])),
    ("sources item", "sources[1]", lambda a: a["sources"].insert(1, None)),
    ("tests item", "tests[0]", lambda a: a["tests"].insert(0, {"f": 1})),
    ("source_roots item", "source_roots[1]", lambda a: a["source_roots"].insert(1, 7)),
    ("policy.pids float", "policy.pids", lambda a: put(a, "policy.pids", 1.5)),
    ("seed bool", "seed", lambda a: put(a, "seed", True)),
]
BAD_VALUE = [(i, f, lambda a, f=f, v=v: put(a, f, v)) for i, f, v in [
    ("schema v2", "schema", "nestbox.action/v2"),
    ("memory not a size", "policy.memory", "lots"),
    ("network true", "policy.network", True),
    ("timeout zero", "policy.timeout", 0),
    ("pids zero", "policy.pids", 0),
    ("shard index zero", "shard.index", 0),
    ("seed negative", "seed", -1),
    ("run zero", "run", 0),
    ("attempt zero", "attempt", 0),
    ("timeout category unknown", "policy.timeout", "forever"),
    ("tests empty", "tests", []),
    ("target with space", "target", "lib tests"),
    ("python relative", "python", "python3"),
    ("root relative", "root", "examples"),
    ("tree not a digest", "tree", "abc"),
    ("lockfile relative", "resolve.lockfile", "default.lock"),
]] + [
    ("tests dotdot", "tests[0]", lambda a: a["tests"].insert(0, "../x")),
    ("sources absolute", "sources[0]", lambda a: a["sources"].insert(0, "/etc/passwd")),
    ("sources escaping", "sources[0]", lambda a: a["sources"].insert(0, "lib/../../x")),
]


@pytest.fixture(scope="module")
def base_action(examples):
    [a] = nb_actions(examples, ["lib/tests"])
    a.update(policy={"timeout": 120, "memory": "2G", "pids": 1024, "network": False},
             shard={"index": 1, "count": 1}, env={}, pytest_args=[], seed=1, coverage=False, run=1)
    return a


@pytest.fixture
def action(base_action):
    """A valid action with every optional field present, to spoil one field of."""
    return copy.deepcopy(base_action)


def spoil(action, mutate):
    mutate(action)
    assert list(ACTION_SCHEMA.iter_errors(action)), "the case must break the schema"
    return action


def one_error_line(p):
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout == "", p.stdout
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and p.stderr.endswith("\n"), p.stderr
    return lines[0]


def names_field(line, file, path):
    """The line is `nestbox: FILE: .PATH: problem`; array items as [N] (or .N), an
    object's key bare or quoted as jq writes it (.env."NB_A")."""
    dotted = re.sub(r"\[(\d+)\]", r".\1", path)
    *parents, last = path.split(".")
    quoted = ".".join(parents + [f'"{last}"'])
    return any(line.startswith(f"nestbox: {file}: .{p}: ") for p in (path, dotted, quoted))


def test_the_base_action_of_the_bad_input_tests_is_valid(action, cache):
    assert_valid(ACTION_SCHEMA, action)
    p, r = nb_run(cache, action)
    assert p.returncode == 0 and r["status"] == "PASSED", p.stdout + p.stderr


@pytest.mark.parametrize("path,mutate", [c[1:] for c in MISSING], ids=[f"missing {c[0]}" for c in MISSING])
def test_missing_field_is_named(action, tmp_path, path, mutate):
    (tmp_path / "a.json").write_text(json.dumps(spoil(action, mutate)))
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "a.json"], cwd=tmp_path))
    assert names_field(line, "a.json", path) and "missing" in line, line


@pytest.mark.parametrize("path,mutate", [c[1:] for c in WRONG_TYPE + BAD_VALUE],
                         ids=[f"wrong type {c[0]}" for c in WRONG_TYPE] + [c[0] for c in BAD_VALUE])
def test_bad_field_is_named(action, tmp_path, path, mutate):
    (tmp_path / "a.json").write_text(json.dumps(spoil(action, mutate)))
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "a.json"], cwd=tmp_path))
    assert names_field(line, "a.json", path), line


def test_a_bad_size_says_what_a_size_is(action, tmp_path):
    action["policy"]["memory"] = "lots"
    (tmp_path / "a.json").write_text(json.dumps(action))
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "a.json"], cwd=tmp_path))
    assert names_field(line, "a.json", "policy.memory") and "expected a size" in line and '"512M"' in line, line


@pytest.mark.parametrize("path,key,suggestion", [("", "polcy", "policy"), ("policy.", "timout", "timeout"),
                                                 ("", "sourcs", "sources")],
                         ids=["top level", "nested", "sources"])
def test_unknown_key_suggests_the_right_one(action, tmp_path, path, key, suggestion):
    (action["policy"] if path else action)[key] = 1
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "-"], input=json.dumps(action)))
    assert line.startswith(f"nestbox: <stdin>: .{path}{key}: "), line
    assert "unknown key" in line and f'did you mean "{suggestion}"' in line, line


@pytest.mark.parametrize("text,where", [
    ('{\n  "schema": "nestbox.action/v1",\n  "target": "lib/tests",\n  "tests": [oops]\n}\n', 4),
    ('{\n  "schema": "nestbox.action/v1",\n', None),
    ("", None),
    ("[]\n", None),
], ids=["bad token", "truncated", "empty", "not an object"])
def test_bad_json_names_the_file_and_line(tmp_path, text, where):
    (tmp_path / "broken.json").write_text(text)
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "broken.json"], cwd=tmp_path))
    assert line.startswith("nestbox: broken.json"), line
    if where:
        assert re.search(rf"\b{where}\b", line), line


def test_missing_lockfile_is_named(action, tmp_path):
    a = action
    a["resolve"]["lockfile"] = str(tmp_path / "nowhere/default.lock")
    (tmp_path / "a.json").write_text(json.dumps(a))
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "a.json"], cwd=tmp_path))
    assert str(tmp_path / "nowhere/default.lock") in line, line


def test_tree_not_in_the_cache(action, tmp_path):
    a = action
    del a["root"]
    a["tree"] = "ab" * 32
    (tmp_path / "a.json").write_text(json.dumps(a))
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "a.json"], cwd=tmp_path))
    assert "ab" * 32 in line or ".tree" in line, line


def test_missing_action_file(tmp_path):
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "nope.json"], cwd=tmp_path))
    assert line.startswith("nestbox: nope.json: "), line


def test_bad_input_leaves_no_result_in_the_cache(action, tmp_path):
    a = action
    a["policy"]["memory"] = "lots"
    cache = tmp_path / "c"
    one_error_line(run(["run", "--cache", cache, "-"], input=json.dumps(a)))
    assert not (cache / "ac").exists() or not [p for p in (cache / "ac").rglob("*") if p.is_file()]
    assert not (cache / "cas").exists() or not [p for p in (cache / "cas").rglob("*") if p.is_file()]


@pytest.mark.parametrize("code", [errno.EIO, errno.EMFILE], ids=["EIO", "EMFILE"])
def test_a_failed_read_of_the_action_file_is_the_machines_error(action, tmp_path, code):
    (tmp_path / "a.json").write_text(json.dumps(action))
    p = run(["run", "--cache", tmp_path / "c", "a.json"], cwd=tmp_path, env=faulty_env("/a.json", code))
    assert p.returncode == 3, p.stdout + p.stderr
    assert p.stderr == f"nestbox: a.json: {os.strerror(code)}\n", p.stderr


@pytest.mark.parametrize("code", [errno.EIO, errno.EMFILE], ids=["EIO", "EMFILE"])
def test_a_root_that_cannot_be_opened_now_is_the_machines_error(action, tmp_path, code):
    """The action's root exists; the machine would not open it this time. A root that
    is not there stays the action's error."""
    (tmp_path / "a.json").write_text(json.dumps(action))
    p = run(["run", "--cache", tmp_path / "c", "a.json"], cwd=tmp_path, env=faulty_env(action["root"], code, on="open"))
    assert p.returncode == 3, p.stdout + p.stderr
    assert f"root {action['root']}: {os.strerror(code)}" in p.stderr, p.stderr
    action["root"] = str(tmp_path / "nowhere")
    (tmp_path / "a.json").write_text(json.dumps(action))
    line = one_error_line(run(["run", "--cache", tmp_path / "c", "a.json"], cwd=tmp_path))
    assert f"root {tmp_path / 'nowhere'}: {os.strerror(errno.ENOENT)}" in line, line
