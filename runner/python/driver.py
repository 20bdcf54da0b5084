"""nestbox's pytest driver, mounted read-only at /nestbox/driver.py in the sandbox.

    /venv/bin/python /nestbox/driver.py [--coverage ROOT,... [--omit TESTFILE]...] [--shard K/N]
        [--shuffle SEED] [--select NODEID]... -- PYTEST_ARGS

Runs pytest in this process with two additions nestbox needs: coverage of the declared
sources (the source roots holding them, less the test files, or what the project's own
declared coverage settings say) with every path relative to /work (identical on every
machine), written as /out/coverage.data, /out/coverage.xml (Cobertura) and /out/coverage.lcov;
and sharding by Bazel's protocol: shard K of N (0-based) from --shard, else from
TEST_SHARD_INDEX / TEST_TOTAL_SHARDS; TEST_SHARD_STATUS_FILE is touched to say the
runner understood. The split (Shard below) is the host's plan from the durations
nestbox learned from earlier results, handed in read-only as /nestbox/plan/plan.json:
a planned test runs on the shard the plan names, one it does not name on the shard a
stable hash of its id names. Every shard reads the same plan, so every test runs in
exactly one. What this shard got is written to /out/shard_plan.json. --shuffle deals the collected tests in an
order drawn from SEED (the same seed, the same order); --select keeps only the tests
with those node ids (a retry of the failed ones; all of them when none matches). As
it goes the driver records, for the host to read back (untrusted, capped): the order
the tests run in (/out/.nestbox-order), the test that is running
(/out/.nestbox-current), the node ids that failed (/out/.nestbox-failed), and
faulthandler's stack of every thread when the sandbox's SIGABRT comes on a timeout
(/out/.nestbox-stack). Exit status: pytest's, or 86 when coverage was asked for but
the locked venv has no coverage package.
"""
import json
import os
import sys

NO_COVERAGE = 86


# ---- sharding: the host plans, the driver keeps its shard's tests ----------------------
from pluggy import HookimplMarker  # noqa: E402  pytest's own marker, without importing pytest

hookimpl = HookimplMarker("pytest")
PLAN = "/nestbox/plan/plan.json"
PLAN_OUT = "/out/shard_plan.json"


def junit_key(nodeid):
    """The id nestbox learns durations under: junit.xml's classname::name."""
    try:
        from _pytest.junitxml import mangle_test_address
        names = mangle_test_address(nodeid)
    except Exception:  # an older or newer pytest: the same rule by hand
        path, bracket, params = nodeid.partition("[")
        names = path.split("::")
        names[0] = names[0].replace("/", ".")
        if names[0].endswith(".py"):
            names[0] = names[0][:-3]
        names[-1] += bracket + params
    return ".".join(names[:-1]) + "::" + names[-1]


def stable_hash(key):
    import hashlib  # here, not at the top: _hashlib loads libcrypto (~2 ms) and only sharding needs it
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big")


def load_plan():
    """The host's split of the group's pinned durations (action/shard_plan.c, the one
    planner): {key: shard (0-based)}, each shard's planned seconds, the ideal."""
    try:
        with open(PLAN, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}, [], 0.0
    tests = {k: v for k, v in doc.get("tests", {}).items() if isinstance(v, int)}
    return tests, [float(s) for s in doc.get("loads_sec", [])], float(doc.get("ideal_sec", 0))


