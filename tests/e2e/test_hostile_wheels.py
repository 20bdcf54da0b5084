"""Wheels pinned by a lockfile are the workspace's, and the workspace is not trusted:
what a hostile wheel does is the wheel's error (exit 2) with a message that names the
wheel and no temporary path, and it never leaves anything in the cache."""
import pytest

from wheels import Env, lock_line, make_wheel, wheel_of_zeros


@pytest.fixture
def env(tmp_path, nestbox):
    return Env(tmp_path)


def install(env, files, **kw):
    w = make_wheel(env.wheelhouse, "bad", "1.0", {"bad/__init__.py": b"", **files}, **kw)
    env.write_lock(lock_line("bad", "1.0", w))
    return env.venv()


def assert_input_error(env, p, *words):
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.startswith("nestbox: ") and p.stderr.count("\n") == 1, p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
    assert str(env.cache) not in p.stderr and "tmp/venv" not in p.stderr, p.stderr
    env.assert_nothing_left()


@pytest.mark.parametrize("planted", ["./pyvenv.cfg", ".//pyvenv.cfg", "./.nestbox-complete", "././.nestbox-x"])
def test_data_entry_planting_the_venvs_own_files(env, planted):
    p = install(env, {f"bad-1.0.data/data/{planted}": b"home = /tmp/evil\n"})
    assert_input_error(env, p, "bad-1.0-py3-none-any.whl: entry bad-1.0.data/data/", "would replace the venv's")


def test_entry_name_over_255_bytes(env):
    p = install(env, {"bad/" + "a" * 300 + ".py": b""})
    assert_input_error(env, p, "bad-1.0-py3-none-any.whl: entry bad/aaaa", "a name of 303 bytes, more than the 255")


def test_zip_bomb_is_refused_before_it_is_written(env, tmp_path):
    w = wheel_of_zeros(env, "bomb", 300)
    env.write_lock(lock_line("bomb", "1.0", w))
    p = env.venv()
    assert_input_error(env, p, "bomb-1.0-py3-none-any.whl: unpacks to more than 268435456 bytes",
                       "refusing what looks like a zip bomb")


def test_entry_lying_about_its_size_is_cut_at_the_cap(env):
    # The central directory says 1 KiB; the data inflates to 300 MiB.
    w = wheel_of_zeros(env, "liar", 300)
    data = bytearray(w.read_bytes())
    # The last central directory entry's uncompressed size.
    cd = data.rfind(b"PK\x01\x02")
    assert int.from_bytes(data[cd + 24:cd + 28], "little") == 300 << 20
    data[cd + 24:cd + 28] = (1024).to_bytes(4, "little")
    w.write_bytes(bytes(data))
    env.write_lock(lock_line("liar", "1.0", w))
    p = env.venv()
    assert p.returncode == 2, p.stdout + p.stderr
    env.assert_nothing_left()
