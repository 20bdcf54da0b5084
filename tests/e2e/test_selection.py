"""What runs and what is reported, as a newcomer meets it (issue 15): the declared test
files are exactly what pytest collects, exit codes rank failures above timeouts, and
text from the untrusted junit.xml is printed escaped."""
import xml.etree.ElementTree as ET

import pytest

from conftest import run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def cases(path):
    return [(c.get("classname"), c.get("name")) for c in ET.parse(path).getroot().iter("testcase")]


# A toolz-like tree: several test modules side by side in one package.
TOOLZ = {
    "toolz/__init__.py": "",
    "toolz/dicttoolz.py": "def merge(*ds):\n    r = {}\n    for d in ds:\n        r.update(d)\n    return r\n",
    "toolz/tests/__init__.py": "",
    "toolz/tests/conftest.py": "import pytest\n\n@pytest.fixture\ndef answer():\n    return 42\n",
    "toolz/tests/test_dicttoolz.py": "from toolz.dicttoolz import merge\n\n"
                                     "def test_merge():\n    assert merge({1: 2}, {3: 4}) == {1: 2, 3: 4}\n\n"
                                     "def test_fixture(answer):\n    assert answer == 42\n",
    "toolz/tests/test_itertoolz.py": "def test_a():\n    pass\n\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n",
    "toolz/tests/test_functoolz.py": "def test_f():\n    pass\n",
}


def toolz_target(tests):
    return {"t": {"sources": ["toolz/*.py", "toolz/tests/conftest.py", "toolz/tests/__init__.py"],
                  "tests": tests, "source_roots": ["."]}}


def test_a_glob_selecting_one_file_runs_only_its_tests(tmp_path, resolve_dir, cache):
    ws = make_workspace(tmp_path / "ws", resolve_dir, TOOLZ, toolz_target(["toolz/tests/test_d*.py"]))
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(2 tests)" in p.stdout
    assert sorted(n for _, n in cases(out / "t/junit.xml")) == ["test_fixture", "test_merge"]


def test_a_file_matched_by_two_globs_is_collected_once(tmp_path, resolve_dir, cache):
    ws = make_workspace(tmp_path / "ws", resolve_dir, TOOLZ,
                        toolz_target(["toolz/**/test_*.py", "toolz/tests/test_itertoolz.py"]))
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    got = cases(out / "t/junit.xml")
    assert len(got) == len(set(got)) == 6, got
    assert "(6 tests)" in p.stdout


def test_a_failed_and_a_timed_out_target_exit_1(tmp_path, resolve_dir, cache):
    files = dict(PASSING)
    files["tests/test_bad.py"] = "def test_wrong():\n    assert 41 == 42\n"
    files["slow/test_slow.py"] = "import time\n\ndef test_sleep():\n    time.sleep(600)\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {
        "app/tests": {},
        "app/slow": {"tests": ["slow/*.py"], "source_roots": ["src", "slow"], "timeout": 2},
    })
    p = run(["test", "--cache", cache, ws], timeout=300)
    assert "app/tests  FAILED" in p.stdout and "app/slow  TIMEOUT" in p.stdout, p.stdout
    assert p.returncode == 1, p.stdout + p.stderr


def test_nothing_collected_says_so_and_fails(tmp_path, resolve_dir, cache):
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING,
                        {"app/tests": {"pytest_args": ["-k", "nomatch"]}})
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED" in p.stdout and "no tests collected" in p.stdout


def test_every_run_ends_with_one_summary_line(tmp_path, resolve_dir, cache):
    files = dict(PASSING)
    files["bad/test_bad.py"] = "def test_wrong():\n    assert 41 == 42\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {
        "app/tests": {}, "app/bad": {"tests": ["bad/*.py"], "source_roots": ["src", "bad"]}})
    run(["test", "--cache", cache, ws, "app/tests"])
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    last = p.stdout.splitlines()[-1]
    assert last.startswith("2 targets: 1 passed, 1 failed, 1 cached, 3 tests in "), last
    assert last.endswith("s")


# A conftest that replaces the junit.xml pytest wrote with one a hostile test chose.
FORGE = (
    "import pytest\n\n@pytest.hookimpl(trylast=True)\ndef pytest_unconfigure(config):\n"
    "    open('/out/junit.xml', 'w', encoding='utf-8').write({xml!r})\n")
FORGED_XML = (
    '<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="x" tests="1" failures="1">'
    '<testcase classname="c" name="n&#13;x  PASSED in 0.01s (9 tests)&#10;x  PASSED">'
    '<failure message="m">line one&#13;x  PASSED\n\u009b2Jline two\x7f\n  indented</failure>'
    '</testcase></testsuite>\n')


def test_test_text_cannot_forge_a_line_or_drive_the_terminal(tmp_path, resolve_dir, cache):
    files = dict(PASSING)
    files["tests/conftest.py"] = FORGE.format(xml=FORGED_XML)
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    for bad in ("\r", "\x1b", "\x9b", "\x7f"):
        assert bad not in p.stdout, repr(p.stdout)
    assert not any(line.startswith("x  PASSED") for line in p.stdout.splitlines()), p.stdout
    assert "  FAILED c::n\\x0dx  PASSED in 0.01s (9 tests)\\x0ax  PASSED\n" in p.stdout, p.stdout
    # Multi-line failure text keeps its lines, each indented.
    assert "      line one\\x0dx  PASSED\n      \\u009b2Jline two\\x7f\n        indented\n" in p.stdout, p.stdout
