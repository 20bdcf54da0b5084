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
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# sys.path as a fresh `python /nestbox/driver.py` has it, before PYTHONPATH's entries.
BASE_PATH = ["/nestbox"] + sys.path[1:]
OWN_MODULES = []
# Built-in plugins the driver's "-p no:cacheprovider" keeps pytest from importing.
NOT_LOADED = {"cacheprovider", "stepwise"}


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
        except Exception:
            pass
    for name in ("heapq", "json"):  # the driver's own (hashlib only when it shards)
        importlib.import_module(name)


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
    serve(lib, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
