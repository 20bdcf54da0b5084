"""What `nestbox test` shows while it runs (issue 10): on a terminal a live status
block redrawn in place, the targets that did not pass repeated at the end; elsewhere
the plain lines, no escape codes; --color and NO_COLOR."""
import os
import subprocess

import pexpect
import pytest

from conftest import NESTBOX
from test_events import FAILING
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

ERASE = "\x1b[1A\x1b[2K"  # cursor up one line, erase it: the block redrawn in place


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    slow = {"slow/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(1.5)\n"}
    return make_workspace(tmp_path / "ws", resolve_dir, {**PASSING, **FAILING, **slow}, {
        "a/tests": {},
        "b/tests": {"tests": ["tests2/*.py"], "source_roots": ["src", "tests2"]},
        "c/slow": {"tests": ["slow/*.py"], "source_roots": ["src", "slow"]},
    })


def on_terminal(args, env=None):
    """Runs nestbox under a pseudo-terminal (80x24); returns everything it drew."""
    child = pexpect.spawn(str(NESTBOX), args, env={**os.environ, "TERM": "xterm", **(env or {})},
                          dimensions=(24, 80), encoding="utf-8", timeout=600)
    child.expect(pexpect.EOF)
    child.close()
    return child.before, child.exitstatus


def test_terminal_shows_a_live_block_and_repeats_failures(ws, tmp_path):
    out, code = on_terminal(["test", "-j", "2", "--cache", str(tmp_path / "cache"), str(ws)])
    assert code == 1, out
    assert "[0/3]" in out and "running " in out, out  # the block: done/total, what runs
    assert "passed 0, failed 0, cached 0" in out
    assert ERASE in out  # erased and redrawn in place, never scrolled
    plain = out.replace("\r", "")
    assert "a/tests  \x1b[32mPASSED\x1b[0m in " in plain  # finished lines scroll above it, coloured
    assert "b/tests  \x1b[31mFAILED\x1b[0m in " in plain
    # After the last redraw: the failures again, then the summary, and no block.
    tail = plain[plain.rindex(ERASE) + len(ERASE):]
    assert "not passed:\n  b/tests  FAILED\n3 targets: 2 passed, 1 failed, 0 cached, 5 tests in " in tail, tail
    assert "running " not in tail
    # Every block line fits the terminal, so erasing it never leaves half a line.
    assert all(len(line) < 80 for line in plain.split("\n") if line.startswith("[") or line.startswith("  running"))


def test_terminal_eta_from_the_last_durations(ws, tmp_path):
    cache = tmp_path / "cache"
    on_terminal(["test", "-j", "2", "--cache", str(cache), str(ws)])
    out, _ = on_terminal(["test", "-j", "2", "--force", "--cache", str(cache), str(ws)])
    assert " ETA " in out, out  # every item's duration is known now


def test_no_color_keeps_the_block_but_not_the_colours(ws, tmp_path):
    out, code = on_terminal(["test", "-j", "2", "--cache", str(tmp_path / "cache"), str(ws)], env={"NO_COLOR": "1"})
    assert code == 1
    assert ERASE in out and "\x1b[32m" not in out and "\x1b[31m" not in out
    out, _ = on_terminal(["test", "--color=never", "--cache", str(tmp_path / "cache"), str(ws)])
    assert "\x1b[32m" not in out


def test_not_a_terminal_prints_plain_lines(ws, tmp_path):
    p = subprocess.run([str(NESTBOX), "test", "-j", "2", "--cache", str(tmp_path / "cache"), str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 1
    assert "\x1b" not in p.stdout and "\x1b" not in p.stderr
    lines = [line for line in p.stdout.splitlines() if not line.startswith(" ")]
    assert sorted(lines[:3]) == sorted(line for line in lines[:3])  # one line per finished item
    assert {line.split("  ")[0] for line in lines[:3]} == {"a/tests", "b/tests", "c/slow"}
    assert lines[3].startswith("3 targets: 2 passed, 1 failed, 0 cached, 5 tests in ")
    assert "not passed:" not in p.stdout and "running" not in p.stdout
    # --color=always colours the status words even in a log.
    p = subprocess.run([str(NESTBOX), "test", "--color=always", "--cache", str(tmp_path / "cache"), str(ws)],
                       capture_output=True, text=True, timeout=600)
    assert "a/tests  \x1b[32mPASSED\x1b[0m in " in p.stdout and ERASE not in p.stdout


def test_bad_color_is_a_usage_error(tmp_path):
    p = subprocess.run([str(NESTBOX), "test", "--color=sometimes"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr == "nestbox: --color sometimes: expected auto, always or never\n"
