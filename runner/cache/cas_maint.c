/* SPDX-License-Identifier: MIT */
/* Whole-cache walks (cas.h): stats, gc by least recent use, verify with repair.
 *
 * An entry is cas/ab/<digest>, ac/ab/<digest>, venvs/<digest>/ or trees/<digest>/;
 * anything else found at those levels is listed too (as damaged, for verify). tmp/
 * holds writes in progress: never an entry, never counted in the total; gc removes
 * only what nothing has touched for an hour. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cas-internal.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "python/support.h"

enum ns { NS_CAS, NS_AC, NS_VENVS, NS_TREES, NS_TMP, NS_COUNT };
static const char *const ns_names[NS_COUNT] = { "cas", "ac", "venvs", "trees", "tmp" };

#define MAX_DEPTH 256
#define TMP_MAX_AGE_SEC 3600

struct entry {
        enum ns ns;
        char *rel;           /* relative to the cache root */
        struct timespec mtime; /* of the entry; for tmp/ the newest inside */
        uint64_t bytes;      /* regular files and symlinks, apparent size */
        bool dir;
};

struct entry_list {
        struct entry *v;
        size_t n, cap;
};

static void entry_list_done(struct entry_list *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i].rel);
        free(l->v);
}

static bool newer(struct timespec a, struct timespec b) {
        return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

/* du of a directory: apparent sizes of everything but directories, and the newest
 * mtime found. Unreadable subdirectories count as empty: gc and stats must not fail
 * because of one odd directory, and verify looks at entries, not their insides. */
static int du_dir(int parent, const char *name, int depth, uint64_t *bytes, struct timespec *newest) {
        if (depth > MAX_DEPTH)
                return -ELOOP;
        _cleanup_closedir_ DIR *d = NULL;
        int k = nb_opendir_at(parent, name, &d);
        if (k < 0)
                return k == -EACCES || k == -ENOENT ? 0 : k;
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d))) {
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT) /* removed while we looked: fine */
                                return -errno;
                } else {
                        if (newer(st.st_mtim, *newest))
                                *newest = st.st_mtim;
                        if (S_ISDIR(st.st_mode)) {
                                int r = du_dir(dirfd(d), de->d_name, depth + 1, bytes, newest);
                                if (r < 0)
                                        return r;
                        } else
                                *bytes += (uint64_t) st.st_size;
                }
                errno = 0;
        }
        return errno ? -errno : 0;
}

static int add_entry(struct entry_list *l, enum ns ns, int parent, const char *dirrel, const char *name) {
        struct stat st;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        struct entry e = { .ns = ns, .mtime = st.st_mtim, .dir = S_ISDIR(st.st_mode) };
        if (e.dir) {
                int r = du_dir(parent, name, 0, &e.bytes, ns == NS_TMP ? &e.mtime : &(struct timespec) {});
                if (r < 0)
                        return r;
        } else
                e.bytes = (uint64_t) st.st_size;
        if (asprintf(&e.rel, "%s/%s", dirrel, name) < 0)
                return -ENOMEM;
        if (NB_RESERVE(l->v, l->cap, l->n, 1, 64) < 0) {
                free(e.rel);
                return -ENOMEM;
        }
        l->v[l->n++] = e;
        return 0;
}

/* Lists the children of dirrel (relative to root) as entries; with fanout, the
 * children of each subdirectory instead (cas/ab/...), keeping a stray non-directory
 * at the top as an entry of its own so verify can report it. */
static int list_dir(struct entry_list *l, enum ns ns, int root, const char *dirrel, bool fanout) {
        _cleanup_closedir_ DIR *d = NULL;
        int k = nb_opendir_at(root, dirrel, &d);
        if (k < 0)
                return k == -ENOENT ? 0 : k;
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d))) {
                int r;
                struct stat st;
                if (fanout && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
                        _cleanup_free_ char *sub = NULL;
                        if (asprintf(&sub, "%s/%s", dirrel, de->d_name) < 0)
                                return -ENOMEM;
                        r = list_dir(l, ns, root, sub, false);
                } else
                        r = add_entry(l, ns, dirfd(d), dirrel, de->d_name);
                if (r < 0)
                        return r;
                errno = 0;
        }
        return errno ? -errno : 0;
}

static int list_all(struct nb_cache_dir *c, struct entry_list *l, struct nb_error *err) {
        for (enum ns ns = 0; ns < NS_COUNT; ns++) {
                int r = list_dir(l, ns, c->fd, ns_names[ns], ns == NS_CAS || ns == NS_AC);
                if (r < 0)
                        return nb_error_set(err, r, "cache %s/%s", c->path, ns_names[ns]);
        }
        return 0;
}

