"""nestbox merge (issue 10, "One report"), and the combined coverage at the top of
--output (issue 15): shards made on "separate machines" (separate processes, separate
caches) merge into what one unsharded run reports."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import NESTBOX, run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

FILES = {
    **PASSING,
    "src/app/extra.py": "def used(x):\n    return x * 2\n\n\ndef unused():\n    return 1\n",
    "tests/test_many.py": "import pytest\nfrom app.extra import used\n\n"
                          "@pytest.mark.parametrize('i', range(30))\ndef test_i(i):\n    assert used(i) == 2 * i\n",
}
TARGETS = {"app/tests": {"coverage": True}, "app/other": {"coverage": True, "tests": ["tests/test_calc.py"]}}


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    return make_workspace(tmp_path / "ws", resolve_dir, FILES, TARGETS)


def cases(path):
    root = ET.parse(path).getroot()
    out = {}
    for suite in root.iter("testsuite"):
        for c in suite.iter("testcase"):
            kind = next((t for t in ("failure", "error", "skipped") if c.find(t) is not None), "passed")
            out[(suite.get("name"), c.get("classname"), c.get("name"))] = kind
    return out


def lcov_lines(path):
    """{(file, line): hit?} of an LCOV file."""
    got, sf = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("SF:"):
            sf = line[3:]
        elif line.startswith("DA:"):
            n, hits = line[3:].split(",")[:2]
            got[(sf, int(n))] = got.get((sf, int(n)), False) or int(hits) > 0
    return got


def test_merge_of_machines_equals_one_unsharded_run(tmp_path, ws):
    whole = run(["test", "--cache", tmp_path / "c0", "--output", tmp_path / "whole", ws])
    assert whole.returncode == 0, whole.stdout + whole.stderr
    # Two "machines": their own cache and output each, running at the same time.
    procs = [subprocess.Popen([str(NESTBOX), "test", "--cache", tmp_path / f"c{k}", "--output", tmp_path / f"m{k}",
                               "--shards-per-target", "3", "--machine", f"{k}/2", ws],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in (1, 2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    p = run(["merge", "-o", tmp_path / "merged", tmp_path / "m1", tmp_path / "m2"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[-1].startswith("2 targets, 6 work items: 6 passed, 0 failed"), p.stdout
    assert p.stderr == ""
    merged = cases(tmp_path / "merged/junit.xml")
    assert merged == cases(tmp_path / "whole/junit.xml") and len(merged) == 34
    lines = lcov_lines(tmp_path / "merged/coverage.lcov")
    assert lines == lcov_lines(tmp_path / "whole/coverage.lcov")
    assert lines[("src/app/extra.py", 2)] and not lines[("src/app/extra.py", 6)]
    cob = ET.parse(tmp_path / "merged/coverage.xml").getroot()
    assert [s.text for s in cob.iter("source")] == ["."]
    assert {c.get("filename") for c in cob.iter("class")} == {f for f, _ in lines}
    # The same merge again: the same bytes.
    run(["merge", "-o", tmp_path / "again", tmp_path / "m2", tmp_path / "m1"])
    for f in ("junit.xml", "coverage.lcov", "coverage.xml"):
        assert (tmp_path / "again" / f).read_bytes() == (tmp_path / "merged" / f).read_bytes(), f


def test_combined_coverage_sums_the_targets(tmp_path, ws):
    p = run(["test", "--cache", tmp_path / "c", "--output", tmp_path / "out", ws])
    assert p.returncode == 0, p.stdout + p.stderr
    top = lcov_lines(tmp_path / "out/coverage.lcov")
    each = [lcov_lines(tmp_path / f"out/{t}/coverage.lcov") for t in TARGETS]
    assert set(top) == set(each[0]) | set(each[1])
    assert all(top[k] == any(e.get(k, False) for e in each) for k in top)
    # Hits are summed, not the last target's: calc.add runs in both targets.
    def hits(f):
        out = {}
        sf = None
        for line in f.read_text().splitlines():
            if line.startswith("SF:"):
                sf = line[3:]
            elif line.startswith("DA:"):
                n, h = line[3:].split(",")[:2]
                out[(sf, int(n))] = out.get((sf, int(n)), 0) + int(h)
        return out
    parts = [hits(tmp_path / f"out/{t}/coverage.lcov") for t in TARGETS]
    total = hits(tmp_path / "out/coverage.lcov")
    assert all(total[k] == sum(p.get(k, 0) for p in parts) for k in total)
    assert any(all(p.get(k, 0) > 0 for p in parts) for k in total)  # a line both targets ran
    assert "lines-valid" in ET.parse(tmp_path / "out/coverage.xml").getroot().attrib


def test_a_run_without_coverage_leaves_no_stale_sums(tmp_path, ws, resolve_dir):  # noqa: F811
    out = tmp_path / "out"
    assert run(["test", "--cache", tmp_path / "c", "--output", out, ws]).returncode == 0
    assert (out / "coverage.lcov").exists() and (out / "coverage.xml").exists()
    p = run(["merge", "-o", tmp_path / "m", out])
    assert p.returncode == 0 and (tmp_path / "m/coverage.lcov").exists(), p.stdout + p.stderr
    # The same folders again, with nothing measured: an old sum must not pass for this run's.
    plain = make_workspace(tmp_path / "plain", resolve_dir, FILES, {"app/tests": {}})
    assert run(["test", "--cache", tmp_path / "c", "--output", out, plain]).returncode == 0
    assert not (out / "coverage.lcov").exists() and not (out / "coverage.xml").exists()
    p = run(["merge", "-o", tmp_path / "m", out / "app/tests"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert not (tmp_path / "m/coverage.lcov").exists() and not (tmp_path / "m/coverage.xml").exists()


def test_output_holds_this_runs_files_only(tmp_path, resolve_dir):  # noqa: F811
    """An unsharded pass, then the same target in shards with a failing test: the
    target's folder keeps nothing of the first run, so merge sees the failure."""
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {"app/tests": {}})
    out = tmp_path / "out"
    assert run(["test", "--cache", tmp_path / "c", "--output", out, ws]).returncode == 0
    assert (out / "app/tests/result.json").exists()
    (ws / "tests/test_new.py").write_text("def test_new():\n    assert False\n")
    p = run(["test", "--cache", tmp_path / "c", "--shards-per-target", "2", "--output", out, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert sorted(x.name for x in (out / "app/tests").iterdir()) == ["shard-1-of-2", "shard-2-of-2"]
    m = run(["merge", "-o", tmp_path / "m", out])
    assert m.returncode == 1 and "1 target, 2 work items: 1 passed, 1 failed" in m.stdout, m.stdout
    # Three shards now: the folders of two are of another split and go.
    assert run(["test", "--cache", tmp_path / "c", "--shards-per-target", "3", "--output", out, ws]).returncode == 1
    assert sorted(x.name for x in (out / "app/tests").iterdir()) == [f"shard-{k}-of-3" for k in (1, 2, 3)]


def test_each_run_has_its_own_folder_and_merges(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {"app/tests": {"shards": 2}, "app/one": {}})
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "c", "--runs-per-test", "3", "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    for folder in [out / "app/one", out / "app/tests/shard-1-of-2", out / "app/tests/shard-2-of-2"]:
        assert sorted(x.name for x in folder.iterdir()) == ["run-1", "run-2", "run-3"], folder
        for r in (1, 2, 3):
            assert json.loads((folder / f"run-{r}/result.json").read_text())["run"] == r
    m = run(["merge", "-o", tmp_path / "m", out])
    assert m.returncode == 0 and "missing" not in m.stderr and "duplicated" not in m.stderr, m.stdout + m.stderr
    assert "3 targets, 9 work items" in m.stdout or "9 work items" in m.stdout, m.stdout
    # Fewer runs next time: the surplus run's folder goes, and one run has no run-R.
    assert run(["test", "--cache", tmp_path / "c", "--runs-per-test", "2", "--output", out, ws]).returncode == 0
    assert sorted(x.name for x in (out / "app/one").iterdir()) == ["run-1", "run-2"]
    assert run(["test", "--cache", tmp_path / "c", "--output", out, ws]).returncode == 0
    assert (out / "app/one/result.json").exists() and not (out / "app/one/run-1").exists()
    assert sorted(x.name for x in (out / "app/tests").iterdir()) == ["shard-1-of-2", "shard-2-of-2"]
    assert (out / "app/tests/shard-1-of-2/result.json").exists()


def test_clearing_output_never_reaches_outside_it(tmp_path, resolve_dir):  # noqa: F811
    """Target names come from an untrusted workspace and DIR may hold planted links:
    clearing a folder opens every component beneath DIR and follows no link."""
    victim = tmp_path / "victim"
    (victim / "tests").mkdir(parents=True)
    (victim / "tests/keep").write_text("the host's\n")
    # A name that is an absolute path of the host is refused as the workspace loads.
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {str(victim / "tests"): {}})
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "c", "--output", out, ws])
    assert (victim / "tests/keep").read_text() == "the host's\n", p.stdout + p.stderr
    assert p.returncode == 2 and "invalid target name" in p.stderr, p.stdout + p.stderr
    # A link planted where a target's folder goes, in every layout.
    ws = make_workspace(tmp_path / "ws2", resolve_dir, PASSING, {"lib/tests": {}})
    for extra in ([], ["--shards-per-target", "2"], ["--runs-per-test", "2"]):
        out = tmp_path / f"out{len(extra)}{extra[:1]}"
        out.mkdir()
        (out / "lib").symlink_to(victim)
        p = run(["test", "--cache", tmp_path / "c", "--output", out, *extra, ws])
        assert (victim / "tests/keep").read_text() == "the host's\n", (extra, p.stdout, p.stderr)
        # The error names the link to remove, not the folder the walk was going to.
        assert p.returncode == 3, (extra, p.stdout, p.stderr)
        lines = p.stderr.splitlines()
        assert lines and set(lines) == {"nestbox: --output: lib is a symbolic link; nothing beneath --output is followed"}, \
            (extra, p.stdout, p.stderr)


