"""CI machines (issue 10, "Sharding across CI machines"): --machine K/N, the CI's own
variables, and slices that are the same on every machine and balanced by the
durations in the cache."""
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess

import pytest

from conftest import NESTBOX, have, run, traced_env
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

CI_VARS = ("BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", "CI_NODE_INDEX", "CI_NODE_TOTAL",
           "CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", "JOB_COMPLETION_INDEX", "NESTBOX_MACHINES")
TARGETS = {f"t{i}": {} for i in range(6)}


def env(**vars):
    e = {k: v for k, v in os.environ.items() if k not in CI_VARS}
    e.update(vars)
    return e


def ran(stdout):
    return sorted(m.group(1) for m in re.finditer(r"^(\S+)  PASSED", stdout, re.M))


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    return make_workspace(tmp_path / "ws", resolve_dir, PASSING, TARGETS)


@pytest.mark.parametrize("vars,extra,found", [
    ({"BUILDKITE_PARALLEL_JOB": "1", "BUILDKITE_PARALLEL_JOB_COUNT": "3"}, [],
     "Buildkite: BUILDKITE_PARALLEL_JOB=1, BUILDKITE_PARALLEL_JOB_COUNT=3"),
    ({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}, [], "GitLab CI: CI_NODE_INDEX=2, CI_NODE_TOTAL=3"),
    ({"CIRCLE_NODE_INDEX": "1", "CIRCLE_NODE_TOTAL": "3"}, [], "CircleCI: CIRCLE_NODE_INDEX=1, CIRCLE_NODE_TOTAL=3"),
    ({"JOB_COMPLETION_INDEX": "1", "NESTBOX_MACHINES": "3"}, [],
     "a Kubernetes Indexed Job: JOB_COMPLETION_INDEX=1, NESTBOX_MACHINES=3"),
    ({"JOB_COMPLETION_INDEX": "1"}, ["--machines", "3"],
     "a Kubernetes Indexed Job: JOB_COMPLETION_INDEX=1, --machines=3"),
], ids=["buildkite", "gitlab", "circleci", "kubernetes-env", "kubernetes-flag"])
def test_each_ci_maps_to_the_same_slice_as_the_flag(tmp_path, ws, vars, extra, found):
    # Two machines, each with its own (empty) cache.
    flag = run(["test", "--cache", tmp_path / "c1", "--machine", "2/3", ws], env=env())
    assert flag.returncode == 0, flag.stdout + flag.stderr
    p = run(["test", "--cache", tmp_path / "c2", *extra, ws], env=env(**vars))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0] == f"machine 2/3 ({found}): 2 of 6 work items", p.stdout
    assert ran(p.stdout) == ran(flag.stdout) and len(ran(p.stdout)) == 2


