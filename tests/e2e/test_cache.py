"""The result cache seen from `nestbox test`: hits replay without Python, every input
that can change a result misses, damage is detected, kill -9 never corrupts."""
import json
import os
import random
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import NESTBOX, ROOT, descendants, run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import copy_examples, make_workspace


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    return make_workspace(tmp_path / "ws", resolve_dir, PASSING,
                          {"app/tests": {"env": ["NB_TEST_KNOB"]}})


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def nb_test(cache, ws, *extra, env=None):
    e = dict(os.environ)
    e.pop("NB_TEST_KNOB", None)
    e.update(env or {})
    return run(["test", "--cache", cache, *extra, ws], env=e)


def result_records(cache):
    """The action cache entries that are test results (the cache also keeps the
    interpreter probe's answer there)."""
    return [p for p in entries(cache, "ac") if b'"artifact"' in p.read_bytes()]


def entries(cache, ns):
    d = cache / ns
    return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []


def test_second_run_is_a_hit_without_python(cache, ws, tmp_path):
    first = nb_test(cache, ws)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "(cached)" not in first.stdout
    # Without the venv no Python could run: a hit must not need it.
    for v in (cache / "venvs").iterdir():
        subprocess.run(["chmod", "-R", "u+w", v], check=True)
        shutil.rmtree(v)
    out = tmp_path / "out"
    second = nb_test(cache, ws, "--output", out)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "app/tests  PASSED in" in second.stdout and "(2 tests) (cached)" in second.stdout
    assert list((cache / "venvs").iterdir()) == []
    props = {p.get("name"): p.get("value") for p in ET.parse(out / "app/tests/junit.xml").getroot().iter("property")}
    assert props["cached"] == "true"
    assert "test_add" in (out / "app/tests/junit.xml").read_text()
    assert (out / "app/tests/log").exists() and (out / "app/tests/result.json").exists()
    assert json.loads((out / "app/tests/result.json").read_text())["status"] == "PASSED"


@pytest.mark.parametrize("change", ["input byte", "lock", "env var"])
def test_each_input_change_misses(cache, ws, change):
    assert nb_test(cache, ws).returncode == 0
    assert "(cached)" in nb_test(cache, ws).stdout
    env = None
    if change == "input byte":
        p = ws / "src/app/calc.py"
        p.write_text(p.read_text().replace("a + b", "b + a"))
    elif change == "lock":
        lock_dir = ws.parent / "lock2"
        lock_dir.mkdir()
        real = (ws / "3rdparty").resolve()
        # A different resolve: without coverage (a comment alone resolves to the
        # same venv, and so to the same action).
        lock = (real / "default.lock").read_text().split("\ncoverage==")
        (lock_dir / "default.lock").write_text(lock[0] + "\n" + lock[1].split("\n", 2)[2])
        (lock_dir / "wheelhouse").symlink_to(real / "wheelhouse")
        (ws / "3rdparty").unlink()
        (ws / "3rdparty").symlink_to(lock_dir)
    else:
        env = {"NB_TEST_KNOB": "on"}
    p = nb_test(cache, ws, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(cached)" not in p.stdout
    assert "(cached)" in nb_test(cache, ws, env=env).stdout


def test_failures_rerun_unless_cache_failures(cache, ws):
    (ws / "tests/test_bad.py").write_text("def test_bad():\n    assert False\n")
    assert nb_test(cache, ws).returncode == 1
    again = nb_test(cache, ws)
    assert again.returncode == 1 and "(cached)" not in again.stdout
    cached = nb_test(cache, ws, "--cache-failures")
    assert cached.returncode == 1 and "(cached)" in cached.stdout and "test_bad" in cached.stdout


def test_force_and_no_cache(cache, ws):
    assert nb_test(cache, ws).returncode == 0
    assert "(cached)" not in nb_test(cache, ws, "--force").stdout
    assert "(cached)" not in nb_test(cache, ws, "--no-cache").stdout
    fresh = ws.parent / "fresh-cache"
    assert nb_test(fresh, ws, "--no-cache").returncode == 0
    assert result_records(fresh) == [] and entries(fresh, "cas") == []


def test_flipped_byte_in_a_blob_is_detected_and_rerun(cache, ws):
    assert nb_test(cache, ws).returncode == 0
    blobs = entries(cache, "cas")
    assert blobs
    for b in blobs:
        data = bytearray(b.read_bytes())
        data[len(data) // 2] ^= 0x40
        os.chmod(b, 0o644)
        b.write_bytes(bytes(data))
    p = nb_test(cache, ws)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(cached)" not in p.stdout
    assert p.stderr.count("removed") >= 1  # reported once per damaged entry
    assert "(cached)" in nb_test(cache, ws).stdout
    v = run(["cache", "--cache", cache, "verify"])
    assert v.returncode == 0, v.stdout + v.stderr


def test_kill_9_during_runs_never_corrupts(cache, ws):
    rng = random.Random(1234)
    e = dict(os.environ)
    e.pop("NB_TEST_KNOB", None)
    for i in range(30):
        # A different seed each time: every attempt is a miss that runs and stores.
        proc = subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), "--seed", str(i), str(ws)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e)
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        v = run(["cache", "--cache", cache, "verify"])
        assert v.returncode == 0, f"after kill {i}: {v.stdout}{v.stderr}"
    p = nb_test(cache, ws)
    assert p.returncode == 0 and "PASSED" in p.stdout, p.stdout + p.stderr


