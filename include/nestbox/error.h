/* SPDX-License-Identifier: MIT */
/* Errors that carry their context up (crun's libcrun_error_t in spirit).
 *
 * Library functions return 0 (or a non-negative value) on success and -errno on
 * failure. Where the caller needs to know more than an errno (which path, which
 * package, which step) they also fill a struct nb_error; the CLI prints it once as
 * "nestbox: <message>". Every function accepts err == NULL. */
#pragma once

#include <stdarg.h>

struct nb_error {
        int code;  /* positive errno, 0 when unset */
        char *msg; /* "context: reason", malloc'd */
};

#define NB_ERROR_INIT { 0, NULL }

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

/* The human message, never NULL. */
const char *nb_error_message(const struct nb_error *err);

static inline void nb_error_clearp(struct nb_error *err) {
        nb_error_clear(err);
}
#define _cleanup_error_ __attribute__((cleanup(nb_error_clearp)))