def test_clearing_spares_a_target_named_inside_another(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {"lib": {}, "lib/tests": {}})
    out = tmp_path / "out"
    for extra in ([], ["--shards-per-target", "2"], ["--runs-per-test", "2"]):
        p = run(["test", "--cache", tmp_path / "c", "-j", "1", "--output", out, *extra, ws, "lib/tests", "lib"])
        assert p.returncode == 0, p.stdout + p.stderr
        m = run(["merge", "-o", tmp_path / "m", out])
        assert m.returncode == 0 and "2 targets" in m.stdout.splitlines()[-1], (extra, m.stdout, m.stderr)


def test_runs_that_never_started_leave_no_earlier_files(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "c", "--output", out, "--until-failure", "--max-runs", "4", ws])
    assert p.returncode == 0 and sorted(x.name for x in (out / "app/tests").iterdir()) == [f"run-{r}" for r in
                                                                                         (1, 2, 3, 4)], p.stdout
    (ws / "tests/test_new.py").write_text("def test_new():\n    assert False\n")
    p = run(["test", "--cache", tmp_path / "c", "--output", out, "--until-failure", "--max-runs", "4", ws])
    assert p.returncode == 1 and "until-failure: run 1 failed" in p.stdout, p.stdout
    # Runs 2 to 4 did not run this time: their folders hold nothing of the last time.
    assert [x.name for x in (out / "app/tests").rglob("result.json")] == ["result.json"]
    assert (out / "app/tests/run-1/result.json").exists()
    m = run(["merge", "-o", tmp_path / "m", out])
    assert m.returncode == 1 and "1 target: 0 passed, 1 failed" in m.stdout, m.stdout + m.stderr


