/* SPDX-License-Identifier: MIT */
/* The worker's watched digests (digest_watch.h). State lives in the worker and is
 * inherited by each request's process at its fork (copy-on-write: nothing is sent
 * down); what a request's process learns comes back as records in a memfd the worker
 * made before the fork and reads once the process has ended, little-endian:
 *   u32 magic, u32 kind, u64 body length, body
 *   kind TREE: str(key) u64 epoch u64 seq u32 n, n x i32 watch descriptor, then the
 *              tree: strv sources, strv tests, u32 n, n x (str path, u64 size,
 *              u8 exec, 64 bytes hex digest), 64 bytes hex tree digest
 *   kind HIT, STAT (collected, not watchable here), LIMIT (the watch limit), ERROR
 *   (another watch error): no body
 * with str(s) = u32 len + bytes and strv = u32 n + n x str. A kept tree is that tree
 * part as it came and parsed (struct kept). */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "cache/digest_watch-internal.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "workspace/tree.h"

#define MAGIC 0x5742424eu /* "NBBW" */
#define WATCH_MASK                                                                                                  \
        (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |           \
         IN_DELETE_SELF | IN_MOVE_SELF)
/* Bounds that keep a long-lived worker's memory the size of what it serves: more
 * watch descriptors than this seen, and everything is forgotten; more bytes of kept
 * trees, and the oldest go. */
#define MAX_WDS (1u << 18)
#define MAX_KEPT_BYTES (256u << 20)
#define MAX_REPORT (1u << 30)
#define EVENTS_BUF 65536

enum kind { KIND_TREE = 1, KIND_HIT, KIND_STAT, KIND_LIMIT, KIND_ERROR };

struct kept {
        char key[NB_DIGEST_HEX_LEN + 1];
        uint64_t seq; /* the event count when its collection began */
        int *wds;
        size_t n_wds;
        unsigned char *tree; /* the record's tree part */
        size_t len;
        /* The same, parsed when kept: the first reuse in a request's process takes
         * these over as they are (its own copy of the worker's heap, so it may free
         * them); a later one in the same process parses tree. */
        struct nb_tree parsed;
        char **sources, **tests;
        char digest[NB_DIGEST_HEX_LEN + 1];
        bool taken;
};

struct wd_seq {
        int wd; /* 0: an empty slot (inotify's descriptors start at 1) */
        uint64_t seq; /* the count at its last event */
};

struct nb_digest_watch {
        int fd;      /* the inotify instance, or -1: not watching */
        pid_t owner; /* the worker: the one process that reads events */
        uint64_t epoch, seq;
        struct wd_seq *map; /* open addressing, map_cap a power of two */
        size_t map_cap, map_n;
        struct kept *kept;
        size_t n_kept, kept_bytes;
        int report; /* the report of the request being forked: the child's */
        bool limit_said;
        char *events;
};

/* The process's watcher: the worker's, inherited by its requests' processes. */
static struct nb_digest_watch *current;

/* --- watch descriptor -> the count at its last event ------------------------------- */

static size_t wd_slot(const struct nb_digest_watch *w, int wd) {
        size_t i = ((size_t) (unsigned) wd * 0x9e3779b97f4a7c15ull) & (w->map_cap - 1);
        while (w->map[i].wd && w->map[i].wd != wd)
                i = (i + 1) & (w->map_cap - 1);
        return i;
}

static uint64_t wd_last(const struct nb_digest_watch *w, int wd) {
        return w->map_cap ? w->map[wd_slot(w, wd)].seq : 0;
}

static int wd_set(struct nb_digest_watch *w, int wd, uint64_t seq) {
        if ((w->map_n + 1) * 2 > w->map_cap) {
                size_t cap = w->map_cap ? w->map_cap * 2 : 1024;
                struct wd_seq *old = w->map, *map = calloc(cap, sizeof(*map));
                if (!map)
                        return -ENOMEM;
                size_t old_cap = w->map_cap;
                w->map = map;
                w->map_cap = cap;
                for (size_t i = 0; i < old_cap; i++)
                        if (old[i].wd)
                                w->map[wd_slot(w, old[i].wd)] = old[i];
                free(old);
        }
        size_t i = wd_slot(w, wd);
        w->map_n += !w->map[i].wd;
        w->map[i] = (struct wd_seq) { wd, seq };
        return 0;
}