@pytest.mark.parametrize("vars,extra,message", [
    ({"BUILDKITE_PARALLEL_JOB": "0", "BUILDKITE_PARALLEL_JOB_COUNT": "3", "CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"},
     [], "the CI's variables disagree: Buildkite"),
    ({"CI_NODE_INDEX": "4", "CI_NODE_TOTAL": "3"}, [], "CI_NODE_INDEX=4 is out of range for CI_NODE_TOTAL=3"),
    ({"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "3"}, [], "CI_NODE_INDEX=0: expected an integer from 1"),
    ({"BUILDKITE_PARALLEL_JOB": "1"}, [], "BUILDKITE_PARALLEL_JOB=1 is set but BUILDKITE_PARALLEL_JOB_COUNT is not"),
    ({"JOB_COMPLETION_INDEX": "0"}, [], "--machines N or NESTBOX_MACHINES"),
    ({}, ["--machines", "3"], "no JOB_COMPLETION_INDEX"),
    ({}, ["--machine", "4/3"], "--machine 4/3: expected K/N"),
    ({}, ["--machine", "0/3"], "--machine 0/3: expected K/N"),
], ids=["two-cis", "out-of-range", "gitlab-zero", "no-total", "k8s-no-total", "machines-alone", "flag-range",
        "flag-zero"])
def test_contradictory_or_incomplete_values_are_refused(tmp_path, ws, vars, extra, message):
    p = run(["test", "--cache", tmp_path / "cache", *extra, ws], env=env(**vars))
    assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert "PASSED" not in p.stdout


def test_the_flag_wins_and_says_so(tmp_path, ws):
    p = run(["test", "--cache", tmp_path / "cache", "--machine", "1/3", ws],
            env=env(BUILDKITE_PARALLEL_JOB="1", BUILDKITE_PARALLEL_JOB_COUNT="3"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0].startswith("machine 1/3 (--machine 1/3 (it wins over Buildkite: "), p.stdout
    # GitLab's CI_NODE_TOTAL=1 of every job without parallel: no slicing, no line.
    p = run(["test", "--cache", tmp_path / "cache", ws], env=env(CI_NODE_TOTAL="1"))
    assert p.returncode == 0 and len(ran(p.stdout)) == 6 and not p.stdout.startswith("machine"), p.stdout


@pytest.mark.parametrize("vars,says", [
    ({"CI_NODE_INDEX": "garbage", "CI_NODE_TOTAL": "2"}, "CI_NODE_INDEX=garbage: expected an integer from 1"),
    ({"BUILDKITE_PARALLEL_JOB": "0", "BUILDKITE_PARALLEL_JOB_COUNT": "2", "CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"},
     "the CI's variables disagree"),
    ({"BUILDKITE_PARALLEL_JOB": "1"}, "BUILDKITE_PARALLEL_JOB=1 is set but BUILDKITE_PARALLEL_JOB_COUNT is not"),
], ids=["garbage", "two-cis", "half-set"])
def test_the_flag_wins_over_variables_that_say_no_slice(tmp_path, ws, vars, says):
    # The README: "A flag wins over the variables"; refusing them is for a run without one.
    p = run(["test", "--cache", tmp_path / "cache", "--machine", "2/3", ws], env=env(**vars))
    assert p.returncode == 0, p.stdout + p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith("machine 2/3 (--machine 2/3 (it wins over the CI's variables: ") and says in first, first
    assert len(ran(p.stdout)) == 2 and p.stderr == "", p.stdout + p.stderr


def test_slices_cover_every_item_once_and_are_balanced_by_cached_durations(tmp_path, resolve_dir):  # noqa: F811
    files = {**PASSING, "tests/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(1.5)\n"}
    targets = {"slow": {"tests": ["tests/test_slow.py"]}, **{f"fast{i}": {"tests": ["tests/test_calc.py"]}
                                                             for i in range(3)}}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, targets)
    learned = tmp_path / "learned"
    assert run(["test", "--cache", learned, ws], env=env()).returncode == 0
    slices = []
    for k in (1, 2):
        # Each "machine" its own copy of the same cache contents.
        cache = tmp_path / f"cache{k}"
        shutil.copytree(learned, cache, symlinks=True)
        p = run(["test", "--cache", cache, "--force", "--machine", f"{k}/2", ws], env=env())
        assert p.returncode == 0, p.stdout + p.stderr
        slices.append(ran(p.stdout))
    assert sorted(slices[0] + slices[1]) == sorted(targets)  # each once
    assert ["slow"] in slices, slices  # the long target alone, the three short ones together
    # With shards: every shard of every target on exactly one machine.
    items = []
    for k in (1, 2, 3):
        # Again each machine starts from the same cache contents.
        cache = tmp_path / f"shards{k}"
        shutil.copytree(tmp_path / "cache1", cache, symlinks=True)
        p = run(["test", "--cache", cache, "--shards-per-target", "2", "--machine", f"{k}/3",
                 "--output", tmp_path / f"o{k}", ws], env=env())
        assert p.returncode == 0, p.stdout + p.stderr
        items += sorted(str(d.relative_to(tmp_path / f"o{k}")) for d in (tmp_path / f"o{k}").glob("*/shard-*"))
    assert sorted(items) == sorted(f"{t}/shard-{s}-of-2" for t in targets for s in (1, 2))



def overstate(cache, target):
    """Makes what cache learned of target's tests a hundred seconds each."""
    learned = cache / "durations" / (hashlib.sha256(target.encode()).hexdigest() + ".json")
    doc = json.loads(learned.read_text())
    doc["tests"] = {k: 100000 for k in doc["tests"]}
    learned.write_text(json.dumps(doc))


def test_machines_one_after_another_on_one_cache_plan_the_same_slices(tmp_path, resolve_dir):  # noqa: F811
    # Review defect 4: machines that share one cache one after another (one CI runner
    # taking the parallel jobs in turn). Each machine's run teaches the cache new
    # durations; the next must still plan the slices the first one planned.
    targets = {f"t{i}": {"tests": ["tests/test_calc.py"]} for i in range(4)}
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, targets)
    cache = tmp_path / "cache"
    assert run(["test", "--cache", cache, ws], env=env()).returncode == 0
    # The cache believes t0 slow: a slice of its own. Machine 1 runs it and learns
    # that it is fast; planned from that, machine 2 would run t0 again and leave one
    # of the others to nobody.
    overstate(cache, "t0")
    slices = []
    for k in (1, 2):
        p = run(["test", "--cache", cache, "--force", "--machine", f"{k}/2", ws], env=env())
        assert p.returncode == 0, p.stdout + p.stderr
        slices.append(ran(p.stdout))
    assert slices[0] == ["t0"] and sorted(slices[0] + slices[1]) == sorted(targets), slices
    # The same with shards: each machine's run learns part of t0's durations.
    overstate(cache, "t0")
    items = []
    for k in (1, 2, 3):
        out = tmp_path / f"o{k}"
        p = run(["test", "--cache", cache, "--force", "--shards-per-target", "2", "--machine", f"{k}/3",
                 "--output", out, ws], env=env())
        assert p.returncode == 0, p.stdout + p.stderr
        items += sorted(str(d.relative_to(out)) for d in out.glob("*/shard-*"))
    assert sorted(items) == sorted(f"{t}/shard-{s}-of-2" for t in targets for s in (1, 2)), items
    p = run(["merge", "-o", tmp_path / "m", tmp_path / "o1", tmp_path / "o2", tmp_path / "o3"])
    assert p.returncode == 0 and "missing" not in p.stderr and "duplicate" not in p.stderr, p.stdout + p.stderr



@pytest.mark.skipif(not have("strace"), reason="needs strace")
def test_planning_pins_prunes_the_old_pins_once(tmp_path, resolve_dir):  # noqa: F811
    # Review: planning pins every item's group, and every new pin looked through
    # plans/ for old pins to remove: a cold plan of N items stat'ed N*N/2 entries.
    n = 150
    targets = {f"t{i}": {"tests": ["tests/test_calc.py"]} for i in range(n)}
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, targets)
    cache = tmp_path / "cache"
    assert run(["test", "--cache", cache, ws, "t0"]).returncode == 0
    log = tmp_path / "strace"
    p = subprocess.run(["strace", "-f", "-qq", "-y", "-e", "trace=newfstatat", "-o", str(log), str(NESTBOX), "test",
                        "--cache", str(cache), "--machine", f"1/{n}", str(ws)], capture_output=True, text=True,
                       timeout=300, env=traced_env(e=env()))
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(list((cache / "plans").iterdir())) == n
    in_plans = len(re.findall(r"newfstatat\(\d+</[^>]*/plans>", log.read_text()))
    assert in_plans <= n, in_plans
    # The runs of a target cost what its first one does: one pin each, not one per run.
    p = run(["test", "--cache", tmp_path / "runs", "--runs-per-test", "2", "--machine", f"1/{n}", ws], env=env())
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(list((tmp_path / "runs" / "plans").iterdir())) == n



