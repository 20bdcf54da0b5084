/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache_dir.h"
#include "cache/digest_memo.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

static const char *const layout[] = { "cas", "ac", "venvs", "trees", "tmp" };

/* The last-use stamp (cache_dir.h): set when a run opens the cache, or a worker
 * starts a request; the worker's requests may overlap, hence the lock. */
static pthread_mutex_t use_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec use_time;

void nb_cache_use_begin(void) {
        pthread_mutex_lock(&use_lock);
        (void) clock_gettime(CLOCK_REALTIME, &use_time);
        pthread_mutex_unlock(&use_lock);
}

int nb_cache_use_touch(int dirfd, const char *rel, int fd) {
        pthread_mutex_lock(&use_lock);
        if (use_time.tv_sec == 0)
                (void) clock_gettime(CLOCK_REALTIME, &use_time);
        /* The modification time, not the access time: right on noatime mounts too. */
        const struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, use_time };
        pthread_mutex_unlock(&use_lock);
        return (fd >= 0 ? futimens(fd, ts) : utimensat(dirfd, rel, ts, AT_SYMLINK_NOFOLLOW)) < 0 ? -errno : 0;
}

static char *default_cache_path(void) {
        char *p = NULL;
        const char *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        if (xdg && *xdg == '/') {
                if (asprintf(&p, "%s/nestbox", xdg) < 0)
                        return NULL;
        } else if (home && *home == '/') {
                if (asprintf(&p, "%s/.cache/nestbox", home) < 0)
                        return NULL;
        } else if (asprintf(&p, "/tmp/nestbox-cache-%u", (unsigned) getuid()) < 0)
                return NULL;
        return p;
}

/* A cache another user can write is a cache whose results they can forge: the cache
 * directory, each of its namespaces and the directory holding it must belong to us
 * (or, for the parent only, be sticky like /tmp) and be writable by no one else. */
static int check_owned(int fd, const char *path, const char *what, bool parent, struct nb_error *err) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return nb_error_set(err, errno, "cache %s%s", path, what);
        uid_t me = geteuid();
        bool others_write = st.st_mode & (S_IWGRP | S_IWOTH);
        if (parent ? (others_write && !(st.st_mode & S_ISVTX)) || (st.st_uid != me && st.st_uid != 0)
                   : st.st_uid != me || others_write)
                return nb_error_input(err, EPERM,
                                      "cache %s%s: %s by uid %u with mode %04o; refusing a cache that another user "
                                      "can write (it must be yours and writable only by you)",
                                      path, what, parent ? "the directory holding it is owned" : "owned",
                                      (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777));
        return 0;
}

