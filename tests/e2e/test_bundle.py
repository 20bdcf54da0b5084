"""`nestbox bundle`: one recorded action in one file, replayed by `nestbox repro FILE`
on "another machine" (a fresh cache, another cwd, the workspace gone), and refused when
it lies."""
import json
import os
import shutil
import subprocess
import tarfile
import io
from pathlib import Path

import pytest

from conftest import run
from test_action import ACTION_SCHEMA, validator
from test_repro import SEEDED, recorded
from test_target import resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace


BUNDLE_SCHEMA = validator("bundle.schema.json")
REPLAY_SCHEMA = validator("replay.schema.json")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    files = dict(SEEDED, **{"src/run.sh": "#!/bin/sh\necho hi\n",
                            "tests/test_exec.py": "import os\n\ndef test_exec_bit():\n"
                                                  "    assert os.access('src/run.sh', os.X_OK)\n"})
    w = make_workspace(tmp_path / "ws", resolve_dir, files,
                       {"app/tests": {"sources": ["src/**/*.py", "src/run.sh"]}})
    os.chmod(w / "src/run.sh", 0o755)
    return w


def elsewhere(tmp_path, name="machine2"):
    """A fresh cache and a fresh cwd."""
    d = tmp_path / name
    (d / "cwd").mkdir(parents=True)
    return d / "cache", d / "cwd"


def members(path):
    data = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: t.extractfile(m).read() if m.isfile() else None for m in t.getmembers()}


