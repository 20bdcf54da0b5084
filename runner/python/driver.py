"""nestbox's pytest driver, mounted read-only at /nestbox/driver.py in the sandbox.

    /venv/bin/python /nestbox/driver.py [--coverage ROOT,...] [--shard K/N] -- PYTEST_ARGS

Runs pytest in this process with two additions nestbox needs: coverage measured over
the target's source roots with paths relative to /work (identical on every machine),
written as /out/coverage.data, /out/coverage.xml (Cobertura) and /out/coverage.lcov;
and sharding by Bazel's protocol (TEST_SHARD_INDEX / TEST_TOTAL_SHARDS): the collected
tests, sorted by node id, are dealt round-robin, and TEST_SHARD_STATUS_FILE is touched
to say the runner understood. Exit status: pytest's, or 86 when coverage was asked for
but the locked venv has no coverage package.
"""
import os
import sys

NO_COVERAGE = 86


class Shard:
    def __init__(self, index, total):
        self.index, self.total = index, total

    def pytest_collection_modifyitems(self, session, config, items):
        order = sorted(range(len(items)), key=lambda i: items[i].nodeid)
        mine = {i for n, i in enumerate(order) if n % self.total == self.index}
        keep = [it for i, it in enumerate(items) if i in mine]
        drop = [it for i, it in enumerate(items) if i not in mine]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


def main(argv):
    roots, shard = None, None
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt == "--coverage":
            roots = [r for r in argv.pop(0).split(",") if r]
        elif opt == "--shard":
            k, n = argv.pop(0).split("/")
            shard = (int(k), int(n))
        else:
            sys.stderr.write(f"nestbox driver: unknown option {opt}\n")
            return 2
    args = argv[1:]
    plugins = []
    if shard and shard[1] > 1:
        plugins.append(Shard(*shard))
        status = os.environ.get("TEST_SHARD_STATUS_FILE")
        if status:
            open(status, "w").close()
    cov = None
    if roots is not None:
        try:
            import coverage
        except ImportError:
            sys.stderr.write("nestbox: coverage was asked for, but the locked venv has no coverage package\n")
            return NO_COVERAGE
        cov = coverage.Coverage(data_file="/out/coverage.data", source=roots, config_file=False)
        cov.set_option("run:relative_files", True)
        cov.start()
    import pytest
    try:
        rc = pytest.main(args, plugins=plugins)
    finally:
        if cov is not None:
            cov.stop()
            cov.save()
    if cov is not None:
        cov.xml_report(outfile="/out/coverage.xml")
        cov.lcov_report(outfile="/out/coverage.lcov")
    # Bazel's rule: a shard that got no tests passes (pytest says 5, no tests collected).
    if shard and shard[1] > 1 and int(rc) == 5:
        return 0
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
