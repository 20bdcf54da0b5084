/* SPDX-License-Identifier: MIT */
/* Lockfiles in pip's hash-checking requirements format (HACKING.md, "Locked
 * virtualenvs"):
 *
 *     # comment
 *     pytest==7.2.1 \
 *         --hash=sha256:0123...
 *     tomli==2.0.1 ; python_version < "3.11" --hash=sha256:4567...
 *
 * Every requirement is pinned with == and carries at least one sha256 hash. Environment
 * markers are evaluated for the target interpreter at parse time: a requirement whose
 * marker is false is dropped, a marker that cannot be evaluated is an error. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "nestbox/error.h"

/* The PEP 508 marker variables nestbox can evaluate; all non-NULL. */
struct nb_marker_env {
        const char *python_version;                 /* "3.11" */
        const char *python_full_version;            /* "3.11.2" */
        const char *sys_platform;                   /* "linux" */
        const char *platform_system;                /* "Linux" */
        const char *platform_machine;               /* "x86_64" */
        const char *os_name;                        /* "posix" */
        const char *implementation_name;            /* "cpython" */
        const char *platform_python_implementation; /* "CPython" */
};

struct nb_requirement {
        char *name;     /* PEP 503 normalised: "typing-extensions" */
        char *version;  /* as pinned: "4.5.0" */
        char **hashes;  /* NULL-terminated, 64 lowercase hex characters each (sha256) */
        unsigned line;  /* first line of the requirement in the lockfile */
};

struct nb_lockfile {
        struct nb_requirement *reqs; /* sorted by name; markers already applied */
        size_t n_reqs;
        size_t n_skipped; /* requirements dropped because their marker is false */
};

/* Parses text (len bytes, need not be NUL-terminated). name is what error messages
 * call the file ("lockfile default.lock:12: ..."). Returns -EINVAL for bad input. */
int nb_lockfile_parse(const char *name, const char *text, size_t len, const struct nb_marker_env *env,
                      struct nb_lockfile *ret, struct nb_error *err);

/* Reads and parses the file at path (-ENOENT when missing). */
int nb_lockfile_load(const char *path, const struct nb_marker_env *env, struct nb_lockfile *ret,
                     struct nb_error *err);

void nb_lockfile_done(struct nb_lockfile *l);

/* Evaluates a PEP 508 marker ("python_version >= '3.8' and os_name == 'posix'").
 * Returns 0 with *ret set, or -EINVAL with a message in err saying what could not be
 * evaluated. */
int nb_marker_eval(const char *marker, const struct nb_marker_env *env, bool *ret, struct nb_error *err);

/* PEP 503: lowercase, every run of "-", "_", "." becomes one "-". Returns a new string
 * or NULL when out of memory. */
char *nb_pep503_normalize(const char *name);
