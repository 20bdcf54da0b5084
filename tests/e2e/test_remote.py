"""The shared remote cache against a real nginx from Debian (WebDAV PUT), over http and
https with a throw-away CA: uploads, remote hits that start no pytest, four --machine
slices sharing one server whose merge equals one local run, the counters in --events,
faults that degrade to the local cache with one warning, read-only mode, credentials
that never reach the disk, the output, the events or repro, and the REAPI encoding
checked with protoc --decode."""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import NESTBOX, ROOT, have, run, traced_env
from test_events import read_events
from test_merge import cases as merged_cases, lcov_lines
from test_target import PASSING, resolve_dir  # noqa: F401  (session fixture)
from workspace import copy_examples, make_workspace

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROTO = ROOT / "runner/cache/remote.proto"
TOKEN = "s3cret-T0KEN-for-nestbox-tests"
THREE = {"a/tests": {}, "b/tests": {}, "c/tests": {}}

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed (tests/setup installs it)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx on 127.0.0.1 with a temporary root, conf and logs; `body` is the config of
    `location /` (WebDAV PUT by default)."""

    DAV = "dav_methods PUT; create_full_put_path on; dav_access user:rw group:r all:r;"

    def __init__(self, base: Path, body=DAV, tls=None, token=None):
        self.dir = base
        self.root = base / "root"
        self.root.mkdir(parents=True)
        self.port = free_port()
        self.access_log = base / "access.log"
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/cache"
        (self.root / "cache").mkdir()
        auth = f'if ($http_authorization != "Bearer {token}") {{ return 401; }}' if token else ""
        ssl = (f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};") if tls else ""
        temps = " ".join(f"{k}_temp_path {base}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = f"""
daemon off; master_process off; worker_processes 1;
pid {base}/nginx.pid; error_log {base}/error.log;
events {{ worker_connections 128; }}
http {{
  access_log {self.access_log}; {temps}
  client_max_body_size 1g; keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{self.port}{" ssl" if tls else ""}; {ssl}
    root {self.root};
    location / {{ {auth} {body} }}
  }}
}}
"""
        (base / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen([NGINX, "-p", str(base), "-e", str(base / "error.log"), "-c",
                                      str(base / "nginx.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("nginx did not start: " + self.proc.stderr.read().decode())
                time.sleep(0.01)
        raise RuntimeError("nginx did not listen")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def requests(self, method):
        text = self.access_log.read_text() if self.access_log.exists() else ""
        return [line for line in text.splitlines() if f'"{method} ' in line]

    def entries(self, ns):
        d = self.root / "cache" / ns
        return sorted(p for p in d.iterdir() if p.is_file()) if d.exists() else []


@pytest.fixture
def nginx(tmp_path):
    servers = []

    def start(**kw):
        s = Nginx(tmp_path / f"nginx{len(servers)}", **kw)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def ws(tmp_path, resolve_dir):  # noqa: F811
    return make_workspace(tmp_path / "ws", resolve_dir, PASSING, THREE)


def nb(cache, ws, *extra, env=None, targets=()):
    e = dict(os.environ)
    e.pop("NESTBOX_REMOTE_HEADER", None)
    e.update(env or {})
    return run(["test", "--cache", cache, *extra, ws, *targets], env=e)


def warnings(r):
    return [line for line in r.stderr.splitlines() if "remote cache" in line]


def venvs(cache):
    d = cache / "venvs"
    return list(d.iterdir()) if d.exists() else []


def junit_cases(path):
    root = ET.parse(path).getroot()
    return sorted((tc.get("classname"), tc.get("name"), tuple(c.tag for c in tc)) for tc in root.iter("testcase"))


def test_upload_then_remote_hit_without_pytest(nginx, ws, tmp_path):
    srv = nginx()
    a = nb(tmp_path / "A", ws, "--remote-cache", srv.url, "--output", tmp_path / "outA")
    assert a.returncode == 0, a.stdout + a.stderr
    assert not warnings(a) and "(cached)" not in a.stdout
    assert len(srv.entries("ac")) == 3 and srv.requests("PUT")
    # A local hit in A and a remote hit in an empty B give the same junit.xml.
    a2 = nb(tmp_path / "A", ws, "--output", tmp_path / "outA2")
    puts = len(srv.requests("PUT"))
    b = nb(tmp_path / "B", ws, "--remote-cache", srv.url, "--output", tmp_path / "outB")
    assert b.returncode == 0, b.stdout + b.stderr
    assert b.stdout.count("(cached)") == 3 and not warnings(b)
    assert venvs(tmp_path / "B") == []  # no venv was built: pytest never ran
    assert len(srv.requests("PUT")) == puts  # a hit uploads nothing
    for t in THREE:
        assert (tmp_path / "outB" / t / "junit.xml").read_bytes() == (tmp_path / "outA2" / t / "junit.xml").read_bytes()
        assert junit_cases(tmp_path / "outB" / t / "junit.xml") == junit_cases(tmp_path / "outA" / t / "junit.xml")
    # Kept locally: a third run needs no server at all.
    srv.stop()
    c = nb(tmp_path / "B", ws, "--remote-cache", srv.url)
    assert c.returncode == 0 and c.stdout.count("(cached)") == 3 and not warnings(c)
    srv.proc = subprocess.Popen(["true"])


def traced_run(cache, ws, log, *extra):
    """nb under strace -y: each fsync and rename with the paths of its descriptors, a
    file per process (-ff), so that no call is split by another process's."""
    e = dict(os.environ)
    e.pop("NESTBOX_REMOTE_HEADER", None)
    p = subprocess.run(["strace", "-ff", "-qq", "-y", "-e", "trace=fsync,fdatasync,renameat,renameat2", "-o", str(log),
                        str(NESTBOX), "test", "--cache", str(cache), *map(str, extra), str(ws)],
                       capture_output=True, text=True, timeout=300, env=traced_env(e))
    assert p.returncode == 0, p.stdout + p.stderr
    return p, "".join(f.read_text() for f in sorted(log.parent.glob(log.name + ".*")))


