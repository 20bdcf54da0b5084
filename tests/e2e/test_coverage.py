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
