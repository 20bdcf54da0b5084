"""The digest memo seen from `nestbox test`: an unchanged workspace is stat'ed, not
read (NESTBOX_TIMINGS=1 says how many declared files were remembered), yet any change
to a file's content is seen, even one that keeps its size and puts its mtime back, and
a damaged memo costs a re-read, never a wrong digest."""
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import NESTBOX, run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    # A file is remembered only once its ctime is older than the filesystem's
    # timestamp granularity (git's racy-clean rule): let the fresh files age.
    time.sleep(2.1)
    return ws


def nb_test(tmp_path, ws):
    env = dict(os.environ, NESTBOX_TIMINGS="1")
    proc = run(["test", "--cache", tmp_path / "cache", ws], env=env)
    m = re.search(r"^nestbox: timings: .*declared files: (\d+) remembered, (\d+) read$", proc.stderr, re.M)
    assert m, proc.stderr
    return proc, int(m.group(1)), int(m.group(2))


def memo_records(tmp_path):
    return [p for p in (tmp_path / "cache" / "ac").rglob("*") if p.is_file() and b"nestbox-digest-memo" in p.read_bytes()]


def test_unchanged_files_are_remembered_not_read(tmp_path, ws):
    first, remembered, read = nb_test(tmp_path, ws)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (remembered, read) == (0, 3)
    assert len(memo_records(tmp_path)) == 1
    second, remembered, read = nb_test(tmp_path, ws)
    assert second.returncode == 0 and "(cached)" in second.stdout, second.stdout + second.stderr
    assert (remembered, read) == (3, 0)


def test_same_size_change_with_mtime_put_back_is_seen(tmp_path, ws):
    first, _, _ = nb_test(tmp_path, ws)
    assert first.returncode == 0, first.stdout + first.stderr
    calc = ws / "src/app/calc.py"
    before = calc.stat()
    text = calc.read_text()
    calc.write_text(text.replace("a + b", "a - b"))  # one byte, same size
    os.utime(calc, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -d: mtime as it was
    after = calc.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns  # which no one can put back
    second, remembered, read = nb_test(tmp_path, ws)
    assert (remembered, read) == (2, 1)
    assert second.returncode == 1 and "(cached)" not in second.stdout, second.stdout + second.stderr
    assert "app/tests  FAILED" in second.stdout


def test_damaged_memo_is_ignored_never_trusted(tmp_path, ws):
    first, _, _ = nb_test(tmp_path, ws)
    assert first.returncode == 0, first.stdout + first.stderr
    [memo] = memo_records(tmp_path)
    data = bytearray(memo.read_bytes())
    data[-1] ^= 0x01  # a flipped bit in the last file's remembered digest
    memo.chmod(0o644)
    memo.write_bytes(bytes(data))
    second, remembered, read = nb_test(tmp_path, ws)
    # Every file read again, the same tree digest: still the same cache entry.
    assert (remembered, read) == (0, 3)
    assert second.returncode == 0 and "(cached)" in second.stdout, second.stdout + second.stderr
    assert "cache:" not in second.stderr  # an optimisation's damage is not the user's concern
    [memo] = memo_records(tmp_path)
    third, remembered, read = nb_test(tmp_path, ws)
    assert (remembered, read) == (3, 0) and "(cached)" in third.stdout


def test_truncated_memo_is_ignored(tmp_path, ws):
    nb_test(tmp_path, ws)
    [memo] = memo_records(tmp_path)
    memo.chmod(0o644)
    memo.write_bytes(memo.read_bytes()[:100])
    second, remembered, read = nb_test(tmp_path, ws)
    assert (remembered, read) == (0, 3)
    assert second.returncode == 0 and "(cached)" in second.stdout, second.stdout + second.stderr


def listed_dirs(tmp_path, ws):
    """The workspace directories `nestbox test` read with getdents64 (strace -y names
    each descriptor's path)."""
    trace = tmp_path / "strace.txt"
    proc = subprocess.run(["strace", "-f", "-y", "-e", "trace=getdents64", "-o", str(trace),
                           str(NESTBOX), "test", "--cache", str(tmp_path / "cache"), str(ws)],
                          capture_output=True, text=True, timeout=300,
                          # an ASan build's LeakSanitizer cannot run under ptrace
                          env={**os.environ, "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dirs = set(re.findall(r"getdents64\(\d+<([^>]*)>", trace.read_text()))
    return {os.path.relpath(d, ws) for d in dirs if d == str(ws) or d.startswith(str(ws) + "/")}


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (tests/setup installs it)")
def test_unchanged_directories_are_not_listed_again(tmp_path, ws):
    assert listed_dirs(tmp_path, ws) == {"src", "src/app", "tests"}
    assert listed_dirs(tmp_path, ws) == set()  # every listing remembered
    (ws / "src/app/new.py").write_text("NEW = 1\n")
    assert listed_dirs(tmp_path, ws) == {"src/app"}  # only the directory that changed
