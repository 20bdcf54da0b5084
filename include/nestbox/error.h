/* SPDX-License-Identifier: MIT */
/* Errors that carry their context up (crun's libcrun_error_t in spirit).
 *
 * Library functions return 0 (or a non-negative value) on success and -errno on
 * failure. Where the caller needs to know more than an errno (which path, which
 * package, which step) they also fill a struct nb_error; the CLI prints it once as
 * "nestbox: <message>". Every function accepts err == NULL. */
#pragma once

#include <stdarg.h>

/* Who is to blame, decided where the error is found (not guessed from errno later):
 * the CLI maps a class to an exit code in one place (runner/cli/cli.c). */
enum nb_error_class {
        NB_ERROR_INFRA = 0, /* the machine, the cache, the sandbox, out of memory: exit 3 */
        NB_ERROR_USAGE,     /* the command line: exit 2 */
        NB_ERROR_INPUT,     /* the workspace, an action file, a lockfile, a wheel: exit 2 */
        NB_ERROR_TIMEOUT,   /* a run hit its wall-clock limit: exit 4 */
};

struct nb_error {
        int code;  /* positive errno, 0 when unset */
        char *msg; /* "context: reason", malloc'd */
        enum nb_error_class klass;
};

#define NB_ERROR_INIT { 0, NULL, NB_ERROR_INFRA }

/* Sets err to "<fmt>: strerror(code)" and returns -code. */
int nb_error_set(struct nb_error *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Sets err to "<fmt>" alone (the reason is in the text) and returns -code. */
int nb_error_setx(struct nb_error *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Prefixes an already set error with "<fmt>: " and returns -err->code. When err has
 * no message yet, behaves like nb_error_set with the given code. */
int nb_error_wrap(struct nb_error *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

void nb_error_clear(struct nb_error *err);

/* Marks err (already set) as being of class k and returns -err->code (or -EINVAL when
 * err is NULL), so that "return nb_error_class(err, NB_ERROR_INPUT, r);" reads well.
 * r is returned unchanged when err is NULL. */
int nb_error_classify(struct nb_error *err, enum nb_error_class k, int r);

/* The class of a failure on a path the user named (a lockfile, a wheelhouse, a glob's
 * directories), by its errno: what another machine, or this one another time, may not
 * meet (descriptors, memory, I/O, space, permissions) is NB_ERROR_INFRA; the rest
 * (not there, not a directory, a link loop, too long) is the name's, NB_ERROR_INPUT. */
enum nb_error_class nb_error_class_of_path(int e);

/* nb_error_setx() with class NB_ERROR_INPUT: for what the user wrote. */
int nb_error_input(struct nb_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The human message, never NULL. */
const char *nb_error_message(const struct nb_error *err);

static inline void nb_error_clearp(struct nb_error *err) {
        nb_error_clear(err);
}
#define _cleanup_error_ __attribute__((cleanup(nb_error_clearp)))
