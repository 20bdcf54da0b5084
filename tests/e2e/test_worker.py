"""`nestbox worker`: Bazel's JSON worker protocol, one long-lived process serving many
actions (singleplex in order, multiplexed up to -j), malformed requests answered with
exit code 2 without stopping the worker, EOF finishing the outstanding work."""
import json
import os
import queue
import subprocess
import threading

import pytest

from conftest import NESTBOX
from test_action import EXAMPLE_TARGETS, RESULT_SCHEMA, assert_valid, examples, nb_actions  # noqa: F401
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import make_workspace


class Worker:
    """One `nestbox worker` process; responses are read by a thread as they come."""

    def __init__(self, cache, *opts, env=None, prefix=()):
        self.proc = subprocess.Popen([*prefix, str(NESTBOX), "worker", "--cache", str(cache), *opts],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, env=env)
        self.responses = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.responses.put(line)
        self.responses.put(None)

    def send(self, request):
        self.proc.stdin.write((request if isinstance(request, str) else json.dumps(request)) + "\n")
        self.proc.stdin.flush()

    def response(self, timeout=300):
        """The next response, parsed; proto3 JSON may leave out fields at their default."""
        line = self.responses.get(timeout=timeout)
        assert line is not None, f"worker closed stdout; stderr: {''.join(self.stderr)}"
        return self.parse(line)

    def close(self, timeout=300):
        """EOF on stdin; every response left, then the exit status."""
        self.proc.stdin.close()
        rest = []
        while (line := self.responses.get(timeout=timeout)) is not None:
            rest.append(line)
        return [self.parse(x) for x in rest], self.proc.wait(timeout=timeout)

    @staticmethod
    def parse(line):
        r = json.loads(line)
        assert isinstance(r, dict) and set(r) <= {"exitCode", "output", "requestId", "wasCancelled"}, line
        return {"exitCode": r.get("exitCode", 0), "output": r.get("output", ""), "requestId": r.get("requestId", 0)}

    def alive(self):
        """Still the same process: running, and still nestbox worker."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        cmdline = open(f"/proc/{self.proc.pid}/cmdline").read().split("\0")
        return self.proc.poll() is None and state != "Z" and "worker" in cmdline

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def worker_factory(tmp_path):
    started = []

    def start(*opts, env=None):
        w = Worker(tmp_path / "cache", *opts, env=env)
        started.append(w)
        return w
    yield start
    for w in started:
        w.kill()


@pytest.fixture(scope="module")
def example_actions(examples):  # noqa: F811
    return {a["target"]: a for a in nb_actions(examples)}


def request(args, rid, inputs=True):
    r = {"arguments": args, "requestId": rid}
    if inputs:
        r["inputs"] = [{"path": "nestbox.json", "digest": "ab12"}]
    return r


def result_of(response, target):
    assert response["exitCode"] == 0, response
    r = json.loads(response["output"])
    assert_valid(RESULT_SCHEMA, r)
    assert r["target"] == target and r["status"] == "PASSED", r
    return r


# Malformed requests: (what is sent, whether its requestId can be read, a word the
# response must contain); {id} is replaced with the requestId.
def malformed(example_actions, tmp_path):
    bad_action = json.loads(json.dumps(example_actions["lib/tests"]))
    bad_action.setdefault("policy", {})["memory"] = "lots"
    return [
        ("this is not json", False, "json"),
        ("[1, 2, 3]", False, "object"),
        ('{"arguments": "run lib/tests", "requestId": {id}}', True, "arguments"),
        ('{"arguments": [1, 2], "requestId": {id}}', True, "arguments"),
        (json.dumps({"arguments": ["--bogus", "x.json"], "requestId": "{id}"}), True, "--bogus"),
        (json.dumps({"arguments": ["--action-json", json.dumps(bad_action)], "requestId": "{id}"}),
         True, ".policy.memory"),
        (json.dumps({"arguments": [str(tmp_path / "no-such-action.json")], "requestId": "{id}"}),
         True, "no-such-action.json"),
        (json.dumps({"arguments": [], "requestId": "{id}"}), True, "nestbox"),
    ]


def fill(text, rid):
    return text.replace('"{id}"', str(rid)).replace("{id}", str(rid))


def test_two_hundred_multiplexed_requests_in_one_process(worker_factory, example_actions, tmp_path):
    files = {}
    for t, a in example_actions.items():
        files[t] = tmp_path / (t.replace("/", "_") + ".json")
        files[t].write_text(json.dumps(a))
    w = worker_factory("-j", "2")
    pid = w.proc.pid
    # A first round, awaited, so that everything after it is a cache hit.
    digests = {}
    for rid, t in enumerate(EXAMPLE_TARGETS, start=1):
        w.send(request([str(files[t])], rid))
    for _ in EXAMPLE_TARGETS:
        resp = w.response()
        t = EXAMPLE_TARGETS[resp["requestId"] - 1]
        digests[t] = result_of(resp, t)["action"]
    assert w.alive()

    bad = malformed(example_actions, tmp_path)
    expected = {}  # requestId -> (exitCode, target or a word the output names)
    unreadable = []
    for rid in range(4, 201):
        if rid % 9 == 0:
            text, readable, word = bad[(rid // 9) % len(bad)]
            w.send(fill(text, rid))
            if readable:
                expected[rid] = (2, word)
            else:
                unreadable.append(word)
            continue
        t = EXAMPLE_TARGETS[rid % 3]
        inline = rid % 2 == 0
        args = ["--action-json", json.dumps(example_actions[t])] if inline else [str(files[t])]
        w.send(request(args, rid, inputs=rid % 4 != 1))
        expected[rid] = (0, t)
    assert len(expected) + len(unreadable) == 197
    assert w.alive() and w.proc.pid == pid
    responses, status = w.close()  # EOF right away: the worker still answers everything sent

    assert status == 0, "".join(w.stderr)
    seen = [r["requestId"] for r in responses if r["requestId"] != 0]
    assert sorted(seen) == sorted(expected), "every requestId answered exactly once"
    zero = [r for r in responses if r["requestId"] == 0]
    assert len(zero) == len(unreadable)
    for r in zero:
        assert r["exitCode"] == 2 and r["output"].startswith("nestbox: "), r
    for r in responses:
        if r["requestId"] == 0:
            continue
        code, what = expected[r["requestId"]]
        assert r["exitCode"] == code, (r, what)
        if code == 0:
            result = result_of(r, what)
            assert result["cached"] is True and result["action"] == digests[what]
        else:
            assert r["output"].startswith("nestbox: ") and "\n" not in r["output"].strip(), r
            assert what.lower() in r["output"].lower(), (r, what)
    # Unreadable requests are answered too; each names what is wrong.
    for word in unreadable:
        assert any(word in r["output"].lower() for r in zero), (word, zero)


def test_singleplex_requests_are_answered_in_order(worker_factory, example_actions, tmp_path):
    w = worker_factory("--persistent_worker")
    pid = w.proc.pid
    order = EXAMPLE_TARGETS * 3
    for i, t in enumerate(order):
        if i == 4:
            w.send({"arguments": ["--no-such-option"], "requestId": 0})
        req = request(["--action-json", json.dumps(example_actions[t])], 0)
        if i % 2:
            del req["requestId"]  # proto3 JSON, as Bazel writes it, leaves out the default 0
        w.send(req)
    got = [w.response() for _ in range(len(order) + 1)]
    assert w.alive() and w.proc.pid == pid
    responses, status = w.close()
    assert responses == [] and status == 0, "".join(w.stderr)
    assert all(r["requestId"] == 0 for r in got)
    assert got[4]["exitCode"] == 2 and "--no-such-option" in got[4]["output"], got[4]
    del got[4]
    for i, (t, r) in enumerate(zip(order, got)):
        result = result_of(r, t)  # in the order sent
        assert result.get("cached", False) == (i >= 3), (i, t, result.get("cached"))


def test_a_failing_target_and_per_request_options(worker_factory, example_actions, tmp_path, resolve_dir):  # noqa: F811
    files = dict(PASSING)
    files["tests/test_bad.py"] = "def test_wrong():\n    assert 41 == 42\n"
    [failing] = nb_actions(make_workspace(tmp_path / "ws", resolve_dir, files))
    out = tmp_path / "out"
    w = worker_factory("-j", "2")
    w.send(request(["--action-json", json.dumps(failing)], 7))
    w.send(request(["--output", str(out), "--action-json", json.dumps(example_actions["project2/tests"])], 8))
    got = {r["requestId"]: r for r in (w.response(), w.response())}
    responses, status = w.close()
    assert responses == [] and status == 0, "".join(w.stderr)
    assert got[7]["exitCode"] == 1, got[7]
    r7 = json.loads(got[7]["output"])
    assert_valid(RESULT_SCHEMA, r7)
    assert r7["status"] == "FAILED" and r7["failures"] == 1
    r8 = result_of(got[8], "project2/tests")
    for key in ("dir", "junit", "log"):
        assert os.path.exists(r8["outputs"][key]) and r8["outputs"][key].startswith(str(out)), r8["outputs"]


def test_eof_with_nothing_sent_exits_zero(worker_factory):
    w = worker_factory()
    responses, status = w.close()
    assert responses == [] and status == 0, "".join(w.stderr)


def zygote_pids(root):
    """The warm interpreters (python running zygote.py) among root's descendants."""
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for c in children.get(pid, []):
            todo.append(c)
            try:
                if "/.zygote/zygote.py" in open(f"/proc/{c}/cmdline").read():
                    found.append(c)
            except OSError:
                pass
    return found


