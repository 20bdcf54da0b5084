"""`nestbox venv`: locked virtualenvs installed by nestbox itself, checked from the host
side: what lands in the cache, what is refused, and that nothing is left behind."""
import csv
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import NESTBOX, run
from wheels import Env, evil, lock_line, make_wheel, record_hash, sha256

PYTHON = "/usr/bin/python3"


def host_pyver():
    out = subprocess.run([PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture
def env(tmp_path, nestbox):
    return Env(tmp_path)


def mypkg(env, **kw):
    return make_wheel(env.wheelhouse, "mypkg", "1.0", {
        "mypkg/__init__.py": b"X = 42\ndef main():\n    print('hello from mypkg')\n",
    }, **kw)


def test_installs_pure_wheel_and_imports(env):
    w = mypkg(env, entry_points="[console_scripts]\nmytool = mypkg:main\n[gui_scripts]\nmygui = mypkg:main\n")
    env.write_lock("# locked\n" + lock_line("mypkg", "1.0", w))
    p = env.venv()
    assert p.returncode == 0, p.stderr
    venv = Path(p.stdout.strip())
    assert venv.is_absolute() and venv.parent == (env.cache / "venvs").resolve()
    assert (venv / ".nestbox-complete").is_file()
    pyver = host_pyver()
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    assert f"home = {os.path.dirname(os.path.realpath(PYTHON))}" in cfg
    for name in ("python", "python3", f"python{pyver}"):
        assert os.readlink(venv / "bin" / name) == os.path.realpath(PYTHON)

    out = subprocess.run([str(venv / "bin" / "python"), "-B", "-c",
                          "import mypkg, sys; print(mypkg.X, sys.prefix, mypkg.__file__)"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    x, prefix, where = out.stdout.split()
    assert x == "42" and prefix == str(venv)
    assert where == str(venv / "lib" / f"python{pyver}" / "site-packages" / "mypkg" / "__init__.py")

    for script in ("mytool", "mygui"):
        text = (venv / "bin" / script).read_text()
        assert text.startswith("#!/venv/bin/python\n")
        assert "from mypkg import main" in text and "sys.exit(main())" in text
        assert os.stat(venv / "bin" / script).st_mode & 0o111

    distinfo = venv / "lib" / f"python{pyver}" / "site-packages" / "mypkg-1.0.dist-info"
    assert (distinfo / "INSTALLER").read_text() == "nestbox\n"
    rows = list(csv.reader((distinfo / "RECORD").read_text().splitlines()))
    paths = {r[0]: r for r in rows}
    assert paths["mypkg-1.0.dist-info/RECORD"] == ["mypkg-1.0.dist-info/RECORD", "", ""]
    assert "../../../bin/mytool" in paths
    for path, h, size in rows:
        if h:
            data = (distinfo.parent / path).read_bytes()
            assert h == record_hash(data) and int(size) == len(data), path

    # Read-only: no file or directory in the venv is writable.
    for root, dirs, files in os.walk(venv):
        for n in dirs + files:
            st = os.lstat(os.path.join(root, n))
            if not stat.S_ISLNK(st.st_mode):
                assert st.st_mode & 0o222 == 0, os.path.join(root, n)
    assert os.listdir(env.cache / "tmp") == []


def test_data_scripts_and_headers(env):
    w = make_wheel(env.wheelhouse, "datapkg", "2.0", {
        "datapkg.py": b"V = 2\n",
        "datapkg-2.0.data/scripts/runme": b"#!python\nprint('ran')\n",
        "datapkg-2.0.data/scripts/plain.sh": b"#!/bin/sh\necho plain\n",
        "datapkg-2.0.data/purelib/extra_mod.py": b"E = 1\n",
        "datapkg-2.0.data/headers/datapkg.h": b"int x;\n",
        "datapkg-2.0.data/data/share/datapkg/file.txt": b"data\n",
    })
    env.write_lock(lock_line("datapkg", "2.0", w))
    p = env.venv()
    assert p.returncode == 0, p.stderr
    venv = Path(p.stdout.strip())
    pyver = host_pyver()
    assert (venv / "bin" / "runme").read_text() == "#!/venv/bin/python\nprint('ran')\n"
    assert os.stat(venv / "bin" / "runme").st_mode & 0o111
    assert (venv / "bin" / "plain.sh").read_text().startswith("#!/bin/sh\n")
    assert (venv / "lib" / f"python{pyver}" / "site-packages" / "extra_mod.py").exists()
    assert (venv / "include" / "site" / f"python{pyver}" / "datapkg" / "datapkg.h").exists()
    assert (venv / "share" / "datapkg" / "file.txt").read_text() == "data\n"
    out = subprocess.run([str(venv / "bin" / "python"), "-B", "-c", "import datapkg, extra_mod"], capture_output=True)
    assert out.returncode == 0, out.stderr


def test_picks_compatible_wheel(env):
    """A wheel for another interpreter or platform is never chosen; manylinux is."""
    pyver = host_pyver().replace(".", "")
    make_wheel(env.wheelhouse, "multi", "1.0", {"multi/__init__.py": b"WHICH = 'win'\n"}, tag=f"cp{pyver}-cp{pyver}-win_amd64")
    make_wheel(env.wheelhouse, "multi", "1.0", {"multi/__init__.py": b"WHICH = 'py2'\n"}, tag="py2-none-any")
    good = make_wheel(env.wheelhouse, "multi", "1.0", {"multi/__init__.py": b"WHICH = 'manylinux'\n"},
                      tag=f"cp{pyver}-cp{pyver}-manylinux_2_17_x86_64.manylinux2014_x86_64")
    hashes = " ".join(f"--hash=sha256:{sha256(w)}" for w in env.wheelhouse.iterdir())
    env.write_lock(f"Multi==1.0 {hashes}\n")
    p = env.venv()
    if os.uname().machine != "x86_64":
        pytest.skip("the manylinux wheel here is x86_64")
    assert p.returncode == 0, p.stderr
    venv = Path(p.stdout.strip())
    out = subprocess.run([str(venv / "bin" / "python"), "-B", "-c", "import multi; print(multi.WHICH)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "manylinux", (out.stderr, good)


def test_wrong_hash_is_refused(env):
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", digest="ab" * 32))
    p = env.venv()
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    line = p.stderr.strip()
    assert "\n" not in line
    assert line == (f"nestbox: mypkg==1.0: {w.name}: sha256 mismatch: lock says {'ab' * 32}, "
                    f"file is {sha256(w)}")
    env.assert_nothing_left()


def test_missing_wheel_is_refused(env):
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", w) + lock_line("pytest", "7.2.1", digest="cd" * 32))
    p = env.venv()
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"nestbox: pytest==7.2.1: no wheel in {env.wheelhouse} matches "
                               "(wanted pytest-7.2.1-*.whl for cp"), p.stderr
    env.assert_nothing_left()


def test_bad_lockfile_names_the_line(env):
    env.write_lock("# x\n\npytest>=7 --hash=sha256:" + "ab" * 32 + "\n")
    p = env.venv()
    assert p.returncode == 2
    assert p.stderr == f"nestbox: lockfile {env.lock}:3: pytest is not pinned: use pytest==VERSION\n"
    env.write_lock("pytest==7.2.1\n")
    p = env.venv()
    assert p.returncode == 2
    assert f"lockfile {env.lock}:1: pytest==7.2.1 has no --hash=sha256" in p.stderr
    env.assert_nothing_left()


def test_unsupported_marker_is_refused(env):
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", w, marker='extra == "test"'))
    p = env.venv()
    assert p.returncode == 2
    assert p.stderr.startswith(f"nestbox: lockfile {env.lock}:1: mypkg==1.0: marker")
    assert "'extra' is not supported" in p.stderr
    env.assert_nothing_left()


def test_false_marker_skips_requirement(env):
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", w, marker="python_version >= '3'")
                   + lock_line("winonly", "1.0", digest="ab" * 32, marker="sys_platform == 'win32'"))
    p = env.venv()
    assert p.returncode == 0, p.stderr
    venv = Path(p.stdout.strip())
    assert not list(venv.glob("lib/*/site-packages/winonly*"))
    assert list(venv.glob("lib/*/site-packages/mypkg"))


def test_dotdot_entry_is_refused(env):
    w = evil(env, "evil", [(zipfile.ZipInfo("../../etc/x"), b"pwned\n")])
    before = set(os.listdir(env.tmp))
    p = env.venv()
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"nestbox: {w.name}: entry ../../etc/x escapes the venv\n"
    env.assert_nothing_left()
    assert set(os.listdir(env.tmp)) == before | {"cache"}
    assert not (env.cache / "etc").exists() and not Path("/etc/x").exists()


def test_inner_dotdot_entry_is_refused(env):
    w = evil(env, "evil", [(zipfile.ZipInfo("evil/../../../../x"), b"pwned\n")])
    p = env.venv()
    assert p.returncode == 2
    assert p.stderr == f"nestbox: {w.name}: entry evil/../../../../x escapes the venv\n"
    env.assert_nothing_left()


def test_absolute_entry_is_refused(env):
    target = env.tmp / "absolute-target"
    w = evil(env, "evil", [(zipfile.ZipInfo(str(target)), b"pwned\n")])
    p = env.venv()
    assert p.returncode == 2
    assert p.stderr == f"nestbox: {w.name}: entry {target} escapes the venv\n"
    assert not target.exists()
    env.assert_nothing_left()


def test_symlink_entry_is_refused(env):
    info = zipfile.ZipInfo("evil/link")
    info.create_system = 3  # Unix, so the mode in external_attr counts
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    w = evil(env, "evil", [(info, b"/etc/passwd")])
    p = env.venv()
    assert p.returncode == 2
    assert p.stderr == f"nestbox: {w.name}: entry evil/link is a symlink; wheels may only hold files\n"
    env.assert_nothing_left()


def test_device_entry_is_refused(env):
    info = zipfile.ZipInfo("evil/dev")
    info.create_system = 3
    info.external_attr = (stat.S_IFCHR | 0o666) << 16
    w = evil(env, "evil", [(info, b"")])
    p = env.venv()
    assert p.returncode == 2
    assert f"{w.name}: entry evil/dev is a device or special file" in p.stderr
    env.assert_nothing_left()


def test_not_a_wheel_is_refused(env):
    path = env.wheelhouse / "broken-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("broken/__init__.py", b"")
    env.write_lock(lock_line("broken", "1.0", path))
    p = env.venv()
    assert p.returncode == 2
    assert "needs METADATA, WHEEL and RECORD" in p.stderr
    path.write_bytes(b"not a zip at all")
    env.write_lock(lock_line("broken", "1.0", path))
    p = env.venv()
    assert p.returncode == 2, p.stderr
    env.assert_nothing_left()


def test_second_call_reuses_the_venv(env):
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", w))
    p1 = env.venv()
    assert p1.returncode == 0, p1.stderr
    venv = Path(p1.stdout.strip())
    st1 = os.stat(venv)
    init = next(venv.glob("lib/*/site-packages/mypkg/__init__.py"))
    ino1 = os.stat(init).st_ino
    p2 = env.venv()
    assert p2.returncode == 0 and p2.stdout == p1.stdout
    st2 = os.stat(venv)
    assert (st1.st_ino, st1.st_mtime_ns, st1.st_ctime_ns) == (st2.st_ino, st2.st_mtime_ns, st2.st_ctime_ns)
    assert os.stat(init).st_ino == ino1
    assert env.cache_entries() == {"venvs": [venv.name], "tmp": []}
    # Reordering the lockfile and adding comments keeps the digest.
    env.write_lock("# reordered\n\n" + lock_line("mypkg", "1.0", w))
    assert env.venv().stdout == p1.stdout


def test_different_inputs_different_venv(env):
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", w))
    p1 = env.venv()
    w2 = make_wheel(env.wheelhouse, "other", "0.1", {"other.py": b""})
    env.write_lock(lock_line("mypkg", "1.0", w) + lock_line("other", "0.1", w2))
    p2 = env.venv()
    assert p1.returncode == p2.returncode == 0
    assert p1.stdout != p2.stdout


def test_incomplete_entry_is_rebuilt(env):
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", w))
    venv = Path(env.venv().stdout.strip())
    os.chmod(venv, 0o755)
    os.unlink(venv / ".nestbox-complete")
    p = env.venv()
    assert p.returncode == 0, p.stderr
    assert (venv / ".nestbox-complete").is_file()


def test_concurrent_builds_agree(env):
    wheels = [make_wheel(env.wheelhouse, f"pkg{i}", "1.0", {f"pkg{i}/__init__.py": b"x = 1\n" * 1000})
              for i in range(8)]
    env.write_lock("".join(lock_line(f"pkg{i}", "1.0", w) for i, w in enumerate(wheels)))
    cmd = [str(NESTBOX), "venv", "--lock", str(env.lock), "--wheelhouse", str(env.wheelhouse),
           "--python", PYTHON, "--cache", str(env.cache)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), results
    assert len({out for _, out, _ in results}) == 1
    assert env.cache_entries() == {"venvs": [Path(results[0][1].strip()).name], "tmp": []}


def test_unwritable_cache_is_infra_error(env, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", w))
    env.cache.mkdir()
    for d in ("cas", "ac", "venvs", "trees", "tmp"):
        (env.cache / d).mkdir()
    os.chmod(env.cache / "tmp", 0o555)
    try:
        p = env.venv()
    finally:
        os.chmod(env.cache / "tmp", 0o755)
    assert p.returncode == 3, p.stderr


def test_a_file_size_limit_in_the_venv_is_the_machines_error(env):
    """The private copy of a wheel is written into the venv being built, nestbox's own
    folder: a write refused there (here EFBIG, a file size limit with SIGXFSZ ignored,
    as a CI runner may set one) is the machine's failure, exit 3, not the workspace's."""
    import resource
    import signal
    w = make_wheel(env.wheelhouse, "bigpkg", "1.0", {"bigpkg/__init__.py": b"", "bigpkg/blob.bin": os.urandom(1 << 20)})
    env.write_lock(lock_line("bigpkg", "1.0", w))
    limit = 256 << 10

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = env.venv(preexec_fn=limited, restore_signals=False)
    assert p.returncode == 3, p.stderr
    assert p.stderr.startswith("nestbox: ") and "File too large" in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1, p.stderr
    env.assert_nothing_left()
    p = env.venv()
    assert p.returncode == 0, p.stderr


def test_cache_is_a_file_is_infra_error(env):
    w = mypkg(env)
    env.write_lock(lock_line("mypkg", "1.0", w))
    env.cache.write_text("not a directory")
    p = env.venv()
    assert p.returncode == 3, p.stderr
    assert p.stderr.startswith("nestbox: ")


def test_usage(env):
    p = run(["venv", "--help"])
    assert p.returncode == 0 and p.stdout.startswith("usage: nestbox venv")
    p = run(["venv", "--lock", env.lock])
    assert p.returncode == 2 and p.stderr.startswith("nestbox: venv: --lock and --wheelhouse are required")
    p = run(["venv", "--bogus"])
    assert p.returncode == 2
    p = env.venv()  # the lockfile does not exist
    assert p.returncode == 2 and p.stderr == f"nestbox: lockfile {env.lock}: No such file or directory\n"
    env.write_lock("")
    p = run(["venv", "--lock", env.lock, "--wheelhouse", env.tmp / "nope", "--cache", env.cache])
    assert p.returncode == 2 and "wheelhouse" in p.stderr
    p = run(["venv", "--lock", env.lock, "--wheelhouse", env.wheelhouse, "--python", env.tmp / "nopython",
             "--cache", env.cache])
    assert p.returncode == 2 and "python" in p.stderr


def test_empty_lockfile_gives_bare_venv(env):
    env.write_lock("# nothing\n")
    p = env.venv()
    assert p.returncode == 0, p.stderr
    venv = Path(p.stdout.strip())
    out = subprocess.run([str(venv / "bin" / "python"), "-B", "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "True"
