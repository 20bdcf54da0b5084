"""The digest memo at the scale it is for: 10,000 declared files. Whatever changes
among them (one byte with the size kept and the mtime put back, a new file, a removed
one, a renamed directory, a directory's mtime put back, a damaged memo) the next
digest is the digest of what is there now.

How each test knows the digest is right without reading it: the run after the change
must not be a cache hit (the digest moved), and a run with the memo removed (every
file read, every directory listed: the reference) must then be a hit on what that run
stored (the two digests are equal)."""
import hashlib
import json
import os
import re
import struct
import time

import pytest

from conftest import run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

N = 10000


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # One cache for the module: a fresh workspace of the same content is a cache hit
    # (the root is not in the digest), so only runs after a change start pytest.
    return tmp_path_factory.mktemp("digest-scale") / "cache"


@pytest.fixture
def ws(tmp_path, resolve_dir, cache):  # noqa: F811
    files = dict(PASSING)
    for i in range(N):
        files["src/bulk/p%03d/m%03d.py" % (i // 100, i % 100)] = "X = %05d\n" % i
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    # Remembered only once older than the filesystem's timestamp granularity.
    time.sleep(2.1)
    first = nb_test(ws, cache)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.read == N + 3  # every file read once, then remembered
    again = nb_test(ws, cache)
    assert (again.remembered, again.read) == (N + 3, 0) and again.cached
    return ws


class Run:
    def __init__(self, proc, events):
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        m = re.search(r"^nestbox: timings: .*declared files: (\d+) remembered, (\d+) read$", proc.stderr, re.M)
        self.remembered, self.read = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        self.cached = "(cached)" in proc.stdout
        hits = [e["action"] for e in events if e.get("event") == "target_cached"]
        self.action = hits[0] if hits else None


def nb_test(ws, cache):
    events = ws.parent / "events.jsonl"
    proc = run(["test", "--cache", cache, "--events", events, ws], env=dict(os.environ, NESTBOX_TIMINGS="1"),
               timeout=600)
    lines = events.read_text().splitlines() if events.exists() else []
    return Run(proc, [json.loads(line) for line in lines])


def memo_record(ws, cache):
    """The memo's record: ac/ under sha256(str("nestbox-digest-memo-2") u64(dev) u64(ino))
    of the workspace root (runner/cache/digest_memo.c)."""
    st = os.stat(ws)
    tag = b"nestbox-digest-memo-2"
    key = hashlib.sha256(struct.pack("<Q", len(tag)) + tag + struct.pack("<QQ", st.st_dev, st.st_ino)).hexdigest()
    return cache / "ac" / key[:2] / key


def assert_digest_is_reference(ws, cache, after):
    """after (the run with the memo) stored its result under the digest of what is there
    now: the reference digest, every file read, finds it."""
    assert after.returncode == 0, after.stdout + after.stderr
    assert not after.cached, "the digest did not change:\n" + after.stdout
    memo_record(ws, cache).unlink()
    reference = nb_test(ws, cache)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    assert reference.remembered == 0 and reference.cached, reference.stdout + reference.stderr
    warm = nb_test(ws, cache)
    assert warm.cached and warm.action == reference.action and warm.read <= 1


def bulk(ws, i):
    return ws / ("src/bulk/p%03d/m%03d.py" % (i // 100, i % 100))


def test_one_byte_with_size_and_mtime_kept(ws, cache):
    f = bulk(ws, 4321)
    before = f.stat()
    f.write_text("X = 04320\n")  # one byte, same size
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -d: the mtime as it was
    after = f.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    changed = nb_test(ws, cache)
    assert changed.read == 1 and changed.remembered == N + 2
    assert_digest_is_reference(ws, cache, changed)


def test_a_new_file_matching_the_glob(ws, cache):
    (ws / "src/bulk/p050/new.py").write_text("NEW = 1\n")
    changed = nb_test(ws, cache)
    assert changed.read == 1 and changed.remembered == N + 3
    assert_digest_is_reference(ws, cache, changed)


def test_a_new_file_with_its_directory_mtime_put_back(ws, cache):
    d = ws / "src/bulk/p007"
    before = d.stat()
    (d / "m000.py.new").write_text("not a .py: does not match\n")
    (d / "zz.py").write_text("Z = 1\n")
    os.utime(d, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert d.stat().st_mtime_ns == before.st_mtime_ns
    changed = nb_test(ws, cache)
    assert changed.read == 1
    assert_digest_is_reference(ws, cache, changed)


def test_a_removed_file(ws, cache):
    bulk(ws, 9999).unlink()
    changed = nb_test(ws, cache)
    assert (changed.remembered, changed.read) == (N + 2, 0)
    assert_digest_is_reference(ws, cache, changed)


def test_a_renamed_directory(ws, cache):
    os.rename(ws / "src/bulk/p042", ws / "src/bulk/p042x")
    changed = nb_test(ws, cache)
    assert changed.remembered + changed.read == N + 3
    assert_digest_is_reference(ws, cache, changed)


def test_a_file_replaced_by_a_symlink(ws, cache):
    f = bulk(ws, 1234)
    f.unlink()
    f.symlink_to("m000.py")
    changed = nb_test(ws, cache)
    assert changed.returncode == 2, changed.stdout + changed.stderr
    assert '"src/bulk/p012/m034.py" is a symlink' in changed.stderr


def test_a_file_written_in_the_tick_of_the_memo_write(ws, cache):
    """Written right before a run (racily clean), then again with the size and mtime
    kept: the second change is seen, whether or not the run remembered the first."""
    f = bulk(ws, 77)
    f.write_text("X = 99999\n")
    first = nb_test(ws, cache)
    assert first.returncode == 0 and not first.cached, first.stdout + first.stderr
    st = f.stat()
    f.write_text("X = 88888\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = nb_test(ws, cache)
    assert changed.read == 1
    assert_digest_is_reference(ws, cache, changed)


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_damaged_memo_gives_the_right_digest(ws, cache, damage):
    record = memo_record(ws, cache)
    data = bytearray(record.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0x01  # inside a remembered entry
    else:
        data = data[: len(data) - 100]  # a directory's listing cut short
    record.chmod(0o644)
    record.write_bytes(bytes(data))
    again = nb_test(ws, cache)
    # Every file read again and every directory listed: the same digest, a hit.
    assert (again.remembered, again.read) == (0, N + 3)
    assert again.returncode == 0 and again.cached, again.stdout + again.stderr
    assert "cache:" not in again.stderr