class Shard:
    """Keeps the tests of shard `index`: a planned test where the plan put it, any other
    (new since the durations were pinned) where stable_hash of its key says. Every shard
    decides the same from the same plan, so every test runs in exactly one. Another
    shard's tests are not even made where pytest lets us trim them first: the
    parametrized calls, where a big suite spends its collection."""

    def __init__(self, index, total):
        self.index, self.total = index, total
        self.plan, self.loads, self.ideal = load_plan()
        self.trimmed = 0  # parametrized calls of other shards never made into items
        self.kept = {}  # node id -> key of the calls the trimming kept: mine, no need to ask again

    def mine(self, key):
        s = self.plan.get(key)
        if s is None or not 0 <= s < self.total:
            s = stable_hash(key) % self.total
        return s == self.index

    @hookimpl(hookwrapper=True)
    def pytest_generate_tests(self, metafunc):
        outcome = yield
        calls = getattr(metafunc, "_calls", None)  # every parametrization applied by now
        if outcome.excinfo is not None or not calls:
            return
        # An item's node id is its definition's and [callspec id] (_pytest/python.py);
        # its key is the definition's and the same [callspec id] (junit_key), unless the
        # definition's id has a [ of its own.
        base = metafunc.definition.nodeid
        prefix = junit_key(base) if "[" not in base else None
        keep = []
        for c in calls:
            nodeid = f"{base}[{c.id}]"
            key = f"{prefix}[{c.id}]" if prefix is not None else junit_key(nodeid)
            if self.mine(key):
                keep.append(c)
                self.kept[nodeid] = key
        # With none left pytest would make the unparametrized item: one stays, for
        # pytest_collection_modifyitems to drop.
        metafunc._calls = keep or calls[:1]
        self.trimmed += len(calls) - len(metafunc._calls)

    def pytest_collection_modifyitems(self, session, config, items):
        keys = [self.kept.get(it.nodeid) or junit_key(it.nodeid) for it in items]
        mine = [it.nodeid in self.kept or self.mine(k) for it, k in zip(items, keys)]
        keep = [it for it, m in zip(items, mine) if m]
        drop = [it for it, m in zip(items, mine) if not m]
        plan = {
            "shard": self.index + 1, "shards": self.total, "tests": len(keep),
            "collected": len(items) + self.trimmed,
            "known": sum(1 for k, m in zip(keys, mine) if m and k in self.plan),
            "expected_sec": self.loads[self.index] if self.index < len(self.loads) else 0.0,
            "largest_sec": max(self.loads, default=0.0), "ideal_sec": self.ideal, "loads_sec": self.loads,
        }
        with open(PLAN_OUT, "w", encoding="utf-8") as f:
            json.dump(plan, f, sort_keys=True)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


def shard_from_env():
    try:
        index, total = int(os.environ["TEST_SHARD_INDEX"]), int(os.environ["TEST_TOTAL_SHARDS"])
    except (KeyError, ValueError):
        return None
    return (index, total) if 0 <= index < total else None


WORK = "/work"
# coverage.py's own order of config files, looked for in each source root and then
# in its parents up to /work: the nearest declared one describes the target's project.
CONFIG_FILES = (".coveragerc", "setup.cfg", "tox.ini", "pyproject.toml")


def has_coverage_settings(path):
    name = os.path.basename(path)
    try:
        if name == ".coveragerc":
            return True
        if name == "pyproject.toml":
            import tomllib
            with open(path, "rb") as f:
                return "coverage" in tomllib.load(f).get("tool", {})
        import configparser
        cp = configparser.RawConfigParser()
        cp.read(path, encoding="utf-8")
        return any(s.startswith("coverage:") for s in cp.sections())
    except Exception:  # a file coverage.py could not read either: not the project's settings
        return False


def find_coverage_config(roots):
    seen = set()
    for root in roots:
        d = os.path.normpath(root if os.path.isabs(root) else os.path.join(WORK, root))
        while d.startswith(WORK) and d not in seen:
            seen.add(d)
            for name in CONFIG_FILES:
                path = os.path.join(d, name)
                if os.path.isfile(path) and not os.path.islink(path) and has_coverage_settings(path):
                    return path
            if d == WORK:
                break
            d = os.path.dirname(d)
    return None


def rebase(entries, base, as_dir):
    """The project's paths are relative to its config file's folder, coverage.py takes
    them relative to the cwd (/work): folders become relative to /work (so <source> in
    coverage.xml is too), patterns absolute; package names and `*` patterns stay."""
    out = []
    for e in entries or []:
        if os.path.isabs(e) or e.startswith("*"):
            out.append(e)
        elif as_dir:
            p = os.path.normpath(os.path.join(base, e))
            out.append(os.path.relpath(p, WORK) if os.path.isdir(p) else e)
        else:
            out.append(os.path.join(base, e))
    return out


def start_coverage(roots, omit):
    """Measures the declared sources: the roots holding them, less the declared test
    files (omit), or what the project's own settings say (source, include, omit,
    branch, exclude_lines, ...), always with paths relative to /work."""
    try:
        import coverage
    except ImportError:
        sys.stderr.write("nestbox: coverage was asked for, but the locked venv has no coverage package\n")
        return None
    config = find_coverage_config(roots)
    cov = coverage.Coverage(data_file="/out/coverage.data", config_file=config or False)
    base = os.path.dirname(config) if config else WORK
    source = rebase(cov.get_option("run:source"), base, True)
    include = rebase(cov.get_option("run:include"), base, False)
    if not source and not include:
        source = [os.path.relpath(r, WORK) if os.path.isabs(r) else r for r in roots]
    cov.set_option("run:source", source or None)
    cov.set_option("run:include", include or None)
    cov.set_option("run:omit", rebase(cov.get_option("run:omit"), base, False) + [os.path.join(WORK, t) for t in omit])
    cov.set_option("report:omit", rebase(cov.get_option("report:omit"), base, False) or None)
    cov.set_option("run:relative_files", True)
    cov.start()
    return cov