def test_planning_holds_no_descriptor_an_item(tmp_path, resolve_dir):  # noqa: F811
    # Review: planning built every item's action and held it until the slice was cut,
    # each with its wheelhouse open. Past the descriptor limit the later items were
    # planned as unknown without a word, so a machine with another `ulimit -n` (or any,
    # past about a thousand items) cut other slices: targets ran twice, or nowhere.
    n = 60
    targets = {f"t{i}": {"tests": ["tests/test_calc.py"]} for i in range(n)}
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, targets)
    cache = tmp_path / "cache"
    assert run(["test", "--cache", cache, ws], env=env(), timeout=600).returncode == 0
    overstate(cache, f"t{n - 1}")
    slices = {}
    for limit in (1024, 40):
        copy = tmp_path / f"cache-{limit}"
        shutil.copytree(cache, copy, symlinks=True)
        p = run(["test", "--cache", copy, "--machine", "1/2", ws], env=env(),
                preexec_fn=lambda lim=limit: resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim)))
        assert p.returncode == 0, p.stdout + p.stderr
        slices[limit] = ran(p.stdout)
    assert slices[1024] == slices[40] == [f"t{n - 1}"], slices


def test_a_run_that_stops_leaves_no_earlier_runs_reports(tmp_path, resolve_dir):  # noqa: F811
    # Review: DIR/junit.xml (and the combined coverage) of all targets is written at a
    # run's end; a run that stopped before it left the last run's there, which a CI
    # step that uploads whatever is in DIR took for this run's.
    targets = {f"t{i}": {"tests": ["tests/test_calc.py"], "coverage": True} for i in range(2)}
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, targets)
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert run(["test", "--cache", cache, "--output", out, ws], env=env()).returncode == 0
    assert all((out / f).is_file() for f in ("junit.xml", "coverage.lcov", "coverage.xml"))
    shutil.rmtree(cache / "plans", ignore_errors=True)
    (cache / "plans").write_text("not a directory")
    p = run(["test", "--cache", cache, "--output", out, "--machine", "1/2", ws], env=env())
    assert p.returncode == 3, p.stdout + p.stderr
    assert not any((out / f).exists() for f in ("junit.xml", "coverage.lcov", "coverage.xml")), os.listdir(out)


