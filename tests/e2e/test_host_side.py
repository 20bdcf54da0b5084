"""What a test leaves behind reaches the host only through nestbox's capped,
linear-time read-back (issue 13's host-side defects), each checked from the host."""
import os
from pathlib import Path

import pytest

from conftest import run
from test_target import resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def one_test(body):
    return {"src/app/__init__.py": "", "tests/test_it.py": body}


@pytest.mark.sandbox
def test_log_is_a_pipe_drained_with_a_cap(tmp_path, resolve_dir, cache):  # noqa: F811
    body = (
        "import errno, os, sys\n\n"
        "def test_floods_stdout():\n"
        "    target = os.readlink('/proc/self/fd/1')\n"
        "    assert target.startswith('pipe:'), target\n"
        "    try:\n"
        "        os.lseek(1, 1 << 40, os.SEEK_SET)\n"
        "        raise AssertionError('seekable')\n"
        "    except OSError as e:\n"
        "        assert e.errno == errno.ESPIPE\n"
        "    os.write(1, b'FIRST-WORDS\\n')\n"
        "    chunk = b'y' * (1 << 20)\n"
        "    for _ in range(48):\n"
        "        os.write(1, chunk)\n"
        "    os.write(1, b'\\nLAST-WORDS\\n')\n")
    # -s: pytest's own capture would put a file of its /tmp at fd 1.
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body), {"app/tests": {"pytest_args": ["-s"]}})
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, "--no-cache", ws])
    assert p.returncode == 0, p.stdout + p.stderr
    log = (out / "app/tests/log").read_bytes()
    assert len(log) < 600 * 1024
    assert b"FIRST-WORDS" in log and b"LAST-WORDS" in log
    assert b"[... nestbox: log cut here, " in log and b" bytes left out ...]" in log


@pytest.mark.sandbox
def test_many_undeclared_outputs_fail_the_target(tmp_path, resolve_dir, cache):  # noqa: F811
    body = (
        "import os\n\n"
        "def test_plants_files():\n"
        "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
        "    for i in range(12000):\n"
        "        open(os.path.join(d, f'f{i}'), 'w').close()\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED" in p.stdout
    assert "/out: artifact: more than 10000 files in undeclared" in p.stdout


@pytest.mark.sandbox
def test_undeclared_outputs_replayed_from_the_cache(tmp_path, resolve_dir, cache):  # noqa: F811
    body = (
        "import os\n\n"
        "def test_writes():\n"
        "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
        "    os.makedirs(os.path.join(d, 'sub'))\n"
        "    with open(os.path.join(d, 'sub', 'note.txt'), 'w') as f:\n"
        "        f.write('kept')\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    assert run(["test", "--cache", cache, ws]).returncode == 0
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 0 and "(cached)" in p.stdout, p.stdout + p.stderr
    assert (out / "app/tests/undeclared/sub/note.txt").read_text() == "kept"
