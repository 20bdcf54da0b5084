"""One target end to end: declared inputs, locked venv, pytest in the sandbox, JUnit."""
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, run
from workspace import build_wheelhouse, copy_examples, make_workspace


@pytest.fixture(scope="session")
def resolve_dir(tmp_path_factory):
    return build_wheelhouse(tmp_path_factory.mktemp("resolve"))


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


PASSING = {
    "src/app/__init__.py": "",
    "src/app/calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from app.calc import add\n\n"
                          "def test_add():\n    assert add(2, 3) == 5\n\n"
                          "def test_more():\n    assert add(-1, 1) == 0\n",
}


def junit_cases(path):
    root = ET.parse(path).getroot()
    return root.iter("testcase")


def test_passing_target(tmp_path, resolve_dir, cache):
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "app/tests  PASSED in" in p.stdout
    assert "(2 tests)" in p.stdout
    cases = list(junit_cases(out / "app/tests/junit.xml"))
    assert sorted(c.get("name") for c in cases) == ["test_add", "test_more"]
    props = {p.get("name"): p.get("value") for p in ET.parse(out / "app/tests/junit.xml").getroot().iter("property")}
    assert props["target"] == "app/tests"
    assert (out / "junit.xml").exists()


def test_failing_target_shows_the_failure(tmp_path, resolve_dir, cache):
    files = dict(PASSING)
    files["tests/test_bad.py"] = "def test_wrong():\n    value = 41\n    assert value == 42, 'the answer is off'\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED in" in p.stdout
    assert "test_wrong" in p.stdout
    assert "the answer is off" in p.stdout


