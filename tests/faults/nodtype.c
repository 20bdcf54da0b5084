/* SPDX-License-Identifier: MIT */
/* A test-only shim (LD_PRELOAD, never linked into nestbox): every directory entry
 * nestbox reads says DT_UNKNOWN, as on file systems that do not report a type in
 * readdir (some network and FUSE file systems, XFS without ftype). Code that trusts
 * d_type alone meets it in tests/e2e/test_no_dtype.py.
 *
 * dirent.h is not included: with _FILE_OFFSET_BITS=64 it renames readdir to
 * readdir64, and both names must be defined here. On Linux both return the same
 * layout, the kernel's linux_dirent64. */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct entry {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
};

#define NO_TYPE 0 /* DT_UNKNOWN */

typedef void *(*readdir_fn)(void *);

/* The real readdir (or readdir64) found once by name, its entry's type blanked. */
static void *untyped(readdir_fn *real, const char *name, void *dir) {
        if (!*real)
                *real = (readdir_fn) dlsym(RTLD_NEXT, name);
        struct entry *e = (*real)(dir);
        if (e)
                e->type = NO_TYPE;
        return e;
}

void *readdir(void *dir);
void *readdir(void *dir) {
        static readdir_fn real;
        return untyped(&real, "readdir", dir);
}

void *readdir64(void *dir);
void *readdir64(void *dir) {
        static readdir_fn real;
        return untyped(&real, "readdir64", dir);
}

ssize_t getdents64(int fd, void *buf, size_t len);
ssize_t getdents64(int fd, void *buf, size_t len) {
        static ssize_t (*real)(int, void *, size_t);
        if (!real)
                real = (ssize_t (*)(int, void *, size_t)) dlsym(RTLD_NEXT, "getdents64");
        ssize_t n = real(fd, buf, len);
        for (ssize_t off = 0; off < n;) {
                struct entry *e = (struct entry *) ((char *) buf + off);
                e->type = NO_TYPE;
                off += e->reclen;
        }
        return n;
}