/* No event on any of wds since seq. */
static bool unchanged(const struct nb_digest_watch *w, const int *wds, size_t n, uint64_t seq) {
        for (size_t i = 0; i < n; i++)
                if (wd_last(w, wds[i]) > seq)
                        return false;
        return true;
}

/* --- the worker's side ------------------------------------------------------------- */

static void kept_free(struct kept *k) {
        free(k->wds);
        free(k->tree);
        nb_tree_clear(&k->parsed);
        nb_strv_free(k->sources);
        nb_strv_free(k->tests);
}

/* Forgets every tree and every watch: a new instance, a new epoch (so what requests
 * forked before report is not kept). */
static void forget(struct nb_digest_watch *w) {
        for (size_t i = 0; i < w->n_kept; i++)
                kept_free(&w->kept[i]);
        free(w->kept);
        free(w->map);
        w->kept = NULL;
        w->map = NULL;
        w->n_kept = w->kept_bytes = w->map_cap = w->map_n = 0;
        w->epoch++;
        if (w->fd >= 0)
                close(w->fd);
        w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
}

/* Reads every queued event: each moves its watch's count. */
static void drain(struct nb_digest_watch *w) {
        while (w->fd >= 0) {
                ssize_t n = read(w->fd, w->events, EVENTS_BUF);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0)
                        return forget(w);
                for (ssize_t off = 0; off + (ssize_t) sizeof(struct inotify_event) <= n;) {
                        const struct inotify_event *ev = (const struct inotify_event *) (w->events + off);
                        off += (ssize_t) (sizeof(*ev) + ev->len);
                        if ((ev->mask & IN_Q_OVERFLOW) || ev->wd <= 0 || w->map_n >= MAX_WDS ||
                            wd_set(w, ev->wd, ++w->seq) < 0)
                                return forget(w);
                }
        }
}

int nb_digest_watch_start(struct nb_digest_watch **ret, const char **note) {
        *ret = NULL;
        *note = NULL;
        _cleanup_free_ struct nb_digest_watch *w = calloc(1, sizeof(*w));
        if (!w || !(w->events = malloc(EVENTS_BUF))) {
                if (w)
                        free(w->events);
                return -ENOMEM;
        }
        w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w->fd < 0) {
                int r = -errno;
                free(w->events);
                *note = "inotify is not available (fs.inotify.max_user_instances?): every request stats its inputs";
                return r;
        }
        w->owner = getpid();
        w->report = -1;
        current = *ret = TAKE_PTR(w);
        return 0;
}

void nb_digest_watch_stop(struct nb_digest_watch *w) {
        if (!w)
                return;
        for (size_t i = 0; i < w->n_kept; i++)
                kept_free(&w->kept[i]);
        free(w->kept);
        free(w->map);
        free(w->events);
        if (w->fd >= 0)
                close(w->fd);
        if (current == w)
                current = NULL;
        free(w);
}

int nb_digest_watch_fork(struct nb_digest_watch *w) {
        if (!w)
                return -1;
        drain(w);
        w->report = w->fd >= 0 ? memfd_create("nestbox-digest-report", MFD_CLOEXEC) : -1;
        return w->report;
}

static void drop(struct nb_digest_watch *w, size_t i) {
        w->kept_bytes -= 2 * w->kept[i].len; /* the record and its parsed copy, about */
        kept_free(&w->kept[i]);
        memmove(w->kept + i, w->kept + i + 1, (--w->n_kept - i) * sizeof(*w->kept));
}

/* Keeps a tree, replacing an older one of its key; the oldest go first when the
 * trees kept would pass MAX_KEPT_BYTES. Out of memory, it is only not kept. */
