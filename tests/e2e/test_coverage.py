"""Coverage as CI tools read it: the declared sources only, the project's own settings
honoured, every path in every output relative to the workspace root."""
import re
import sqlite3
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import run
from test_target import resolve_dir  # noqa: F401  (session fixture)
from workspace import copy_examples, make_workspace


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def xml_files(path):
    """{filename: {line: hits}} and the <source> entries of a Cobertura report."""
    root = ET.parse(path).getroot()
    files = {}
    for c in root.iter("class"):
        files[c.get("filename")] = {int(x.get("number")): int(x.get("hits")) for x in c.iter("line")}
    return root, files, [s.text for s in root.iter("source")]


def lcov_files(path):
    return [line[3:] for line in path.read_text().splitlines() if line.startswith("SF:")]


def data_files(path):
    with sqlite3.connect(path) as db:
        return sorted(p for (p,) in db.execute("select path from file"))


def test_example_measures_its_sources_relative_to_the_workspace(tmp_path, resolve_dir, cache):  # noqa: F811
    ex = copy_examples(tmp_path / "examples", resolve_dir)
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--coverage", "--output", out, ex], timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    d = out / "project1/tests"
    root, files, sources = xml_files(d / "coverage.xml")
    assert sources == ["lib/src/python", "project1/src/python"], sources
    joined = sorted(f"{s}/{f}" for f in files for s in sources if (ex / s / f).is_file())
    assert len(joined) == len(files) and "project1/src/python/inventory/stock.py" in joined
    assert not any("test" in f for f in joined), joined
    for f in lcov_files(d / "coverage.lcov") + data_files(d / "coverage.data"):
        assert not f.startswith("/") and (ex / f).is_file() and "/test/" not in f, f
    assert data_files(d / "coverage.data") == sorted(lcov_files(d / "coverage.lcov"))

    # `coverage report` on the host, from the workspace root, finds every file and gives
    # the percentage nestbox's XML gives (coverage.py reads relative paths as such only
    # with relative_files, which a project using nestbox sets in its own config).
    (ex / ".coveragerc").write_text("[run]\nrelative_files = True\n")
    rep = subprocess.run(["/usr/bin/python3", "-m", "coverage", "report", f"--data-file={d / 'coverage.data'}",
                          "--precision=2"], cwd=ex, capture_output=True, text=True)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    total = re.search(r"^TOTAL\s+(\d+)\s+(\d+)\s+([\d.]+)%$", rep.stdout, re.M)
    assert total, rep.stdout
    valid, covered = int(root.get("lines-valid")), int(root.get("lines-covered"))
    assert int(total[1]) == valid and int(total[1]) - int(total[2]) == covered, (rep.stdout, valid, covered)
    assert float(total[3]) == pytest.approx(100.0 * covered / valid, abs=0.01) and covered > 0


SHARED_ROOT = {
    "app/__init__.py": "",
    "app/calc.py": "def add(a, b):\n    return a + b\n",
    "app/tests/__init__.py": "",
    "app/tests/conftest.py": "",
    "app/tests/test_calc.py": "from app.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}


def test_test_files_in_a_source_root_are_not_measured(tmp_path, resolve_dir, cache):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, SHARED_ROOT, {"app/tests": {
        "sources": ["app/*.py"], "tests": ["app/tests/*.py"], "source_roots": ["."]}})
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--coverage", "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    root, files, sources = xml_files(out / "app/tests/coverage.xml")
    assert sorted(files) == ["app/__init__.py", "app/calc.py"] and sources == ["."], (files, sources)
    assert sorted(lcov_files(out / "app/tests/coverage.lcov")) == ["app/__init__.py", "app/calc.py"]
    assert root.get("line-rate") == "1"


CALC = """def add(a, b):
    if a < 0:
        return b + a
    return a + b


def never():
    return 1
"""

