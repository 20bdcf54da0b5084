"""What a test leaves behind reaches the host only through nestbox's capped,
linear-time read-back (issue 13's host-side defects), each checked from the host."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NESTBOX, run
from test_target import resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def one_test(body):
    return {"src/app/__init__.py": "", "tests/test_it.py": body}


@pytest.mark.sandbox
def test_log_is_a_pipe_drained_with_a_cap(tmp_path, resolve_dir, cache):  # noqa: F811
    body = (
        "import errno, os, sys\n\n"
        "def test_floods_stdout():\n"
        "    target = os.readlink('/proc/self/fd/1')\n"
        "    assert target.startswith('pipe:'), target\n"
        "    try:\n"
        "        os.lseek(1, 1 << 40, os.SEEK_SET)\n"
        "        raise AssertionError('seekable')\n"
        "    except OSError as e:\n"
        "        assert e.errno == errno.ESPIPE\n"
        "    os.write(1, b'FIRST-WORDS\\n')\n"
        "    chunk = b'y' * (1 << 20)\n"
        "    for _ in range(48):\n"
        "        os.write(1, chunk)\n"
        "    os.write(1, b'\\nLAST-WORDS\\n')\n")
    # -s: pytest's own capture would put a file of its /tmp at fd 1.
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body), {"app/tests": {"pytest_args": ["-s"]}})
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, "--no-cache", ws])
    assert p.returncode == 0, p.stdout + p.stderr
    log = (out / "app/tests/log").read_bytes()
    assert len(log) < 600 * 1024
    assert b"FIRST-WORDS" in log and b"LAST-WORDS" in log
    assert b"[... nestbox: log cut here, " in log and b" bytes left out ...]" in log


def wakeups_of_a_run(tmp_path, resolve_dir, cache, name, writes, opts):  # noqa: F811
    """The voluntary context switches of a whole `nestbox test` (wait4's rusage: the
    process and every process it and they reaped) of one test that spins 1 ms 2,000
    times, writing a dot to stdout (the pipe) after each spin if `writes`; and its log."""
    after_spin = "os.write(1, b'.')" if writes else "pass"
    body = (
        "import os, time\n\n"
        "def test_chatty():\n"
        "    for _ in range(2000):\n"
        "        end = time.perf_counter() + 0.001\n"
        "        while time.perf_counter() < end:\n"
        "            pass\n"
        "        " + after_spin + "\n")
    ws = make_workspace(tmp_path / name, resolve_dir, one_test(body), {"app/tests": {"pytest_args": ["-s"]}})
    out = tmp_path / (name + "-out")
    p = subprocess.Popen([str(NESTBOX), "test", "--cache", str(cache), "--no-cache", "--output", str(out),
                          *opts, str(ws)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = p.stdout.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    p.stdout.close()
    assert os.waitstatus_to_exitcode(status) == 0, text
    return usage.ru_nvcsw, (out / "app/tests/log").read_bytes()


@pytest.mark.sandbox
@pytest.mark.parametrize("opts", [[], ["--zygote"]], ids=["cold", "warm"])
def test_log_of_a_chatty_test_is_read_in_batches(tmp_path, resolve_dir, cache, opts):  # noqa: F811
    # pytest's progress is one write a test; a supervisor woken by every write takes a
    # CPU turn from the tests each time (one per write: 2,000 here, in 2 s). Read in
    # batches, it wakes about 50 times a second, however many writes: this fails only
    # if the test's 2 s of spinning took 20 s.
    wakeups_of_a_run(tmp_path, resolve_dir, cache, "warm-up", False, opts)  # the venv built
    quiet, _ = wakeups_of_a_run(tmp_path, resolve_dir, cache, "quiet", False, opts)
    chatty, log = wakeups_of_a_run(tmp_path, resolve_dir, cache, "chatty", True, opts)
    assert chatty - quiet < 1000, (quiet, chatty)
    # Every dot is in the log, in one run of them (pytest's own "." follows).
    assert b"." * 2000 in log, log[:300]


def failing_run(tmp_path, resolve_dir, cache, body):  # noqa: F811
    """The stdout of a run of one test whose outputs fail the target."""
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED" in p.stdout
    return p.stdout


@pytest.mark.sandbox
def test_many_undeclared_outputs_fail_the_target(tmp_path, resolve_dir, cache):  # noqa: F811
    body = (
        "import os\n\n"
        "def test_plants_files():\n"
        "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
        "    for i in range(12000):\n"
        "        open(os.path.join(d, f'f{i}'), 'w').close()\n")
    out = failing_run(tmp_path, resolve_dir, cache, body)
    assert "/out: artifact: more than 10000 files in undeclared" in out, out


@pytest.mark.sandbox
def test_undeclared_outputs_replayed_from_the_cache(tmp_path, resolve_dir, cache):  # noqa: F811
    body = (
        "import os\n\n"
        "def test_writes():\n"
        "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
        "    os.makedirs(os.path.join(d, 'sub'))\n"
        "    with open(os.path.join(d, 'sub', 'note.txt'), 'w') as f:\n"
        "        f.write('kept')\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    assert run(["test", "--cache", cache, ws]).returncode == 0
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 0 and "(cached)" in p.stdout, p.stdout + p.stderr
    assert (out / "app/tests/undeclared/sub/note.txt").read_text() == "kept"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs another user's directory (chown)")
def test_cache_another_user_can_write_is_refused(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test("def test_ok():\n    pass\n"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    p = run(["test", "--cache", theirs, ws])
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"nestbox: cache {theirs}: owned by uid 65534 with mode 0755; refusing a cache" in p.stderr
    assert not (theirs / "ac").exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    p = run(["test", "--cache", shared, ws])
    assert p.returncode == 2 and "mode 0777; refusing a cache that another user can write" in p.stderr, p.stderr
    # The default with HOME and XDG_CACHE_HOME unset: /tmp/nestbox-cache-<uid>,
    # planted by someone else first.
    planted = Path(f"/tmp/nestbox-cache-{os.geteuid()}")
    if planted.exists():
        pytest.skip(f"{planted} exists")
    planted.mkdir()
    try:
        os.chown(planted, 65534, 65534)
        env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME")}
        p = run(["test", ws], env=env)
        assert p.returncode == 2 and f"cache {planted}: owned by uid 65534" in p.stderr, p.stdout + p.stderr
    finally:
        os.rmdir(planted)


def test_record_contradicting_its_report_is_damage(tmp_path, resolve_dir, cache):  # noqa: F811
    import hashlib
    import json
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test("def test_bad():\n    assert False\n"))
    assert run(["test", "--cache", cache, ws]).returncode == 1
    records = [p for p in (cache / "ac").rglob("*") if p.is_file() and b'"artifact"' in p.read_bytes()]
    assert len(records) == 1
    header, body = records[0].read_bytes().split(b"\n", 1)
    rec = json.loads(body)
    assert rec["status"] == "FAILED" and rec["failures"] == 1
    rec["status"], rec["exit_code"] = "PASSED", 0
    forged = json.dumps(rec).encode()
    magic = header[:-64]
    records[0].chmod(0o644)
    records[0].write_bytes(magic + hashlib.sha256(forged).hexdigest().encode() + b"\n" + forged)
    p = run(["test", "--cache", cache, "--cache-failures", ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED" in p.stdout and "(cached)" not in p.stdout


def test_verify_checks_the_driver_against_its_digest(tmp_path, resolve_dir, cache):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test("def test_ok():\n    pass\n"))
    assert run(["test", "--cache", cache, "--no-cache", ws]).returncode == 0
    drivers = list((cache / "trees").glob("*/driver.py"))
    assert len(drivers) == 1
    assert run(["cache", "--cache", cache, "verify"]).returncode == 0
    # What a power cut before the data reached the disk leaves: an empty file.
    tree = drivers[0].parent
    tree.chmod(0o755)
    drivers[0].chmod(0o644)
    drivers[0].write_bytes(b"")
    p = run(["cache", "--cache", cache, "verify"])
    assert p.returncode == 1, p.stdout + p.stderr
    assert tree.name in p.stdout and "driver.py is missing or differs" in p.stdout
    assert run(["cache", "--cache", cache, "verify", "--repair"]).returncode == 1
    assert run(["test", "--cache", cache, "--no-cache", ws]).returncode == 0


def test_workspace_interpreter_never_runs_on_the_host(tmp_path, resolve_dir, cache):  # noqa: F811
    """nestbox.json's "python" is the workspace's to name, and a workspace comes from a
    pull request: a script in the checkout is refused before anything runs it."""
    import json
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test("def test_ok():\n    pass\n"))
    canary = tmp_path / "ran-on-the-host"
    evil = ws / "evil-python"
    evil.write_text(f"#!/bin/sh\ntouch {canary}\nexec /usr/bin/python3 \"$@\"\n")
    evil.chmod(0o755)
    doc = json.loads((ws / "nestbox.json").read_text())
    doc["python"] = str(evil)
    (ws / "nestbox.json").write_text(json.dumps(doc))
    for args in (["test", "--cache", cache, ws],
                 ["venv", "--lock", resolve_dir / "default.lock", "--wheelhouse", resolve_dir / "wheelhouse",
                  "--python", evil, "--cache", cache]):
        p = run(args)
        assert p.returncode == 2, p.stdout + p.stderr
        assert f"python {evil} is {evil}, outside the system directories the sandbox mounts" in p.stderr
        assert not canary.exists()


@pytest.mark.sandbox
def test_bytecode_is_compiled_in_a_sandbox(tmp_path, resolve_dir, cache):  # noqa: F811
    """compileall runs with the venv read-only at /venv: every module still gets its
    bytecode, named for /venv, and nothing else of the venv was writable."""
    p = run(["venv", "--lock", resolve_dir / "default.lock", "--wheelhouse", resolve_dir / "wheelhouse",
             "--cache", cache])
    assert p.returncode == 0, p.stderr
    venv = Path(p.stdout.strip())
    sources = [s for s in venv.rglob("*.py") if "__pycache__" not in s.parts]
    assert len(sources) > 50
    tag = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"
    missing = [s for s in sources if not (s.parent / "__pycache__" / f"{s.stem}.{tag}.pyc").is_file()]
    assert len(missing) < len(sources) // 20, missing[:5]
    pyc = next(venv.rglob(f"pytest/__pycache__/__init__.{tag}.pyc")).read_bytes()
    assert b"/venv/lib/python" in pyc and str(cache).encode() not in pyc


@pytest.mark.sandbox
def test_undeclared_output_names_are_bytes(tmp_path, resolve_dir, cache):  # noqa: F811
    """A name that is not UTF-8 is stored and restored byte for byte (cached like any
    other); control characters are escaped as %XX on the way into --output."""
    body = (
        "import os\n\n"
        "def test_writes():\n"
        "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR'].encode()\n"
        "    for name in (b'latin1-\\xe9t\\xe9', b'raw-\\xff\\xfe', b'line\\nPASSED', b'esc-\\x1b[31m', b'pct-%41',\n"
        "                 b'c1-\\xc2\\x9b31m', b'ctl-' + b'\\x01' * 100, b'\\x02' * 70 + b'\\xc3\\xa9' * 30,\n"
        "                 b'a' * 54 + b'\\xc2\\x9b' * 40):\n"
        "        with open(os.path.join(d, name), 'wb') as f:\n"
        "            f.write(name)\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    want = {b"latin1-\xe9t\xe9": b"latin1-\xe9t\xe9", b"raw-\xff\xfe": b"raw-\xff\xfe",
            b"line%0APASSED": b"line\nPASSED", b"esc-%1B[31m": b"esc-\x1b[31m", b"pct-%2541": b"pct-%41",
            b"c1-%C2%9B31m": b"c1-\xc2\x9b31m"}
    # Escaped, these are longer than NAME_MAX: each keeps what fits of its start, cut
    # between two characters (a C1 one is two escapes: never one of them alone), then
    # "%~" and 16 hex digits of the name's SHA-256.
    for name, kept in ((b"ctl-" + b"\x01" * 100, b"ctl-" + b"%01" * 77),
                       (b"\x02" * 70 + b"\xc3\xa9" * 30, b"%02" * 70 + b"\xc3\xa9" * 13),
                       (b"a" * 54 + b"\xc2\x9b" * 40, b"a" * 54 + b"%C2%9B" * 30)):
        assert len(kept) <= 255 - 18
        want[kept + b"%~" + hashlib.sha256(name).hexdigest()[:16].encode()] = name
    for i, extra in enumerate(([], [])):
        out = tmp_path / f"out{i}"
        p = run(["test", "--cache", cache, "--output", out, ws])
        assert p.returncode == 0, p.stdout + p.stderr
        assert "not cached" not in p.stdout + p.stderr and "translate" not in p.stdout + p.stderr
        assert ("(cached)" in p.stdout) == (i == 1), p.stdout
        und = os.fsencode(out / "app/tests/undeclared")
        got = {n: open(os.path.join(und, n), "rb").read() for n in os.listdir(und)}
        assert got == want


def test_env_list_passing_the_whole_environment_is_refused(tmp_path, resolve_dir, cache):  # noqa: F811
    names = [f"VAR_{i}" for i in range(65)]
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test("def test_ok():\n    pass\n"),
                        {"app/tests": {"env": names}})
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr == (f'nestbox: {ws}/nestbox.json: targets."app/tests".env: 65 names; at most 64 host variables may be '
                        'passed (each hands the test a host value: name only what it needs)\n')
    ws = make_workspace(tmp_path / "ws2", resolve_dir, one_test(
        "import os\n\ndef test_sees():\n    assert os.environ['VAR_63'] == 'x'\n"), {"app/tests": {"env": names[:64]}})
    p = run(["test", "--cache", cache, ws], env={**os.environ, "VAR_63": "x"})
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.sandbox
def test_coverage_files_count_against_the_outputs_cap(tmp_path, resolve_dir, cache):  # noqa: F811
    """2 x 60 MiB of coverage files and 4 x 40 MiB of undeclared outputs: each under the
    per-file cap, together over the 256 MiB cap (sparse files: no pages are written).
    The coverage files are planted after the driver wrote its own (atexit), in a target
    that measures coverage: elsewhere they are not taken at all."""
    body = (
        "import atexit, os\n\n"
        "def plant():\n"
        "    for name in ('coverage.data', 'coverage.xml'):\n"
        "        os.truncate(os.open('/out/' + name, os.O_CREAT | os.O_WRONLY), 60 << 20)\n\n"
        "atexit.register(plant)\n\n"
        "def test_fills():\n"
        "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR']\n"
        "    for name in ('w', 'x', 'y', 'z'):\n"
        "        os.truncate(os.open(os.path.join(d, name), os.O_CREAT | os.O_WRONLY), 40 << 20)\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body), {"app/tests": {"coverage": True}})
    p = run(["test", "--cache", cache, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED" in p.stdout
    assert "takes the outputs beyond 268435456 bytes in all" in p.stdout, p.stdout


def test_undeclared_output_paths_longer_than_path_max_are_restored(tmp_path, resolve_dir, cache):  # noqa: F811
    """40 directories of 40 control characters: 1.6 KiB inside the sandbox, 4.8 KiB once
    escaped into --output, past PATH_MAX. Each directory is made from its parent's
    descriptor, so the file arrives (and again from the cache)."""
    body = (
        "import os\n\n"
        "def test_writes():\n"
        "    d = os.environ['TEST_UNDECLARED_OUTPUTS_DIR'].encode()\n"
        "    p = os.path.join(d, *[b'\\x01' * 40] * 40)\n"
        "    os.makedirs(p)\n"
        "    with open(os.path.join(p, b'f'), 'wb') as f:\n"
        "        f.write(b'deep')\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    for i in range(2):
        out = tmp_path / f"out{i}"
        p = run(["test", "--cache", cache, "--output", out, ws])
        assert p.returncode == 0, p.stdout + p.stderr
        assert ("(cached)" in p.stdout) == (i == 1), p.stdout
        fd = os.open(out / "app/tests/undeclared", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(40):
                assert os.listdir(fd) == ["%01" * 40]
                nxt = os.open("%01" * 40, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            assert os.listdir(fd) == ["f"]
            f = os.open("f", os.O_RDONLY, dir_fd=fd)
            assert os.read(f, 100) == b"deep"
            os.close(f)
        finally:
            os.close(fd)


@pytest.mark.parametrize("kind", ["cut inside a character", "not UTF-8"])
def test_a_cap_message_quoting_a_hostile_name_still_fails_only_the_target(tmp_path, resolve_dir, cache, kind):  # noqa: F811
    """Attack: the line saying which path broke a cap quoted the test's bytes, cut in
    the middle of a character or not UTF-8 at all; result.json could not hold it and
    nestbox exited 3 ("result.json: Cannot allocate memory"). The target fails,
    saying so, and its result is kept."""
    if kind == "cut inside a character":
        body = ("import os\n\n"
                "def test_writes():\n"
                "    os.chdir(os.environ['TEST_UNDECLARED_OUTPUTS_DIR'])\n"
                "    for _ in range(20):\n"
                "        os.mkdir('\u00e9' * 120)\n"
                "        os.chdir('\u00e9' * 120)\n"
                "    open('f', 'w').close()\n")
        want = "/out: artifact: undeclared/" + "\u00e9" * 26 + "...: a path of"
    else:
        body = ("import os\n\n"
                "def test_writes():\n"
                "    d = os.fsencode(os.environ['TEST_UNDECLARED_OUTPUTS_DIR'])\n"
                "    with open(os.path.join(d, b'\\xff\\x1b[2Jbig'), 'wb') as f:\n"
                "        f.truncate(65 << 20)\n")
        want = "more than the 67108864 allowed per file"
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED" in p.stdout and want in p.stdout, p.stdout + p.stderr
    assert "\x1b" not in p.stdout and "Cannot allocate memory" not in p.stdout + p.stderr
    why = json.loads((out / "app/tests/result.json").read_bytes())["why"]
    assert want in why, why


def test_a_report_that_escapes_past_the_cap_fails_the_target(tmp_path, resolve_dir, cache):  # noqa: F811
    """Attack: a junit.xml of 14 MiB, within the 64 MiB parse cap, whose system-out is
    all "&": nestbox's copy of it ("&amp;", five bytes each) passed the cap it reads
    back with, and the run ended exit 3, "an item's result: Invalid argument". Now
    the target fails saying why, with a report nestbox can read."""
    body = ("import atexit, os\n\n"
            "def plant():\n"
            "    with open(os.environ['XML_OUTPUT_FILE'], 'w') as f:\n"
            "        f.write('<testsuite name=\"s\"><testcase classname=\"c\" name=\"n\">')\n"
            "        for _ in range(2):\n"
            "            f.write('<system-out><![CDATA[' + '&' * (7 << 20) + ']]></system-out>')\n"
            "        f.write('</testcase></testsuite>')\n\n"
            "atexit.register(plant)\n\n"
            "def test_it():\n"
            "    pass\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "app/tests  FAILED" in p.stdout, p.stdout + p.stderr
    why = ("/out/junit.xml: nestbox's copy of the report (escaped, with its properties) is more than the 67108864 "
           "bytes it reads back")
    assert why in p.stdout, p.stdout
    assert json.loads((out / "app/tests/result.json").read_text())["why"] == why
    assert (out / "app/tests/junit.xml").stat().st_size < 1 << 20


@pytest.mark.parametrize("report", ["kept", "removed"])
def test_a_nul_in_the_log_hides_nothing_after_it(tmp_path, resolve_dir, cache, report):  # noqa: F811
    """Attack: the log is bytes, but -v printed it (and the error testcase of a run
    without a report quoted its end) as a C string: a NUL hid all that followed."""
    body = ("import os\n\n"
            "def test_it():\n"
            "    os.write(1, b'BEFORE-NUL' + bytes([0]) + b'AFTER-' + b'NUL-shown' + b'\\n')\n"
            + ("" if report == "kept" else
               "    import atexit\n"
               "    atexit.register(os.remove, os.environ['XML_OUTPUT_FILE'])\n")
            + "    assert False\n")
    ws = make_workspace(tmp_path / "ws", resolve_dir, one_test(body))
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, "-v", ws])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "BEFORE-NUL\\x00AFTER-NUL-shown" in p.stdout, p.stdout
    assert "\x00" not in p.stdout
    assert (out / "app/tests/log").read_bytes().count(b"BEFORE-NUL\x00AFTER-NUL-shown") >= 1
    if report == "removed":
        assert "AFTER-NUL-shown" in (out / "app/tests/junit.xml").read_text()


def test_an_undeclared_path_past_the_name_cap_fails_the_target_saying_so(tmp_path, resolve_dir, cache):  # noqa: F811
    """A path of 4,096 bytes beneath $TEST_UNDECLARED_OUTPUTS_DIR is kept; 25
    directories of 200 bytes and a file, 5,026 bytes, fail the target with one line
    naming the cap, not "Invalid argument"."""
    def body(dirs, leaf):
        return ("import os\n\n"
                "def test_writes():\n"
                "    os.chdir(os.environ['TEST_UNDECLARED_OUTPUTS_DIR'])\n"
                f"    for _ in range({dirs}):\n"
                "        os.mkdir('a' * 200)\n"
                "        os.chdir('a' * 200)\n"
                f"    open({leaf!r}, 'w').close()\n")
    ws = make_workspace(tmp_path / "ws4096", resolve_dir, one_test(body(20, "f" * 76)))
    p = run(["test", "--cache", cache, "--output", tmp_path / "out", ws])
    assert p.returncode == 0, p.stdout + p.stderr
    fd = os.open(tmp_path / "out/app/tests/undeclared", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):
            nxt = os.open("a" * 200, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        assert os.listdir(fd) == ["f" * 76]
    finally:
        os.close(fd)
    out = failing_run(tmp_path, resolve_dir, cache, body(25, "f"))
    line = "/out: artifact: undeclared/" + "a" * 53 + "...: a path of 5026 bytes, more than the 4096 a test may write"
    assert line in out, out
    assert "Invalid argument" not in out, out
