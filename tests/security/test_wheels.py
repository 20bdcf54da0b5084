"""Attacks through a hostile wheel pinned by the lock (the workspace's, so untrusted):
each is `nestbox venv` on one wheel, expected to be refused as the wheel's error.
Checked from the host: exit 2 with one line that names the wheel and no temporary
path, nothing written anywhere outside the cache's tmp/ (the host directory the wheel
aims at stays empty, the tree around the cache is as it was), and nothing left in the
cache, neither a venv nor a half-built one."""
import os
import stat
import sys
import zipfile

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from wheels import Env, evil, lock_line, make_wheel, wheel_of_zeros  # noqa: E402

pytestmark = pytest.mark.sandbox


def entry(name, mode=None):
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.create_system = 3  # Unix, so the mode in external_attr counts
        info.external_attr = mode << 16
    return info


def with_entry_points(env, text):
    w = make_wheel(env.wheelhouse, "evil", "1.0", {"evil/__init__.py": b"def main(): pass\n"}, entry_points=text)
    env.write_lock(lock_line("evil", "1.0", w))


def swapped_after_locking(env, host):
    w = evil(env, "evil", [])
    w.write_bytes(w.read_bytes() + b"\0")  # the lock pinned the bytes before this


def not_a_zip(env, host):
    w = env.wheelhouse / "evil-1.0-py3-none-any.whl"
    w.write_bytes(b"PK\x03\x04 not really a zip")
    env.write_lock(lock_line("evil", "1.0", w))


def zip_bomb(env, host):
    w = wheel_of_zeros(env, "evil", 300)
    env.write_lock(lock_line("evil", "1.0", w))


# attack -> (what builds the wheel, given the env and the host directory it aims at;
#            words the one-line error must say)
ATTACKS = {
    "entry climbing out with ..": (
        lambda env, host: evil(env, "evil", [(entry(f"../../../{host.name}/x"), b"pwned\n")]), ["escapes the venv"]),
    "entry climbing out from inside": (
        lambda env, host: evil(env, "evil", [(entry("evil/../../../../../x"), b"pwned\n")]), ["escapes the venv"]),
    "absolute entry naming the host": (
        lambda env, host: evil(env, "evil", [(entry(str(host / "x")), b"pwned\n")]), ["escapes the venv"]),
    "symlink entry to the host": (
        lambda env, host: evil(env, "evil", [(entry("evil/link", stat.S_IFLNK | 0o777), str(host).encode())]),
        ["is a symlink"]),
    "symlink then a file through it": (
        lambda env, host: evil(env, "evil", [(entry("evil/d", stat.S_IFLNK | 0o777), str(host).encode()),
                                             (entry("evil/d/x"), b"pwned\n")]), ["is a symlink"]),
    "device entry": (
        lambda env, host: evil(env, "evil", [(entry("evil/dev", stat.S_IFCHR | 0o666), b"")]),
        ["is a device or special file"]),
    "data entry planting pyvenv.cfg": (
        lambda env, host: evil(env, "evil", [(entry("evil-1.0.data/data/./pyvenv.cfg"), b"home = /tmp\n")]),
        ["would replace the venv's pyvenv.cfg"]),
    "data entry planting the complete marker": (
        lambda env, host: evil(env, "evil", [(entry("evil-1.0.data/data/.nestbox-complete"), b"")]),
        ["would replace the venv's .nestbox-complete"]),
    "unknown data scheme": (
        lambda env, host: evil(env, "evil", [(entry("evil-1.0.data/root/etc/x"), b"pwned\n")]),
        ["unknown .data scheme 'root'"]),
    "entry name over 255 bytes": (
        lambda env, host: evil(env, "evil", [(entry("evil/" + "a" * 300), b"")]), ["more than the 255"]),
    "entry name with a terminal escape": (
        lambda env, host: evil(env, "evil", [(entry("evil/\x1b[2J\rPASSED"), b"")]), ["a control character"]),
    "file where a directory must go": (
        lambda env, host: evil(env, "evil", [(entry("evil/x"), b"f"), (entry("evil/x/y"), b"g")]), ["cannot create"]),
    "a second dist-info, another package's": (
        lambda env, host: evil(env, "evil", [(entry("pip-99.dist-info/METADATA"), b"Name: pip\n")]),
        ["more than one .dist-info directory"]),
    "console script running code": (
        lambda env, host: with_entry_points(env, f"[console_scripts]\nx = os;open('{host}/x','w'):f\n"),
        ["expected module:function"]),
    "console script named out of bin/": (
        lambda env, host: with_entry_points(env, "[console_scripts]\n../../../x = evil:main\n"),
        ["bad script name"]),
    "wheel swapped after locking": (swapped_after_locking, ["sha256"]),
    "not a zip": (not_a_zip, ["not a zip archive"]),
    "zip bomb": (zip_bomb, ["refusing what looks like a zip bomb"]),
}


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_hostile_wheel(name, tmp_path):
    build, words = ATTACKS[name]
    host = tmp_path / "host"  # what the wheel aims at, beside the cache
    host.mkdir()
    (tmp_path / "ws").mkdir()
    env = Env(tmp_path / "ws")
    build(env, host)
    before = tree(tmp_path)
    p = env.venv(timeout=300)

    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.startswith("nestbox: ") and p.stderr.count("\n") == 1, p.stderr
    assert "evil" in p.stderr, p.stderr  # names the wheel
    for w in words:
        assert w in p.stderr, p.stderr
    assert str(env.cache) not in p.stderr and "tmp/venv" not in p.stderr, p.stderr  # no temporary path named
    assert not any(c in p.stderr for c in "\x1b\r"), repr(p.stderr)  # nothing for a terminal to obey

    assert os.listdir(host) == []
    after = [f for f in tree(tmp_path) if f != "ws/cache" and not f.startswith("ws/cache/")]
    assert after == before, set(after) ^ set(before)
    env.assert_nothing_left()
