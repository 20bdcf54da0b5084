"""Shared fixtures for the end-to-end tests: they drive the built nestbox binary as a
subprocess and check every property from the host side, as a user would."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The tests run interpreters against read-only trees (venvs, the wheelhouse); as root
# a stray __pycache__ would be written into them anyway.
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
BUILD = Path(os.environ.get("NESTBOX_BUILD", ROOT / "build"))
NESTBOX = Path(os.environ.get("NESTBOX", BUILD / "runner" / "nestbox"))


def pytest_configure(config):
    config.addinivalue_line("markers", "sandbox: containment tests, also run as an unprivileged user")


@pytest.fixture(scope="session")
def nestbox():
    if not NESTBOX.exists():
        pytest.fail(f"{NESTBOX} not built: run tests/run")
    return str(NESTBOX)


# The host directories a plain command needs inside the sandbox (the interpreter's
# closure for /bin/sh, coreutils and /usr/bin/python3).
SYSTEM_BINDS = []
for d in ("/usr", "/lib", "/lib64", "/bin", "/sbin"):
    p = Path(d)
    if p.is_symlink():
        SYSTEM_BINDS += ["--symlink", os.readlink(d), d]
    elif p.is_dir():
        SYSTEM_BINDS += ["--ro-bind", d, d]


def run(args, timeout=120, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([str(NESTBOX)] + [str(a) for a in args], timeout=timeout, **kw)


def sandbox(*cmd, opts=(), timeout=120, **kw):
    """Runs cmd inside `nestbox sandbox` with the system directories bound read-only."""
    return run(["sandbox", *SYSTEM_BINDS, *opts, "--", *cmd], timeout=timeout, **kw)


def sh(script, opts=(), **kw):
    return sandbox("/bin/sh", "-c", script, opts=opts, **kw)


def preloaded_env(shim_name, **extra):
    """The environment for nestbox under a test-only LD_PRELOAD shim of tests/faults/
    (libnestbox-<shim_name>.so in the build), with extra variables; the test is
    skipped where the build has none."""
    shim = BUILD / "tests" / f"libnestbox-{shim_name}.so"
    if not shim.exists():
        pytest.skip(f"{shim} not built")
    env = dict(os.environ, LD_PRELOAD=str(shim), **extra)
    # Under ASan the runtime must come first; a preloaded shim is a test's choice.
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))
    return env


def traced_env(e=None):
    """The environment for nestbox under strace (e, else ours): LeakSanitizer (a
    sanitizer build's ASAN_OPTIONS) cannot work under ptrace."""
    env = dict(os.environ if e is None else e)
    if env.get("ASAN_OPTIONS"):
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    return env


def is_root():
    return os.geteuid() == 0


def have(cmd):
    return shutil.which(cmd) is not None


def descendants(ancestor):
    """The processes below ancestor: another test's sandboxes (tests run in parallel)
    and a finished run's, still exiting, are not this one's."""
    parents = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    for pid in parents:
        p, seen = pid, 0
        while p in parents and p != ancestor and seen < 64:
            p, seen = parents[p], seen + 1
        if p == ancestor and pid != ancestor:
            yield Path(f"/proc/{pid}")


def warm_for_limited_targets():
    """Whether a target whose memory limit is an RLIMIT_AS (no cgroup: not root) can
    run warm: an ASan build serves those cold, ASan cannot start under one
    (sandbox/zygote.c)."""
    asan = b"libasan.so" in (Path(NESTBOX).parent / "nestbox-runner").read_bytes()
    return not (asan and os.geteuid() != 0)