def test_a_plan_the_machine_cannot_make_stops_it(tmp_path, resolve_dir):  # noqa: F811
    # What another machine could plan otherwise (a pin not written, descriptors, memory)
    # stops the plan, exit 3, where it was taken for "unknown" and sliced in silence. A
    # target the workspace keeps from being built is unknown on every machine alike:
    # the machine it falls to says why (exit 2), the other runs its slice.
    targets = {f"t{i}": {"tests": ["tests/test_calc.py"]} for i in range(4)}
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, targets)
    cache = tmp_path / "cache"
    assert run(["test", "--cache", cache, ws], env=env()).returncode == 0
    shutil.rmtree(cache / "plans", ignore_errors=True)
    (cache / "plans").write_text("not a directory")
    p = run(["test", "--cache", cache, "--machine", "1/2", ws], env=env())
    assert p.returncode == 3, p.stdout + p.stderr
    assert re.search(r"^nestbox: --machine: planning the slices \(t0\): .*Not a directory$", p.stderr, re.M), p.stderr
    (cache / "plans").unlink()
    # A lockfile not there, one named through a file, a link loop: the workspace's.
    os.symlink("loop.lock", ws / "3rdparty/loop.lock")
    for lockfile in ("3rdparty/missing.lock", "tests/test_calc.py/x.lock", "3rdparty/loop.lock"):
        cfg = json.loads((ws / "nestbox.json").read_text())
        cfg["resolves"]["broken"] = {"lockfile": lockfile, "wheelhouse": cfg["resolves"]["default"]["wheelhouse"]}
        cfg["targets"]["t3"]["resolve"] = "broken"
        (ws / "nestbox.json").write_text(json.dumps(cfg))
        codes = {}
        for k in (1, 2):
            p = run(["test", "--cache", cache, "--machine", f"{k}/2", ws], env=env())
            codes[k] = p.returncode
            assert p.returncode in (0, 2), p.stdout + p.stderr
            assert (p.returncode == 2) == (lockfile in p.stderr), p.stdout + p.stderr
        assert sorted(codes.values()) == [0, 2], (lockfile, codes)


def test_running_out_of_descriptors_in_a_glob_stops_the_plan(tmp_path, resolve_dir):  # noqa: F811
    # Review: a glob's walk that ran out of descriptors was taken for the workspace's
    # error, so the item was planned as unknown (and its machine said "exit 2").
    targets = {f"t{i}": {"tests": ["tests/test_calc.py"]} for i in range(4)}
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING, targets)
    deep = ws / "src" / "app"
    for i in range(40):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "leaf.py").write_text("")
    p = run(["test", "--cache", tmp_path / "cache", "--machine", "1/2", ws], env=env(),
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32)))
    assert p.returncode == 3, p.stdout + p.stderr
    assert re.search(r"^nestbox: --machine: planning the slices \(t0\): .*Too many open files$", p.stderr, re.M), p.stderr

# ---- examples/ci: the command lines a user copies are valid and do what they say ----

CI_FILES = {
    # file: (the CI's variables for machine k of 4, what runs between machines)
    "pipeline.yml": (lambda k: {"BUILDKITE_PARALLEL_JOB": str(k - 1), "BUILDKITE_PARALLEL_JOB_COUNT": "4"}, None),
    ".gitlab-ci.yml": (lambda k: {"CI_NODE_INDEX": str(k), "CI_NODE_TOTAL": "4"}, None),
    "k8s-indexed-job.yaml": (lambda k: {"JOB_COMPLETION_INDEX": str(k - 1), "NESTBOX_MACHINES": "4"}, None),
    "github-actions.yml": (lambda k: {"MATRIX_MACHINE": str(k)},
                           lambda cwd, k: shutil.move(cwd / "out", cwd / f"parts/out-{k}")),
}


