/* SPDX-License-Identifier: MIT */
/* Declared input trees (tree.h): the tree order, the Merkle digest, and the read-only
 * copy in the cache. Collecting the files is glob.c's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/build_lock.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "workspace/tree-internal.h"

/* Tree order: byte-wise with "/" below every other byte (and the end below "/"), so
 * a directory's files sort together and right where the directory's name sorts. */
int nb_tree_path_cmp(const char *a, const char *b) {
        /* Equal bytes are equal keys: only the first difference needs mapping. */
        while (*a && *a == *b)
                a++, b++;
        int ka = !*a ? -1 : *a == '/' ? 0 : (unsigned char) *a + 1;
        int kb = !*b ? -1 : *b == '/' ? 0 : (unsigned char) *b + 1;
        return ka == kb ? 0 : ka < kb ? -1 : 1;
}

char *nb_tree_join(const char *rel, const char *name) {
        size_t a = strlen(rel), b = strlen(name), sep = a > 0;
        char *r = malloc(a + sep + b + 1);
        if (!r)
                return NULL;
        memcpy(r, rel, a);
        r[a] = '/';
        memcpy(r + a + sep, name, b + 1);
        return r;
}

int nb_tree_merge(struct nb_tree *a, struct nb_tree *b, struct nb_tree *ret) {
        struct nb_tree m = { calloc(a->n_files + b->n_files + 1, sizeof(struct nb_tree_file)), 0 };
        if (!m.files)
                return -ENOMEM;
        size_t i = 0, j = 0;
        while (i < a->n_files || j < b->n_files) {
                int c = i == a->n_files ? 1 : j == b->n_files ? -1 : nb_tree_path_cmp(a->files[i].path, b->files[j].path);
                if (c == 0) { /* declared twice: one file */
                        free(b->files[j].path);
                        b->files[j++].path = NULL;
                        c = -1;
                }
                m.files[m.n_files++] = c < 0 ? a->files[i++] : b->files[j++];
        }
        free(a->files);
        free(b->files);
        *a = *b = (struct nb_tree) NB_TREE_INIT;
        *ret = m;
        return 0;
}

/* A directory's hash input gathered into one buffer and handed to SHA-256 in large
 * pieces: seven small updates per file were half the digest of 10,000 files. */
#define GATHER 16384

struct gather {
        struct nb_hasher *h;
        unsigned char *buf;
        size_t n;
};

static void gather_flush(struct gather *g) {
        nb_hasher_update(g->h, g->buf, g->n);
        g->n = 0;
}

static void gather_bytes(struct gather *g, const void *p, size_t len) {
        if (GATHER - g->n < len)
                gather_flush(g);
        if (len > GATHER) {
                nb_hasher_update(g->h, p, len);
                return;
        }
        memcpy(g->buf + g->n, p, len);
        g->n += len;
}

static void gather_u64(struct gather *g, uint64_t v) {
        unsigned char b[8];
        nb_u64le(b, v);
        gather_bytes(g, b, sizeof(b));
}

/* The hasher's str(s): u64le(len(s)) + s. */
static void gather_str(struct gather *g, const char *s, size_t len) {
        gather_u64(g, len);
        gather_bytes(g, s, len);
}

/* The digest of the directory whose files are t->files[*i..] while their paths start
 * with the plen bytes of prefix; consumes them. */
static int dir_digest(const struct nb_tree *t, size_t *i, const char *prefix, size_t plen,
                      char out[NB_DIGEST_HEX_LEN + 1]) {
        _cleanup_(nb_hasher_freep) struct nb_hasher *h = nb_hasher_new();
        _cleanup_free_ unsigned char *buf = malloc(GATHER);
        if (!h || !buf)
                return -ENOMEM;
        struct gather g = { h, buf, 0 };
        gather_str(&g, "nestbox-tree-v1", strlen("nestbox-tree-v1"));
        while (*i < t->n_files && strncmp(t->files[*i].path, prefix, plen) == 0) {
                const struct nb_tree_file *f = &t->files[*i];
                const char *name = f->path + plen;
                const char *slash = strchr(name, '/');
                size_t nlen = slash ? (size_t) (slash - name) : strlen(name);
                char child[NB_DIGEST_HEX_LEN + 1];
                if (slash) {
                        int r = dir_digest(t, i, f->path, plen + nlen + 1, child);
                        if (r < 0)
                                return r;
                } else
                        (*i)++;
                gather_str(&g, slash ? "dir" : "file", slash ? 3 : 4);
                gather_str(&g, name, nlen);
                gather_u64(&g, !slash && f->exec);
                gather_str(&g, slash ? child : f->digest, strlen(slash ? child : f->digest));
        }
        gather_flush(&g);
        nb_hasher_finish(TAKE_PTR(h), out);
        return 0;
}

