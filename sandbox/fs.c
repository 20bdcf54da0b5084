/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"

/* openat2 answers EAGAIN when a rename or mount raced the lookup; a few more tries
 * get past an unlucky moment, a path that keeps changing gets -EAGAIN. */
#define OPENAT2_TRIES 8

static int openat2_retry(int dirfd, const char *path, const struct open_how *how) {
        for (int i = 0; i < OPENAT2_TRIES; i++) {
                int fd = (int) syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
                if (fd >= 0)
                        return fd;
                if (errno != EAGAIN)
                        return -errno;
        }
        return -EAGAIN;
}

int nb_open_beneath(int dirfd, const char *path, int flags, mode_t mode) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC | O_NOFOLLOW),
                .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        if (!path || !*path)
                path = ".";
        return openat2_retry(dirfd, path, &how);
}

int nb_open_in_root(int rootfd, const char *path, int flags) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        while (path && *path == '/')
                path++;
        return openat2_retry(rootfd, path && *path ? path : ".", &how);
}

/* A directory of the walk: a symlink met where links are not followed is -ELOOP, as
 * everywhere in the walker, anything else that is not a directory -ENOTDIR. */
static int open_walk_dir(int dirfd, const char *prefix, bool in_root) {
        _cleanup_close_ int fd = in_root ? nb_open_in_root(dirfd, prefix, O_PATH)
                                         : nb_open_beneath(dirfd, prefix, O_PATH, 0);
        if (fd < 0)
                return fd;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISLNK(st.st_mode))
                return -ELOOP;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        return TAKE_FD(fd);
}

/* The one mkdir -p, a component at a time, each created in its parent when it is
 * missing. Beneath: each component is opened from its parent's descriptor, so a path
 * of any length works (a test's undeclared output, escaped, can pass PATH_MAX) and no
 * link is followed on the way. In root: each prefix of path is opened from dirfd, so
 * that a link in it resolves inside the root. A ".." anywhere is refused before
 * anything is made. */
static int mkdir_p(int dirfd, const char *path, mode_t mode, bool in_root) {
        if (nb_path_has_dotdot(path))
                return -EXDEV;
        _cleanup_free_ char *prefix = malloc(strlen(path) + 1);
        if (!prefix)
                return -ENOMEM;
        size_t len = 0;
        _cleanup_close_ int cur = in_root ? nb_open_in_root(dirfd, ".", O_PATH | O_DIRECTORY)
                                          : nb_open_beneath(dirfd, ".", O_PATH | O_DIRECTORY, 0);
        if (cur < 0)
                return cur;
        for (const char *c = path; *c;) {
                size_t n = strcspn(c, "/");
                if (n == 0 || (n == 1 && c[0] == '.')) {
                        c += n + (c[n] == '/');
                        continue;
                }
                _cleanup_free_ char *part = strndup(c, n);
                if (!part)
                        return -ENOMEM;
                if (len)
                        prefix[len++] = '/';
                memcpy(prefix + len, c, n);
                len += n;
                prefix[len] = 0;
                c += n + (c[n] == '/');
                for (int attempt = 0;; attempt++) {
                        int next = in_root ? open_walk_dir(dirfd, prefix, true) : open_walk_dir(cur, part, false);
                        if (next >= 0) {
                                close(cur);
                                cur = next;
                                break;
                        }
                        if (next != -ENOENT || attempt > 0)
                                return next;
                        if (mkdirat(cur, part, mode) < 0 && errno != EEXIST)
                                return -errno;
                }
        }
        return TAKE_FD(cur);
}

int nb_mkdir_p_beneath(int dirfd, const char *path, mode_t mode) {
        /* Beneath means beneath: an absolute path is refused like any other escape. */
        if (path[0] == '/')
                return -EXDEV;
        return mkdir_p(dirfd, path, mode, false);
}