CONFIGS = {
    "pyproject.toml": '[tool.coverage.run]\nsource = ["src/pkg"]\nomit = ["src/pkg/skipme.py"]\nbranch = true\n\n'
                      '[tool.coverage.report]\nexclude_lines = ["def never"]\n',
    ".coveragerc": "[run]\nsource = src/pkg\nomit = src/pkg/skipme.py\nbranch = True\n\n"
                   "[report]\nexclude_lines =\n    def never\n",
    "setup.cfg": "[metadata]\nname = proj\n\n[coverage:run]\nsource = src/pkg\nomit = src/pkg/skipme.py\n"
                 "branch = True\n\n[coverage:report]\nexclude_lines =\n    def never\n",
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_the_projects_coverage_settings_are_honoured(tmp_path, resolve_dir, cache, config):  # noqa: F811
    files = {
        "proj/src/pkg/__init__.py": "",
        "proj/src/pkg/calc.py": CALC,
        "proj/src/pkg/skipme.py": "X = 1\n",
        "proj/src/pkg/tests/test_calc.py": "from pkg.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        f"proj/{config}": CONFIGS[config],
        "other/setup.cfg": "[coverage:run]\nbranch = False\n",  # not declared: not in the tree
    }
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {"proj/tests": {
        "sources": ["proj/src/pkg/*.py", f"proj/{config}"], "tests": ["proj/src/pkg/tests/*.py"],
        "source_roots": ["proj/src"]}})
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--coverage", "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    root, files, sources = xml_files(out / "proj/tests/coverage.xml")
    assert sources == ["proj/src/pkg"], sources  # the project's source, relative to /work
    assert sorted(files) == ["__init__.py", "calc.py"], files  # omit honoured, tests absent
    assert sorted(files["calc.py"]) == [1, 2, 3, 4], files  # `def never` (7, 8) excluded
    assert int(root.get("branches-valid")) == 2 and int(root.get("branches-covered")) == 1  # branch on
    assert sorted(lcov_files(out / "proj/tests/coverage.lcov")) == ["proj/src/pkg/__init__.py", "proj/src/pkg/calc.py"]


# What a hostile test plants in /out after the driver wrote its coverage (atexit runs
# after the driver's last write).
PLANT = """import atexit, os

def plant():
{body}

atexit.register(plant)

def test_it():
    from app.calc import add
    assert add(1, 2) == 3
"""
BAD_LCOV = ("    with open('/out/coverage.lcov', 'w') as f:\n"
            "        f.write('SF:app/calc.py\\nDA:1,5\\nend_of_record\\nSF:../../etc/passwd\\nDA:1,1\\n')")
APP = {"src/app/__init__.py": "", "src/app/calc.py": "def add(a, b):\n    return a + b\n"}


def planting_workspace(tmp_path, resolve_dir, body, coverage):  # noqa: F811
    files = {**APP, "tests/test_hostile.py": PLANT.format(body=body),
             "good/test_good.py": "from app.calc import add\n\ndef test_good():\n    assert add(2, 2) == 4\n"}
    return make_workspace(tmp_path / "ws", resolve_dir, files, {
        "hostile/tests": {"tests": ["tests/*.py"], "coverage": coverage},
        "good/tests": {"tests": ["good/*.py"], "source_roots": ["src", "good"], "coverage": True}})


def test_coverage_a_target_was_not_asked_for_decides_nothing(tmp_path, resolve_dir, cache):  # noqa: F811
    """Attack: a target without coverage wrote /out/coverage.lcov; nestbox summed it
    into the run's report, and a bad one made the run exit 2 after every target had
    passed (8 Mi records of it, exit 3, and the others' coverage cut short)."""
    ws = planting_workspace(tmp_path, resolve_dir, BAD_LCOV, coverage=False)
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    assert not (out / "hostile/tests/coverage.lcov").exists()
    assert lcov_files(out / "coverage.lcov") == ["src/app/__init__.py", "src/app/calc.py"]


def test_a_coverage_file_that_does_not_parse_fails_its_own_target(tmp_path, resolve_dir, cache):  # noqa: F811
    ws = planting_workspace(tmp_path, resolve_dir, BAD_LCOV, coverage=True)
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "hostile/tests  FAILED" in p.stdout and "good/tests  PASSED" in p.stdout, p.stdout
    assert "/out: coverage.lcov: line 4: SF: expected a path relative to the workspace" in p.stdout, p.stdout
    assert p.stderr == "", p.stderr
    # The combined report holds the good target's lines only, none of the hostile one's.
    assert lcov_files(out / "coverage.lcov") == ["src/app/__init__.py", "src/app/calc.py"]
    assert "DA:1,5" not in (out / "coverage.lcov").read_text()


@pytest.mark.parametrize("kind", ["a link", "a fifo"])
def test_a_coverage_file_that_is_no_file_is_skipped(tmp_path, resolve_dir, cache, kind):  # noqa: F811
    """The README's promise for /out: links, fifos and devices are skipped (they made
    the target fail with "Too many levels of symbolic links" / "Invalid argument")."""
    body = ("    os.remove('/out/coverage.lcov')\n"
            + ("    os.symlink('/etc/passwd', '/out/coverage.lcov')" if kind == "a link"
               else "    os.mkfifo('/out/coverage.lcov')"))
    ws = planting_workspace(tmp_path, resolve_dir, body, coverage=True)
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 0, p.stdout + p.stderr
    assert not (out / "hostile/tests/coverage.lcov").exists()
    assert (out / "hostile/tests/coverage.xml").is_file()
