/* SPDX-License-Identifier: MIT */
/* The target interpreter: what it is (for the venv digest and pyvenv.cfg), which
 * markers it satisfies and which wheel tags it accepts. Asked once per nestbox call by
 * running `PYTHON -I -S -c ...`; everything after that is answered from the record. */
#pragma once

#include <stdint.h>

#include "cache/cas.h"
#include "python/lockfile.h"
#include "nestbox/error.h"

struct nb_python {
        char *path;          /* realpath of the interpreter: "/usr/bin/python3.11" */
        char *version;       /* "3.11.2" */
        char *version_short; /* "3.11" */
        unsigned major, minor;
        char *implementation;        /* sys.implementation.name: "cpython" */
        char *python_implementation; /* platform.python_implementation(): "CPython" */
        char *sys_platform, *os_name, *platform_system, *platform_machine;
        char *soabi;    /* "cpython-311-x86_64-linux-gnu", "" when unknown */
        char *abiflags; /* sys.abiflags: "" or "d", "t" */
        char *platform; /* sysconfig.get_platform(): "linux-x86_64" */
        char *cache_tag; /* sys.implementation.cache_tag: "cpython-311", "" when none */
        unsigned glibc_major, glibc_minor; /* 0.0 when not glibc */
        char *interp_tag; /* "cp311" */
        char *abi_tag;    /* "cp311" */
        char *plat_tag;   /* "linux_x86_64" */
        uint64_t size;    /* of the binary at path ... */
        int64_t mtime_ns; /* ... and its mtime (see nb_python_digest) */
        struct nb_marker_env env; /* points into the fields above */
};

/* Runs the interpreter once and fills py; with a store, the answer is kept in the
 * action cache keyed by the binary's identity and reused while it is unchanged.
 * Errors: -ENOENT (no such interpreter), -EINVAL (it ran but did not answer like a
 * Python 3), both the workspace's; -EINTR (killed by a signal, or stopped by a second
 * ^C or SIGTERM: a first one is handed on to nestbox's handler and the probe asked
 * again), the machine's. */
int nb_python_probe(struct nb_store *store, const char *python, struct nb_python *py, struct nb_error *err);

/* What a sandboxed interpreter sees besides the system directories. */
struct nb_python_run_opts {
        const char *venv;   /* a host directory mounted read-only at /venv, or NULL */
        uint64_t out_size;  /* > 0: a tmpfs of this size at /out, handed back in *out_fd */
        double timeout_sec; /* 0: the probe's */
        /* A SIGINT or SIGTERM stops the run, which then fails (-ECANCELED) rather than
         * return what a half-run command left: the signal goes on to nestbox's own
         * handler (raised again), as if it had come between two runs. Without, it is
         * passed on to the command, which may make of it what it likes. */
        bool cancellable;
};

/* Runs argv (argv[0] the interpreter's real path, beneath the system directories) in
 * a sandbox with a test's walls: the system directories read-only, nothing else of the
 * host, no network, an empty environment, stdin /dev/null, time, memory and pids
 * capped. *out gets stdout and stderr together (at most 64 KiB), *status a wait
 * status. An interpreter outside the system directories is refused (-EPERM, an input
 * error): nothing the workspace names runs on the host. */
int nb_python_run(char *const argv[], const struct nb_python_run_opts *opts, char **out, int *status, int *out_fd,
                  struct nb_error *err);
/* 0 when real (python's realpath) is beneath the system directories the sandbox
 * mounts; otherwise an input error naming both and what to use instead. */
int nb_python_check_system(const char *python, const char *real, struct nb_error *err);
void nb_python_done(struct nb_python *py);

/* How well a wheel's compressed tag set ("py2.py3", "none", "any" / "cp311", "cp311",
 * "manylinux_2_17_x86_64.manylinux2014_x86_64") fits: 0 when it cannot be installed,
 * otherwise higher is more specific (pip's preference order, reduced to a score). */
int nb_python_tag_score(const struct nb_python *py, const char *pytags, const char *abitags, const char *plattags);
