/* SPDX-License-Identifier: MIT */
/* Scope-bound cleanup in the systemd style: _cleanup_free_ and friends release a
 * resource when its variable goes out of scope; TAKE_PTR/TAKE_FD hand ownership on. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void nb_freep(void *p) {
        free(*(void **) p);
}

/* close() must not clobber errno of the failure that made us unwind. */
static inline void nb_closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline void nb_fclosep(FILE **f) {
        if (*f) {
                int saved = errno;
                fclose(*f);
                errno = saved;
        }
}

static inline void nb_closedirp(DIR **d) {
        if (*d) {
                int saved = errno;
                closedir(*d);
                errno = saved;
        }
}

/* A NULL-terminated vector of malloc'd strings. */
static inline void nb_strv_freep(char ***v) {
        if (*v) {
                for (char **s = *v; *s; s++)
                        free(*s);
                free(*v);
        }
}

static inline void nb_strv_free(char **v) {
        nb_strv_freep(&v);
}

#define _cleanup_free_ _cleanup_(nb_freep)
#define _cleanup_close_ _cleanup_(nb_closep)
#define _cleanup_fclose_ _cleanup_(nb_fclosep)
#define _cleanup_closedir_ _cleanup_(nb_closedirp)
#define _cleanup_strv_free_ _cleanup_(nb_strv_freep)

#define TAKE_PTR(p)                             \
        ({                                      \
                __typeof__(p) _taken = (p);     \
                (p) = NULL;                     \
                _taken;                         \
        })

#define TAKE_FD(fd)                             \
        ({                                      \
                int _taken = (fd);              \
                (fd) = -1;                      \
                _taken;                         \
        })

#define NB_ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* qsort that accepts an empty (possibly NULL) array: C says qsort(NULL, 0, ...) is
 * undefined, and an empty list is common here (no denials, no env, no tests). */
static inline void nb_qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *)) {
        if (n > 1)
                qsort(base, n, size, cmp);
}