int nb_cache_dir_open(struct nb_cache_dir *c, const char *dir, struct nb_error *err) {
        *c = (struct nb_cache_dir) { .fd = -1 };
        _cleanup_free_ char *path = dir ? realpath(dir, NULL) : NULL;
        if (dir && !path) {
                if (errno != ENOENT)
                        return nb_error_set(err, errno, "cache %s", dir);
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        return nb_error_set(err, errno, "cache %s", dir);
                path = realpath(dir, NULL);
                if (!path)
                        return nb_error_set(err, errno, "cache %s", dir);
        }
        if (!path) {
                path = default_cache_path();
                if (!path)
                        return nb_error_set(err, ENOMEM, "cache");
                _cleanup_close_ int made = nb_mkdir_p_user(path, 0755);
                if (made < 0)
                        return nb_error_set(err, -made, "cache %s", path);
        }
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return nb_error_set(err, errno, "cache %s", path);
        _cleanup_close_ int up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (up < 0)
                return nb_error_set(err, errno, "cache %s/..", path);
        int r;
        if ((r = check_owned(fd, path, "", false, err)) < 0 || (r = check_owned(up, path, "/..", true, err)) < 0)
                return r;
        nb_cache_use_begin(); /* what this run uses or writes is at least this recent */
        for (size_t i = 0; i < NB_ELEMENTSOF(layout); i++) {
                if (mkdirat(fd, layout[i], 0755) < 0 && errno != EEXIST)
                        return nb_error_set(err, errno, "cache %s/%s", path, layout[i]);
                _cleanup_close_ int sub = openat(fd, layout[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                        return nb_error_set(err, errno, "cache %s/%s", path, layout[i]);
                char what[16];
                snprintf(what, sizeof(what), "/%s", layout[i]);
                if ((r = check_owned(sub, path, what, false, err)) < 0)
                        return r;
        }
        c->fd = TAKE_FD(fd);
        c->path = TAKE_PTR(path);
        return 0;
}

void nb_cache_dir_close(struct nb_cache_dir *c) {
        nb_digest_memo_closep(&c->memo);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        free(c->path);
        c->path = NULL;
}

int nb_cache_dir_mkdtemp(struct nb_cache_dir *c, const char *prefix, char **ret_rel, struct nb_error *err) {
        _cleanup_free_ char *full = NULL;
        if (asprintf(&full, "%s/tmp/%s.XXXXXX", c->path, prefix) < 0)
                return nb_error_set(err, ENOMEM, "cache");
        if (!mkdtemp(full))
                return nb_error_set(err, errno, "cache %s", full);
        char *rel = strdup(full + strlen(c->path) + 1);
        if (!rel)
                return nb_error_set(err, ENOMEM, "cache");
        *ret_rel = rel;
        return 0;
}

int nb_cache_dir_hold(struct nb_cache_dir *c, const char *rel, int *ret_fd) {
        _cleanup_close_ int fd = openat(c->fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_SH) < 0)
                return -errno;
        /* gc renames an entry away while holding its lock exclusively: once we have the
         * lock, the entry is either still at rel or gone for good. */
        struct stat held, now;
        if (fstat(fd, &held) < 0)
                return -errno;
        if (fstatat(c->fd, rel, &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_ino != held.st_ino ||
            now.st_dev != held.st_dev)
                return -ENOENT;
        (void) nb_cache_use_touch(-1, NULL, fd); /* only recency for gc: a read-only cache still works */
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int nb_cache_dir_seal_published(struct nb_cache_dir *c, const char *rel) {
        _cleanup_close_ int fd = nb_open_beneath(c->fd, rel, O_RDONLY | O_DIRECTORY, 0);
        if (fd == -ENOENT)
                return 0;
        if (fd < 0)
                return fd;
        return fchmod(fd, 0555) < 0 && errno != ENOENT ? -errno : 0;
}

int nb_cache_dir_publish(struct nb_cache_dir *c, const char *tmp_rel, const char *final_rel, struct nb_error *err) {
        if (renameat(c->fd, tmp_rel, c->fd, final_rel) == 0) {
                /* The rename lives in the directory it was made into (trees/, venvs/):
                 * that one is fsynced, not the cache root. */
                const char *slash = strrchr(final_rel, '/');
                _cleanup_free_ char *parent = slash ? strndup(final_rel, (size_t) (slash - final_rel)) : strdup(".");
                if (!parent)
                        return nb_error_set(err, ENOMEM, "cache");
                _cleanup_close_ int d = nb_open_beneath(c->fd, parent, O_RDONLY | O_DIRECTORY, 0);
                if (d < 0)
                        return nb_error_set(err, -d, "cache %s/%s", c->path, parent);
                if (fsync(d) < 0)
                        return nb_error_set(err, errno, "cache %s/%s", c->path, parent);
                return 0;
        }
        if (errno == EEXIST || errno == ENOTEMPTY) {
                /* Someone else published the same digest first: theirs is as good as ours. */
                (void) nb_rm_rf_at(c->fd, tmp_rel);
                return 0;
        }
        int e = errno;
        (void) nb_rm_rf_at(c->fd, tmp_rel);
        return nb_error_set(err, e, "cache %s/%s", c->path, final_rel);
}

/* What one walk of a finished entry does to each thing below it. */
enum below_op {
        SEAL,  /* read-only for everyone */
        WRITE, /* start each file's writeback */
        SYNC,  /* fsync each file and directory */
};

static int file_op(int dfd, const char *name, const struct stat *st, enum below_op op, unsigned *n_files) {
        if (op == SEAL) {
                mode_t want = (st->st_mode & S_IXUSR) ? 0555 : 0444;
                if ((st->st_mode & 07777) != want && fchmodat(dfd, name, want, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                return 0;
        }
        _cleanup_close_ int fd = nb_open_beneath(dfd, name, O_RDONLY | O_NONBLOCK, 0);
        if (fd < 0)
                return fd;
        ++*n_files;
        if (op == WRITE)
                /* Only a head start for the fsync below: a filesystem without it loses nothing. */
                return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0 && errno != ENOSYS &&
                                       errno != EINVAL && errno != ESPIPE
                               ? -errno
                               : 0;
        return fsync(fd) < 0 ? -errno : 0;
}

static int walk_below(int dfd, unsigned depth, unsigned max_depth, enum below_op op, unsigned *n_files) {
        if (depth > max_depth)
                return -ELOOP;
        _cleanup_closedir_ DIR *d = NULL;
        int k = nb_opendir_at(dfd, ".", &d);
        if (k < 0)
                return k;
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d))) {
                struct stat st;
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                int r = 0;
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int sub = nb_open_beneath(dfd, de->d_name, O_RDONLY | O_DIRECTORY, 0);
                        if (sub < 0)
                                return sub;
                        r = walk_below(sub, depth + 1, max_depth, op, n_files);
                        if (r >= 0 && op == SEAL && fchmod(sub, 0555) < 0)
                                r = -errno;
                        if (r >= 0 && op == SYNC && fsync(sub) < 0)
                                r = -errno;
                } else if (S_ISREG(st.st_mode))
                        r = file_op(dfd, de->d_name, &st, op, n_files);
                if (r < 0)
                        return r;
                errno = 0;
        }
        return errno ? -errno : 0;
}

int nb_cache_dir_seal(int dfd, unsigned max_depth) {
        unsigned n = 0;
        return walk_below(dfd, 0, max_depth, SEAL, &n);
}

/* Above this many files one syncfs is cheaper than a flush per file (see the header). */
#define FSYNC_EACH_MAX 64

int nb_cache_dir_sync(int dfd, unsigned max_depth) {
        unsigned n = 0;
        int r = walk_below(dfd, 0, max_depth, WRITE, &n);
        if (r < 0)
                return r;
        if (n > FSYNC_EACH_MAX)
                return syncfs(dfd) < 0 ? -errno : 0;
        r = walk_below(dfd, 0, max_depth, SYNC, &n);
        return r < 0 ? r : fsync(dfd) < 0 ? -errno : 0;
}