int nb_tree_digest(const struct nb_tree *t, char out[NB_DIGEST_HEX_LEN + 1]) {
        /* Out of order or repeated, a directory would be hashed in pieces: refuse. */
        for (size_t k = 1; k < t->n_files; k++)
                if (nb_tree_path_cmp(t->files[k - 1].path, t->files[k].path) >= 0)
                        return -EINVAL;
        size_t i = 0;
        return dir_digest(t, &i, "", 0, out);
}

void nb_tree_clear(struct nb_tree *t) {
        for (size_t i = 0; i < t->n_files; i++)
                free(t->files[i].path);
        free(t->files);
        t->files = NULL;
        t->n_files = 0;
}

/* Copies src to dst and hashes the copy. A reflink (shared blocks) or
 * copy_file_range keeps the data out of userspace; the copy is then hashed by reading
 * it back, which checks what actually landed in the tree. */
static int copy_and_hash(int src, int dst, char out[NB_DIGEST_HEX_LEN + 1], uint64_t *size) {
        bool fast = ioctl(dst, FICLONE, src) == 0;
        if (!fast)
                for (fast = true;;) {
                        ssize_t n = copy_file_range(src, NULL, dst, NULL, 1u << 30, 0);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0) {
                                fast = n == 0;
                                break;
                        }
                }
        if (fast)
                return lseek(dst, 0, SEEK_SET) < 0 ? -errno : nb_sha256_fd_copy(dst, -1, out, size);
        /* Neither works here (across filesystems, old kernels): start over by hand. */
        if (lseek(src, 0, SEEK_SET) < 0 || lseek(dst, 0, SEEK_SET) < 0 || ftruncate(dst, 0) < 0)
                return -errno;
        return nb_sha256_fd_copy(src, dst, out, size);
}