def test_undeclared_file_cannot_be_imported(tmp_path, resolve_dir, cache):
    files = dict(PASSING)
    files["src/secret/__init__.py"] = ""
    files["src/secret/key.py"] = "KEY = 'host only'\n"
    files["tests/test_secret.py"] = "def test_import():\n    import secret.key\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files,
                        {"app/tests": {"sources": ["src/app/*.py"]}})
    # The file is importable on the host, so only the sandbox can make this fail.
    assert (ws / "src/secret/key.py").exists()
    p = run(["test", "--cache", cache, "--output", tmp_path / "out", ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "ModuleNotFoundError" in p.stdout + (tmp_path / "out/app/tests/log").read_text()


def _no_venv_left(cache):
    assert list((cache / "venvs").iterdir()) == []
    assert list((cache / "tmp").iterdir()) == []


def test_wrong_hash_is_refused(tmp_path, resolve_dir, cache):
    lock = (resolve_dir / "default.lock").read_text()
    # flip the first hex digit of the first hash
    i = lock.index("--hash=sha256:") + len("--hash=sha256:")
    bad = lock[:i] + ("0" if lock[i] != "0" else "1") + lock[i + 1:]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/default.lock").write_text(bad)
    (tmp_path / "bad/wheelhouse").symlink_to(resolve_dir / "wheelhouse")
    ws = make_workspace(tmp_path / "ws", tmp_path / "bad", PASSING)
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 2, p.stdout + p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nestbox: ") and "sha256" in err[0], p.stderr
    _no_venv_left(cache)


def test_missing_wheel_is_refused(tmp_path, resolve_dir, cache):
    (tmp_path / "partial/wheelhouse").mkdir(parents=True)
    for whl in (resolve_dir / "wheelhouse").iterdir():
        if not whl.name.startswith("pluggy"):
            os.symlink(whl, tmp_path / "partial/wheelhouse" / whl.name)
    shutil.copy(resolve_dir / "default.lock", tmp_path / "partial/default.lock")
    ws = make_workspace(tmp_path / "ws", tmp_path / "partial", PASSING)
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 2, p.stdout + p.stderr
    assert "pluggy" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    _no_venv_left(cache)


@pytest.mark.parametrize("how,why", [
    ("os._exit(3)", "exited with status 3"),
    ("os.kill(os.getpid(), signal.SIGSEGV)", "signal 11"),
])
def test_pytest_dying_still_gives_a_report(tmp_path, resolve_dir, cache, how, why):
    files = dict(PASSING)
    files["tests/test_die.py"] = f"import os, signal\n\ndef test_die():\n    {how}\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert why in p.stdout
    cases = list(junit_cases(out / "app/tests/junit.xml"))
    assert len(cases) == 1
    error = cases[0].find("error")
    assert error is not None and why in error.get("message")


def test_timeout_kills_and_reports(tmp_path, resolve_dir, cache):
    files = dict(PASSING)
    files["tests/test_slow.py"] = "import time\n\ndef test_sleep():\n    time.sleep(600)\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {"app/tests": {"timeout": 3}})
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 4, p.stdout + p.stderr
    assert "TIMEOUT" in p.stdout and "timed out" in p.stdout
    log = (out / "app/tests/log").read_text()
    assert "test_sleep" in log  # faulthandler's traceback from SIGABRT
    error = list(junit_cases(out / "app/tests/junit.xml"))[0].find("error")
    assert "timed out" in error.get("message")


HOSTILE = {
    "xxe": '<?xml version="1.0"?>\n<!DOCTYPE t [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
           '<testsuite name="x" tests="1"><testcase classname="c" name="n"><failure message="&e;">&e;</failure>'
           '</testcase></testsuite>\n',
    "laughs": '<?xml version="1.0"?>\n<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(9)) +
        ']>\n<testsuite name="x"><testcase classname="c" name="&j;"/></testsuite>\n',
}


@pytest.mark.parametrize("kind", ["xxe", "laughs", "symlink", "huge"])
def test_hostile_junit_never_brings_host_data(tmp_path, resolve_dir, cache, kind):
    if kind == "symlink":
        body = "os.remove(p) if os.path.lexists(p) else None\n    os.symlink('/etc/passwd', p)"
    elif kind == "huge":
        body = ("f = open(p, 'w')\n    f.write('<testsuite name=\"x\">')\n"
                "    chunk = '<testcase classname=\"c\" name=\"n\"/>' * 10000\n"
                "    for _ in range(330):\n        f.write(chunk)\n    f.write('</testsuite>')\n    f.close()")
    else:
        body = f"open(p, 'w').write({HOSTILE[kind]!r})"
    files = dict(PASSING)
    # The session hook runs after pytest's junitxml plugin wrote its file.
    files["tests/conftest.py"] = (
        "import os\n\nimport pytest\n\n@pytest.hookimpl(trylast=True)\n"
        "def pytest_unconfigure(config):\n    p = '/out/junit.xml'\n    " + body + "\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, files,
                        {"app/tests": {"pytest_args": ["-p", "no:junitxml"]}})
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws], timeout=300)
    passwd_line = Path("/etc/passwd").read_text().splitlines()[0]
    produced = (out / "app/tests/junit.xml").read_text()
    assert passwd_line not in produced and passwd_line not in p.stdout
    ET.fromstring(produced)  # well-formed
    assert "aaaaaaaaaa" * 100 not in produced
    assert p.returncode == 1, p.stdout + p.stderr
    assert "junit.xml" in p.stdout


def test_second_run_reuses_the_venv(tmp_path, resolve_dir, cache):
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    assert run(["test", "--cache", cache, ws]).returncode == 0
    venvs = list((cache / "venvs").iterdir())
    assert len(venvs) == 1
    before = venvs[0].stat()
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    after = list((cache / "venvs").iterdir())
    assert after == venvs and after[0].stat().st_ino == before.st_ino and after[0].stat().st_mtime == before.st_mtime


def test_unknown_target_and_bad_workspace(tmp_path, resolve_dir, cache):
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    p = run(["test", "--cache", cache, ws, "nope/tests"])
    assert p.returncode == 2 and p.stderr.startswith("nestbox: ") and "nope/tests" in p.stderr
    (ws / "nestbox.json").write_text("{ not json")
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "nestbox.json" in p.stderr


