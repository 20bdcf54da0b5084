"""The warm interpreter (README "Warm interpreter"): the proof that a target forked
from it is hermetic. The same outcomes and the same environment with the zygote on and
off; nothing of a target in the interpreter before its collection; nothing one target
does seen by the next; the sandbox's walls standing with the zygote on."""
import json
import os
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import run, warm_for_limited_targets
from workspace import build_wheelhouse, copy_examples, make_workspace

# Everything of the interpreter and the process a test can observe, dumped as JSON
# into its undeclared outputs.
PROBE = r'''
import atexit, json, os, signal, socket, sys, threading

def status_lines():
    keep = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
            "NoNewPrivs", "Seccomp", "SigIgn", "SigBlk", "SigCgt")
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in keep:
            out[k] = v.strip()
    return out

def mounts():
    seen = []
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        f = left.split()
        seen.append((f[4], right.split()[0], f[5]))
    return sorted(seen)

def snapshot():
    umask = os.umask(0o022); os.umask(umask)
    return {
        "environ": dict(os.environ),
        "sys.path": sys.path,
        "sys.argv": sys.argv,
        "sys.flags": repr(sys.flags),
        "executable": sys.executable,
        "cwd": os.getcwd(),
        "umask": umask,
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
        "pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0) == os.getpid(),
        "status": status_lines(),
        "mounts": mounts(),
        "hostname": socket.gethostname(),
        "root": sorted(os.listdir("/")),
        "tmp": sorted(os.listdir("/tmp")),
        "fds": sorted(os.listdir("/proc/self/fd")),
        "threads": sorted(t.name for t in threading.enumerate()),
        "atexit": atexit._ncallbacks(),
        "hash": hash("nestbox"),
        "sigint": repr(signal.getsignal(signal.SIGINT)),
        "cmdline1": open("/proc/1/cmdline", "rb").read().decode(errors="replace"),
        # The warm command's area is larger: what follows its arguments is NUL.
        "cmdline": open("/proc/self/cmdline", "rb").read().rstrip(b"\0").decode(errors="replace"),
        "comm": open("/proc/self/comm").read(),
        "nodes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
        # The zygote hands over modules it imported (pdb) through a finder of its own
        # that is gone once they are imported: as cold, to the import machinery.
        "meta_path": [type(f).__name__ for f in sys.meta_path],
        "pdb": spec_of(sys.modules.get("pdb")),
        "cmd": spec_of(sys.modules.get("cmd")),
    }

def spec_of(module):
    if module is None:
        return None
    spec = module.__spec__
    return [spec.name, spec.origin, type(spec.loader).__name__, type(module.__loader__).__name__,
            getattr(module, "__file__", None), getattr(module, "__cached__", None)]

def dump(name, extra=None):
    data = snapshot()
    data.update(extra or {})
    path = os.path.join(os.environ["TEST_UNDECLARED_OUTPUTS_DIR"], name)
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
'''

# Loaded by the tests' conftest before any test module: what the interpreter held
# before the target's collection began.
CONFTEST = (
    "import sys\n"
    "BEFORE = sorted(sys.modules)\n"
)

ENV_TEST = (
    "import conftest, probe\n\n"
    "def test_dump():\n"
    "    probe.dump('env.json', {'before_collection': conftest.BEFORE})\n"
)

