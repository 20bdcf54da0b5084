# SPDX-License-Identifier: MIT
"""nestbox's warm interpreter (README "Warm interpreter").

Started once per (venv, hash seed) as /venv/bin/python /.zygote/zygote.py in a sandbox
of its own; fd 0 is its request socket (SOCK_SEQPACKET). It imports pytest, its
built-in plugins and the venv's plugins (entry points of group pytest11), and nothing
of any target: it never sees a target's tree. Then, per request (a target's sandbox
configuration, sandbox/zygote_spec.c, with five descriptors: the target's connection,
its stdin, stdout, stderr and the denial report's socket), it forks; the fork builds the target's sandbox through
libnestbox-zygote.so (sandbox/zygote_enter.c) and runs /nestbox/driver.py as __main__
in-process (run_main), exactly as `python /nestbox/driver.py ARGS` would, with the target's
environment, sys.path and cwd. It exits when the request socket reaches EOF.
"""
import array
import gc
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# sys.path as a fresh `python /nestbox/driver.py` has it, before PYTHONPATH's entries.
BASE_PATH = ["/nestbox"] + sys.path[1:]
OWN_MODULES = []
# Built-in plugins the driver's "-p no:cacheprovider" keeps pytest from importing.
NOT_LOADED = {"cacheprovider", "stepwise"}
# The venv's pytest11 plugin modules the zygote imported.
PLUGIN_MODULES = set()


def preload():
    """What every target's pytest would import first: done once, here."""
    import importlib
    import importlib.metadata

    import pytest  # noqa: F401
    from _pytest.config import default_plugins

    for name in default_plugins:
        if name in NOT_LOADED:
            continue
        try:
            importlib.import_module("_pytest." + name)
        except Exception:
            pass
    for ep in importlib.metadata.entry_points(group="pytest11"):
        try:
            importlib.import_module(ep.value.split(":")[0])
            PLUGIN_MODULES.add(ep.value.split(":")[0])
        except Exception:
            pass
    # What pytest's main imports lazily on every run before the collection (measured
    # with a module diff in a warm target): argcomplete's probe, and the driver's own.
    for name in EARLY_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    # What it imports later (pdb, in _pytest.debugging's pytest_configure): imported
    # here, kept out of sys.modules, handed over when the target imports it.
    for name in LATE_IMPORTS:
        before = set(sys.modules)
        try:
            importlib.import_module(name)
        except Exception:
            continue
        group = {m: sys.modules[m] for m in sorted(set(sys.modules) - before)}
        if name in group:
            STASH[name] = group
    memoize_varnames()
    warm_regex_cache()


def warm_regex_cache():
    """Regular expressions every run compiles (re's and fnmatch's caches, per process):
    junitxml's illegal-XML-character class alone costs milliseconds to compile."""
    import fnmatch

    try:
        from _pytest.junitxml import bin_xml_escape

        bin_xml_escape("")
    except Exception:
        pass
    import argparse

    argparse.ArgumentParser(add_help=False)
    # pytest's default python_files, python_classes and python_functions.
    for pattern in ("test_*.py", "*_test.py", "Test*", "test*"):
        fnmatch.fnmatch("x", pattern)


# Imported by every run of pytest (7.x) or the driver, whatever the target: before its
# conftests are loaded (in sys.modules from the start), and after (STASH).
EARLY_IMPORTS = ("_pytest._argcomplete", "_pytest.config.compat", "heapq", "json")  # hashlib only when it shards
LATE_IMPORTS = ("pdb",)
# {head: {module name: module}}: what importing head brought in, in the zygote.
STASH = {}


class Stash:
    """A meta-path finder a target holds until it has imported every stashed head: an
    import of a head gets the module object the zygote imported (never run, so as fresh
    as a first import) and the modules that import brought in, so sys.modules grows
    exactly as a cold import would grow it. An import of a group's member before its
    head drops that group: from then on the target imports it from disk, as cold."""

    def __init__(self, stash):
        self.stash = stash
        for group in stash.values():
            for name in group:
                sys.modules.pop(name, None)
        sys.meta_path.insert(0, self)

    def find_spec(self, name, path=None, target=None):
        import importlib.util

        for head, group in list(self.stash.items()):
            if name == head:
                del self.stash[head]
                self.done()
                for member, module in group.items():
                    if member != head:
                        sys.modules.setdefault(member, module)
                module = group[head]
                spec = importlib.util.spec_from_loader(name, Handover(module))
                return spec
            if name in group:
                del self.stash[head]
                self.done()
        return None

    def done(self):
        if not self.stash and self in sys.meta_path:
            sys.meta_path.remove(self)


class Handover:
    """The loader of a stashed module: it is already executed; the import machinery's
    own attributes (__spec__) are put back as the zygote's import set them."""

    def __init__(self, module):
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        module.__spec__ = self.spec


