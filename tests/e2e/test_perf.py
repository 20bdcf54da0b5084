"""What the performance work shows a user: NESTBOX_TIMINGS=1 breaks a run's time into
phases, doctor says when joining a cgroup (v2) is slow and what fixes it, and nestbox-runner
starts without libcurl unless a remote cache is used, and with no shared library but
libc's."""
import os
import re
import subprocess

from conftest import BUILD, run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

PHASES = ["digest", "venv-resolve", "lookup", "trees", "venv", "sandbox", "read-back", "store"]


def timings(stderr):
    m = re.search(r"^nestbox: timings: (.*) other ([0-9.]+) ms; total ([0-9.]+) ms; "
                  r"declared files: (\d+) remembered, (\d+) read$", stderr, re.M)
    assert m, stderr
    phases = {name: (float(ms), int(n)) for name, ms, n in re.findall(r"([a-z-]+) ([0-9.]+) ms \((\d+)\),", m.group(1))}
    return phases, float(m.group(2)), float(m.group(3))


def test_timings_break_a_run_into_phases(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    env = dict(os.environ, NESTBOX_TIMINGS="1")
    first = run(["test", "--cache", tmp_path / "cache", ws], env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    phases, other, total = timings(first.stderr)
    assert list(phases) == PHASES
    # A miss runs every phase once; the sandbox (pytest itself) is most of the time.
    assert all(n == 1 for _, n in phases.values()), phases
    assert phases["sandbox"][0] > phases["digest"][0] and other >= 0
    assert abs(sum(ms for ms, _ in phases.values()) + other - total) < 0.01 * total + 0.01
    hit = run(["test", "--cache", tmp_path / "cache", ws], env=env)
    phases, _, _ = timings(hit.stderr)
    assert phases["lookup"][1] == 1 and phases["sandbox"][1] == 0 and phases["store"][1] == 0
    # Without the variable, nothing of it.
    quiet = run(["test", "--cache", tmp_path / "cache", ws])
    assert "timings" not in quiet.stderr


def test_doctor_names_the_slow_cgroup_attach_and_its_fix():
    r = run(["doctor"])
    assert r.returncode == 0, r.stderr
    backends = re.findall(r"^\s+(?:memory|pids) limit\s+(\S+)", r.stdout, re.M)
    with open("/proc/self/mountinfo") as f:
        favoured = any(" - cgroup" in l and "favordynmods" in l for l in f)
    with open("/proc/cmdline") as f:
        favoured = favoured or "cgroup_favordynmods=" in f.read()
    # cgroup v1 is joined by pid 1 itself, without the lock (test_limits_cgroup1.py).
    slow = "cgroup2" in backends and not favoured
    assert ("cgroup attach" in r.stdout) == slow, r.stdout
    if slow:
        assert "remount,favordynmods" in r.stdout and "cgroup_favordynmods=1" in r.stdout


def test_runner_starts_without_libcurl():
    runner = BUILD / "runner" / "nestbox-runner"
    env = dict(os.environ, LD_DEBUG="files")
    p = subprocess.run([str(runner), "test", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    loaded = re.findall(r"file=(\S+)\s+\[0\];\s+needed by", p.stderr)
    assert loaded and not [l for l in loaded if "libcurl" in l], loaded


def test_runner_maps_no_shared_library_but_libcs():
    """nestbox-runner links its libraries statically (runner/meson.build): the dynamic
    loader maps libc, libm and libgcc_s (ICU's C++ runtime) and nothing of libxml2,
    libarchive, libcrypto, jansson, libseccomp or libcap."""
    runner = BUILD / "runner" / "nestbox-runner"
    env = dict(os.environ, LD_DEBUG="files")
    p = subprocess.run([str(runner), "test", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    loaded = {os.path.basename(l).split(".so")[0] for l in re.findall(r"file=(\S+)\s+\[0\];\s+needed by", p.stderr)}
    # A sanitizer build adds its runtimes (and libstdc++, which they need), nothing else.
    sanitized = bool(loaded & {"libasan", "libubsan"})
    loaded -= {"libasan", "libubsan"} | ({"libstdc++"} if sanitized else set())
    assert loaded and loaded <= {"libc", "libm", "libgcc_s"}, loaded