def nestbox_commands(doc):
    """Every string in the YAML documents that is a nestbox command line."""
    if isinstance(doc, dict):
        return [c for v in doc.values() for c in nestbox_commands(v)]
    if isinstance(doc, list):
        return [c for v in doc for c in nestbox_commands(v)]
    # "nestbox test ... || true": the pod's status is left to the merge.
    return [doc.split(" || ")[0]] if isinstance(doc, str) and doc.startswith("nestbox ") else []


@pytest.mark.parametrize("name", sorted(CI_FILES))
def test_ci_examples_run_and_merge(tmp_path, resolve_dir, name):  # noqa: F811
    import shlex
    import yaml
    from conftest import ROOT
    from workspace import copy_examples
    ex = copy_examples(tmp_path / "examples", resolve_dir)
    text = (ROOT / "examples/ci" / name).read_text()
    if name == "k8s-indexed-job.yaml":  # Jobs start together: the merge is applied after, from its own file
        assert "kubectl wait --for=condition=complete" in text and "|| true" in text
        text += "\n---\n" + (ROOT / "examples/ci/k8s-merge-job.yaml").read_text()
    commands = nestbox_commands(list(yaml.safe_load_all(text)))
    tests = [c for c in commands if c.startswith("nestbox test ")]
    merges = [c for c in commands if c.startswith("nestbox merge ")]
    assert len(tests) == 1 and len(merges) == 1, commands
    ci_env, between = CI_FILES[name]
    cwd = tmp_path / "ci"
    cwd.mkdir()
    # Every machine starts from the same cache contents (here: the venv, no results).
    base = tmp_path / "base"
    assert run(["test", "--cache", base, "--no-cache", ex], env=env(), timeout=600).returncode == 0

    def argv(line, vars):
        line = line.replace("${{ matrix.machine }}", vars.get("MATRIX_MACHINE", ""))
        line = os.path.expandvars(line) if vars else line
        args = shlex.split(line)[1:]
        # The placeholder remote cache refuses at once; the example workspace is the copy.
        args = [str(ex) if a == "examples" else a.replace("https://cache.example.internal", "http://127.0.0.1:9")
                for a in args]
        return [a.replace("/reports", str(cwd / "reports")) for a in args]

    for k in (1, 2, 3, 4):
        vars = ci_env(k)
        old = {v: os.environ.get(v) for v in vars}
        os.environ.update(vars)
        try:
            args = argv(tests[0], vars)
        finally:
            for v, o in old.items():
                os.environ.pop(v) if o is None else os.environ.__setitem__(v, o)
        cache = tmp_path / f"cache{k}"
        shutil.copytree(base, cache, symlinks=True)
        p = run([*args[:1], "--cache", cache, "--remote-timeout", "5", *args[1:]], env=env(**vars), cwd=cwd,
                timeout=600)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        assert "machine " in p.stdout.splitlines()[0], p.stdout
        if between:
            between(cwd, k)
    p = run(argv(merges[0], {}), cwd=cwd, env=env())
    assert p.returncode == 0 and p.stderr == "", (p.stdout, p.stderr)
    assert p.stdout.splitlines()[-1].startswith("3 targets, 6 work items: 6 passed"), p.stdout
    merged = cwd / ("reports/merged" if "reports" in merges[0] else "merged")
    assert (merged / "junit.xml").exists()


def test_runs_are_work_items_too(tmp_path, ws):
    # Work items are target x shard x run: four runs of one target on two machines are
    # two each, every run on exactly one.
    got = []
    for k in (1, 2):
        out = tmp_path / f"o{k}"
        p = run(["test", "--cache", tmp_path / f"c{k}", "--runs-per-test", "4", "--machine", f"{k}/2",
                 "--output", out, ws, "t0"], env=env())
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.splitlines()[0] == f"machine {k}/2 (--machine {k}/2): 2 of 4 work items", p.stdout
        got += [int(d.name[4:]) for d in (out / "t0").iterdir()]
    assert sorted(got) == [1, 2, 3, 4]
    p = run(["merge", "-o", tmp_path / "m", tmp_path / "o1", tmp_path / "o2"])
    assert p.returncode == 0 and "missing" not in p.stderr, p.stdout + p.stderr