def test_concurrent_runs_share_one_entry(cache, ws):
    e = dict(os.environ)
    e.pop("NB_TEST_KNOB", None)
    procs = [subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), str(ws)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=e) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(result_records(cache)) == 1
    assert len(list((cache / "venvs").iterdir())) == 1
    assert "(cached)" in nb_test(cache, ws).stdout


def test_coverage_matches_coverage_by_hand(tmp_path, resolve_dir, cache):  # noqa: F811
    ex = copy_examples(tmp_path / "examples", resolve_dir)
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--coverage", "--output", out, ex, "project1/tests"], timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    ours = ET.parse(out / "project1/tests/coverage.xml").getroot()
    lcov = (out / "project1/tests/coverage.lcov").read_text()
    assert "SF:" in lcov and "/work" not in lcov.split("SF:")[1].splitlines()[0]

    # By hand: the same sources, Debian's coverage and pytest, the same roots measured.
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True)
    subprocess.run([venv / "bin/pip", "install", "-q", "--no-index", "--find-links",
                    ex / "3rdparty/python/wheelhouse", "--require-hashes", "-r",
                    ex / "3rdparty/python/default.lock"], check=True)
    roots = ["lib/src/python", "project1/src/python"]
    env = dict(os.environ, PYTHONPATH=":".join(str(ex / r) for r in roots + ["project1/test/python"]),
               PYTHONDONTWRITEBYTECODE="1")
    subprocess.run([venv / "bin/python", "-m", "coverage", "run", "--data-file", tmp_path / "hand.data",
                    "--source", ",".join(str(ex / r) for r in roots), "-m", "pytest", "-q", "-p",
                    "no:cacheprovider", "project1/test/python"], cwd=ex, env=env, check=True, capture_output=True)
    subprocess.run([venv / "bin/python", "-m", "coverage", "xml", "--data-file", tmp_path / "hand.data",
                    "-o", tmp_path / "hand.xml"], cwd=ex, check=True, capture_output=True)
    hand = ET.parse(tmp_path / "hand.xml").getroot()
    for attr in ("lines-valid", "lines-covered", "line-rate"):
        assert ours.get(attr) == hand.get(attr), (attr, ours.get(attr), hand.get(attr))
    assert int(ours.get("lines-valid")) > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs as the cache")
def test_full_disk_while_storing_still_reports(tmp_path, resolve_dir):  # noqa: F811
    files = dict(PASSING)
    # 200 KiB of incompressible output: the run (its log) fits, its artifact does not.
    files["tests/test_output.py"] = (
        "import os\n\ndef test_writes_output():\n"
        "    with open(os.path.join(os.environ['TEST_UNDECLARED_OUTPUTS_DIR'], 'blob.bin'), 'wb') as f:\n"
        "        f.write(os.urandom(200 * 1024))\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    cache = tmp_path / "cache"
    cache.mkdir()
    script = f"""
        set -e
        mount -t tmpfs -o size=64m,mode=0755 tmpfs {cache}
        {NESTBOX} test --cache {cache} --no-cache {ws} >/dev/null
        avail=$(df -k --output=avail {cache} | tail -1)
        fallocate -l $(( (avail - 100) * 1024 )) {cache}/filler
        set +e
        {NESTBOX} test --cache {cache} {ws}
        echo "rc=$?"
        echo "left=$(find {cache}/cas {cache}/tmp -type f | wc -l)"
        echo "records=$(grep -rl '"artifact"' {cache}/ac | wc -l)"
    """
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=300)
    assert "app/tests  PASSED in" in p.stdout, p.stdout + p.stderr
    assert "rc=0" in p.stdout and "left=0" in p.stdout and "records=0" in p.stdout, p.stdout + p.stderr
    errs = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(errs) == 1 and errs[0].startswith("nestbox: ") and "No space left on device" in errs[0], p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="looks into the sandbox through /proc/PID/root")
def test_gc_leaves_the_inputs_of_a_running_target_alone(tmp_path, resolve_dir):  # noqa: F811
    files = dict(PASSING)
    files["tests/test_slow.py"] = (
        "import time\n\ndef test_waits_for_gc():\n"
        "    open('/out/undeclared/started', 'w').close()\n"
        "    time.sleep(6)\n"
        "    import pluggy  # from the venv, after gc ran\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    cache = tmp_path / "cache"
    assert run(["test", "--cache", cache, "--no-cache", ws]).returncode == 0  # the venv and tree exist
    proc = subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), "--no-cache", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until the test runs (its venv and tree are mounted), then gc everything.
    # (this run's own sandbox: the first run's may still be exiting, its /out visible)
    def started():
        for p in descendants(proc.pid):
            try:
                if (p / "root/out/undeclared/started").exists():
                    return True
            except OSError:
                pass
        return False

    deadline = time.time() + 120
    while time.time() < deadline and not started():
        time.sleep(0.1)
    assert started(), "the test never started"
    g = run(["cache", "--cache", cache, "gc", "--max-size", "1"])
    assert g.returncode == 0, g.stdout + g.stderr
    assert list((cache / "venvs").iterdir()), "gc removed the venv of a running target"
    out, errs = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + errs
