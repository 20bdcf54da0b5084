"""`nestbox worker` watches the directories a digest read (inotify) and reuses an
action's input digest without a stat while nothing there changed. Whatever changes
between two requests (a file's content with its size and mtime put back, a new file,
a removed or renamed one, a mode, a directory replaced, a symlink swapped in, a write
through a hard link from outside the workspace) the next request's tree is the tree
of what is there now: the tree digest of the documented Merkle encoding
(runner/workspace/tree.h), computed here from the files themselves. NESTBOX_TIMINGS=1
makes the worker say per request whether its inputs were watched or stat'ed."""
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import time

import pytest

from conftest import run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from test_worker import Worker
from workspace import make_workspace

SKIPPED = {"__pycache__", ".git", ".nestbox"}


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _dir_digest(entries):
    """entries: name -> ("file", exec, hex) or ("dir", {...}); tree order puts "/"
    below every byte, so a directory sorts as its name followed by the lowest key."""
    def key(item):
        name, e = item
        return [b + 1 for b in name.encode()] + ([0] if e[0] == "dir" else [])
    h = hashlib.sha256(_str("nestbox-tree-v1"))
    for name, e in sorted(entries.items(), key=key):
        if e[0] == "file":
            h.update(_str("file") + _str(name) + struct.pack("<Q", e[1]) + _str(e[2]))
        else:
            h.update(_str("dir") + _str(name) + struct.pack("<Q", 0) + _str(_dir_digest(e[1])))
    return h.hexdigest()


def reference_tree(ws):
    """The digest of src/**/*.py and tests/**/*.py as they are now: read, not stat'ed."""
    root = {}
    for top in ("src", "tests"):
        for dirpath, dirnames, filenames in os.walk(ws / top):  # symlinked dirs are not entered
            dirnames[:] = [d for d in dirnames if d not in SKIPPED]
            for f in filenames:
                p = os.path.join(dirpath, f)
                if not f.endswith(".py") or not stat.S_ISREG(os.lstat(p).st_mode):
                    continue
                rel = os.path.relpath(p, ws).split(os.sep)
                d = root
                for part in rel[:-1]:
                    d = d.setdefault(part, ("dir", {}))[1]
                with open(p, "rb") as fh:
                    d[rel[-1]] = ("file", int(bool(os.lstat(p).st_mode & stat.S_IXUSR)),
                                  hashlib.sha256(fh.read()).hexdigest())
    return _dir_digest(root)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # One cache for the module: the same content in another test's workspace is a
    # cache hit (the root is not in the digest), so pytest runs only after a change.
    return tmp_path_factory.mktemp("digest-watch") / "cache"


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    files = dict(PASSING)
    files["src/app/more/extra.py"] = "Y = 1\n"
    return make_workspace(tmp_path / "ws", resolve_dir, files)


def glob_action(ws, path):
    """The workspace's action with its globs kept (a build tool may send either)."""
    proc = run(["actions", ws])
    assert proc.returncode == 0, proc.stderr
    action = json.loads(proc.stdout.splitlines()[0])
    action["sources"], action["tests"] = ["src/**/*.py"], ["tests/**/*.py"]
    path.write_text(json.dumps(action))
    return path


class Timed(Worker):
    """A worker run with NESTBOX_TIMINGS=1: each answer comes with its timing line."""

    def __init__(self, cache, *opts, prefix=()):
        super().__init__(cache, *opts, env=dict(os.environ, NESTBOX_TIMINGS="1"), prefix=prefix)
        self.seen = 0

    def digest(self, action):
        """(tree digest, "watched" or "stat'ed") of one request for action."""
        self.send({"arguments": [str(action)], "requestId": 0})
        r = self.response()
        deadline = time.monotonic() + 30
        while True:
            lines = [x for x in self.stderr if re.match(r"nestbox: timings: request", x)]
            if len(lines) > self.seen or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert len(lines) > self.seen, "".join(self.stderr)
        line = lines[self.seen]
        self.seen += 1
        m = re.search(r"input trees: (\d+) watched, (\d+) stat'ed", line)
        how = "watched" if m.group(1) == "1" else "stat'ed" if m.group(2) == "1" else line
        if r["exitCode"] != 0:
            return r["output"], how
        return json.loads(r["output"])["tree"], how


@pytest.fixture
def worker(cache):
    w = Timed(cache)
    yield w
    w.kill()


def edit_same_size_mtime_back(ws):
    calc = ws / "src/app/calc.py"
    before = calc.stat()
    calc.write_text(calc.read_text().replace("a + b", "b + a"))
    os.utime(calc, ns=(before.st_atime_ns, before.st_mtime_ns))


def add_file(ws):
    (ws / "src/app/more/new.py").write_text("Z = 2\n")


def remove_file(ws):
    (ws / "src/app/more/extra.py").unlink()


def rename_file(ws):
    os.rename(ws / "src/app/more/extra.py", ws / "src/app/more/renamed.py")


def chmod_exec(ws):
    os.chmod(ws / "src/app/more/extra.py", 0o755)


def replace_directory(ws):
    more = ws / "src/app/more"
    fresh = ws / "src/app/more.new"
    fresh.mkdir()
    (fresh / "extra.py").write_text("Y = 2\n")  # same size, another directory
    os.rename(more, ws / "old-more")
    os.rename(fresh, more)