int nb_cache_stats(struct nb_cache_dir *c, struct nb_cache_stats *st, struct nb_error *err) {
        _cleanup_(entry_list_done) struct entry_list l = {};
        int r = list_all(c, &l, err);
        if (r < 0)
                return r;
        *st = (struct nb_cache_stats) {};
        uint64_t *slots[NS_COUNT][2] = {
                { &st->cas_entries, &st->cas_bytes },     { &st->ac_entries, &st->ac_bytes },
                { &st->venv_entries, &st->venv_bytes },   { &st->tree_entries, &st->tree_bytes },
                { &st->tmp_entries, &st->tmp_bytes },
        };
        for (size_t i = 0; i < l.n; i++) {
                (*slots[l.v[i].ns][0])++;
                *slots[l.v[i].ns][1] += l.v[i].bytes;
        }
        return 0;
}

/* Removes one entry. A directory first leaves its place by a rename into tmp/, so a
 * concurrent reader sees a whole venv or tree or none, never one half deleted. */
static int remove_entry(struct nb_cache_dir *c, const struct entry *e) {
        if (!e->dir || e->ns == NS_TMP)
                return nb_rm_rf_at(c->fd, e->rel);
        uint64_t rnd = 0;
        _cleanup_free_ char *grave = NULL;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0)
                rnd = (uint64_t) random();
        if (asprintf(&grave, "tmp/gc.%d.%016llx", (int) getpid(), (unsigned long long) rnd) < 0)
                return -ENOMEM;
        /* A run holding the entry (nb_cache_dir_hold) has it locked shared: skip it.
         * Ours is held through the rename, so a run that locks it next finds it gone. */
        _cleanup_close_ int lock = openat(c->fd, e->rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (lock < 0)
                return errno == ENOENT ? 0 : -errno;
        if (flock(lock, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? 1 : -errno;
        /* Moving a directory to another parent rewrites its "..": it needs write
         * permission, and sealed entries are 0555. A crash right after leaves a
         * writable entry, which is still whole (tree.c reseals it on reuse). */
        if (fchmod(lock, 0755) < 0) /* the directory we hold, never what a symlink names */
                return -errno;
        if (renameat(c->fd, e->rel, c->fd, grave) < 0)
                return errno == ENOENT ? 0 : nb_rm_rf_at(c->fd, e->rel);
        return nb_rm_rf_at(c->fd, grave);
}

/* Least recently used first; among entries last used by the same run (one stamp,
 * cache_dir.h) the largest first: a venv goes before the results that used it. */
static int by_age(const void *a, const void *b) {
        const struct entry *x = a, *y = b;
        if (newer(y->mtime, x->mtime))
                return -1;
        if (newer(x->mtime, y->mtime))
                return 1;
        if (x->bytes != y->bytes)
                return x->bytes > y->bytes ? -1 : 1;
        return strcmp(x->rel, y->rel);
}

int nb_cache_gc(struct nb_cache_dir *c, uint64_t max_bytes, uint64_t *freed, struct nb_error *err) {
        _cleanup_(entry_list_done) struct entry_list l = {};
        int r = list_all(c, &l, err);
        if (r < 0)
                return r;
        *freed = 0;
        struct timespec now;
        if (clock_gettime(CLOCK_REALTIME, &now) < 0)
                return nb_error_set(err, errno, "clock");
        uint64_t total = 0;
        for (size_t i = 0; i < l.n; i++) {
                struct entry *e = &l.v[i];
                if (e->ns != NS_TMP) {
                        total += e->bytes;
                        continue;
                }
                /* Younger leftovers may be another process's write in progress. */
                if (now.tv_sec - e->mtime.tv_sec < TMP_MAX_AGE_SEC)
                        continue;
                r = remove_entry(c, e);
                if (r < 0)
                        return nb_error_set(err, r, "cache %s/%s", c->path, e->rel);
                *freed += e->bytes;
        }
        nb_qsort(l.v, l.n, sizeof(*l.v), by_age);
        for (size_t i = 0; i < l.n && total > max_bytes; i++) {
                struct entry *e = &l.v[i];
                if (e->ns == NS_TMP)
                        continue;
                /* Used (touched) or replaced since we listed it: it is not old any more. */
                struct stat st;
                if (fstatat(c->fd, e->rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT)
                                return nb_error_set(err, errno, "cache %s/%s", c->path, e->rel);
                        total -= e->bytes; /* someone else removed it */
                        continue;
                }
                if (st.st_mtim.tv_sec != e->mtime.tv_sec || st.st_mtim.tv_nsec != e->mtime.tv_nsec)
                        continue;
                r = remove_entry(c, e);
                if (r < 0)
                        return nb_error_set(err, r, "cache %s/%s", c->path, e->rel);
                if (r == 1)
                        continue; /* in use by a run */
                total -= e->bytes;
                *freed += e->bytes;
        }
        return 0;
}

/* 0 when the entry is good, 1 when damaged (*why), -errno when it could not be checked. */
static int check_entry(struct nb_cache_dir *c, const struct entry *e, const char **why) {
        const char *slash = strrchr(e->rel, '/');
        const char *name = slash + 1;
        if (!nb_is_digest(name)) {
                *why = "not a cache entry (not named by a digest)";
                return 1;
        }
        if (e->ns == NS_CAS || e->ns == NS_AC) {
                /* cas/ab/<digest>: the fan-out directory must be the digest's first two. */
                if (strchr(e->rel, '/') + 3 != slash || strncmp(slash - 2, name, 2) != 0) {
                        *why = "not a cache entry (in the wrong fan-out directory)";
                        return 1;
                }
                _cleanup_close_ int fd = nb_open_beneath(c->fd, e->rel, O_RDONLY | O_NONBLOCK, 0);
                if (fd == -ENOENT)
                        return 0; /* removed (gc, a repairing read) while we walked */
                if (fd == -ELOOP || fd == -EXDEV) {
                        *why = "not a regular file";
                        return 1;
                }
                if (fd < 0)
                        return fd;
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode)) {
                        *why = "not a regular file";
                        return 1;
                }
                return e->ns == NS_CAS ? nb_cas_check_fd(fd, name, why) : nb_ac_check_fd(fd, why);
        }
        if (!e->dir) {
                *why = "not a directory";
                return 1;
        }
        if (e->ns == NS_VENVS) {
                /* The marker is written last, before the rename that publishes the venv. */
                _cleanup_free_ char *marker = NULL;
                if (asprintf(&marker, "%s/%s", e->rel, NB_VENV_COMPLETE_MARKER) < 0)
                        return -ENOMEM;
                struct stat st;
                int r = fstatat(c->fd, marker, &st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
                if (r < 0 && r != -ENOENT && r != -ENOTDIR)
                        return r;
                if (r < 0 || !S_ISREG(st.st_mode)) {
                        *why = "incomplete venv (no " NB_VENV_COMPLETE_MARKER " marker)";
                        return 1;
                }
        }
        /* nestbox's own driver (trees/<its digest>): byte for byte what this binary
         * carries, or every run fails on it. */
        char support[NB_DIGEST_HEX_LEN + 1];
        nb_support_digest(support);
        if (e->ns == NS_TREES && strcmp(name, support) == 0) {
                size_t want_len;
                const char *want = nb_support_driver(&want_len);
                _cleanup_free_ char *path = NULL, *data = NULL;
                size_t len = 0;
                if (asprintf(&path, "%s/driver.py", e->rel) < 0)
                        return -ENOMEM;
                int r = nb_read_file_beneath(c->fd, path, want_len + 1, &data, &len);
                if (r < 0 && r != -ENOENT && r != -EFBIG && r != -ELOOP && r != -EINVAL)
                        return r;
                if (r < 0 || len != want_len || memcmp(data, want, len) != 0) {
                        *why = "nestbox's driver.py is missing or differs from its digest";
                        return 1;
                }
        }
        /* Other trees/<digest>: only whole trees are ever renamed in, so a directory
         * there is complete (their files are not re-digested). */
        return 0;
}

int nb_cache_verify(struct nb_store *s, bool repair, struct nb_error *err) {
        struct nb_cache_dir *c = s->dir;
        _cleanup_(entry_list_done) struct entry_list l = {};
        int r = list_all(c, &l, err);
        if (r < 0)
                return r;
        int damaged = 0;
        for (size_t i = 0; i < l.n; i++) {
                const struct entry *e = &l.v[i];
                if (e->ns == NS_TMP)
                        continue;
                const char *why = NULL;
                r = check_entry(c, e, &why);
                if (r < 0)
                        return nb_error_set(err, r, "cache %s/%s", c->path, e->rel);
                if (r == 0)
                        continue;
                damaged++;
                nb_cas_drop_damaged(s, e->rel, -1, why, repair);
        }
        return damaged;
}