static void keep(struct nb_digest_watch *w, const char *key, uint64_t seq, const int *wds, size_t n_wds,
                 const unsigned char *tree, size_t len) {
        if (2 * len > MAX_KEPT_BYTES)
                return;
        for (size_t i = 0; i < w->n_kept; i++)
                if (strcmp(w->kept[i].key, key) == 0) {
                        drop(w, i);
                        break;
                }
        while (w->n_kept > 0 && w->kept_bytes + 2 * len > MAX_KEPT_BYTES)
                drop(w, 0);
        struct kept *grown = realloc(w->kept, (w->n_kept + 1) * sizeof(*grown));
        if (!grown)
                return;
        w->kept = grown;
        struct kept k = { .seq = seq, .n_wds = n_wds, .len = len, .wds = malloc(n_wds * sizeof(int) + 1),
                          .tree = malloc(len + 1) };
        if (!k.wds || !k.tree || nb_wr_parse_tree(tree, len, &k.parsed, &k.sources, &k.tests, k.digest) < 0)
                return kept_free(&k);
        memcpy(k.key, key, sizeof(k.key));
        memcpy(k.wds, wds, n_wds * sizeof(int));
        memcpy(k.tree, tree, len);
        w->kept[w->n_kept++] = k;
        w->kept_bytes += 2 * len;
}

/* A TREE record: kept when it is of this epoch and nothing it watched changed since
 * its process was forked. */
static bool take_tree(struct nb_digest_watch *w, struct reader *r) {
        _cleanup_free_ char *key = nb_wr_get_str(r);
        uint64_t epoch = nb_wr_get_u64(r), seq = nb_wr_get_u64(r);
        uint32_t n = nb_wr_get_u32(r);
        if (!key || !nb_is_digest(key) || r->bad || n > r->left / 4)
                return false;
        _cleanup_free_ int *wds = malloc((size_t) n * sizeof(int) + 1);
        if (!wds)
                return false;
        for (uint32_t i = 0; i < n; i++)
                wds[i] = (int) nb_wr_get_u32(r);
        if (r->bad || epoch != w->epoch || !unchanged(w, wds, n, seq))
                return false;
        keep(w, key, seq, wds, n, r->p, r->left);
        return true;
}

void nb_digest_watch_done(struct nb_digest_watch *w, int report_fd, struct nb_digest_watch_report *rep) {
        *rep = (struct nb_digest_watch_report) {};
        if (!w || report_fd < 0)
                return;
        drain(w);
        struct stat st;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fstat(report_fd, &st) < 0 || (uint64_t) st.st_size > MAX_REPORT || lseek(report_fd, 0, SEEK_SET) < 0
                        ? -EIO
                        : nb_read_fd_sized(report_fd, (size_t) st.st_size, MAX_REPORT, &data, &len);
        close(report_fd);
        bool lost = false;
        struct reader all = { (const unsigned char *) data, r < 0 ? 0 : len, false };
        while (all.left > 0 && !all.bad) {
                uint32_t magic = nb_wr_get_u32(&all), kind = nb_wr_get_u32(&all);
                uint64_t body = nb_wr_get_u64(&all);
                const unsigned char *p = magic == MAGIC && body <= all.left ? nb_wr_take(&all, (size_t) body) : NULL;
                if (!p)
                        break; /* a process that died mid-write: the rest is nothing */
                struct reader one = { p, (size_t) body, false };
                if (kind == KIND_HIT)
                        rep->reused++;
                else if (kind == KIND_TREE && take_tree(w, &one))
                        rep->kept++;
                else
                        rep->stated++;
                if (kind == KIND_LIMIT && !w->limit_said) {
                        w->limit_said = true;
                        rep->note = "the inotify watch limit is reached (sysctl fs.inotify.max_user_watches): "
                                    "inputs beyond it are stat'ed on every request";
                }
                lost |= kind == KIND_ERROR;
        }
        if (lost || w->map_n >= MAX_WDS)
                forget(w);
}

/* --- a request's side -------------------------------------------------------------- */

/* What the request's process is collecting. */
static struct recording {
        bool active, failed, untrusted;
        int error; /* of the first watch that failed */
        char key[NB_DIGEST_HEX_LEN + 1];
        int *wds;
        size_t n, cap;
        char **dirs; /* the directories watched, by path from the root: a set */
        size_t dirs_n, dirs_cap;
        dev_t fs_dev;
        bool fs_asked, fs_ok;
} rec;

static size_t dir_slot(const char *rel) {
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (const char *p = rel; *p; p++)
                h = (h ^ (unsigned char) *p) * 1099511628211ull;
        size_t i = (size_t) h & (rec.dirs_cap - 1);
        while (rec.dirs[i] && strcmp(rec.dirs[i], rel) != 0)
                i = (i + 1) & (rec.dirs_cap - 1);
        return i;
}