# The first target makes every kind of mess; the second must see none of it.
DIRTY = (
    "import atexit, os, threading, time\n"
    "import pytest, shared\n\n"
    "def test_makes_a_mess():\n"
    "    shared.STATE.append('dirty')\n"
    "    pytest.dirty_from_another_target = True\n"
    "    threading.Thread(target=time.sleep, args=(3600,), name='leftover', daemon=True).start()\n"
    "    atexit.register(print, 'leftover atexit hook')\n"
    "    os.environ['LEFTOVER'] = '1'\n"
    "    open('/tmp/leftover', 'w').write('x')\n"
    "    os.chdir('/tmp')\n"
    "    os.umask(0o077)\n"
)
CLEAN = (
    "import atexit, os, sys, threading\n"
    "import pytest, shared\n\n"
    "def test_sees_no_mess():\n"
    "    assert shared.STATE == []\n"
    "    assert not hasattr(pytest, 'dirty_from_another_target')\n"
    "    assert 'leftover' not in [t.name for t in threading.enumerate()]\n"
    "    assert atexit._ncallbacks() == int(os.environ['BASELINE_ATEXIT'])\n"
    "    assert 'LEFTOVER' not in os.environ\n"
    "    assert not os.path.exists('/tmp/leftover')\n"
    "    assert os.getcwd() == '/work'\n"
    "    umask = os.umask(0); os.umask(umask)\n"
    "    assert umask == int(os.environ['BASELINE_UMASK'])\n"
    "    assert 'test_dirty' not in sys.modules\n"
)

FILES = {
    "src/probe.py": PROBE,
    "src/shared.py": "STATE = []\n",
    "tests/conftest.py": CONFTEST,
    "tests/test_env.py": ENV_TEST,
    "tests/test_dirty.py": DIRTY,
    "tests/test_clean.py": CLEAN,
    "tests/test_walls.py": "",  # written per test: it names a host path
    "tests/test_hang.py": "",
}
TARGETS = {
    "app/env": {"tests": ["tests/conftest.py", "tests/test_env.py"]},
    "app/dirty": {"tests": ["tests/test_dirty.py"]},
    "app/clean": {"tests": ["tests/test_clean.py"]},
    "app/walls": {"tests": ["tests/test_walls.py"]},
    "app/hang": {"tests": ["tests/test_hang.py"], "timeout": 3},
}


@pytest.fixture(scope="module")
def resolve(tmp_path_factory):
    return build_wheelhouse(tmp_path_factory.mktemp("resolve"))


@pytest.fixture(scope="module")
def ws(tmp_path_factory, resolve):
    return make_workspace(tmp_path_factory.mktemp("zygote") / "ws", resolve, FILES, TARGETS)


def nestbox_test(ws, cache, out, *args, zygote=True, **kw):
    flag = "--zygote" if zygote else "--no-zygote"
    return run(["test", "--cache", cache, "--no-cache", "--output", out, flag, "-j", "1", *args, ws, *kw.pop("targets")],
               **kw)


def results(out):
    return {p.parent.relative_to(out).as_posix(): json.loads(p.read_text()) for p in out.rglob("result.json")}


def cases(junit):
    got = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        got.append((case.get("classname"), case.get("name"), outcome))
    return sorted(got)


def test_the_example_has_the_same_outcomes_warm_and_cold(tmp_path, resolve):
    examples = copy_examples(tmp_path / "examples", resolve)
    outs = {}
    for zygote in (False, True):
        out = tmp_path / f"out-{zygote}"
        p = run(["test", "--cache", tmp_path / "cache", "--no-cache", "--output", out,
                 "--zygote" if zygote else "--no-zygote", examples], timeout=300)
        outs[zygote] = (p, out)
    (cold, cold_out), (warm, warm_out) = outs[False], outs[True]
    assert cold.returncode == warm.returncode, cold.stdout + warm.stdout + warm.stderr
    assert cases(cold_out / "junit.xml") == cases(warm_out / "junit.xml")
    assert cases(warm_out / "junit.xml")
    assert all(r.get("warm") for r in results(warm_out).values()), warm.stderr
    assert not any(r.get("warm") for r in results(cold_out).values())
    for name, r in results(cold_out).items():
        w = results(warm_out)[name]
        assert (w["status"], w["tests"], w["failures"], w["seed"], w["action"]) == \
            (r["status"], r["tests"], r["failures"], r["seed"], r["action"])


