"""The command line as a newcomer uses it (issue 15): options anywhere, `--` pytest
arguments, the workspace found by walking up, target selection, `list`, `help`."""
import errno
import json
import os
import resource
import subprocess

import pytest

from conftest import NESTBOX, preloaded_env, run
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace

FILES = {
    **PASSING,
    "tests/test_money.py": "def test_money():\n    pass\n\ndef test_coins():\n    pass\n",
}
TARGETS = {
    "app/tests": {},
    "project1/tests": {},
    "project1/slow": {},
    "project2/tests": {},
}


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    return make_workspace(tmp_path / "ws", resolve_dir, FILES, TARGETS)


def faulty_env(suffix, code=errno.EIO, on="read"):
    """nestbox under tests/faults/eio.c: `on` (read or open) of the file whose path ends
    in suffix fails with code."""
    return preloaded_env("eio", NESTBOX_FAULT_SUFFIX=suffix, NESTBOX_FAULT_ERRNO=str(code), NESTBOX_FAULT_ON=on)


def in_dir(cwd, *args):
    return subprocess.run([str(NESTBOX), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_options_after_the_workspace_and_targets(tmp_path, ws, cache):
    out = tmp_path / "out"
    p = run(["test", ws, "app/tests", "--output", out, "--cache", cache])
    assert p.returncode == 0, p.stdout + p.stderr
    assert (out / "app/tests/junit.xml").exists()


def test_pytest_args_after_dashdash_are_part_of_the_action(tmp_path, ws, cache):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/tests", "--", "-k", "money or coins", "-x"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(2 tests)" in p.stdout
    result = json.loads((out / "app/tests/result.json").read_text())
    # Another selection is another action: not a replay of the first.
    p = run(["test", "--cache", cache, ws, "app/tests", "--", "-k", "coins"])
    assert "(1 tests)" in p.stdout and "(cached)" not in p.stdout, p.stdout
    p = run(["test", "--cache", cache, ws, "app/tests", "--", "-k", "money or coins", "-x"])
    assert "(2 tests) (cached)" in p.stdout, p.stdout
    a = json.loads(run(["actions", ws, "app/tests", "--", "-k", "money"]).stdout)
    assert a["pytest_args"][-2:] == ["-k", "money"]
    assert result["action"] != a.get("digest")


def test_the_workspace_is_found_by_walking_up(ws, cache):
    p = in_dir(ws / "src/app", "test", "--cache", cache, "app/tests")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "app/tests  PASSED" in p.stdout


def test_a_directory_without_nestbox_json_is_named_as_such(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    p = in_dir(tmp_path, "test", "--cache", cache, "empty")
    assert p.returncode == 2
    assert p.stderr == "nestbox: empty: not a workspace (no nestbox.json in it)\n"
    p = in_dir(tmp_path, "test", "--cache", cache)
    assert p.returncode == 2 and "no nestbox.json in the current directory or any parent" in p.stderr


def test_an_unknown_target_gets_a_did_you_mean(ws, cache):
    p = run(["test", "--cache", cache, ws, "project1/test"])
    assert p.returncode == 2
    assert 'no target "project1/test" (did you mean "project1/tests"?' in p.stderr, p.stderr


def test_prefix_and_glob_select_several_and_a_target_runs_once(ws, cache):
    p = run(["list", ws, "project1/..."])
    assert p.returncode == 0 and p.stdout == "project1/slow\nproject1/tests\n", p.stdout
    p = run(["list", ws, "project*/tests"])
    assert p.stdout == "project1/tests\nproject2/tests\n", p.stdout
    assert run(["list", ws]).stdout == "app/tests\nproject1/slow\nproject1/tests\nproject2/tests\n"
    p = run(["test", "--cache", cache, ws, "app/tests", "app/tests", "a*/tests"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("app/tests  PASSED") == 1 and "(4 tests)" in p.stdout, p.stdout
    assert p.stdout.splitlines()[-1].startswith("1 target: 1 passed")
    p = run(["list", ws, "nomatch*"])
    assert p.returncode == 2 and 'no target matches "nomatch*"' in p.stderr


def test_timeout_and_memory_override_the_policy(tmp_path, resolve_dir, cache):  # noqa: F811
    files = dict(PASSING)
    files["tests/test_slow.py"] = "import time\n\ndef test_sleep():\n    time.sleep(600)\n"
    ws = make_workspace(tmp_path / "ws", resolve_dir, files)
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "--timeout", "2", "--memory", "700M"])
    assert p.returncode == 4, p.stdout + p.stderr
    assert "timed out after 2s" in p.stdout
    limits = json.loads((out / "app/tests/result.json").read_text())["limits"]
    assert limits["timeout"] == 2 and limits["memory"] == 700 << 20
    for bad in (["--timeout", "0"], ["--timeout", "x"], ["--memory", "lots"]):
        p = run(["test", "--cache", cache, ws, *bad])
        assert p.returncode == 2 and p.stderr.startswith("nestbox: " + bad[0]), p.stderr


def test_help_verb_prints_the_manual():
    p = run(["help", "test"])
    assert p.returncode == 0 and p.stdout == run(["test", "--help"]).stdout
    assert p.stdout.startswith("usage: nestbox test")
    assert run(["help", "list"]).stdout.startswith("usage: nestbox list")
    p = run(["help", "nope"])
    assert p.returncode == 2 and "'nope' is not a nestbox command" in p.stderr


# ---- minor items of the command line (issue 15) ------------------------------------

def test_sandbox_result_ends_with_a_newline(tmp_path):
    from conftest import sandbox
    r = tmp_path / "r.json"
    p = sandbox("/bin/true", opts=["--result", r])
    assert p.returncode == 0, p.stderr
    text = r.read_text()
    assert text.endswith("}\n") and json.loads(text)["exit_code"] == 0


def test_sandbox_result_in_a_missing_directory_is_a_usage_error():
    from conftest import sandbox
    p = sandbox("/bin/true", opts=["--result", "/nonexistent/r.json"])
    assert p.returncode == 2
    assert p.stderr == "nestbox: --result /nonexistent/r.json: No such file or directory\n"


def test_sandbox_bad_chdir_and_tmpfs_are_usage_errors():
    from conftest import sandbox
    p = sandbox("/bin/true", opts=["--chdir", "/nope"])
    assert p.returncode == 2 and "--chdir /nope" in p.stderr, p.stderr
    p = sandbox("/bin/true", opts=["--tmpfs", "/t:abc"])
    assert p.returncode == 2 and "--tmpfs /t:abc:" in p.stderr, p.stderr


def test_allow_syscall_points_at_doctor_syscalls():
    from conftest import sandbox
    p = sandbox("/bin/true", opts=["--allow-syscall", "read"])
    assert p.returncode == 2 and "nestbox doctor --syscalls" in p.stderr, p.stderr


def test_a_seed_beyond_int64_is_refused(ws, cache):
    p = run(["test", "--cache", cache, ws, "--seed", "18446744073709551615"])
    assert p.returncode == 2 and "--seed 18446744073709551615: expected an integer" in p.stderr


def test_output_holds_only_this_runs_files(tmp_path, ws, cache):
    out = tmp_path / "out"
    p = run(["test", "--cache", cache, "--output", out, ws, "app/tests"])
    assert p.returncode == 0, p.stdout + p.stderr
    (out / "app/tests/undeclared").mkdir(exist_ok=True)
    (out / "app/tests/undeclared/screenshot.png").write_text("from a failed run")
    (out / "app/tests/coverage.xml").write_text("old")
    p = run(["test", "--cache", cache, "--output", out, ws, "app/tests"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert not (out / "app/tests/undeclared/screenshot.png").exists()
    assert not (out / "app/tests/coverage.xml").exists()
    assert (out / "app/tests/junit.xml").exists()


def test_symlinked_home_and_output_prefixes_are_followed(tmp_path, ws):
    real = tmp_path / "var/home/me"
    real.mkdir(parents=True)
    (tmp_path / "home").symlink_to("var/home")
    env = {k: v for k, v in __import__("os").environ.items() if k != "XDG_CACHE_HOME"}
    env["HOME"] = str(tmp_path / "home/me")
    out = tmp_path / "home/me/out/run1"
    p = run(["test", "--output", out, ws, "app/tests"], env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (real / ".cache/nestbox/ac").is_dir()
    assert (real / "out/run1/app/tests/junit.xml").exists()
    # Beneath the output root a link is still refused, never followed.
    (real / "out/run2").mkdir()
    (real / "out/run2/app").symlink_to(tmp_path)
    p = run(["test", "--output", tmp_path / "home/me/out/run2", ws, "app/tests"], env=env)
    assert p.returncode == 3 and not (tmp_path / "tests").exists()
    assert "nestbox: --output: app is a symbolic link" in p.stderr, p.stderr


@pytest.mark.parametrize("code", [errno.EIO, errno.EMFILE], ids=["EIO", "EMFILE"])
def test_a_failed_read_of_nestbox_json_is_the_machines_error(ws, cache, code):
    """The file may be fine: a read the disk (or a full descriptor table) refused is
    the machine's failure, exit 3, not the workspace's."""
    p = run(["test", "--cache", cache, ws, "app/tests"], env=faulty_env("/ws/nestbox.json", code))
    assert p.returncode == 3, p.stdout + p.stderr
    assert p.stderr == f"nestbox: {ws}/nestbox.json: {os.strerror(code)}\n", p.stderr
    # The shim fails that file alone; a nestbox.json that is not JSON is still the workspace's.
    p = run(["list", ws], env=faulty_env("/ws/elsewhere.json", code))
    assert p.returncode == 0, p.stdout + p.stderr
    (ws / "nestbox.json").write_text("{")
    p = run(["list", ws], env=faulty_env("/ws/elsewhere.json", code))
    assert p.returncode == 2 and "invalid JSON" in p.stderr, p.stdout + p.stderr


def test_out_of_descriptors_for_nestbox_json_is_the_machines_error(ws, cache):
    """`ulimit -n 4`: stdin, stdout, stderr and the workspace's directory; nestbox.json
    itself gets no descriptor."""
    def few_descriptors():
        resource.setrlimit(resource.RLIMIT_NOFILE, (4, 4))

    p = run(["test", "--cache", cache, ws, "app/tests"], preexec_fn=few_descriptors)
    assert p.returncode == 3, p.stdout + p.stderr
    assert p.stderr == f"nestbox: {ws}/nestbox.json: {os.strerror(errno.EMFILE)}\n", p.stderr