def memoize_varnames():
    """pluggy computes every hook implementation's argument names with
    inspect.getfullargspec at registration: 40-odd plugins, ~10% of a warm target's
    pytest main, the same answers every time. Compute them once here for the hook
    functions of the modules already imported (pytest's and the venv's plugins), and
    answer from that table in a target while a function's code, signature and
    __wrapped__ are still the ones measured (a target that changes one gets pluggy's
    own answer). Functions a target defines are never in it."""
    import types

    try:
        import pluggy._hooks as hooks

        original = hooks.varnames
    except Exception:
        return
    table = {}

    def key(func):
        if type(func) is types.MethodType and type(func.__func__) is types.FunctionType:
            return ("method", func.__func__), func.__func__
        if type(func) is types.FunctionType:
            return func, func
        return None, None

    def state(f):
        return (f.__code__, f.__dict__.get("__signature__"), f.__dict__.get("__wrapped__"))

    def cached(func):
        k, f = key(func)
        if k is not None:
            hit = table.get(k)
            if hit is not None and hit[0] == state(f):
                return hit[1]
        return original(func)

    for name, module in list(sys.modules.items()):
        if module is None or not (name == "pytest" or name.startswith(("_pytest", "pluggy")) or name in PLUGIN_MODULES):
            continue
        for value in list(vars(module).values()):
            scopes = [vars(value)] if isinstance(value, type) and value.__module__ == name else []
            candidates = [(value, False)] if type(value) is types.FunctionType else []
            for scope in scopes:
                candidates += [(v, True) for n, v in scope.items() if n.startswith("pytest_") and type(v) is types.FunctionType]
            for f, in_class in candidates:
                if not f.__name__.startswith("pytest_"):
                    continue
                try:
                    if in_class:
                        # pluggy registers the bound method of an instance: the same
                        # answer as for any instance's.
                        k = ("method", f)
                        answer = original(types.MethodType(f, object()))
                    else:
                        k, answer = f, original(f)
                except Exception:
                    continue
                table[k] = (state(f), answer)
    hooks.varnames = cached


def records(spec):
    """(tag, value) pairs; a mount record's extra fields are skipped."""
    fields = spec.split(b"\0")
    i = 0
    while i + 1 < len(fields):
        tag, value = fields[i].decode(), fields[i + 1]
        i += 5 if tag == "mount" else 2
        yield tag, value.decode("utf-8", "surrogateescape")


def run_target(lib, spec, conn, fds):
    """B's and C's lives; never returns."""
    code = 125
    try:
        conn = lib.nb_zygote_setup(spec, len(spec), conn, *fds)
        if conn < 0:
            os._exit(125)
        pid = os.fork()
        if pid:
            lib.nb_zygote_reap(pid, conn)
            os._exit(125)
        code = command(lib, spec)
    except SystemExit as e:
        code = exit_code(e)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        os._exit(code)


def exit_code(e):
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def command(lib, spec):
    """C: the test's process. The interpreter state a fresh start would have."""
    import atexit
    import faulthandler
    import signal
    import threading
    import time

    if lib.nb_zygote_command() < 0:
        return 125
    argv, env, cwd = [], {}, "/"
    for tag, value in records(spec):
        if tag == "argv":
            argv.append(value)
        elif tag == "env":
            k, _, v = value.partition("=")
            env[k] = v
        elif tag == "cwd":
            cwd = value
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    extra = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    sys.path[:] = BASE_PATH[:1] + extra + BASE_PATH[1:]
    sys.argv[:] = argv[1:]
    os.chdir(cwd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # enable() on an enabled faulthandler does nothing: its SIGABRT handler (the
    # timeout's stacks) was reset with the other signals.
    faulthandler.disable()
    if env.get("PYTHONFAULTHANDLER"):
        faulthandler.enable()
    for name in OWN_MODULES:
        sys.modules.pop(name, None)
    if STASH:
        Stash(STASH)
    try:
        run_main(argv[1])
        code = 0
    except SystemExit as e:
        code = exit_code(e)
    # What the interpreter's own exit does: wait for non-daemon threads, run atexit.
    threading._shutdown()
    atexit._run_exitfuncs()
    return code


def run_main(path):
    """What `python path` does with its script: a fresh __main__, the code run in it."""
    import importlib.machinery
    import types

    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__cached__ = None
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def serve(lib, sock):
    while True:
        fds = array.array("i")
        try:
            msg, anc, _, _ = sock.recvmsg(1 << 18, socket.CMSG_SPACE(5 * fds.itemsize))
        except InterruptedError:
            continue
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        if not msg:
            return
        if len(fds) != 5:
            for fd in fds:
                os.close(fd)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        a = os.fork()
        if a == 0:
            try:
                sock.close()
                if lib.nb_zygote_unshare(fds[0]) >= 0 and os.fork() == 0:
                    run_target(lib, msg, fds[0], list(fds[1:]))
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        os.waitpid(a, 0)


def main():
    global OWN_MODULES
    sock = socket.socket(fileno=0)
    try:
        preload()
        # The zygote's own modules, imported after everything a target's pytest would
        # import: dropped from sys.modules in each target (one that imports them gets
        # them afresh, as it would cold).
        before = set(sys.modules)
        import ctypes

        OWN_MODULES = sorted(set(sys.modules) - before)
        lib = ctypes.CDLL(os.path.join(HERE, "libnestbox-zygote.so"))
        for name in ("nb_zygote_unshare", "nb_zygote_setup", "nb_zygote_command"):
            getattr(lib, name).restype = ctypes.c_int
        lib.nb_zygote_setup.argtypes = [ctypes.c_char_p, ctypes.c_size_t] + [ctypes.c_int] * 5
        lib.nb_zygote_reap.argtypes = [ctypes.c_int, ctypes.c_int]
    except BaseException:
        import traceback

        traceback.print_exc()  # NESTBOX_ZYGOTE_DEBUG=1 shows it
        return 1
    # What the zygote holds is alive for its whole life: out of the collector's sight,
    # a target's collections do not walk it (nor copy its pages by writing to them).
    gc.collect()
    gc.freeze()
    serve(lib, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