def test_a_target_sees_the_same_process_and_interpreter_warm_and_cold(ws, tmp_path):
    dumps = {}
    for zygote in (False, True):
        out = tmp_path / f"out-{zygote}"
        p = nestbox_test(ws, tmp_path / "cache", out, zygote=zygote, targets=["app/env"])
        assert p.returncode == 0, p.stdout + p.stderr
        assert bool(results(out)["app/env"].get("warm")) == zygote
        dumps[zygote] = json.loads((out / "app/env/undeclared/env.json").read_text())
    cold, warm = dumps[False], dumps[True]
    # pid 1's own signal mask and handlers differ by what Python installs (the title
    # pid 1 shows is the same); the number of stacked seccomp filters is not shown
    # in "Seccomp" (the mode) and is documented as the one difference.
    assert sorted(cold) == sorted(warm)
    for key in cold:
        assert warm[key] == cold[key], key
    assert cold["status"]["CapEff"] == "0000000000000000" and cold["status"]["Seccomp"] == "2"
    assert cold["cwd"] == "/work" and cold["pid"] == 2


def test_none_of_a_target_is_in_the_interpreter_before_its_collection(ws, tmp_path):
    out = tmp_path / "out"
    p = nestbox_test(ws, tmp_path / "cache", out, targets=["app/dirty", "app/env"])
    assert p.returncode == 0, p.stdout + p.stderr
    before = json.loads((out / "app/env/undeclared/env.json").read_text())["before_collection"]
    # Not the other target's modules, not this one's, not the zygote's own.
    for name in ("shared", "probe", "test_dirty", "test_env", "zygote"):
        assert name not in before
    assert not [m for m in before if m.startswith(("app", "tests"))]