FORGE = ("import json, os\n\ndef test_forge():\n    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
         "    for r in (1, 2):\n        os.makedirs(f'{d}/a{r}', exist_ok=True)\n"
         "        open(f'{d}/a{r}/result.json', 'w').write(json.dumps({'target': 'victim', 'status': 'PASSED',\n"
         "            'shard': {'index': 1, 'count': 1}, 'run': r, 'durations': {'wall': 1.0}}))\n"
         "        open(f'{d}/a{r}/junit.xml', 'w').write('<testsuite tests=\"1\"><testcase classname=\"x\" "
         "name=\"forged\"/></testsuite>')\n")


def test_what_a_test_wrote_is_never_merged(tmp_path, resolve_dir):  # noqa: F811
    files = {**PASSING, "tests/test_forge.py": FORGE, "tests/test_bad.py": "def test_bad():\n    assert False\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {
        "lib": {"tests": ["tests/test_forge.py"]}, "victim": {"tests": ["tests/test_bad.py"]}})
    out = tmp_path / "out"
    assert run(["test", "--cache", tmp_path / "c", "--output", out, ws, "lib"]).returncode == 0
    assert (out / "lib/undeclared/a1/result.json").exists()
    p = run(["test", "--cache", tmp_path / "c", "--output", out, "--runs-per-test", "2", ws])
    assert p.returncode == 1, p.stdout + p.stderr
    m = run(["merge", "-o", tmp_path / "m", out])
    assert m.returncode == 1 and "forged" not in (tmp_path / "m/junit.xml").read_text(), m.stdout + m.stderr
    assert "duplicated" not in m.stderr and "victim  FAILED" in m.stdout, m.stdout + m.stderr
    # Wherever an undeclared/ is (here: a folder with no result.json of its own), merge
    # never reads what is in it.
    shutil.copytree(tmp_path / "out/victim/run-1", out / "odd/undeclared/u1")
    m = run(["merge", "-o", tmp_path / "m", out])
    assert m.returncode == 1 and "duplicated" not in m.stderr, m.stdout + m.stderr


