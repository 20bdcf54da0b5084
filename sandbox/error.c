/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nestbox/error.h"

__attribute__((format(printf, 1, 0))) static char *vformat(const char *fmt, va_list ap) {
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0)
                return NULL;
        return s;
}

static int set_message(struct nb_error *err, int code, char *msg) {
        if (code < 0)
                code = -code;
        if (code == 0)
                code = EIO;
        if (!err) {
                free(msg);
                return -code;
        }
        free(err->msg);
        err->msg = msg;
        err->code = code;
        err->klass = NB_ERROR_INFRA;
        return -code;
}

int nb_error_set(struct nb_error *err, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *ctx = vformat(fmt, ap);
        va_end(ap);
        char *msg = NULL;
        if (ctx && asprintf(&msg, "%s: %s", ctx, strerror(code < 0 ? -code : code)) < 0)
                msg = NULL;
        free(ctx);
        return set_message(err, code, msg);
}

int nb_error_setx(struct nb_error *err, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *msg = vformat(fmt, ap);
        va_end(ap);
        return set_message(err, code, msg);
}

int nb_error_wrap(struct nb_error *err, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *ctx = vformat(fmt, ap);
        va_end(ap);
        if (!err) {
                free(ctx);
                return -(code < 0 ? -code : (code ? code : EIO));
        }
        if (!err->msg) {
                int c = code ? code : err->code;
                char *msg = NULL;
                if (ctx && asprintf(&msg, "%s: %s", ctx, strerror(c < 0 ? -c : c)) < 0)
                        msg = NULL;
                free(ctx);
                return set_message(err, c, msg);
        }
        char *msg = NULL;
        if (ctx && asprintf(&msg, "%s: %s", ctx, err->msg) < 0)
                msg = NULL;
        free(ctx);
        if (msg) {
                free(err->msg);
                err->msg = msg;
        }
        return -err->code;
}

enum nb_error_class nb_error_class_of_path(int e) {
        switch (e < 0 ? -e : e) {
        case EMFILE: case ENFILE: case ENOMEM: case ENOBUFS: case EIO: case ENOSPC: case EDQUOT: case EROFS:
        case EACCES: case EPERM: case EAGAIN: case EINTR: case ETIMEDOUT: case ESTALE:
                return NB_ERROR_INFRA;
        default:
                return NB_ERROR_INPUT;
        }
}

void nb_error_clear(struct nb_error *err) {
        if (!err)
                return;
        free(err->msg);
        err->msg = NULL;
        err->code = 0;
        err->klass = NB_ERROR_INFRA;
}

int nb_error_classify(struct nb_error *err, enum nb_error_class k, int r) {
        if (!err)
                return r;
        err->klass = k;
        return -(err->code ? err->code : EIO);
}

int nb_error_input(struct nb_error *err, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *msg = vformat(fmt, ap);
        va_end(ap);
        int r = set_message(err, code, msg);
        return nb_error_classify(err, NB_ERROR_INPUT, r);
}

const char *nb_error_message(const struct nb_error *err) {
        if (!err)
                return "unknown error";
        if (err->msg)
                return err->msg;
        return err->code ? strerror(err->code) : "unknown error";
}