def test_one_target_leaves_nothing_for_the_next(ws, tmp_path):
    out = tmp_path / "base"
    p = nestbox_test(ws, tmp_path / "cache", out, zygote=False, targets=["app/env"])
    assert p.returncode == 0, p.stdout + p.stderr
    base = json.loads((out / "app/env/undeclared/env.json").read_text())
    ws_json = json.loads((ws / "nestbox.json").read_text())
    ws_json["targets"]["app/clean"]["env"] = ["BASELINE_ATEXIT", "BASELINE_UMASK"]
    env = {**os.environ, "BASELINE_ATEXIT": str(base["atexit"]), "BASELINE_UMASK": str(base["umask"])}
    (ws / "nestbox.json").write_text(json.dumps(ws_json))
    try:
        out = tmp_path / "out"
        p = nestbox_test(ws, tmp_path / "cache", out, targets=["app/dirty", "app/clean"], env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "app/dirty  PASSED" in p.stdout and "app/clean  PASSED" in p.stdout
        assert all(r.get("warm") for r in results(out).values())
    finally:
        del ws_json["targets"]["app/clean"]["env"]
        (ws / "nestbox.json").write_text(json.dumps(ws_json))


WALLS = r'''
import ctypes, errno, os, subprocess, sys, time

def test_host_canary_is_invisible():
    assert not os.path.exists({canary!r})
    assert not os.path.exists("/.nbcache") and not os.path.exists("/.zygote")

def test_denied_syscalls_answer_eperm():
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.unshare(0x10000000) == -1 and ctypes.get_errno() == errno.EPERM
    assert libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == -1 and ctypes.get_errno() == errno.EPERM

'''
HANG = r'''
import subprocess, sys, time

def test_a_grandchild_hangs():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", {token!r}], start_new_session=True)
    time.sleep(3600)
'''


@pytest.mark.sandbox
def test_the_walls_stand_with_the_zygote_on(ws, tmp_path):
    token = "nestbox-zygote-" + uuid.uuid4().hex
    canary = tmp_path / "canary"
    canary.write_text(token)
    canary.chmod(0o644)
    tmp_path.chmod(0o755)
    (ws / "tests/test_walls.py").write_text(WALLS.format(canary=str(canary)))
    (ws / "tests/test_hang.py").write_text(HANG.format(token=token))
    out = tmp_path / "out"
    p = nestbox_test(ws, tmp_path / "cache", out, targets=["app/walls", "app/hang"], timeout=120)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "app/walls  PASSED" in p.stdout and "app/hang  TIMEOUT" in p.stdout
    assert "timed out after 3s in tests/test_hang.py::test_a_grandchild_hangs" in p.stdout
    assert not warm_for_limited_targets() or all(r.get("warm") for r in results(out).values()), p.stderr
    got = dict(((c, n), o) for c, n, o in cases(out / "app/walls/junit.xml"))
    assert got[("tests.test_walls", "test_host_canary_is_invisible")] == "passed"
    assert got[("tests.test_walls", "test_denied_syscalls_answer_eperm")] == "passed"
    # Nothing the test started outlives the sandbox.
    survivors = []
    for proc in Path("/proc").iterdir():
        try:
            if token.encode() in (proc / "cmdline").read_bytes():
                survivors.append(proc.name)
        except OSError:
            pass
    assert survivors == []


def without_zygote_env(**extra):
    """The environment with NESTBOX_ZYGOTE left out (tests/run may set it)."""
    env = {k: v for k, v in os.environ.items() if k != "NESTBOX_ZYGOTE"}
    env.update(extra)
    return env


def test_on_by_default_where_two_items_share_a_venv_and_seed(ws, tmp_path):
    out = tmp_path / "two"
    cache = tmp_path / "cache"
    p = run(["test", "--cache", cache, "--output", out, "-v", ws, "app/env", "app/dirty"], env=without_zygote_env())
    assert p.returncode == 0, p.stdout + p.stderr
    assert all(r.get("warm") for r in results(out).values()), p.stderr
    assert "warm interpreter: 2 of 2 targets ran warm: app/dirty, app/env\n" in p.stdout, p.stdout
    # Cache hits start no zygote, and the line has nothing to say.
    p = run(["test", "--cache", cache, "-v", ws, "app/env", "app/dirty"], env=without_zygote_env())
    assert p.returncode == 0 and p.stdout.count("(cached)") == 2, p.stdout + p.stderr
    assert "warm interpreter" not in p.stdout, p.stdout
    # One target: a cold start is faster than a zygote's, so none starts.
    out = tmp_path / "one"
    p = run(["test", "--cache", cache, "--no-cache", "--output", out, "-v", ws, "app/env"], env=without_zygote_env())
    assert p.returncode == 0, p.stdout + p.stderr
    assert not results(out)["app/env"].get("warm")
    assert "warm interpreter: 0 of 1 target ran warm (a zygote starts for two or more uncached items" in p.stdout


def test_a_run_of_hits_is_found_out_from_its_first_eight(resolve, tmp_path):
    """Prewarm resolves a venv's items before they start (they inherit it), but stops
    at its first eight hits: two misses after them run cold, two before them warm."""
    names = [f"t{i:02d}" for i in range(10)]
    files = {f"{n}/test_{n}.py": f"def test_{n}():\n    pass\n" for n in names}
    ws = make_workspace(tmp_path / "ws", resolve, files,
                        {n: {"sources": [], "tests": [f"{n}/test_{n}.py"], "source_roots": [n]} for n in names})
    cache = tmp_path / "cache"
    p = run(["test", "--cache", cache, "-j", "1", "-v", ws], env=without_zygote_env(), timeout=600)
    assert p.returncode == 0 and "warm interpreter: 10 of 10 targets ran warm" in p.stdout, p.stdout + p.stderr
    for changed, warm in ((["t08", "t09"], "0 of 2 targets ran warm"), (["t00", "t01"], "2 of 2 targets ran warm")):
        for n in changed:
            (ws / n / f"test_{n}.py").write_text(f"def test_{n}():\n    assert '{warm}'\n")
        p = run(["test", "--cache", cache, "-j", "1", "-v", ws], env=without_zygote_env(), timeout=600)
        assert p.returncode == 0 and p.stdout.count("(cached)") == 8, p.stdout + p.stderr
        assert f"warm interpreter: {warm}" in p.stdout, p.stdout


@pytest.mark.parametrize("off", [["--no-zygote"], []])
def test_no_zygote_and_nestbox_zygote_0_turn_it_off(ws, tmp_path, off):
    out = tmp_path / "out"
    env = without_zygote_env(**({} if off else {"NESTBOX_ZYGOTE": "0"}))
    p = run(["test", "--cache", tmp_path / "cache", "--no-cache", "--output", out, "-v", *off, ws, "app/env",
             "app/dirty"], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not any(r.get("warm") for r in results(out).values())
    assert "warm interpreter: off (--no-zygote or NESTBOX_ZYGOTE=0): 2 targets ran cold\n" in p.stdout, p.stdout


def test_shards_of_one_target_share_its_zygote(ws, tmp_path):
    out = tmp_path / "out"
    p = run(["test", "--cache", tmp_path / "cache", "--no-cache", "--output", out, "-v", "--shards-per-target", "2",
             ws, "app/dirty"], env=without_zygote_env())
    assert "warm interpreter: 1 of 1 target ran warm: app/dirty\n" in p.stdout, p.stdout + p.stderr
    assert len(results(out)) == 2 and all(r.get("warm") for r in results(out).values())


from test_remote import nb as remote_nb, nginx, venvs, ws as remote_ws  # noqa: E402,F401
from test_target import resolve_dir  # noqa: E402,F401  (session fixture)


def test_a_remote_hit_starts_no_zygote(nginx, remote_ws, tmp_path):  # noqa: F811
    srv = nginx()
    a = remote_nb(tmp_path / "A", remote_ws, "--remote-cache", srv.url)
    assert a.returncode == 0, a.stdout + a.stderr
    # B misses locally and hits remotely: no venv is built for a zygote.
    b = remote_nb(tmp_path / "B", remote_ws, "--remote-cache", srv.url, "--zygote")
    assert b.returncode == 0, b.stdout + b.stderr
    assert b.stdout.count("(cached)") == 3, b.stdout
    assert venvs(tmp_path / "B") == []


# A zygote is not trusted either (the venv's plugins run in it): one that answers every
# request with an error naming ECANCELED and carrying terminal escapes.
LYING_ZYGOTE = r'''
import array, os, socket
sock = socket.socket(fileno=0)
while True:
    fds = array.array("i")
    msg, anc, _, _ = sock.recvmsg(1 << 18, socket.CMSG_SPACE(5 * fds.itemsize))
    if not msg:
        break
    for level, kind, data in anc:
        fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    conn = socket.socket(fileno=fds[0])
    conn.send(b"E125\t\x1b[2K\rapp/one  FAILED forged\x1b]0;pwned\x07")
    conn.close()
    for fd in fds[1:]:
        os.close(fd)
'''


def test_a_lying_zygote_cannot_cancel_nor_print_escapes(resolve, tmp_path):
    import shutil
    from conftest import NESTBOX
    fake = tmp_path / "zygote"
    fake.mkdir()
    shutil.copy(Path(NESTBOX).parent / "python" / "zygote" / "libnestbox-zygote.so", fake)
    (fake / "zygote.py").write_text(LYING_ZYGOTE)
    ws = make_workspace(tmp_path / "ws", resolve, {"src/one.py": "", "tests/test_one.py": "def test_one():\n    pass\n"},
                        {"app/one": {"tests": ["tests/test_one.py"]}})
    out = tmp_path / "out"
    p = nestbox_test(ws, tmp_path / "cache", out, targets=["app/one"],
                     env={**os.environ, "NESTBOX_ZYGOTE_DIR": str(fake)}, timeout=300)
    # The zygote's answer is an error of the zygote, so the target ran cold: not
    # cancelled (exit 130), not forged, and nothing of the message reached the terminal.
    assert p.returncode == 0, p.stdout + p.stderr
    assert "\x1b" not in p.stdout + p.stderr and "forged" not in p.stdout + p.stderr
    r = results(out)["app/one"]
    assert r["status"] == "PASSED" and not r.get("warm")