def results_stored(cache, trace):
    """{final path: whether it was fsynced} for each result (cas blob, ac record) the
    traced run renamed into cache: the tmp file's fsync, then its fan-out directory's."""
    out = {}
    for tmp, final in re.findall(r'rename\w*\(\d+<[^>]*>, "(tmp/[^"]+)", \d+<[^>]*>, "((?:ac|cas)/[^"]+)"\)', trace):
        path = cache / final
        if final.startswith("ac/") and b'"action"' not in path.read_bytes():
            continue  # a memo of hashes, not a result
        synced = re.search(rf"f(data)?sync\(\d+<{re.escape(str(cache / tmp))}>", trace) is not None
        fanout = re.search(rf"f(data)?sync\(\d+<{re.escape(str(path.parent))}>", trace) is not None
        out[path] = synced and fanout
    return out


@pytest.mark.skipif(not have("strace"), reason="needs strace")
def test_a_remote_hit_is_kept_unsynced_and_a_torn_copy_is_fetched_again(nginx, ws, tmp_path):
    """A result this machine ran is fsynced before and after its rename; a copy of a
    remote's result is only renamed into place (the server holds it: a power cut costs a
    download, 6 fsyncs a target saved). What a power cut may leave of it, an empty or
    torn file, reads as damage: removed, one warning each, and served again."""
    srv = nginx()
    _, trace = traced_run(tmp_path / "A", ws, tmp_path / "A.strace", "--remote-cache", srv.url)
    ran = results_stored(tmp_path / "A", trace)
    assert len(ran) == 6 and all(ran.values()), ran  # 3 blobs, 3 records, all durable
    b, trace = traced_run(tmp_path / "B", ws, tmp_path / "B.strace", "--remote-cache", srv.url,
                          "--output", tmp_path / "outB")
    assert b.stdout.count("(cached)") == 3 and not warnings(b), b.stdout + b.stderr
    copies = results_stored(tmp_path / "B", trace)
    assert len(copies) == 6 and not any(copies.values()), copies
    for i, path in enumerate(sorted(copies)):
        path.chmod(0o644)
        data = path.read_bytes()
        path.write_bytes(b"" if i % 2 else data[: len(data) // 2])  # what a power cut can leave
        path.chmod(0o444)
    again = nb(tmp_path / "B", ws, "--remote-cache", srv.url, "--output", tmp_path / "outB2")
    assert again.returncode == 0 and again.stdout.count("(cached)") == 3, again.stdout + again.stderr
    damaged = [line for line in again.stderr.splitlines() if str(tmp_path / "B") in line]
    assert damaged and all("removed" in line for line in damaged), again.stderr
    for t in THREE:
        assert (tmp_path / "outB2" / t / "junit.xml").read_bytes() == (tmp_path / "outB" / t / "junit.xml").read_bytes()
    assert all(p.read_bytes() for p in copies), "served again and kept"
    # Torn to zeros of the same size (XFS can leave that), the records gone: a blob in
    # place is trusted for its content, not its size, so it is written again.
    for path in copies:
        path.chmod(0o644)
        if path.parent.parent.name == "cas":
            path.write_bytes(bytes(path.stat().st_size))
            path.chmod(0o444)
        else:
            path.unlink()
    third = nb(tmp_path / "B", ws, "--remote-cache", srv.url)
    assert third.returncode == 0 and third.stdout.count("(cached)") == 3, third.stdout + third.stderr
    v = run(["cache", "--cache", tmp_path / "B", "verify"])
    assert v.returncode == 0, v.stdout + v.stderr


def make_ca(d: Path):
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=nestbox test CA")
    ossl("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem",
         "-days", "1", "-extfile", "ext")
    return d / "ca.pem", d / "srv.pem", d / "srv.key"


def test_tls_with_a_private_ca(nginx, ws, tmp_path):
    (tmp_path / "ca").mkdir()
    ca, cert, key = make_ca(tmp_path / "ca")
    srv = nginx(tls=(cert, key))
    # Verification is on by default: an unknown CA is a fault, never a failed run.
    r = nb(tmp_path / "U", ws, "--remote-cache", srv.url)
    assert r.returncode == 0 and len(warnings(r)) == 1, r.stderr
    assert srv.entries("ac") == []
    a = nb(tmp_path / "A", ws, "--remote-cache", srv.url, "--remote-cache-ca", ca)
    assert a.returncode == 0 and not warnings(a), a.stderr
    assert len(srv.entries("ac")) == 3
    b = nb(tmp_path / "B", ws, "--remote-cache", srv.url, "--remote-cache-ca", ca)
    assert b.returncode == 0 and b.stdout.count("(cached)") == 3 and not warnings(b), b.stderr
    assert venvs(tmp_path / "B") == []


def test_machines_share_one_server(nginx, tmp_path, resolve_dir):  # noqa: F811
    srv = nginx()
    ex = copy_examples(tmp_path / "ex", resolve_dir)
    targets = list(json.loads((ex / "nestbox.json").read_text())["targets"])
    ref = nb(tmp_path / "local", ex, "--coverage", "--output", tmp_path / "ref")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    # Four machines at once: CI's slicing (--machine K/4 of every target's two shards),
    # each its own local cache and --output, all sharing the one server.
    e = dict(os.environ)
    e.pop("NESTBOX_REMOTE_HEADER", None)
    procs = [subprocess.Popen([str(NESTBOX), "test", "--cache", str(tmp_path / f"m{k}"), "--remote-cache", srv.url,
                               "--coverage", "--shards-per-target", "2", "--machine", f"{k}/4",
                               "--output", str(tmp_path / f"out{k}"), str(ex)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e) for k in (1, 2, 3, 4)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and not [x for x in err.splitlines() if "remote cache" in x], out + err
    # Every one of the 2 x 3 work items ran on exactly one machine and was uploaded.
    ran = [line.split("  ")[0] for out, _ in outs for line in out.splitlines() if " PASSED in " in line]
    assert sorted(ran) == sorted(f"{t} [shard {i}/2]" for t in targets for i in (1, 2)), outs
    assert len(srv.entries("ac")) == 2 * len(targets)
    m = run(["merge", "-o", tmp_path / "merged", *(tmp_path / f"out{k}" for k in (1, 2, 3, 4))])
    assert m.returncode == 0 and m.stderr == "", m.stdout + m.stderr
    tests = ref.stdout.splitlines()[-1].split(" tests in ")[0].rsplit(" ", 1)[1]
    assert re.match(rf"^{len(targets)} targets, {2 * len(targets)} work items: {2 * len(targets)} passed, 0 failed, "
                    rf"0 cached, {tests} tests in ", m.stdout.splitlines()[-1]), m.stdout
    # merge equals the one local unsharded run: same testcases, outcomes, covered lines.
    cases = merged_cases(tmp_path / "merged/junit.xml")
    assert cases == merged_cases(tmp_path / "ref/junit.xml") and len(cases) == int(tests)
    lines = lcov_lines(tmp_path / "merged/coverage.lcov")
    assert lines and lines == lcov_lines(tmp_path / "ref/coverage.lcov")
    # A new machine gets every result from the server: no venv, no pytest.
    late = nb(tmp_path / "late", ex, "--remote-cache", srv.url, "--coverage", "--shards-per-target", "2",
              "--output", tmp_path / "late-out")
    assert late.returncode == 0 and late.stdout.count("(cached)") == 2 * len(targets), late.stdout + late.stderr
    assert venvs(tmp_path / "late") == []
    assert merged_cases(tmp_path / "late-out/junit.xml") == cases
    assert lcov_lines(tmp_path / "late-out/coverage.lcov") == lines


@pytest.mark.parametrize("fault", ["down", "stalled", "500", "corrupted blob"])
def test_faults_degrade_with_one_warning(fault, nginx, ws, tmp_path):
    held = None
    if fault == "down":
        url = f"http://127.0.0.1:{free_port()}/cache"
    elif fault == "stalled":
        # Accepts connections (the kernel does, into the backlog) and never answers.
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen(64)
        url = f"http://127.0.0.1:{held.getsockname()[1]}/cache"
    elif fault == "500":
        url = nginx(body="return 500;").url
    else:
        srv = nginx()
        url = srv.url
        assert nb(tmp_path / "A", ws, "--remote-cache", url).returncode == 0
        for blob in srv.entries("cas"):
            data = bytearray(blob.read_bytes())
            if len(data) > 64:
                data[len(data) // 2] ^= 0xff
                blob.write_bytes(bytes(data))
    try:
        r = nb(tmp_path / "B", ws, "--remote-cache", url, "--remote-timeout", "1", "--output", tmp_path / "out")
    finally:
        if held:
            held.close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(warnings(r)) == 1, r.stderr
    assert "using the local cache only" in r.stderr
    assert r.stdout.count("PASSED") == 3 and "(cached)" not in r.stdout
    for t in THREE:
        assert json.loads((tmp_path / "out" / t / "result.json").read_text())["status"] == "PASSED"
    # What the local cache kept is right: a second run hits locally.
    again = nb(tmp_path / "B", ws)
    assert again.stdout.count("(cached)") == 3


def test_readonly_uploads_nothing(nginx, ws, tmp_path):
    srv = nginx()
    r = nb(tmp_path / "A", ws, "--remote-cache", srv.url, "--remote-cache-readonly")
    assert r.returncode == 0 and not warnings(r)
    assert srv.requests("GET") and srv.requests("PUT") == [] and srv.entries("ac") == []
    # It reads what a trusted build wrote.
    assert nb(tmp_path / "W", ws, "--remote-cache", srv.url).returncode == 0
    puts = len(srv.requests("PUT"))
    ro = nb(tmp_path / "R", ws, "--remote-cache", srv.url, "--remote-cache-readonly")
    assert ro.stdout.count("(cached)") == 3 and len(srv.requests("PUT")) == puts


def test_what_is_uploaded(nginx, tmp_path, resolve_dir):  # noqa: F811
    srv = nginx()
    files = dict(PASSING, **{"tests/test_bad.py": "def test_bad():\n    assert False\n"})
    bad = make_workspace(tmp_path / "bad", resolve_dir, files)
    assert nb(tmp_path / "A", bad, "--remote-cache", srv.url).returncode == 1
    assert srv.requests("PUT") == []  # failures are not shared by default
    assert nb(tmp_path / "B", bad, "--remote-cache", srv.url, "--cache-failures").returncode == 1
    assert len(srv.entries("ac")) == 1
    ws = make_workspace(tmp_path / "good", resolve_dir, PASSING)
    n = len(srv.access_log.read_text().splitlines())
    assert nb(tmp_path / "C", ws, "--remote-cache", srv.url, "--no-cache").returncode == 0
    assert len(srv.access_log.read_text().splitlines()) == n  # --no-cache: not even a lookup


def test_credentials_never_written(nginx, ws, tmp_path):
    srv = nginx(token=TOKEN)
    env = {"NESTBOX_REMOTE_HEADER": f"Authorization: Bearer {TOKEN}"}
    # Without the header the server refuses: one warning, a passing run.
    r = nb(tmp_path / "N", ws, "--remote-cache", srv.url)
    assert r.returncode == 0 and len(warnings(r)) == 1 and "401" in r.stderr
    a = nb(tmp_path / "A", ws, "--remote-cache", srv.url, "--output", tmp_path / "outA", "--events",
           tmp_path / "eventsA", env=env)
    assert a.returncode == 0 and not warnings(a), a.stderr
    b = nb(tmp_path / "B", ws, "--remote-cache", srv.url, "--output", tmp_path / "outB", "--events",
           tmp_path / "eventsB", env=env)
    assert b.stdout.count("(cached)") == 3, b.stdout + b.stderr
    # The events of both runs were written (and are grepped below with every file).
    assert read_events(tmp_path / "eventsA")[-1]["remote"]["uploads"] == 3
    assert read_events(tmp_path / "eventsB")[-1]["remote"]["hits"] == 3
    # A URL the workspace names never gets the header (nestbox.json is untrusted).
    doc = json.loads((ws / "nestbox.json").read_text())
    doc["remote_cache"] = srv.url
    (ws / "nestbox.json").write_text(json.dumps(doc))
    w = nb(tmp_path / "W", ws, env=env)
    assert w.returncode == 0 and len(warnings(w)) == 1 and "401" in w.stderr
    # `nestbox run` with a result file, output and log, the worker's answers and the
    # counters `cache stats` keeps: none of them holds the credential either.
    e = dict(os.environ, **env)
    [action] = [json.loads(x) for x in run(["actions", ws, "a/tests"]).stdout.splitlines()]
    (tmp_path / "action.json").write_text(json.dumps(action))
    rr = run(["run", "--cache", tmp_path / "R", "--remote-cache", srv.url, "--result", tmp_path / "result.json",
              "--output", tmp_path / "outR", "--events", tmp_path / "eventsR", tmp_path / "action.json"], env=e)
    assert rr.returncode == 0 and json.loads(rr.stdout)["cached"] and not warnings(rr), rr.stdout + rr.stderr
    assert read_events(tmp_path / "eventsR")[-1]["remote"]["hits"] == 1
    # `nestbox repro` in an empty cache fetches the action through the same header.
    rp = run(["repro", "--cache", tmp_path / "P", "--remote-cache", srv.url, json.loads(rr.stdout)["action"]], env=e)
    assert rp.returncode == 0 and not warnings(rp), rp.stdout + rp.stderr
    wk = subprocess.run([str(NESTBOX), "worker", "--cache", str(tmp_path / "K"), "--remote-cache", srv.url],
                        input=json.dumps({"arguments": [str(tmp_path / "action.json")]}) + "\n",
                        capture_output=True, text=True, env=e, timeout=300)
    assert wk.returncode == 0 and json.loads(json.loads(wk.stdout)["output"])["cached"], wk.stdout + wk.stderr
    stats = [run(["cache", "--cache", tmp_path / c, "stats"]) for c in ("A", "B", "R", "K")]
    assert all(f"remote  {srv.url}" in x.stdout for x in stats)
    outputs = "".join(x.stdout + x.stderr for x in (r, a, b, w, rr, rp, wk, *stats))
    assert TOKEN not in outputs
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.is_relative_to(srv.dir):
            assert TOKEN.encode() not in p.read_bytes(), p
    for p in srv.root.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p


def remote_stats(cache):
    """The remote counters `nestbox cache stats` shows: (url line, {name: count}, down, up)."""
    p = run(["cache", "--cache", cache, "stats"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("remote  "))
    m = re.match(r"^\s+(\d+) hits?, (\d+) miss(?:es)?, (\d+) uploads?, (\d+) errors?; (.+) down, (.+) up$", lines[i + 1])
    assert m, p.stdout
    counts = dict(zip(("hits", "misses", "uploads", "errors"), map(int, m.groups()[:4])))
    return lines[i], counts, m[5], m[6]


def test_cache_stats_shows_the_last_runs_remote_counters(nginx, ws, tmp_path):
    srv = nginx()
    p = run(["cache", "--cache", tmp_path / "A", "stats"])
    assert "remote  no run with a remote cache has used this cache" in p.stdout, p.stdout
    assert nb(tmp_path / "A", ws, "--remote-cache", srv.url).returncode == 0
    head, counts, down, up = remote_stats(tmp_path / "A")
    assert head.startswith(f"remote  {srv.url}, last run ") and head.endswith(" UTC:"), head
    assert counts == {"hits": 0, "misses": 3, "uploads": 3, "errors": 0} and down == "0 B" and up != "0 B"
    b = nb(tmp_path / "B", ws, "--remote-cache", srv.url, "--remote-cache-readonly")
    assert b.returncode == 0 and b.stdout.count("(cached)") == 3
    head, counts, down, up = remote_stats(tmp_path / "B")
    assert "(read-only)" in head and counts == {"hits": 3, "misses": 0, "uploads": 0, "errors": 0}, counts
    assert down != "0 B" and up == "0 B"
    saved = json.loads((tmp_path / "B/last-remote.json").read_text())
    assert saved["hits"] == 3 and saved["bytes_down"] > 0 and saved["schema"] == "nestbox.remote-stats/v1"
    # The last run's, not a sum: a run against a server that is down shows its error.
    srv.stop()
    (ws / "src/app/calc.py").write_text("def add(a, b):\n    return b + a\n")
    assert nb(tmp_path / "B", ws, "--remote-cache", srv.url).returncode == 0
    _, counts, _, _ = remote_stats(tmp_path / "B")
    assert counts["hits"] == 0 and counts["errors"] == 1, counts
    srv.proc = subprocess.Popen(["true"])


def test_events_carry_the_remote_counters(nginx, ws, tmp_path):
    srv = nginx()
    a = nb(tmp_path / "A", ws, "--remote-cache", srv.url, "--events", tmp_path / "upload.jsonl")
    assert a.returncode == 0 and not warnings(a), a.stdout + a.stderr
    up = read_events(tmp_path / "upload.jsonl")  # each line valid against events.schema.json
    assert up[-1]["event"] == "run_finished" and not [e for e in up if e["event"] == "target_cached"]
    rem = up[-1]["remote"]
    assert {k: rem[k] for k in ("hits", "misses", "uploads", "errors", "bytes_down")} == \
        {"hits": 0, "misses": 3, "uploads": 3, "errors": 0, "bytes_down": 0}, rem
    # What was uploaded: at least every blob the server now holds and every AC entry.
    stored = sum(f.stat().st_size for ns in ("ac", "cas") for f in srv.entries(ns))
    assert rem["bytes_up"] >= stored > 0, (rem, stored)
    # An empty cache B: every target a remote hit, nothing uploaded.
    b = nb(tmp_path / "B", ws, "--remote-cache", srv.url, "--events", tmp_path / "hit.jsonl")
    assert b.returncode == 0 and b.stdout.count("(cached)") == 3, b.stdout + b.stderr
    hit = read_events(tmp_path / "hit.jsonl")
    assert sorted(e["target"] for e in hit if e["event"] == "target_cached") == sorted(THREE)
    assert not [e for e in hit if e["event"] == "venv_built"]
    rem = hit[-1]["remote"]
    assert hit[-1]["summary"]["cached"] == 3 and rem["bytes_down"] > 0, rem
    assert {k: rem[k] for k in ("hits", "misses", "uploads", "errors", "bytes_up")} == \
        {"hits": 3, "misses": 0, "uploads": 0, "errors": 0, "bytes_up": 0}, rem
    # The same counters `cache stats` shows, and none without a remote cache.
    assert remote_stats(tmp_path / "B")[1] == {k: rem[k] for k in ("hits", "misses", "uploads", "errors")}
    c = nb(tmp_path / "B", ws, "--events", tmp_path / "local.jsonl")
    assert c.returncode == 0 and read_events(tmp_path / "local.jsonl")[-1]["remote"] is None


def test_worker_answers_after_its_upload(nginx, tmp_path, resolve_dir):  # noqa: F811
    srv = nginx()
    ws = make_workspace(tmp_path / "ws", resolve_dir, PASSING)
    [action] = [json.loads(line) for line in run(["actions", ws]).stdout.splitlines()]
    w = subprocess.Popen([str(NESTBOX), "worker", "--cache", str(tmp_path / "cache"), "--remote-cache", srv.url],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        w.stdin.write(json.dumps({"arguments": ["--action-json", json.dumps(action)]}) + "\n")
        w.stdin.flush()
        answer = json.loads(w.stdout.readline())
        assert answer.get("exitCode", 0) == 0, answer
        # Answered: its upload is done (stdin still open, so the worker has not ended).
        assert [e.name for e in srv.entries("ac")] == [json.loads(answer["output"])["action"]]
        assert w.poll() is None
    finally:
        w.stdin.close()
        assert w.wait(timeout=120) == 0, w.stderr.read()
    _, counts, _, _ = remote_stats(tmp_path / "cache")
    assert counts == {"hits": 0, "misses": 1, "uploads": 1, "errors": 0}, counts


def test_bad_options_are_usage_errors(ws, tmp_path):
    for url in ("ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x", "http://127.0.0.1/x?token=1", "nonsense"):
        r = nb(tmp_path / "A", ws, "--remote-cache", url)
        assert r.returncode == 2 and r.stderr.startswith("nestbox: --remote-cache"), r.stderr
        assert "pw@" not in r.stderr and "token=1" not in r.stderr
    r = nb(tmp_path / "A", ws, "--remote-cache", "http://127.0.0.1:1/", "--remote-timeout", "0")
    assert r.returncode == 2
    r = nb(tmp_path / "A", ws, "--remote-cache", "http://127.0.0.1:1/", env={"NESTBOX_REMOTE_HEADER": "no colon"})
    assert r.returncode == 2 and "no colon" not in r.stderr


def decode(message: bytes):
    return subprocess.run(["protoc", f"--proto_path={PROTO.parent}", "--decode",
                           "build.bazel.remote.execution.v2.ActionResult", PROTO.name],
                          input=message, capture_output=True, check=True, cwd=PROTO.parent).stdout.decode()


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc is not installed (tests/setup installs it)")
def test_ac_entries_are_reapi_action_results(nginx, ws, tmp_path):
    srv = nginx()
    assert nb(tmp_path / "A", ws, "--remote-cache", srv.url, "--output", tmp_path / "out",
              targets=["a/tests"]).returncode == 0
    [entry] = srv.entries("ac")
    assert entry.name == json.loads((tmp_path / "out/a/tests/result.json").read_text())["action"]
    text = decode(entry.read_bytes())
    # protoc's text format: output_files { path: "..." digest { hash: "..." size_bytes: N } }
    files = {}
    for block in text.split("output_files {")[1:]:
        path = block.split('path: "')[1].split('"')[0]
        h = block.split('hash: "')[1].split('"')[0]
        size = int(block.split("size_bytes: ")[1].split()[0]) if "size_bytes: " in block.split("}")[0] + "}" else 0
        files[path] = (h, size)
    assert {"nestbox/artifact.tar.zst", "junit.xml", "log"} <= set(files)
    for path, (h, size) in files.items():
        blob = (srv.root / "cache/cas" / h).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == h and len(blob) == size, path
    assert "stdout_digest {" in text and files["log"][0] in text.split("stdout_digest {")[1]
    assert "stderr_digest {" in text
    assert (srv.root / "cache/cas" / files["junit.xml"][0]).read_bytes().startswith(b"<?xml")


def test_run_and_worker_take_the_options(nginx, tmp_path):
    srv = nginx()
    for verb in ("test", "run", "worker"):
        h = run([verb, "--help"])
        assert "--remote-cache URL" in h.stdout and "--remote-cache-readonly" in h.stdout, verb
        assert "--remote-timeout" in h.stdout and "--remote-cache-ca" in h.stdout, verb
    assert NESTBOX.exists()