char *nb_link_beneath(int dirfd, const char *path) {
        if (nb_path_has_dotdot(path))
                return NULL;
        _cleanup_close_ int cur = nb_open_beneath(dirfd, ".", O_PATH | O_DIRECTORY, 0);
        for (const char *c = path; cur >= 0 && *c;) {
                size_t n = strcspn(c, "/");
                _cleanup_free_ char *part = strndup(c, n);
                if (!part)
                        return NULL;
                struct stat st;
                if (n > 0 && fstatat(cur, part, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return NULL;
                if (n > 0 && S_ISLNK(st.st_mode))
                        return strndup(path, (size_t) (c + n - path));
                if (n > 0) {
                        int next = openat(cur, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        close(cur);
                        cur = next;
                }
                c += n + (c[n] == '/');
        }
        return NULL;
}

int nb_mkdir_p_user(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        const char *base = p[0] == '/' ? "/" : ".";
        /* The longest prefix that exists, opened the ordinary way: links in it are the
         * user's own (/home -> var/home) and are followed. */
        for (char *cut = p + strlen(p);;) {
                char saved = *cut;
                *cut = 0;
                bool empty = strspn(p, "/") == strlen(p);
                int fd = open(empty ? base : p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                *cut = saved;
                if (fd < 0 && errno != ENOENT)
                        return -errno;
                if (fd >= 0) {
                        const char *rest = cut + strspn(cut, "/");
                        if (!*rest)
                                return fd;
                        int r = nb_mkdir_p_beneath(fd, rest, mode);
                        close(fd);
                        return r;
                }
                if (empty)
                        return -ENOENT;
                while (cut > p && *--cut != '/')
                        ;
        }
}

int nb_mkdir_p_in_root(int rootfd, const char *path, mode_t mode) {
        return mkdir_p(rootfd, path, mode, true);
}

int nb_read_fd(int fd, size_t max_size, char **data, size_t *len) {
        return nb_read_fd_sized(fd, 4096, max_size, data, len);
}

ssize_t nb_read_full(int fd, void *buf, size_t len) {
        size_t n = 0;
        while (n < len) {
                ssize_t r = read(fd, (char *) buf + n, len - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        break;
                n += (size_t) r;
        }
        return (ssize_t) n;
}

int nb_read_fd_sized(int fd, size_t size_hint, size_t max_size, char **data, size_t *len) {
        size_t cap = size_hint < max_size ? size_hint : max_size, n = 0;
        bool at_hint = true; /* the buffer is still the hinted size: probe for EOF first */
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (n == cap && at_hint) {
                        char probe;
                        ssize_t r = nb_read_full(fd, &probe, 1);
                        if (r < 0)
                                return (int) r;
                        if (r == 0)
                                break;
                        at_hint = false;
                        if (++n > max_size)
                                return -EFBIG;
                        size_t ncap = cap ? cap * 2 : 4096;
                        char *nbuf = realloc(buf, ncap + 1);
                        if (!nbuf)
                                return -ENOMEM;
                        buf = nbuf;
                        buf[cap] = probe;
                        cap = ncap;
                        continue;
                }
                if (n == cap) {
                        if (cap > max_size)
                                return -EFBIG;
                        size_t ncap = cap * 2;
                        char *nbuf = realloc(buf, ncap + 1);
                        if (!nbuf)
                                return -ENOMEM;
                        buf = nbuf;
                        cap = ncap;
                }
                ssize_t r = read(fd, buf + n, cap - n);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        break;
                n += (size_t) r;
                if (n > max_size)
                        return -EFBIG;
        }
        buf[n] = 0;
        *data = TAKE_PTR(buf);
        if (len)
                *len = n;
        return 0;
}

int nb_read_file_beneath(int dirfd, const char *path, size_t max_size, char **data, size_t *len) {
        _cleanup_close_ int fd = nb_open_beneath(dirfd, path, O_RDONLY | O_NONBLOCK, 0);
        if (fd < 0)
                return fd;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if ((uint64_t) st.st_size > max_size)
                return -EFBIG;
        return nb_read_fd(fd, max_size, data, len);
}

int nb_write_all(int fd, const void *data, size_t len) {
        const char *p = data;
        while (len > 0) {
                ssize_t w = write(fd, p, len);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                len -= (size_t) w;
        }
        return 0;
}

int nb_write_file_beneath(int dirfd, const char *path, const void *data, size_t len, mode_t mode) {
        _cleanup_close_ int fd = nb_open_beneath(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC, mode);
        if (fd < 0)
                return fd;
        return nb_write_all(fd, data, len);
}

/* Splits "a/b/c" into the directory "a/b" (opened beneath dirfd) and the name "c". */
static int open_parent(int dirfd, const char *path, const char **name) {
        const char *slash = strrchr(path, '/');
        if (!slash) {
                *name = path;
                return nb_open_beneath(dirfd, ".", O_PATH | O_DIRECTORY, 0);
        }
        _cleanup_free_ char *dir = strndup(path, (size_t) (slash - path));
        if (!dir)
                return -ENOMEM;
        *name = slash + 1;
        return nb_open_beneath(dirfd, *dir ? dir : ".", O_PATH | O_DIRECTORY, 0);
}

static int write_replace(int dirfd, const char *path, const void *data, size_t len, mode_t mode, bool durable) {
        const char *name;
        _cleanup_close_ int parent = open_parent(dirfd, path, &name);
        if (parent < 0)
                return parent;
        if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return -EINVAL;
        _cleanup_close_ int dfd = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        _cleanup_free_ char *tmp = NULL;
        /* Short whatever name is: a name near NAME_MAX has no room for a prefix. */
        if (asprintf(&tmp, ".#nb.%d.%lx", (int) getpid(), (unsigned long) random()) < 0)
                return -ENOMEM;
        _cleanup_close_ int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        int r = nb_write_all(fd, data, len);
        if (r >= 0 && durable && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && renameat(dfd, tmp, dfd, name) < 0)
                r = -errno;
        if (r < 0) {
                unlinkat(dfd, tmp, 0);
                return r;
        }
        if (durable && fsync(dfd) < 0)
                return -errno;
        return 0;
}

int nb_write_file_atomic(int dirfd, const char *path, const void *data, size_t len, mode_t mode) {
        return write_replace(dirfd, path, data, len, mode, true);
}

int nb_write_file_replace(int dirfd, const char *path, const void *data, size_t len, mode_t mode) {
        return write_replace(dirfd, path, data, len, mode, false);
}

int nb_fdopendir(int fd, DIR **ret) {
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret = d;
        return 0;
}

int nb_opendir_at(int dirfd, const char *name, DIR **ret) {
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return nb_fdopendir(fd, ret);
}

struct dirent *nb_readdir_no_dots(DIR *d) {
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de || (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0))
                        return de;
        }
}

static int rm_rf_children(int dfd) {
        _cleanup_closedir_ DIR *d = NULL;
        int r = nb_fdopendir(dfd, &d);
        if (r < 0)
                return r;
        int ret = 0;
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d))) {
                int k = nb_rm_rf_at(dirfd(d), de->d_name);
                if (k < 0 && ret == 0)
                        ret = k;
        }
        /* readdir of a directory another remover emptied and removed meanwhile. */
        if (errno && errno != ENOENT && ret == 0)
                ret = -errno;
        return ret;
}

int nb_rm_rf_at(int dirfd, const char *name) {
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode)) {
                /* Another remover may take it between the stat and the open (two
                 * processes clearing one --output folder): gone is success. */
                int dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd < 0) {
                        /* A read-only tree (mode 0555) is ours to remove: make it writable. */
                        if (errno != EACCES || fchmodat(dirfd, name, 0700, AT_SYMLINK_NOFOLLOW) < 0)
                                return errno == ENOENT ? 0 : -errno;
                        dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (dfd < 0)
                                return errno == ENOENT ? 0 : -errno;
                }
                if (!(st.st_mode & S_IWUSR))
                        (void) fchmod(dfd, st.st_mode | S_IWUSR | S_IXUSR);
                int r = rm_rf_children(dfd);
                if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                        return r < 0 ? r : -errno;
                return r;
        }
        if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}