static void dirs_clear(void) {
        for (size_t i = 0; i < rec.dirs_cap; i++)
                free(rec.dirs[i]);
        free(rec.dirs);
        rec.dirs = NULL;
        rec.dirs_n = rec.dirs_cap = 0;
}

/* Adds rel to the set: false when it was there (a walk of literal paths enters the
 * same directories once per file: one watch serves). Within one collection a path
 * names one directory: a directory replaced meanwhile is an event on its parent's
 * watch, made before it was entered. */
static bool dirs_add(const char *rel) {
        if ((rec.dirs_n + 1) * 2 > rec.dirs_cap) {
                size_t old_cap = rec.dirs_cap, cap = old_cap ? old_cap * 2 : 64;
                char **old = rec.dirs, **v = calloc(cap, sizeof(char *));
                if (!v)
                        return true; /* out of memory: watched once more, no harm */
                rec.dirs = v;
                rec.dirs_cap = cap;
                for (size_t i = 0; i < old_cap; i++)
                        if (old[i])
                                rec.dirs[dir_slot(old[i])] = old[i];
                free(old);
        }
        size_t i = dir_slot(rel);
        if (rec.dirs[i])
                return false;
        rec.dirs[i] = strdup(rel);
        rec.dirs_n += rec.dirs[i] != NULL;
        return true;
}

/* The watcher, when this is a request's process of a watching worker. */
static struct nb_digest_watch *in_request(void) {
        return current && current->report >= 0 && current->fd >= 0 && getpid() != current->owner ? current : NULL;
}

static int key_of(int root_fd, char **source_globs, char **test_globs, char out[NB_DIGEST_HEX_LEN + 1]) {
        struct stat st;
        if (fstat(root_fd, &st) < 0)
                return -errno;
        _cleanup_(nb_hasher_freep) struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return -ENOMEM;
        nb_hasher_update_str(h, "nestbox-watched-tree-1");
        nb_hasher_update_u64(h, (uint64_t) st.st_dev);
        nb_hasher_update_u64(h, (uint64_t) st.st_ino);
        for (char **v = source_globs;; v = test_globs) {
                size_t n = 0;
                while (v && v[n])
                        n++;
                nb_hasher_update_u64(h, n);
                for (size_t i = 0; i < n; i++)
                        nb_hasher_update_str(h, v[i]);
                if (v == test_globs)
                        break;
        }
        nb_hasher_finish(TAKE_PTR(h), out);
        return 0;
}

static void report(struct nb_digest_watch *w, enum kind kind, const struct buf *body) {
        struct buf b = {};
        nb_wr_put_u32(&b, MAGIC);
        nb_wr_put_u32(&b, kind);
        nb_wr_put_u64(&b, body ? body->len : 0);
        if (body)
                nb_wr_put(&b, body->p, body->len);
        /* One write per record: a process killed between two leaves whole records. */
        if (!b.oom)
                (void) nb_write_all(w->report, b.p, b.len);
        free(b.p);
}

int nb_digest_watch_reuse(int root_fd, char **source_globs, char **test_globs, struct nb_tree *tree, char ***sources,
                          char ***tests, char digest[NB_DIGEST_HEX_LEN + 1]) {
        struct nb_digest_watch *w = in_request();
        char key[NB_DIGEST_HEX_LEN + 1];
        if (!w || key_of(root_fd, source_globs, test_globs, key) < 0)
                return 0;
        for (size_t i = 0; i < w->n_kept; i++) {
                struct kept *k = &w->kept[i];
                if (strcmp(k->key, key) != 0 || !unchanged(w, k->wds, k->n_wds, k->seq))
                        continue;
                if (!k->taken) {
                        k->taken = true;
                        *tree = k->parsed;
                        *sources = k->sources;
                        *tests = k->tests;
                        memcpy(digest, k->digest, sizeof(k->digest));
                        k->parsed = (struct nb_tree) NB_TREE_INIT;
                        k->sources = k->tests = NULL;
                } else {
                        int r = nb_wr_parse_tree(k->tree, k->len, tree, sources, tests, digest);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return 0;
                }
                report(w, KIND_HIT, NULL);
                return 1;
        }
        return 0;
}

