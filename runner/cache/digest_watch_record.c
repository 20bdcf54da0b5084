/* SPDX-License-Identifier: MIT */
/* The records a request's process reports to the worker, written and read back
 * (digest_watch-internal.h; the format is at the top of digest_watch.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/digest_watch-internal.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "workspace/tree.h"

/* --- a growable record ------------------------------------------------------------ */

void nb_wr_put(struct buf *b, const void *data, size_t len) {
        if (b->oom)
                return;
        if (NB_RESERVE(b->p, b->cap, b->len, len, 4096) < 0) {
                b->oom = true;
                return;
        }
        memcpy(b->p + b->len, data, len);
        b->len += len;
}

void nb_wr_put_u32(struct buf *b, uint32_t v) {
        unsigned char x[4] = { (unsigned char) v, (unsigned char) (v >> 8), (unsigned char) (v >> 16),
                               (unsigned char) (v >> 24) };
        nb_wr_put(b, x, 4);
}

void nb_wr_put_u64(struct buf *b, uint64_t v) {
        unsigned char x[8];
        nb_u64le(x, v);
        nb_wr_put(b, x, 8);
}

void nb_wr_put_str(struct buf *b, const char *s, size_t len) {
        nb_wr_put_u32(b, (uint32_t) len);
        nb_wr_put(b, s, len);
}

static void put_strv(struct buf *b, char **v) {
        size_t n = 0;
        while (v && v[n])
                n++;
        nb_wr_put_u32(b, (uint32_t) n);
        for (size_t i = 0; i < n; i++)
                nb_wr_put_str(b, v[i], strlen(v[i]));
}

/* --- reading one back, every length checked ---------------------------------------- */

const unsigned char *nb_wr_take(struct reader *r, size_t len) {
        if (r->bad || r->left < len) {
                r->bad = true;
                return NULL;
        }
        const unsigned char *p = r->p;
        r->p += len;
        r->left -= len;
        return p;
}

uint32_t nb_wr_get_u32(struct reader *r) {
        const unsigned char *p = nb_wr_take(r, 4);
        return p ? (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24 : 0;
}

uint64_t nb_wr_get_u64(struct reader *r) {
        uint64_t lo = nb_wr_get_u32(r);
        return lo | (uint64_t) nb_wr_get_u32(r) << 32;
}

/* A string of the record as a new C string; NULL when bad or out of memory. */
char *nb_wr_get_str(struct reader *r) {
        uint32_t len = nb_wr_get_u32(r);
        const unsigned char *p = nb_wr_take(r, len);
        if (!p || memchr(p, 0, len))
                return r->bad = true, NULL;
        char *s = malloc((size_t) len + 1);
        if (s) {
                memcpy(s, p, len);
                s[len] = 0;
        }
        return s;
}

static int get_strv(struct reader *r, char ***ret) {
        uint32_t n = nb_wr_get_u32(r);
        if (r->bad || n > r->left / 4)
                return -EINVAL;
        _cleanup_strv_free_ char **v = calloc((size_t) n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (uint32_t i = 0; i < n; i++)
                if (!(v[i] = nb_wr_get_str(r)))
                        return r->bad ? -EINVAL : -ENOMEM;
        *ret = TAKE_PTR(v);
        return 0;
}

/* 64 hex digits: digests this worker's own request processes computed. */
static int get_hex(struct reader *r, char out[NB_DIGEST_HEX_LEN + 1]) {
        const unsigned char *p = nb_wr_take(r, NB_DIGEST_HEX_LEN);
        if (!p)
                return -EINVAL;
        memcpy(out, p, NB_DIGEST_HEX_LEN);
        out[NB_DIGEST_HEX_LEN] = 0;
        return 0;
}

/* A kept tree part into the collection's results. */
int nb_wr_parse_tree(const unsigned char *data, size_t len, struct nb_tree *tree, char ***ret_sources,
                      char ***ret_tests, char digest[NB_DIGEST_HEX_LEN + 1]) {
        struct reader r = { data, len, false };
        _cleanup_strv_free_ char **sources = NULL, **tests = NULL;
        int k;
        if ((k = get_strv(&r, &sources)) < 0 || (k = get_strv(&r, &tests)) < 0)
                return k;
        uint32_t n = nb_wr_get_u32(&r);
        if (r.bad || n > r.left / (4 + 8 + 1 + NB_DIGEST_HEX_LEN))
                return -EINVAL;
        _cleanup_(nb_tree_clear) struct nb_tree t = { calloc((size_t) n + 1, sizeof(struct nb_tree_file)), 0 };
        if (!t.files)
                return -ENOMEM;
        for (; t.n_files < n; t.n_files++) {
                struct nb_tree_file *f = &t.files[t.n_files];
                if (!(f->path = nb_wr_get_str(&r)))
                        return r.bad ? -EINVAL : -ENOMEM;
                f->size = nb_wr_get_u64(&r);
                const unsigned char *exec = nb_wr_take(&r, 1);
                f->exec = exec && *exec;
                if (get_hex(&r, f->digest) < 0)
                        return -EINVAL;
        }
        if (get_hex(&r, digest) < 0 || !nb_is_digest(digest) || r.left)
                return -EINVAL;
        *tree = t;
        t = (struct nb_tree) NB_TREE_INIT;
        *ret_sources = TAKE_PTR(sources);
        *ret_tests = TAKE_PTR(tests);
        return 0;
}

void nb_wr_put_tree(struct buf *b, const struct nb_tree *tree, char **sources, char **tests,
                    const char digest[NB_DIGEST_HEX_LEN + 1]) {
        put_strv(b, sources);
        put_strv(b, tests);
        nb_wr_put_u32(b, (uint32_t) tree->n_files);
        for (size_t i = 0; i < tree->n_files; i++) {
                const struct nb_tree_file *f = &tree->files[i];
                nb_wr_put_str(b, f->path, strlen(f->path));
                nb_wr_put_u64(b, f->size);
                nb_wr_put(b, &(unsigned char) { f->exec }, 1);
                nb_wr_put(b, f->digest, NB_DIGEST_HEX_LEN);
        }
        nb_wr_put(b, digest, NB_DIGEST_HEX_LEN);
}