def repack(path, entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    path.write_bytes(subprocess.run(["zstd", "-c"], input=buf.getvalue(), check=True, capture_output=True).stdout)


def test_bundle_reproduces_on_another_machine(cache, ws, tmp_path):
    res = recorded(cache, ws, tmp_path)
    bundle = tmp_path / "app.tar.zst"
    b = run(["bundle", "--cache", cache, res["action"][:8], "-o", bundle, "--with-wheels"])
    assert b.returncode == 0, b.stdout + b.stderr
    assert b.stdout.startswith(f"wrote {bundle}: action {res['action'][:16]}, 6 files, ") and " wheels, " in b.stdout
    names = members(bundle)
    assert {"bundle.json", "action.json", "result.json", "lockfile", "tree/tests/test_seeded.py"} <= set(names)
    assert any(n.startswith("wheels/pytest-") for n in names)
    # Each record validates against its schema; the action inside it against the action's.
    record = json.loads(names["action.json"])
    BUNDLE_SCHEMA.validate(json.loads(names["bundle.json"]))
    REPLAY_SCHEMA.validate(record)
    ACTION_SCHEMA.validate(record["action"])
    assert record["digest"] == res["action"] and record["action"]["seed"] == 7
    # The machine it was made on is gone: workspace, wheelhouse and cache.
    moved = tmp_path / "carried.tar.zst"
    shutil.move(bundle, moved)
    shutil.rmtree(ws)
    shutil.rmtree(cache)
    other_cache, cwd = elsewhere(tmp_path)
    p = run(["repro", "--cache", other_cache, moved, "--runs", "2"], cwd=cwd, timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "repro app/tests: action " in p.stdout and ", seed 7, shard 1/1, run 1 (recorded FAILED)" in p.stdout
    assert p.stdout.count("seed 7 is odd") == 2 and "2 of 2 runs failed" in p.stdout
    assert "test_exec_bit" not in p.stdout and "(4 tests, 1 failed)" in p.stdout, p.stdout  # the exec bit came along
    assert list((other_cache / "tmp").iterdir()) == []  # the unpacked bundle is cleaned up
    # Same interpreter, same files: the same action, so no note about another digest.
    assert "note:" not in p.stdout


def test_bundle_without_wheels_names_the_missing_ones(cache, ws, tmp_path, resolve_dir):  # noqa: F811
    res = recorded(cache, ws, tmp_path)
    bundle = tmp_path / "app.tar.zst"
    assert run(["bundle", "--cache", cache, "app/tests", "-o", bundle]).returncode == 0
    assert not any(n.startswith("wheels/") for n in members(bundle))
    wheels = sorted(w["file"] for w in json.loads(members(bundle)["bundle.json"])["wheels"])
    assert wheels and any(w.startswith("pytest-") for w in wheels)
    other_cache, cwd = elsewhere(tmp_path)
    p = run(["repro", "--cache", other_cache, bundle], cwd=cwd)
    assert p.returncode == 2, p.stdout + p.stderr
    line = p.stderr.strip()
    assert len(line.splitlines()) == 1 and "the bundle was made without --with-wheels" in line
    assert all(w in line for w in wheels[:10]), line
    # A wheelhouse missing one of them names just that one.
    partial = tmp_path / "partial"
    shutil.copytree(resolve_dir / "wheelhouse", partial)
    (partial / wheels[0]).unlink()
    q = run(["repro", "--cache", other_cache, bundle, "--wheelhouse", partial], cwd=cwd)
    assert q.returncode == 2 and f"1 wheel missing (not in --wheelhouse {partial}): {wheels[0]};" in q.stderr, q.stderr
    # With the wheelhouse it runs; and where the venv is in the cache no wheel is needed.
    ok = run(["repro", "--cache", other_cache, bundle, "--wheelhouse", resolve_dir / "wheelhouse"], cwd=cwd)
    assert ok.returncode == 1 and "seed 7 is odd" in ok.stdout, ok.stdout + ok.stderr
    again = run(["repro", "--cache", other_cache, bundle], cwd=cwd)
    assert again.returncode == 1 and "seed 7 is odd" in again.stdout, again.stdout + again.stderr
    assert res["action"]


def test_a_tampered_bundle_is_refused(cache, ws, tmp_path):
    recorded(cache, ws, tmp_path)
    bundle = tmp_path / "app.tar.zst"
    assert run(["bundle", "--cache", cache, "app/tests", "-o", bundle, "--with-wheels"]).returncode == 0
    entries = members(bundle)
    other_cache, cwd = elsewhere(tmp_path)
    # A test file changed: the tree no longer digests as recorded.
    bad = tmp_path / "bad.tar.zst"
    repack(bad, {**entries, "tree/tests/test_seeded.py": b"def test_even_seed():\n    pass\n"})
    p = run(["repro", "--cache", other_cache, bad], cwd=cwd)
    assert p.returncode == 2 and "are not those it ran with" in p.stderr, p.stderr
    # A wheel swapped for other bytes: the lockfile's hash refuses it.
    wheel = next(n for n in entries if n.startswith("wheels/"))
    repack(bad, {**entries, wheel: b"PK not a wheel"})
    p = run(["repro", "--cache", other_cache, bad], cwd=cwd)
    assert p.returncode == 2 and "sha256" in p.stderr, p.stderr
    # A name climbing out of the bundle.
    repack(bad, {**entries, "../escape": b"x"})
    p = run(["repro", "--cache", other_cache, bad], cwd=cwd)
    assert p.returncode == 2 and not (other_cache / "escape").exists(), p.stderr
    # Not a bundle at all.
    (tmp_path / "junk.tar.zst").write_bytes(b"junk")
    p = run(["repro", "--cache", other_cache, tmp_path / "junk.tar.zst"], cwd=cwd)
    assert p.returncode == 2 and p.stderr.startswith("nestbox: "), p.stderr
    assert list((other_cache / "tmp").iterdir()) == []


def test_bundle_usage_and_refusals(cache, ws, tmp_path):
    res = recorded(cache, ws, tmp_path)
    assert run(["bundle", "--cache", cache, "app/tests"]).returncode == 2  # no -o
    p = run(["bundle", "--cache", cache, "0000", "-o", tmp_path / "x.tar.zst"])
    assert p.returncode == 2 and "no recorded action" in p.stderr
    # The workspace's lockfile changed since the run: not the venv it ran with.
    lock = Path(os.path.realpath(ws / "3rdparty/default.lock"))
    saved = lock.read_text()
    try:
        lock.write_text("\n".join(saved.splitlines()[:-2]) + "\n")
        p = run(["bundle", "--cache", cache, res["action"], "-o", tmp_path / "x.tar.zst"])
        assert p.returncode == 2, p.stdout + p.stderr
    finally:
        lock.write_text(saved)
    assert not (tmp_path / "x.tar.zst").exists()
