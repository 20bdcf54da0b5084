/* SPDX-License-Identifier: MIT */
/* A test-only shim (LD_PRELOAD, never linked into nestbox) for
 * tests/e2e/test_cache_cmd.py: the `cache gc` that takes an entry in the instant after
 * it was published. The first time nestbox opens a cache entry ("venvs/<digest>" or
 * "trees/<digest>", relative to the cache's descriptor) with openat2 while it exists,
 * the shim renames it into tmp/ first, as gc does, so that the open finds it gone.
 * On a fresh cache that first open is the one that seals the entry just renamed into
 * place. Each entry is taken once. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_TAKEN 32
static char taken[MAX_TAKEN][160];
static int n_taken;

static bool an_entry(const char *path) {
        return path && (strncmp(path, "venvs/", 6) == 0 || strncmp(path, "trees/", 6) == 0) &&
               !strchr(path + 6, '/') && strlen(path) < sizeof(taken[0]);
}

static void take_once(int dirfd, const char *path) {
        struct stat st;
        for (int i = 0; i < n_taken; i++)
                if (strcmp(taken[i], path) == 0)
                        return;
        if (n_taken == MAX_TAKEN || fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return;
        char grave[64];
        snprintf(grave, sizeof(grave), "tmp/gc-race.%d.%d", (int) getpid(), n_taken);
        /* gc's way: made writable (moving a directory rewrites its ".."), renamed. */
        (void) fchmodat(dirfd, path, 0755, 0);
        if (renameat(dirfd, path, dirfd, grave) == 0)
                strcpy(taken[n_taken++], path);
}

/* All six arguments are passed on, as glibc's own syscall() reads them whatever the
 * call: past the ones given they are whatever the stack holds, hence no ASan here. */
__attribute__((no_sanitize("address"))) long syscall(long number, ...) {
        static long (*real)(long, ...);
        if (!real)
                real = (long (*)(long, ...)) dlsym(RTLD_NEXT, "syscall");
        va_list ap;
        va_start(ap, number);
        long a[6];
        for (int i = 0; i < 6; i++)
                a[i] = va_arg(ap, long);
        va_end(ap);
        if (number == SYS_openat2 && an_entry((const char *) a[1]))
                take_once((int) a[0], (const char *) a[1]);
        return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
