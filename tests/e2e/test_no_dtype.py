"""File systems whose readdir gives no entry type (DT_UNKNOWN: some network and FUSE
file systems, XFS without ftype): nestbox run under tests/faults/nodtype.c, an
LD_PRELOAD shim that blanks d_type in every entry read, finds the same sources, clears
--output the same way and merges the same folders as anywhere else."""
import ctypes  # noqa: F401  (used in the probe below, run under the shim)
import json
import os
import subprocess

import pytest

from conftest import preloaded_env, run
from test_target import resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

PYTHON = "/usr/bin/python3"

FILES = {
    "src/app/__init__.py": "",
    "src/app/deep/er/__init__.py": "",
    "src/app/deep/er/calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_top.py": "def test_top():\n    assert True\n",
    "tests/a/b/c/test_nested.py": "from app.deep.er.calc import add\n\n"
                                  "def test_nested():\n    assert add(2, 3) == 5\n",
    "lib/tests/test_lib.py": "def test_lib():\n    assert True\n",
}

# d_type of a directory's entry as readdir gives it, read through ctypes.
PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.opendir.restype = ctypes.c_void_p
libc.opendir.argtypes = [ctypes.c_char_p]
libc.readdir.restype = ctypes.c_void_p
libc.readdir.argtypes = [ctypes.c_void_p]
d = libc.opendir(sys.argv[1].encode())
types = set()
while True:
    e = libc.readdir(d)
    if not e:
        break
    types.add(ctypes.c_ubyte.from_address(e + 18).value)  # d_type in struct dirent64
print(sorted(types))
"""


@pytest.fixture
def env():
    return preloaded_env("nodtype")


def test_the_shim_blanks_every_entry_type(env, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    plain = subprocess.run([PYTHON, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, check=True)
    shimmed = subprocess.run([PYTHON, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, check=True, env=env)
    assert plain.stdout.strip() != "[0]", plain.stdout  # this file system reports types
    assert shimmed.stdout.strip() == "[0]", shimmed.stdout


def test_sources_output_and_merge_without_entry_types(env, tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, FILES, {
        "lib": {"sources": [], "tests": ["lib/tests/**/*.py"], "source_roots": ["lib"]},
        "lib/tests": {"sources": ["src/**/*.py"], "tests": ["tests/**/*.py"]},
    })
    out, cache = tmp_path / "out", tmp_path / "cache"
    # Globs recurse through directories whose entries have no type.
    p = run(["test", "--cache", cache, "-j", "1", "--output", out, ws], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads((out / "lib/tests/result.json").read_text())
    assert result["tests"] == 2, result
    # Clearing lib's folder spares lib/tests' (a directory found by stat, not d_type),
    # in every layout, and merge still finds both targets' folders.
    for extra in ([], ["--shards-per-target", "2"], ["--runs-per-test", "2"]):
        p = run(["test", "--cache", cache, "-j", "1", "--output", out, *extra, ws, "lib/tests", "lib"], env=env)
        assert p.returncode == 0, (extra, p.stdout, p.stderr)
        m = run(["merge", "-o", tmp_path / "m", out], env=env)
        assert m.returncode == 0 and "2 targets" in m.stdout.splitlines()[-1], (extra, m.stdout, m.stderr)
    # A switch back to one shard removes the shard folders another layout left.
    p = run(["test", "--cache", cache, "-j", "1", "--output", out, ws, "lib"], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not any(n.startswith("shard-") or n.startswith("run-") for n in os.listdir(out / "lib")), \
        os.listdir(out / "lib")
    assert (out / "lib/junit.xml").exists()
    assert (out / "lib/tests/run-2/junit.xml").exists()  # spared: another target's folder
    v = run(["cache", "verify", "--cache", cache], env=env)
    assert v.returncode == 0, v.stdout + v.stderr