def test_example_monorepo_passes(tmp_path, resolve_dir, cache):
    """The README's example, on the shared wheelhouse: every target passes."""
    ex = copy_examples(tmp_path / "examples", resolve_dir)
    p = run(["test", "--cache", cache, ex], timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count(" PASSED in ") == 3


def test_coverage_without_coverage_in_the_lock_is_a_clear_error(tmp_path, resolve_dir, cache):
    lines = (resolve_dir / "default.lock").read_text().splitlines()
    kept, skip = [], False
    for line in lines:
        if not line.startswith(" "):
            skip = line.startswith("coverage==")
        if not skip:
            kept.append(line)
    (tmp_path / "nocov").mkdir()
    (tmp_path / "nocov/default.lock").write_text("\n".join(kept) + "\n")
    (tmp_path / "nocov/wheelhouse").symlink_to(resolve_dir / "wheelhouse")
    ws = make_workspace(tmp_path / "ws", tmp_path / "nocov", PASSING)
    assert run(["test", "--cache", cache, ws]).returncode == 0  # fine without coverage
    p = run(["test", "--cache", cache, "--coverage", ws])
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.count("\n") == 1 and "does not pin coverage" in p.stderr, p.stderr


@pytest.mark.parametrize("var", ["HOME", "XDG_CACHE_HOME"])
def test_default_cache_location(tmp_path, resolve_dir, var):
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME")}
    env[var] = str(tmp_path / "fresh")  # does not exist yet
    p = run(["test", ws], env=env, cwd=cwd)
    assert p.returncode == 0, p.stdout + p.stderr
    expected = tmp_path / "fresh" / (".cache/nestbox" if var == "HOME" else "nestbox")
    assert (expected / "venvs").is_dir() and list((expected / "ac").rglob("*"))
    assert list(cwd.iterdir()) == []  # nothing created relative to the working directory


def test_shards_split_the_tests_and_an_empty_shard_passes(tmp_path, resolve_dir, cache):
    files = dict(PASSING)
    files["tests/test_many.py"] = "import pytest\n\n@pytest.mark.parametrize('i', range(7))\ndef test_i(i):\n    pass\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    names = []
    for k in (1, 2):
        out = tmp_path / f"out{k}"
        p = run(["test", "--cache", cache, "--shard", f"{k}/2", "--output", out, ws])
        assert p.returncode == 0, p.stdout + p.stderr
        junit = out / f"app/tests/shard-{k}-of-2/junit.xml"  # shards never share a folder
        names += [c.get("name") for c in junit_cases(junit)]
        props = {x.get("name"): x.get("value") for x in ET.parse(junit).getroot().iter("property")}
        assert props["shard"] == f"{k}/2"
    assert sorted(names) == sorted(["test_add", "test_more"] + [f"test_i[{i}]" for i in range(7)])
    p = run(["test", "--cache", cache, "--shard", "20/20", ws])
    assert p.returncode == 0 and "PASSED" in p.stdout and "(0 tests)" in p.stdout, p.stdout + p.stderr


def test_oversized_output_fails_the_target_not_nestbox(tmp_path, resolve_dir, cache):
    files = dict(PASSING)
    files["tests/test_big.py"] = (
        "import os\n\ndef test_writes_a_lot():\n"
        "    with open(os.path.join(os.environ['TEST_UNDECLARED_OUTPUTS_DIR'], 'big'), 'wb') as f:\n"
        "        f.write(b'x' * (65 << 20))\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED" in p.stdout and "/out:" in p.stdout and "big" in p.stdout


def test_an_interpreter_outside_the_system_dirs_is_refused_with_advice(tmp_path, resolve_dir, cache):
    """A pyenv-style interpreter under $HOME is invisible in the sandbox: say so and
    what to use, instead of execvp /venv/bin/python failing inside."""
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    bindir = tmp_path / "pyenv/versions/3.11/bin"
    bindir.mkdir(parents=True)
    shutil.copy2(os.path.realpath("/usr/bin/python3"), bindir / "python3")
    doc = json.loads((ws / "nestbox.json").read_text())
    doc["python"] = str(bindir / "python3")
    (ws / "nestbox.json").write_text(json.dumps(doc))
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 2, p.stdout + p.stderr
    err = [line for line in p.stderr.splitlines() if line.startswith("nestbox: ")]
    assert len(err) == 1 and "outside the system directories" in err[0] and "/usr/bin/python3" in err[0], p.stderr
    assert "execvp" not in p.stdout + p.stderr
