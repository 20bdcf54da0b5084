"""The learned durations record (cache/durations.c), written after every target that
ran: a hint, so it is replaced without fsync (1-3 ms a target), and one a crash left
empty or torn is taken for no durations and written whole again by the next run."""
import json
import re
import subprocess

import pytest

from conftest import NESTBOX, have, run, traced_env
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace


def learned(cache):
    files = sorted((cache / "durations").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


@pytest.mark.parametrize("torn", ["", '{"schema": "nestbox.durations/v1", "tes'])
def test_a_torn_record_is_no_durations_and_is_written_again(tmp_path, resolve_dir, torn):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    cache = tmp_path / "cache"
    first = run(["test", "--cache", cache, ws])
    assert first.returncode == 0, first.stdout + first.stderr
    path = learned(cache)
    whole = json.loads(path.read_text())
    assert whole["tests"], whole
    path.write_text(torn)  # what a power cut between the rename and the flush can leave
    again = run(["test", "--cache", cache, "--force", ws])
    assert again.returncode == 0 and "warning" not in again.stderr, again.stdout + again.stderr
    assert json.loads(learned(cache).read_text())["tests"].keys() == whole["tests"].keys()


@pytest.mark.skipif(not have("strace"), reason="needs strace")
def test_the_record_is_replaced_without_fsync(tmp_path, resolve_dir):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    cache = tmp_path / "cache"
    log = tmp_path / "strace"
    p = subprocess.run(["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,renameat,renameat2", "-o", str(log),
                        str(NESTBOX), "test", "--cache", str(cache), str(ws)], capture_output=True, text=True,
                       timeout=300, env=traced_env())
    assert p.returncode == 0, p.stdout + p.stderr
    text = log.read_text()
    name = learned(cache).name
    assert re.search(rf"rename\w*\(.*durations.*{name}", text), text  # it was written here
    assert not re.search(r"f(data)?sync\(\d+<[^>]*/durations[/>]", text), text