def test_run_output_spares_other_targets_folders(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, {"lib": {}, "lib/tests": {}})
    out = tmp_path / "out"
    for t in ("lib/tests", "lib"):
        action = run(["actions", ws, t]).stdout.splitlines()[0]
        (tmp_path / "a.json").write_text(action)
        p = run(["run", "--cache", tmp_path / "c", "--output", out, tmp_path / "a.json"])
        assert p.returncode == 0, p.stdout + p.stderr
    assert (out / "lib/result.json").exists() and (out / "lib/tests/result.json").exists()
    m = run(["merge", "-o", tmp_path / "m", out])
    assert m.returncode == 0 and "2 targets" in m.stdout.splitlines()[-1], m.stdout + m.stderr


def test_a_long_undeclared_name_is_written_back(tmp_path, resolve_dir):  # noqa: F811
    files = {**PASSING, "tests/test_long.py": "import os\n\ndef test_long():\n"
                                              "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
                                              "    open(os.path.join(d, 'x' * 250), 'w').write('long')\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {"app/tests": {"tests": ["tests/test_long.py"]}})
    p = run(["test", "--cache", tmp_path / "c", "--output", tmp_path / "out", ws])
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "out/app/tests/undeclared" / ("x" * 250)).read_text() == "long"


def test_folders_that_only_look_like_this_layout_go(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    out = tmp_path / "out"
    assert run(["test", "--cache", tmp_path / "c", "--output", out, "--runs-per-test", "2", ws]).returncode == 0
    for odd in ("run-+2", "run-02", "run- 1", "run-3"):
        shutil.copytree(out / "app/tests/run-1", out / "app/tests" / odd)
    assert run(["test", "--cache", tmp_path / "c", "--output", out, "--runs-per-test", "2", ws]).returncode == 0
    assert sorted(x.name for x in (out / "app/tests").iterdir()) == ["run-1", "run-2"]


def test_two_processes_share_one_output_dir(tmp_path, resolve_dir):  # noqa: F811
    # The shards of one target from two processes at once, over an earlier split's
    # folders that both clear: each gets its own folder, neither fails.
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    out = tmp_path / "out"
    for round in range(3):
        for k in (1, 2, 3):
            d = out / f"app/tests/shard-{k}-of-3/undeclared"
            for i in range(200):
                (d / f"d{i % 20}").mkdir(parents=True, exist_ok=True)
                (d / f"d{i % 20}/f{i}").write_text("x")
        procs = [subprocess.Popen([str(NESTBOX), "test", "--cache", str(tmp_path / f"c{k}"), "--shard", f"{k}/2",
                                   "--output", str(out), str(ws)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for k in (1, 2)]
        for p in procs:
            stdout, stderr = p.communicate(timeout=600)
            assert p.returncode == 0, (round, stdout, stderr)
        assert sorted(x.name for x in (out / "app/tests").iterdir()) == ["shard-1-of-2", "shard-2-of-2"]


def test_merge_says_which_shards_are_missing_or_duplicated(tmp_path, ws):
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "c", "--output", out, "--shards-per-target", "3", "--machine", "1/2", ws])
    assert p.returncode == 0, p.stdout + p.stderr
    p = run(["merge", "-o", tmp_path / "m", out, out / "app/tests"])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "missing: " in p.stderr and "duplicated: " in p.stderr, p.stderr
    assert all(line.startswith("nestbox: merge: ") for line in p.stderr.splitlines()), p.stderr


def test_merge_exits_1_when_a_test_failed(tmp_path, resolve_dir):  # noqa: F811
    files = {**PASSING, "tests/test_bad.py": "def test_bad():\n    assert 0\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {"app/tests": {"shards": 2}})
    t = run(["test", "--cache", tmp_path / "c", "--output", tmp_path / "out", ws])
    p = run(["merge", "-o", tmp_path / "m", tmp_path / "out"])
    assert p.returncode == 1 and "FAILED" in p.stdout and "test_bad" in p.stdout, p.stdout + p.stderr
    assert cases(tmp_path / "m/junit.xml")[("app/tests", "tests.test_bad", "test_bad")] == "failure"
    # The same line as test's: the seed and the repro hint of the failed shard.
    hints = sorted(re.findall(r"seed \d+  nestbox repro [0-9a-f]{12}", t.stdout))
    assert hints and sorted(re.findall(r"seed \d+  nestbox repro [0-9a-f]{12}", p.stdout)) == hints, \
        t.stdout + p.stdout


def test_merge_takes_a_flaky_result(tmp_path, resolve_dir):  # noqa: F811
    files = {**PASSING, "tests/test_flaky.py": "import os\n\ndef test_second_time():\n"
                                               "    assert os.environ['NESTBOX_ATTEMPT'] != '1'\n"}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {"app/tests": {"attempts": 2}})
    t = run(["test", "--cache", tmp_path / "c", "--output", tmp_path / "out", ws])
    assert t.returncode == 0 and "FLAKY" in t.stdout, t.stdout + t.stderr
    p = run(["merge", "-o", tmp_path / "m", tmp_path / "out"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"^app/tests  FLAKY .*after 2 attempts", p.stdout, re.M), p.stdout
    root = ET.parse(tmp_path / "m/junit.xml").getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == "test_second_time")
    assert case.find("flakyFailure") is not None and case.find("failure") is None, ET.tostring(case)
    # A claim of FLAKY gives way to a report with a failure in it, as PASSED does.
    (ws / "tests/test_flaky.py").write_text("def test_second_time():\n    assert False\n")
    assert run(["test", "--cache", tmp_path / "c", "--output", tmp_path / "out", ws]).returncode == 1
    result = tmp_path / "out/app/tests/result.json"
    result.write_text(result.read_text().replace('"FAILED"', '"FLAKY"'))
    p = run(["merge", "-o", tmp_path / "m", tmp_path / "out"])
    assert p.returncode == 1 and "app/tests  FAILED" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("what,content,message", [
    ("result.json", "{", "result.json: not a JSON document"),
    ("result.json", '{"target": "../x"}', "result.json: not a nestbox.result/v1"),
    ("junit.xml", "<!DOCTYPE x [<!ENTITY a 'b'>]><testsuite/>", "junit.xml"),
    ("coverage.lcov", "SF:/etc/passwd\nDA:1,1\nend_of_record\n", "coverage.lcov: line 1: SF:"),
    ("coverage.lcov", "SF:a.py\nDA:1,-1\n", "coverage.lcov: line 2: DA:"),
])
def test_merge_refuses_hostile_inputs_in_one_line(tmp_path, ws, what, content, message):
    out = tmp_path / "out"
    assert run(["test", "--cache", tmp_path / "c", "--output", out, ws]).returncode == 0
    (out / "app/tests" / what).write_text(content)
    p = run(["merge", "-o", tmp_path / "m", out])
    assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_merge_does_not_follow_links_and_needs_inputs(tmp_path, ws):
    out = tmp_path / "out"
    assert run(["test", "--cache", tmp_path / "c", "--output", out, ws]).returncode == 0
    os.symlink("/etc", out / "evil")
    p = run(["merge", "-o", tmp_path / "m", out])
    assert p.returncode == 0 and "2 targets" in p.stdout, p.stdout + p.stderr
    p = run(["merge", "-o", tmp_path / "m2", tmp_path / "c"])
    assert p.returncode == 2 and "no result.json beneath it" in p.stderr, p.stderr
    assert run(["merge"]).returncode == 2
    assert run(["merge", "--help"]).returncode == 0


def test_merge_says_when_machines_planned_from_different_caches(tmp_path, ws):
    # Machine 1 learned durations first; machine 2 starts from an empty cache and splits by hash.
    assert run(["test", "--cache", tmp_path / "c1", ws]).returncode == 0
    # What was learned, made the same for every test: measured, the two shards' loads
    # (so which shard machine 1 takes) would follow the machine's noise from run to run.
    learned = tmp_path / "c1" / "durations" / (hashlib.sha256(b"app/tests").hexdigest() + ".json")
    doc = json.loads(learned.read_text())
    doc["tests"] = {k: 1000 for k in doc["tests"]}
    learned.write_text(json.dumps(doc))
    for k, cache in ((1, "c1"), (2, "c2")):
        p = run(["test", "--cache", tmp_path / cache, "--output", tmp_path / f"m{k}", "--shards-per-target", "2",
                 "--machine", f"{k}/2", ws, "app/tests"])
        assert p.returncode == 0, p.stdout + p.stderr
    p = run(["merge", "-o", tmp_path / "m", tmp_path / "m1", tmp_path / "m2"])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "ran in more than one of its 2 shards" in p.stderr and p.stderr.count("\n") == 1, p.stderr


JUNIT = '<testsuite tests="1"><testcase classname="t" name="test_ok"/></testsuite>'


def unit(folder, target="app/tests", index=1, count=1, run_no=1, wall=1.0, action="a" * 64, junit=JUNIT):
    """A result.json and junit.xml as `nestbox test --output` writes them, made by hand."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"schema": "nestbox.result/v1", "target": target, "status": "PASSED", "action": action, "seed": 1,
           "shard": {"index": index, "count": count}, "run": run_no, "durations": {"wall": wall}}
    (folder / "result.json").write_text(json.dumps(doc))
    (folder / "junit.xml").write_text(junit)
    return folder


def assert_plain(text):
    """No byte a terminal acts on: C0 controls but the line breaks, DEL, C1 controls."""
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, repr(text)


EVIL = "x\x1b]0;PWNED\x07\x1b[2J\u009b1m\x7f"


def test_merge_escapes_the_names_an_input_chose(tmp_path):
    m1 = tmp_path / "m1"
    (m1 / EVIL).mkdir(parents=True)
    (m1 / EVIL / "result.json").write_text("{")
    (m1 / EVIL / "junit.xml").write_text(JUNIT)
    p = run(["merge", "-o", tmp_path / "m", m1])
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert_plain(p.stdout + p.stderr)
    assert "m1/x\\x1b]0;PWNED\\x07\\x1b[2J\\u009b1m\\x7f/result.json: not a JSON document" in p.stderr, p.stderr
    # A file the walk cannot read (a folder where junit.xml goes), named by its folder.
    shutil.rmtree(m1)
    (unit(m1 / EVIL) / "junit.xml").unlink()
    (m1 / EVIL / "junit.xml").mkdir()
    p = run(["merge", "-o", tmp_path / "m", m1])
    assert p.returncode == 2 and "PWNED\\x07" in p.stderr and "/junit.xml: " in p.stderr, p.stderr
    assert_plain(p.stdout + p.stderr)
    # The same shard twice: the line naming both folders.
    shutil.rmtree(m1)
    unit(m1 / EVIL / "a")
    unit(m1 / ("b\x1b[31m"))
    p = run(["merge", "-o", tmp_path / "m", m1])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "duplicated: app/tests shard 1 of 1 (run 1) in " in p.stderr and "b\\x1b[31m" in p.stderr, p.stderr
    assert "PWNED\\x07" in p.stderr, p.stderr
    assert_plain(p.stdout + p.stderr)
    # An artifact (here a file that is not one) and an input given on the command line.
    art = tmp_path / ("art\x1b[2J.tar.zst")
    art.write_bytes(b"not a tar.zst")
    p = run(["merge", "-o", tmp_path / "m", art])
    assert p.returncode == 2 and "art\\x1b[2J.tar.zst" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert_plain(p.stdout + p.stderr)
    p = run(["merge", "-o", tmp_path / "m", tmp_path / "absent\x1b[2J"])
    assert p.returncode == 2 and "absent\\x1b[2J" in p.stderr, p.stderr
    assert_plain(p.stdout + p.stderr)


def test_merge_bounds_the_lines_of_missing_and_duplicated_shards(tmp_path):
    # Shard 1 of 100000, and shard 1 of 1000 in 30 runs: one line per target and run
    # names a few, and the lines in all are bounded.
    out = tmp_path / "out"
    unit(out / "big", index=1, count=100000)
    for r in range(2, 32):
        unit(out / f"run{r}", index=1, count=1000, run_no=r)
    p = run(["merge", "-o", tmp_path / "m", out])
    assert p.returncode == 1, p.stderr[:2000]
    lines = p.stderr.splitlines()
    assert "nestbox: merge: missing: 99999 of 100000 shards of app/tests (run 1): 2, 3, 4 and 99996 more" in lines, \
        lines[:5]
    assert len(lines) <= 25 and lines[-1].endswith("lines of missing, duplicated or split shards left out"), lines[:30]
    assert "nestbox: merge: missing: 999 of 1000 shards of app/tests (run 2): 2, 3, 4 and 996 more" in lines
    # Two of three missing, and one: each said in one line.
    shutil.rmtree(out)
    unit(out / "a", index=2, count=3)
    unit(out / "b", target="lib/tests", index=1, count=2)
    p = run(["merge", "-o", tmp_path / "m", out])
    assert p.returncode == 1 and p.stderr.splitlines() == [
        "nestbox: merge: missing: 2 of 3 shards of app/tests (run 1): 1, 3",
        "nestbox: merge: missing: lib/tests shard 2 of 2 (run 1)"], p.stderr
    # The same shard in 40 folders: 39 duplicates, bounded too.
    shutil.rmtree(out)
    for k in range(40):
        unit(out / f"copy{k:02}")
    p = run(["merge", "-o", tmp_path / "m", out])
    lines = p.stderr.splitlines()
    assert p.returncode == 0 and len(lines) <= 25 and sum("duplicated: " in x for x in lines) <= 20, lines
    assert lines[-1] == "nestbox: merge: 19 more lines of missing, duplicated or split shards left out", lines


@pytest.mark.parametrize("field,value,message", [
    ("wall", 1e308, "durations.wall is not from 0 to 1e12 seconds"),
    ("wall", 1e12 + 1, "durations.wall is not from 0 to 1e12 seconds"),
    ("wall", -1, "durations.wall is not from 0 to 1e12 seconds"),
    ("action", "", "action is not a digest"),
    ("action", "../../etc/passwd", "action is not a digest"),
    ("action", "A" * 64, "action is not a digest"),
    ("action", None, "action is not a digest"),
])
def test_merge_refuses_absurd_walls_and_actions(tmp_path, field, value, message):
    out = tmp_path / "out"
    folder = unit(out / "app/tests")
    doc = json.loads((folder / "result.json").read_text())
    if field == "wall":
        doc["durations"]["wall"] = value
    elif value is None:
        del doc["action"]
    else:
        doc["action"] = value
    (folder / "result.json").write_text(json.dumps(doc))
    p = run(["merge", "-o", tmp_path / "m", out])
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stdout + p.stderr
    assert f"app/tests/result.json: {message}" in p.stderr, p.stderr
    assert p.stdout == "", p.stdout


def test_merge_takes_the_largest_wall_and_names_the_action(tmp_path):
    out = tmp_path / "out"
    unit(out / "app/tests", wall=1e12, action="0123456789abcdef" * 4,
         junit='<testsuite tests="1"><testcase classname="t" name="test_bad"><failure message="no"/></testcase>'
               '</testsuite>')
    p = run(["merge", "-o", tmp_path / "m", out])
    assert p.returncode == 1 and "FAILED in 1000000000000.00s" in p.stdout, p.stdout + p.stderr
    assert "seed 1  nestbox repro 0123456789ab" in p.stdout, p.stdout