def finish_coverage(cov):
    cov.xml_report(outfile="/out/coverage.xml")
    cov.lcov_report(outfile="/out/coverage.lcov")


class Select:
    def __init__(self, ids):
        self.ids = set(ids)

    def pytest_collection_modifyitems(self, session, config, items):
        keep = [it for it in items if it.nodeid in self.ids]
        if not keep:
            return  # nothing matched: the whole target runs again
        drop = [it for it in items if it.nodeid not in self.ids]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


class Shuffle:
    def __init__(self, seed):
        self.seed = seed

    def pytest_collection_modifyitems(self, session, config, items):
        import random
        # From the collected order, not from a set: the same seed, the same order.
        random.Random(self.seed).shuffle(items)


class Record:
    """Writes what the host reads back after the run, each file in /out."""

    def __init__(self, out):
        self.out = out
        self.stack = None
        self.current = None  # .nestbox-current, kept open: rewritten before every test

    def _write(self, name, text, mode="w"):
        with open(os.path.join(self.out, name), mode, encoding="utf-8", errors="replace") as f:
            f.write(text)

    def pytest_sessionstart(self, session):
        import faulthandler
        # After pytest's own faulthandler plugin has pointed it at stderr: on the
        # sandbox's SIGABRT every thread's stack goes where the host looks for it.
        self.stack = open(os.path.join(self.out, ".nestbox-stack"), "w")
        faulthandler.enable(file=self.stack, all_threads=True)

    def pytest_collection_finish(self, session):
        # session.items is the final order, after every plugin's reordering.
        self._write(".nestbox-order", "".join(it.nodeid + "\n" for it in session.items))

    def pytest_runtest_logstart(self, nodeid, location):
        # Two syscalls a test instead of an open, a write and a close (2.9 -> 0.5 ms for
        # 200 tests). The host reads the first line only, so a kill between the write
        # and the truncate still leaves this test's id there.
        line = (nodeid + "\n").encode("utf-8", "replace")
        if self.current is None:
            self.current = os.open(os.path.join(self.out, ".nestbox-current"),
                                   os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        os.pwrite(self.current, line, 0)
        os.ftruncate(self.current, len(line))

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self._write(".nestbox-failed", report.nodeid + "\n", "a")


def main(argv):
    roots, shard, omit, shuffle, select = None, None, [], None, []
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt == "--coverage":
            roots = [r for r in argv.pop(0).split(",") if r]
        elif opt == "--omit":
            omit.append(argv.pop(0))
        elif opt == "--shard":
            k, n = argv.pop(0).split("/")
            shard = (int(k), int(n))
        elif opt == "--shuffle":
            shuffle = int(argv.pop(0))
        elif opt == "--select":
            select.append(argv.pop(0))
        else:
            sys.stderr.write(f"nestbox driver: unknown option {opt}\n")
            return 2
    args = argv[1:]
    if shard is None:
        shard = shard_from_env()
    plugins = []
    if shard and shard[1] > 1:
        plugins.append(Shard(*shard))
        status = os.environ.get("TEST_SHARD_STATUS_FILE")
        if status:
            open(status, "w").close()
    if select:
        plugins.append(Select(select))
    if shuffle is not None:
        plugins.append(Shuffle(shuffle))
    if os.path.isdir("/out"):
        plugins.append(Record("/out"))
    cov = None
    if roots is not None:
        cov = start_coverage(roots, omit)
        if cov is None:
            return NO_COVERAGE
    import pytest
    # What is imported by now (the interpreter, pytest, pluggy) lives as long as the
    # process: frozen out of the collector's sight, as the warm interpreter does
    # (zygote.py), so the full collections that collection and the tests set off do
    # not walk it again. Every shard pays for its collection whatever its share (a
    # fixed cost of sharding: 55 -> 35 ms for one of 2 shards of 5,000 tests), and a
    # cold target starts its tests in the same state as a warm one.
    import gc
    gc.freeze()
    try:
        rc = pytest.main(args, plugins=plugins)
    finally:
        if cov is not None:
            cov.stop()
            cov.save()
    if cov is not None:
        finish_coverage(cov)
    # Bazel's rule: a shard that got no tests passes (pytest says 5, no tests collected).
    if shard and shard[1] > 1 and int(rc) == 5:
        return 0
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
