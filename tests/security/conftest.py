"""tests/security: attacks on the sandbox, each checked from the host. Every test is one
attack with an expected outcome inside and a host-side check (a canary file that must
not be read or changed, a host port that must get no connection, a host process that
must survive, nothing left running; for a hostile wheel, nothing written outside the
venv being built and a one-line input error). tests/run runs the suite as root and as nobody;
it ends with `N attacks, N contained`."""
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

# The e2e suite's paths and system binds, one definition for both suites (loaded under
# another name: both files are "conftest").
_spec = importlib.util.spec_from_file_location("e2e_conftest", Path(__file__).resolve().parents[1] / "e2e" / "conftest.py")
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)
ROOT, NESTBOX, SYSTEM_BINDS = _e2e.ROOT, _e2e.NESTBOX, _e2e.SYSTEM_BINDS
PY = "/usr/bin/python3"

_outcomes = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "sandbox: containment tests, also run as an unprivileged user")


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        # An xfail is an attack known to get through (its reason names the defect):
        # counted as an attack, not as contained, and listed.
        _outcomes[report.nodeid] = "open" if hasattr(report, "wasxfail") else report.outcome


def pytest_terminal_summary(terminalreporter):
    attacks = [o for o in _outcomes.values() if o != "skipped"]
    contained = sum(o == "passed" for o in attacks)
    for nodeid, o in _outcomes.items():
        if o == "open":
            terminalreporter.write_line(f"not contained (known): {nodeid}")
    terminalreporter.write_line(f"{len(attacks)} attacks, {contained} contained")


def nestbox(*args, timeout=60, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("stdin", subprocess.DEVNULL)  # an attack reading fd 0 must not wait for it
    return subprocess.run([str(NESTBOX), *map(str, args)], timeout=timeout, **kw)


def attack(code, *args, opts=(), timeout=60, **kw):
    """Runs the attacker's Python inside `nestbox sandbox`."""
    return nestbox("sandbox", *SYSTEM_BINDS, *opts, "--", PY, "-c", code, *args, timeout=timeout, **kw)


@pytest.fixture
def canary(tmp_path):
    """A host file no sandbox may read or change: its text, checked after each attack."""
    d = tmp_path / "host-secret"
    d.mkdir()
    f = d / "canary"
    secret = f"canary-{os.getpid()}-{os.urandom(8).hex()}"
    f.write_text(secret)
    os.chmod(d, 0o755)
    os.chmod(f, 0o644)  # readable by anyone on the host: only the walls keep it out
    st = f.stat()
    yield f, secret
    assert f.read_text() == secret, "the canary was changed"
    assert f.stat().st_mtime_ns == st.st_mtime_ns, "the canary was touched"
