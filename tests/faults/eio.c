/* SPDX-License-Identifier: MIT */
/* A test-only shim (LD_PRELOAD, never linked into nestbox): read() of a file whose
 * name ends in $NESTBOX_FAULT_SUFFIX fails with $NESTBOX_FAULT_ERRNO (a number;
 * EIO when unset), as a failing disk or a descriptor table filled by another thread
 * would make it. The name is the one /proc/self/fd gives for the descriptor, so the
 * fault follows the file however it was opened. With NESTBOX_FAULT_ON=open it is
 * open() and openat() of a path so ending that fail instead (a directory is never
 * read()). tests/e2e/test_cli.py and test_action.py check that such a failure is the
 * machine's (exit 3), not the file's.
 *
 * Without $NESTBOX_FAULT_SUFFIX nothing fails.
 *
 * open and open64 (openat, openat64) are both defined here: without the large file
 * names' renaming, fcntl.h declares each under its own name. */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static bool ends_with(const char *s, size_t n, const char *suffix) {
        size_t k = strlen(suffix);
        return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* errno to fail a call on, when name (n bytes) is the one chosen and call is the one
 * the fault is on; else 0. */
static int fault_for_name(const char *call, const char *name, size_t n) {
        const char *suffix = getenv("NESTBOX_FAULT_SUFFIX"), *on = getenv("NESTBOX_FAULT_ON");
        if (!suffix || !*suffix || strcmp(on && *on ? on : "read", call) != 0 || !ends_with(name, n, suffix))
                return 0;
        const char *e = getenv("NESTBOX_FAULT_ERRNO");
        int code = e && *e ? atoi(e) : EIO;
        return code > 0 ? code : EIO;
}

/* Whether the read of fd is to fail; errno is then set. */
static bool read_fails(int fd) {
        char link[64], target[4096];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
                return false;
        target[n] = 0;
        int code = fault_for_name("read", target, (size_t) n);
        if (code)
                errno = code;
        return code != 0;
}

ssize_t read(int fd, void *buf, size_t len) {
        static ssize_t (*real)(int, void *, size_t);
        if (!real)
                real = (ssize_t (*)(int, void *, size_t)) dlsym(RTLD_NEXT, "read");
        return read_fails(fd) ? -1 : real(fd, buf, len);
}

/* What read() becomes under _FORTIFY_SOURCE when the buffer's size is known. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen) {
        static ssize_t (*real)(int, void *, size_t, size_t);
        if (!real)
                real = (ssize_t (*)(int, void *, size_t, size_t)) dlsym(RTLD_NEXT, "__read_chk");
        return read_fails(fd) ? -1 : real(fd, buf, len, buflen);
}

static int faulty_openat(int dirfd, const char *path, int flags, va_list ap) {
        static int (*real)(int, const char *, int, ...);
        mode_t mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t) va_arg(ap, int) : 0;
        int code = path ? fault_for_name("open", path, strlen(path)) : 0;
        if (code) {
                errno = code;
                return -1;
        }
        if (!real)
                real = (int (*)(int, const char *, int, ...)) dlsym(RTLD_NEXT, "openat64");
        return real(dirfd, path, flags, mode);
}

/* open(), open64(), openat() and openat64(), each under its own name; the rest of
 * the arguments (openat's directory) before the path. */
#define FAULTY_OPEN(name, dirfd, ...)                                           \
        int name(__VA_ARGS__ const char *path, int flags, ...) {               \
                va_list ap;                                                     \
                va_start(ap, flags);                                            \
                int r = faulty_openat(dirfd, path, flags, ap);                  \
                va_end(ap);                                                     \
                return r;                                                       \
        }

FAULTY_OPEN(open, AT_FDCWD)
FAULTY_OPEN(open64, AT_FDCWD)
FAULTY_OPEN(openat, dirfd, int dirfd,)
FAULTY_OPEN(openat64, dirfd, int dirfd,)
