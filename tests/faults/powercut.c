/* SPDX-License-Identifier: MIT */
/* A test-only fault point for tests/faults/run (LD_PRELOAD, never linked into nestbox):
 * logs, to $NESTBOX_POWERCUT_LOG, every regular file written ("W path") and every
 * file made durable ("S path" for fsync/fdatasync, "A" for syncfs), and every rename
 * ("R old new"). After a kill -9 the harness truncates each file whose last write was
 * never followed by a sync, following renames: what a power cut leaves of writes that
 * were still in the page cache. Each line is one O_APPEND write, so a SIGKILL never
 * leaves half of one. */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 4096
static bool dirty[MAX_FD];
static int log_fd = -2;

static ssize_t (*real_write)(int, const void *, size_t);

static void init(void) {
        if (log_fd != -2)
                return;
        real_write = (ssize_t (*)(int, const void *, size_t)) dlsym(RTLD_NEXT, "write");
        const char *p = getenv("NESTBOX_POWERCUT_LOG");
        log_fd = p ? open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
        /* Above the range nestbox's own descriptors use, so closing fds 3.. in a child
         * (close_range before an exec) is the only thing that can take it away. */
        if (log_fd >= 0) {
                int high = fcntl(log_fd, F_DUPFD_CLOEXEC, 1000);
                if (high >= 0) {
                        close(log_fd);
                        log_fd = high;
                }
        }
}

static void emit(const char *tag, const char *a, const char *b) {
        init();
        if (log_fd < 0)
                return;
        char line[2 * PATH_MAX + 16];
        int n = snprintf(line, sizeof(line), "%s %s%s%s\n", tag, a ? a : "", b ? " " : "", b ? b : "");
        if (n > 0 && (size_t) n < sizeof(line))
                (void) real_write(log_fd, line, (size_t) n);
}

static bool path_of(int dirfd, const char *name, char *buf) {
        char link[64];
        if (name && name[0] == '/') {
                snprintf(buf, PATH_MAX, "%s", name);
                return true;
        }
        if (dirfd == AT_FDCWD) {
                if (!getcwd(buf, PATH_MAX))
                        return false;
        } else {
                snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
                ssize_t n = readlink(link, buf, PATH_MAX - 1);
                if (n < 0)
                        return false;
                buf[n] = 0;
        }
        if (name && *name) {
                size_t len = strlen(buf);
                snprintf(buf + len, PATH_MAX - len, "/%s", name);
        }
        return true;
}

static void wrote(int fd) {
        struct stat st;
        char path[PATH_MAX];
        if (fd < 0 || fd >= MAX_FD || fd == log_fd || dirty[fd] || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return;
        dirty[fd] = true;
        if (path_of(fd, NULL, path))
                emit("W", path, NULL);
}

static void synced(int fd) {
        char path[PATH_MAX];
        if (fd >= 0 && fd < MAX_FD)
                dirty[fd] = false;
        if (path_of(fd, NULL, path))
                emit("S", path, NULL);
}

ssize_t write(int fd, const void *buf, size_t n) {
        init();
        ssize_t r = real_write(fd, buf, n);
        if (r > 0)
                wrote(fd);
        return r;
}

/* The next definition of name in the link order: libc's. */
#define REAL(name) \
        static __typeof__(name) *real; \
        if (!real) \
                real = (__typeof__(name) *) dlsym(RTLD_NEXT, #name)

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
        REAL(writev);
        ssize_t r = real(fd, iov, cnt);
        if (r > 0)
                wrote(fd);
        return r;
}

ssize_t copy_file_range(int in, off_t *in_off, int out, off_t *out_off, size_t len, unsigned flags) {
        REAL(copy_file_range);
        ssize_t r = real(in, in_off, out, out_off, len, flags);
        if (r > 0)
                wrote(out);
        return r;
}

static int sync_call(int (*real)(int), int fd) {
        int r = real(fd);
        if (r == 0)
                synced(fd);
        return r;
}

int fsync(int fd) {
        REAL(fsync);
        return sync_call(real, fd);
}

int fdatasync(int fd) {
        REAL(fdatasync);
        return sync_call(real, fd);
}

int syncfs(int fd) {
        REAL(syncfs);
        int r = real(fd);
        if (r == 0) {
                memset(dirty, 0, sizeof(dirty));
                emit("A", NULL, NULL);
        }
        return r;
}

int close(int fd) {
        REAL(close);
        if (fd >= 0 && fd < MAX_FD)
                dirty[fd] = false;
        return real(fd);
}

int renameat(int olddir, const char *old, int newdir, const char *new) {
        REAL(renameat);
        char a[PATH_MAX], b[PATH_MAX];
        bool ok = path_of(olddir, old, a) && path_of(newdir, new, b);
        int r = real(olddir, old, newdir, new);
        if (r == 0 && ok)
                emit("R", a, b);
        return r;
}

int rename(const char *old, const char *new) {
        return renameat(AT_FDCWD, old, AT_FDCWD, new);
}