def swap_in_directory_symlink(ws):
    """A directory replaced by a symlink to one with other files: not entered."""
    elsewhere = ws / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "extra.py").write_text("Y = 1\n")
    shutil.rmtree(ws / "src/app/more")
    os.symlink(elsewhere, ws / "src/app/more")


def write_through_hard_link(ws):
    """Written through a link outside every watched directory: told only to the file."""
    outside = ws.parent / "outside"
    outside.mkdir()
    os.link(ws / "src/app/more/extra.py", outside / "link.py")
    return outside / "link.py"


CHANGES = [edit_same_size_mtime_back, add_file, remove_file, rename_file, chmod_exec, replace_directory,
           swap_in_directory_symlink]


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__)
def test_a_change_between_two_requests_gives_the_new_tree(ws, worker, tmp_path, change):
    action = glob_action(ws, tmp_path / "action.json")
    before = reference_tree(ws)
    assert worker.digest(action) == (before, "stat'ed")
    assert worker.digest(action) == (before, "watched")  # nothing changed: not one stat
    change(ws)
    after = reference_tree(ws)
    assert after != before
    assert worker.digest(action) == (after, "stat'ed")
    assert worker.digest(action) == (after, "watched")


def test_a_write_through_a_hard_link_from_outside_is_seen(ws, worker, tmp_path):
    action = glob_action(ws, tmp_path / "action.json")
    link = write_through_hard_link(ws)
    before = reference_tree(ws)
    assert worker.digest(action) == (before, "stat'ed")
    assert worker.digest(action) == (before, "watched")
    with open(link, "r+") as f:  # same size, through the other name
        f.write("Y = 7\n")
    after = reference_tree(ws)
    assert after != before
    assert worker.digest(action) == (after, "stat'ed")


def test_a_file_swapped_for_a_symlink_is_refused_then_restored(ws, worker, tmp_path):
    action = glob_action(ws, tmp_path / "action.json")
    before = reference_tree(ws)
    assert worker.digest(action) == (before, "stat'ed")
    assert worker.digest(action) == (before, "watched")
    extra = ws / "src/app/more/extra.py"
    (ws / "target.py").write_text(extra.read_text())
    extra.unlink()
    extra.symlink_to(ws / "target.py")
    out, how = worker.digest(action)
    assert "is a symlink" in out, out
    extra.unlink()
    extra.write_text("Y = 1\n")
    assert worker.digest(action) == (before, "stat'ed")


def test_the_literal_paths_of_nestbox_actions_are_watched_too(ws, worker, tmp_path):
    proc = run(["actions", ws])
    action = tmp_path / "literal.json"
    action.write_text(proc.stdout.splitlines()[0])
    before = reference_tree(ws)
    assert worker.digest(action) == (before, "stat'ed")
    assert worker.digest(action) == (before, "watched")
    edit_same_size_mtime_back(ws)
    assert worker.digest(action) == (reference_tree(ws), "stat'ed")


def can_limit_watches():
    proc = subprocess.run(["unshare", "-Ur", "sh", "-c", "echo 2 > /proc/sys/user/max_inotify_watches"],
                          capture_output=True)
    return proc.returncode == 0


@pytest.mark.skipif(not can_limit_watches(), reason="needs a user namespace's own inotify limit")
def test_the_watch_limit_falls_back_to_stat_said_once(ws, cache, tmp_path):
    action = glob_action(ws, tmp_path / "action.json")
    # Results stored from outside first: in there a sandbox cannot map its ids.
    proc = run(["run", "--cache", cache, action])
    assert proc.returncode == 0, proc.stderr
    # A user namespace of its own, allowed 2 watches: the workspace has 5 directories.
    w = Timed(cache, prefix=["unshare", "-Ur", "sh", "-c",
                             'echo 2 > /proc/sys/user/max_inotify_watches && exec "$@"', "sh"])
    try:
        before = reference_tree(ws)
        for _ in range(3):
            assert w.digest(action) == (before, "stat'ed")
        edit_same_size_mtime_back(ws)
        proc = run(["run", "--cache", cache, action])
        assert proc.returncode == 0, proc.stderr
        assert w.digest(action) == (reference_tree(ws), "stat'ed")
        notes = [x for x in w.stderr if "watch limit" in x]
        assert len(notes) == 1, w.stderr
        assert notes[0].startswith("nestbox: worker: the inotify watch limit is reached"), notes
    finally:
        w.kill()


def test_concurrent_requests_then_a_change(ws, cache, tmp_path):
    """Multiplexed requests collecting at once each report their tree; the change made
    after them is still seen by the next one."""
    action = glob_action(ws, tmp_path / "action.json")
    w = Timed(cache, "-j", "3")
    try:
        before = reference_tree(ws)
        for rid in (1, 2, 3):
            w.send({"arguments": [str(action)], "requestId": rid})
        trees = {json.loads(w.response()["output"])["tree"] for _ in range(3)}
        assert trees == {before}
        deadline = time.monotonic() + 30
        while sum("timings: request" in x for x in w.stderr) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        w.seen = 3  # their lines
        assert w.digest(action) == (before, "watched")
        add_file(ws)
        assert w.digest(action) == (reference_tree(ws), "stat'ed")
    finally:
        w.kill()