static int copy_one(int root_fd, int dir_fd, const char *name, const struct nb_tree_file *f, struct nb_error *err) {
        _cleanup_close_ int src = nb_open_beneath(root_fd, f->path, O_RDONLY | O_NONBLOCK, 0);
        struct stat st;
        if (src < 0 || fstat(src, &st) < 0)
                return nb_error_set(err, src < 0 ? -src : errno, "%s", f->path);
        if (!S_ISREG(st.st_mode))
                return nb_error_setx(err, EINVAL, "%s: not a regular file", f->path);
        _cleanup_close_ int dst = nb_open_beneath(dir_fd, name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (dst < 0)
                return nb_error_set(err, -dst, "copying %s", f->path);
        char digest[NB_DIGEST_HEX_LEN + 1];
        uint64_t size = 0;
        int r = copy_and_hash(src, dst, digest, &size);
        if (r < 0)
                return nb_error_set(err, r, "copying %s", f->path);
        if (size != f->size || strcmp(digest, f->digest) != 0 || ((st.st_mode & S_IXUSR) != 0) != f->exec)
                return nb_error_setx(err, ESTALE, "%s changed while nestbox was reading it; inputs must not "
                                     "change during a run", f->path);
        if (fchmod(dst, f->exec ? 0555 : 0444) < 0)
                return nb_error_set(err, errno, "copying %s", f->path);
        return 0;
}

static int copy_files(const struct nb_tree *t, int root_fd, int tree_fd, struct nb_error *err) {
        _cleanup_free_ char *cur = NULL; /* the directory dfd is, relative to tree_fd */
        _cleanup_close_ int dfd = -1;
        for (size_t i = 0; i < t->n_files; i++) {
                const struct nb_tree_file *f = &t->files[i];
                const char *slash = strrchr(f->path, '/');
                size_t dlen = slash ? (size_t) (slash - f->path) : 0;
                /* Tree order keeps a directory's files together: one mkdir -p for each. */
                if (!cur || strlen(cur) != dlen || strncmp(cur, f->path, dlen) != 0) {
                        free(cur);
                        cur = strndup(f->path, dlen);
                        if (!cur)
                                return nb_error_set(err, ENOMEM, "tree");
                        if (dfd >= 0)
                                close(TAKE_FD(dfd));
                        dfd = dlen ? nb_mkdir_p_beneath(tree_fd, cur, 0755)
                                   : nb_open_beneath(tree_fd, ".", O_PATH | O_DIRECTORY, 0);
                        if (dfd < 0)
                                return nb_error_set(err, -dfd, "tree directory %s", cur);
                }
                int r = copy_one(root_fd, dfd, slash ? slash + 1 : f->path, f, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* > 0 when trees/<digest> is there (whole: only complete trees are ever renamed in). */
static int reuse(struct nb_cache_dir *cache, const char *final_rel, struct nb_error *err) {
        struct stat st;
        if (fstatat(cache->fd, final_rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : nb_error_set(err, errno, "cache %s/%s", cache->path, final_rel);
        if (!S_ISDIR(st.st_mode)) {
                /* Not something nestbox makes: remove it and build afresh. */
                int r = nb_rm_rf_at(cache->fd, final_rel);
                return r < 0 ? nb_error_set(err, r, "cache %s/%s", cache->path, final_rel) : 0;
        }
        if ((st.st_mode & 07777) != 0555) {
                /* A crash between publishing and sealing the root (below) left it writable. */
                _cleanup_close_ int fd = nb_open_beneath(cache->fd, final_rel, O_RDONLY | O_DIRECTORY, 0);
                if (fd < 0 || fchmod(fd, 0555) < 0)
                        return nb_error_set(err, fd < 0 ? -fd : errno, "cache %s/%s", cache->path, final_rel);
        }
        return 1;
}

/* Removes a half-built tree under tmp/ on every error path. */
struct tmp_tree {
        int cache_fd;
        char *rel;
};

static void tmp_tree_cleanup(struct tmp_tree *t) {
        if (t->rel)
                (void) nb_rm_rf_at(t->cache_fd, t->rel);
        free(t->rel);
}

int nb_tree_materialize(struct nb_cache_dir *cache, const struct nb_tree *t, int root_fd, char **ret_path,
                        struct nb_error *err) {
        char digest[NB_DIGEST_HEX_LEN + 1];
        int r = nb_tree_digest(t, digest);
        if (r < 0)
                return nb_error_set(err, r, "tree digest");
        return nb_tree_materialize_as(cache, t, digest, root_fd, ret_path, err);
}

int nb_tree_materialize_as(struct nb_cache_dir *cache, const struct nb_tree *t, const char *digest, int root_fd,
                           char **ret_path, struct nb_error *err) {
        int r;
        _cleanup_free_ char *final_rel = nb_tree_join("trees", digest);
        _cleanup_free_ char *path = final_rel ? nb_tree_join(cache->path, final_rel) : NULL;
        if (!path)
                return nb_error_set(err, ENOMEM, "tree");
        r = reuse(cache, final_rel, err);
        if (r < 0)
                return r;
        if (r > 0) {
                *ret_path = TAKE_PTR(path);
                return 0;
        }
        /* One builder per tree; the others wait, then find it published. */
        _cleanup_close_ int lock = -1;
        if ((r = nb_build_lock(cache, "tree", digest, &lock, err)) < 0 || (r = reuse(cache, final_rel, err)) < 0)
                return r;
        if (r > 0) {
                *ret_path = TAKE_PTR(path);
                return 0;
        }

        _cleanup_(tmp_tree_cleanup) struct tmp_tree tmp = { cache->fd, NULL };
        r = nb_cache_dir_mkdtemp(cache, "tree", &tmp.rel, err);
        if (r < 0)
                return r;
        _cleanup_close_ int tfd = nb_open_beneath(cache->fd, tmp.rel, O_RDONLY | O_DIRECTORY, 0);
        if (tfd < 0)
                return nb_error_set(err, tfd, "cache %s/%s", cache->path, tmp.rel);
        r = copy_files(t, root_fd, tfd, err);
        if (r < 0)
                return nb_error_wrap(err, r, "materialising tree %s", digest);
        r = nb_cache_dir_seal(tfd, NB_TREE_MAX_DEPTH);
        if (r < 0)
                return nb_error_set(err, r, "cache %s/%s", cache->path, tmp.rel);
        /* The data must be on disk before the rename that publishes it. */
        r = nb_cache_dir_sync(tfd, NB_TREE_MAX_DEPTH);
        if (r < 0)
                return nb_error_set(err, r, "cache %s/%s", cache->path, tmp.rel);
        r = nb_cache_dir_publish(cache, tmp.rel, final_rel, err);
        free(TAKE_PTR(tmp.rel)); /* renamed, or removed by publish */
        if (r < 0)
                return r;
        /* Sealed only now: moving a directory to another parent needs write permission
         * on it (its ".." entry changes). A tree someone else published is sealed too. */
        if ((r = nb_cache_dir_seal_published(cache, final_rel)) < 0)
                return nb_error_set(err, -r, "cache %s", path);
        *ret_path = TAKE_PTR(path);
        return 0;
}