/* Filesystems whose every change reaches inotify (a network or FUSE filesystem may be
 * changed where no event is made; overlayfs's lower layers send none). */
static bool fs_ok(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return false;
        if (!rec.fs_asked || rec.fs_dev != st.st_dev) {
                struct statfs sf;
                rec.fs_ok = fstatfs(fd, &sf) == 0 &&
                            (sf.f_type == EXT4_SUPER_MAGIC || sf.f_type == XFS_SUPER_MAGIC ||
                             sf.f_type == BTRFS_SUPER_MAGIC || sf.f_type == TMPFS_MAGIC);
                rec.fs_dev = st.st_dev;
                rec.fs_asked = true;
        }
        return rec.fs_ok;
}

void nb_digest_watch_begin(int root_fd, char **source_globs, char **test_globs) {
        rec.active = false;
        if (!in_request() || key_of(root_fd, source_globs, test_globs, rec.key) < 0)
                return;
        rec.active = true;
        rec.failed = rec.untrusted = false;
        rec.n = 0;
        rec.fs_asked = false;
        dirs_clear();
}

static void add_watch(const char *path, uint32_t flags) {
        if (rec.failed)
                return;
        int wd = inotify_add_watch(current->fd, path, WATCH_MASK | flags);
        if (wd < 0) {
                rec.failed = true;
                rec.error = errno;
                return;
        }
        if (NB_RESERVE(rec.wds, rec.cap, rec.n, 1, 64) < 0) {
                rec.failed = true;
                rec.error = ENOMEM;
                return;
        }
        rec.wds[rec.n++] = wd;
}

void nb_digest_watch_dir(int dfd, const char *rel) {
        if (!rec.active || rec.failed || rec.untrusted || !dirs_add(rel))
                return;
        if (!fs_ok(dfd)) {
                rec.untrusted = true;
                return;
        }
        /* inotify takes a path: the directory's own descriptor, through /proc. */
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", dfd);
        add_watch(path, IN_ONLYDIR);
}

void nb_digest_watch_file(int dfd, const char *name) {
        if (!rec.active || rec.failed || rec.untrusted)
                return;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "/proc/self/fd/%d/%s", dfd, name) < 0) {
                path = NULL;
                rec.failed = true;
                rec.error = ENOMEM;
                return;
        }
        add_watch(path, IN_DONT_FOLLOW);
}

static int cmp_int(const void *a, const void *b) {
        int x = *(const int *) a, y = *(const int *) b;
        return (x > y) - (x < y);
}

void nb_digest_watch_end(const struct nb_tree *tree, char **sources, char **tests,
                         const char digest[NB_DIGEST_HEX_LEN + 1]) {
        struct nb_digest_watch *w = in_request();
        if (!rec.active || !w)
                return;
        rec.active = false;
        dirs_clear();
        if (!tree)
                return; /* failed: nothing to keep, nothing to say */
        if (rec.failed || rec.untrusted)
                return report(w, rec.untrusted || rec.error == ENOMEM ? KIND_STAT
                                 : rec.error == ENOSPC                ? KIND_LIMIT
                                                                      : KIND_ERROR,
                              NULL);
        nb_qsort(rec.wds, rec.n, sizeof(int), cmp_int);
        size_t n = 0;
        for (size_t i = 0; i < rec.n; i++)
                if (n == 0 || rec.wds[n - 1] != rec.wds[i])
                        rec.wds[n++] = rec.wds[i];
        struct buf b = {};
        nb_wr_put_str(&b, rec.key, NB_DIGEST_HEX_LEN);
        nb_wr_put_u64(&b, w->epoch);
        nb_wr_put_u64(&b, w->seq);
        nb_wr_put_u32(&b, (uint32_t) n);
        for (size_t i = 0; i < n; i++)
                nb_wr_put_u32(&b, (uint32_t) rec.wds[i]);
        nb_wr_put_tree(&b, tree, sources, tests, digest);
        report(w, b.oom ? KIND_STAT : KIND_TREE, b.oom ? NULL : &b);
        free(b.p);
}
