"""Attacks through what a test hands back: /out (junit.xml, undeclared outputs) and
its output, each read back by the host through nestbox test. Checked from the host:
the canary's text appears in nothing nestbox wrote, the canary is unchanged, the log
and the cache stay small."""
import os
import sys
from pathlib import Path

import pytest

from conftest import ROOT, nestbox

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from workspace import build_wheelhouse, make_workspace  # noqa: E402

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def resolve_dir(tmp_path_factory):
    return build_wheelhouse(tmp_path_factory.mktemp("resolve"))


def run_test(tmp_path, resolve_dir, body, **target):
    files = {"src/app/__init__.py": "", "tests/test_attack.py": body}
    ws = make_workspace(tmp_path / "ws", resolve_dir, files, {"app/tests": target})
    out = tmp_path / "out"
    p = nestbox("test", "--cache", tmp_path / "cache", "--output", out, ws, timeout=300)
    written = b""
    for f in out.rglob("*"):
        if f.is_file() and not f.is_symlink():
            written += f.read_bytes()
    return p, out, written


def test_links_in_out_to_a_host_canary(canary, tmp_path, resolve_dir):
    path, secret = canary
    body = ("import os\n\ndef test_plant():\n"
            "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
            f"    os.symlink({str(path)!r}, os.path.join(d, 'sym'))\n"
            "    os.symlink('/etc/passwd', os.path.join(d, 'passwd'))\n"
            "    open('/tmp/own', 'w').write('mine')\n"
            "    try:\n        os.link('/tmp/own', os.path.join(d, 'hard'))\n"
            "    except OSError:\n        pass\n"
            f"    os.symlink({str(path)!r}, '/out/coverage.data')\n")
    p, out, written = run_test(tmp_path, resolve_dir, body)
    assert secret.encode() not in written and secret not in p.stdout
    assert Path("/etc/passwd").read_text().splitlines()[0].encode() not in written
    for f in out.rglob("*"):
        assert not f.is_symlink(), f  # nothing nestbox writes follows or copies a link


def test_hostile_junit_naming_the_canary(canary, tmp_path, resolve_dir):
    path, secret = canary
    xml = (f'<?xml version="1.0"?>\n<!DOCTYPE t [<!ENTITY x SYSTEM "file://{path}">]>\n'
           '<testsuite name="x"><testcase classname="c" name="&x;"><failure message="&x;"/></testcase></testsuite>\n')
    files_hook = ("import pytest\n\n@pytest.hookimpl(trylast=True)\n"
                  f"def pytest_unconfigure(config):\n    open('/out/junit.xml', 'w').write({xml!r})\n")
    body = "def test_ok():\n    pass\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir,
                        {"src/app/__init__.py": "", "tests/test_attack.py": body, "tests/conftest.py": files_hook},
                        {"app/tests": {"pytest_args": ["-p", "no:junitxml"]}})
    out = tmp_path / "out"
    p = nestbox("test", "--cache", tmp_path / "cache", "--output", out, ws, timeout=300)
    produced = b"".join(f.read_bytes() for f in out.rglob("*") if f.is_file())
    assert secret.encode() not in produced and secret not in p.stdout
    assert p.returncode == 1, p.stdout + p.stderr  # a report nestbox cannot read is a failure


def test_a_gigabyte_of_stdout(tmp_path, resolve_dir):
    body = ("import os\n\ndef test_flood():\n    chunk = b'z' * (1 << 20)\n"
            "    for _ in range(1024):\n        os.write(1, chunk)\n")
    p, out, _ = run_test(tmp_path, resolve_dir, body, pytest_args=["-s"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert (out / "app/tests/log").stat().st_size < 1 << 20  # capped: head and tail only
    used = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*") if f.is_file() and "venvs" not in f.parts)
    assert used < 64 << 20, used  # the host's disk took none of it


def test_undeclared_output_names_with_control_characters(tmp_path, resolve_dir):
    body = ("import os\n\ndef test_names():\n"
            "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
            "    for name in ('esc\\x1b[2Jname', 'nl\\nPASSED', 'cr\\rx', b'bad\\xff'.decode('latin-1')):\n"
            "        open(os.path.join(d, name), 'w').write('x')\n")
    p, out, _ = run_test(tmp_path, resolve_dir, body)
    assert "\x1b" not in p.stdout and "\r" not in p.stdout
    for f in out.rglob("*"):
        assert not any(c in f.name for c in "\x1b\n\r"), repr(f.name)  # no terminal control reaches the host