def run_singleplex(w, action, *opts):
    w.send(request([*opts, "--no-cache", "--action-json", json.dumps(action)], 0))
    return json.loads(w.response()["output"])


def test_the_worker_keeps_a_warm_interpreter_and_drops_a_dead_one(worker_factory, example_actions):
    """On by default: the first action of a venv runs cold and starts its zygote, the
    next ones are forked from it; one that died is dropped (its action runs cold, the
    right answer all the same), started again, and serves the actions after. The
    default is what is tested: NESTBOX_ZYGOTE (tests/run may set it) is left out."""
    w = worker_factory(env={k: v for k, v in os.environ.items() if k != "NESTBOX_ZYGOTE"})
    targets = ["lib/tests", "project1/tests", "project2/tests", "lib/tests"]
    results = [run_singleplex(w, example_actions[t]) for t in targets]
    assert [r["status"] for r in results] == ["PASSED"] * 4, results
    assert [r.get("warm", False) for r in results] == [False, True, True, True], results
    [z] = zygote_pids(w.proc.pid)
    os.kill(z, 9)
    after = [run_singleplex(w, example_actions[t]) for t in ("project2/tests", "project1/tests")]
    assert [r["status"] for r in after] == ["PASSED"] * 2, after
    assert [r.get("warm", False) for r in after] == [False, True], after
    assert len(zygote_pids(w.proc.pid)) == 1
    responses, status = w.close()
    assert responses == [] and status == 0, "".join(w.stderr)
    assert zygote_pids(w.proc.pid) == []


def test_the_worker_with_no_zygote_runs_every_action_cold(worker_factory, example_actions):
    w = worker_factory("--no-zygote")
    results = [run_singleplex(w, example_actions[t]) for t in ("lib/tests", "project1/tests", "lib/tests")]
    assert [(r["status"], r.get("warm", False)) for r in results] == [("PASSED", False)] * 3, results
    assert zygote_pids(w.proc.pid) == []
    responses, status = w.close()
    assert responses == [] and status == 0, "".join(w.stderr)
