/* SPDX-License-Identifier: MIT */
/* The digest memo (digest_memo.h). The record, in ac/ under
 * sha256(str("nestbox-digest-memo-2") u64(root dev) u64(root inode)), little-endian:
 *   "nestbox-digest-memo 2\n" u64 n_files
 *   n_files times: u64 dev, u64 inode, u64 size, u64 mtime ns, u64 ctime ns,
 *                  32 bytes of SHA-256
 *   then to the end, per directory: the same five u64s, u32 len, len bytes of listing
 * In memory: the entries in one array, found by (dev, inode) through an open-addressing
 * index, listings in one arena; a file or directory seen again with another identity
 * (or as the other kind) replaces its old entry.
 *
 * Lookups come in the order entries were made (the glob walk's, then the tree's, both
 * the same from run to run), so each kind keeps a cursor: the entry after the last one
 * found is tried first. An unchanged workspace is then looked up front to back and the
 * index is never built: at 10,000 files its random reads were the memo's largest cost
 * (a cache miss each, between stats that evict it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cas.h"
#include "cache/digest_memo.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"

#define MEMO_MAGIC "nestbox-digest-memo 2\n"
#define IDENTITY_LEN (5 * 8)
#define ENTRY_LEN (IDENTITY_LEN + 32)
/* A directory listing larger than this is listed again each time, not remembered. */
#define MAX_LISTING (16u << 20)
/* A memo larger than this is not one nestbox wrote: ignored. */
#define MAX_ENTRIES (1u << 22)
/* Entries of files this process did not see are kept up to this many (or while they are
 * at most three quarters of the memo): deleted and replaced files age out. */
#define KEEP_UNSEEN 65536

struct memo_entry {
        uint64_t dev, ino, size, mtime, ctime;
        unsigned char sha[32];  /* a file's */
        size_t listing, len;    /* a directory's: its listing in the arena */
        bool dir;
        bool seen; /* looked up or added by this process */
        bool dead; /* a repeat of a later entry's (dev, inode): never found, not saved */
};

struct nb_digest_memo {
        struct nb_store store; /* no warn: a damaged memo is silently a miss */
        char key[NB_DIGEST_HEX_LEN + 1];
        uint64_t root_dev, root_ino;
        struct memo_entry *e;
        size_t n, cap;
        uint32_t *index; /* entry + 1, 0 empty; index_cap a power of two; NULL until needed */
        size_t index_cap;
        size_t next_file, next_dir; /* the cursors */
        unsigned char *arena; /* listings, back to back */
        size_t arena_len, arena_cap;
        size_t garbage; /* bytes of it no entry uses any more */
        bool dirty;
        uint64_t looked_up, known;
};

static uint64_t ns_of(const struct timespec *ts) {
        return (uint64_t) ts->tv_sec * 1000000000ull + (uint64_t) ts->tv_nsec;
}

static size_t slot_of(const struct nb_digest_memo *m, uint64_t dev, uint64_t ino) {
        uint64_t h = (ino ^ (dev * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
        h ^= h >> 33;
        return (size_t) h & (m->index_cap - 1);
}

/* The index slot holding (dev, ino), or the empty one where it would go. */
static size_t probe(const struct nb_digest_memo *m, uint64_t dev, uint64_t ino) {
        size_t i = slot_of(m, dev, ino);
        while (m->index[i] && !(m->e[m->index[i] - 1].dev == dev && m->e[m->index[i] - 1].ino == ino))
                i = (i + 1) & (m->index_cap - 1);
        return i;
}

static int reindex(struct nb_digest_memo *m, size_t want) {
        size_t cap = 64;
        while (cap < want * 2)
                cap *= 2;
        uint32_t *index = calloc(cap, sizeof(uint32_t));
        if (!index)
                return -ENOMEM;
        free(m->index);
        m->index = index;
        m->index_cap = cap;
        for (size_t k = 0; k < m->n; k++) {
                if (m->e[k].dead)
                        continue;
                size_t i = probe(m, m->e[k].dev, m->e[k].ino);
                if (m->index[i])
                        m->e[m->index[i] - 1].dead = true; /* not a record we write: the last one counts */
                m->index[i] = (uint32_t) (k + 1);
        }
        return 0;
}

/* The entry for (dev, ino), made (unfilled) when there is none; NULL on ENOMEM. */
static struct memo_entry *slot_for(struct nb_digest_memo *m, uint64_t dev, uint64_t ino) {
        if ((!m->index || (m->n + 1) * 2 > m->index_cap) && reindex(m, m->n + 1) < 0)
                return NULL;
        size_t i = probe(m, dev, ino);
        if (m->index[i])
                return &m->e[m->index[i] - 1];
        if (NB_RESERVE(m->e, m->cap, m->n, 1, 256) < 0)
                return NULL;
        m->index[i] = (uint32_t) (m->n + 1);
        struct memo_entry *e = &m->e[m->n++];
        *e = (struct memo_entry) { .dev = dev, .ino = ino };
        return e;
}

static uint64_t get_u64(const unsigned char *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

static void get_identity(struct memo_entry *e, const unsigned char *p) {
        e->size = get_u64(p + 16);
        e->mtime = get_u64(p + 24);
        e->ctime = get_u64(p + 32);
}

static int arena_add(struct nb_digest_memo *m, const void *data, size_t len, size_t *off) {
        /* An empty listing's entry points into the arena too: one byte at least while
         * there is none. */
        if (NB_RESERVE(m->arena, m->arena_cap, m->arena_len, len || m->arena ? len : 1, 4096) < 0)
                return -ENOMEM;
        memcpy(m->arena + m->arena_len, data, len);
        *off = m->arena_len;
        m->arena_len += len;
        return 0;
}

/* Checks a record's shape: *n_files and *n_dirs when it is one nestbox wrote. */
static bool shape(const unsigned char *data, size_t len, size_t *n_files, size_t *n_dirs) {
        const size_t magic = sizeof(MEMO_MAGIC) - 1;
        if (len < magic + 8 || memcmp(data, MEMO_MAGIC, magic) != 0)
                return false;
        uint64_t files = get_u64(data + magic);
        if (files > MAX_ENTRIES || files * ENTRY_LEN > len - magic - 8)
                return false;
        size_t dirs = 0;
        for (size_t off = magic + 8 + files * ENTRY_LEN; off < len; dirs++) {
                if (len - off < IDENTITY_LEN + 4 || dirs + files >= MAX_ENTRIES)
                        return false;
                const unsigned char *p = data + off + IDENTITY_LEN;
                uint32_t l = (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
                off += IDENTITY_LEN + 4;
                if (l > MAX_LISTING || l > len - off)
                        return false;
                off += l;
        }
        *n_files = files;
        *n_dirs = dirs;
        return true;
}

/* Fills m from a record; a record of the wrong shape leaves m empty. */
static int load(struct nb_digest_memo *m, const unsigned char *data, size_t len) {
        size_t n_files, n_dirs;
        if (!shape(data, len, &n_files, &n_dirs))
                return 0;
        size_t n = n_files + n_dirs;
        if (!(m->e = malloc((n ? n : 1) * sizeof(*m->e))))
                return -ENOMEM;
        m->cap = n ? n : 1;
        m->next_dir = n_files;
        /* In the record's order, the cursors' (no index yet: see the top). */
        const unsigned char *p = data + sizeof(MEMO_MAGIC) - 1 + 8;
        for (size_t k = 0; k < n_files; k++, p += ENTRY_LEN) {
                struct memo_entry *e = &m->e[m->n++];
                *e = (struct memo_entry) { .dev = get_u64(p), .ino = get_u64(p + 8) };
                get_identity(e, p);
                memcpy(e->sha, p + IDENTITY_LEN, 32);
        }
        for (size_t k = 0; k < n_dirs; k++) {
                struct memo_entry *e = &m->e[m->n++];
                *e = (struct memo_entry) { .dev = get_u64(p), .ino = get_u64(p + 8) };
                get_identity(e, p);
                const unsigned char *q = p + IDENTITY_LEN;
                size_t l = (size_t) q[0] | (size_t) q[1] << 8 | (size_t) q[2] << 16 | (size_t) q[3] << 24;
                if (arena_add(m, q + 4, l, &e->listing) < 0)
                        return -ENOMEM;
                e->len = l;
                e->dir = true;
                p = q + 4 + l;
        }
        return 0;
}

int nb_digest_memo_open(struct nb_store *s, int root_fd, struct nb_digest_memo **ret) {
        struct stat root;
        if (fstat(root_fd, &root) < 0)
                return -errno;
        _cleanup_(nb_digest_memo_closep) struct nb_digest_memo *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->store = (struct nb_store) { .dir = s->dir };
        m->root_dev = (uint64_t) root.st_dev;
        m->root_ino = (uint64_t) root.st_ino;
        struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return -ENOMEM;
        nb_hasher_update_str(h, "nestbox-digest-memo-2");
        nb_hasher_update_u64(h, m->root_dev);
        nb_hasher_update_u64(h, m->root_ino);
        nb_hasher_finish(h, m->key);

        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if (nb_ac_get(&m->store, m->key, &data, &len, &err) == 0) {
                int r = load(m, (const unsigned char *) data, len);
                if (r < 0)
                        return r;
                nb_store_touch(&m->store, "ac", m->key); /* in use: not gc's first pick */
        }
        *ret = TAKE_PTR(m);
        return 0;
}

bool nb_digest_memo_is_for(const struct nb_digest_memo *m, int root_fd) {
        struct stat st;
        return m && fstat(root_fd, &st) == 0 && (uint64_t) st.st_dev == m->root_dev &&
               (uint64_t) st.st_ino == m->root_ino;
}

int64_t nb_digest_memo_now(void) {
        /* The coarse clock is the one the kernel stamps ctime from: a write after this
         * reading gets a ctime no earlier than it. */
        struct timespec ts;
        if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) < 0)
                return 0; /* remembers nothing */
        return (int64_t) ns_of(&ts);
}

static const char hex[] = "0123456789abcdef";

/* The entry of this kind whose identity is st's, or NULL. */
static struct memo_entry *find(struct nb_digest_memo *m, const struct stat *st, bool dir) {
        uint64_t dev = (uint64_t) st->st_dev, ino = (uint64_t) st->st_ino;
        size_t *next = dir ? &m->next_dir : &m->next_file;
        size_t k = *next;
        if (!(k < m->n && m->e[k].dev == dev && m->e[k].ino == ino && !m->e[k].dead)) {
                if (!m->index && reindex(m, m->n) < 0)
                        return NULL; /* ENOMEM: a miss */
                size_t i = probe(m, dev, ino);
                if (!m->index[i])
                        return NULL;
                k = m->index[i] - 1;
        }
        *next = k + 1;
        struct memo_entry *e = &m->e[k];
        if (e->dir != dir || e->size != (uint64_t) st->st_size || e->mtime != ns_of(&st->st_mtim) ||
            e->ctime != ns_of(&st->st_ctim))
                return NULL;
        e->seen = true;
        return e;
}

bool nb_digest_memo_find(struct nb_digest_memo *m, const struct stat *st, char out[NB_DIGEST_HEX_LEN + 1]) {
        if (!m)
                return false;
        m->looked_up++;
        struct memo_entry *e = find(m, st, false);
        if (!e)
                return false;
        m->known++;
        for (int k = 0; k < 32; k++) {
                out[2 * k] = hex[e->sha[k] >> 4];
                out[2 * k + 1] = hex[e->sha[k] & 15];
        }
        out[NB_DIGEST_HEX_LEN] = 0;
        return true;
}

/* The filesystem's timestamp granularity, at most: a ctime with sub-millisecond digits
 * comes from a fine-grained filesystem (ext4, xfs, btrfs, tmpfs stamp to the
 * nanosecond); anything else may be as coarse as FAT's two seconds. */
static int64_t granularity_ns(const struct stat *st) {
        return st->st_ctim.tv_nsec % 1000000 ? 10 * 1000000ll : 2 * 1000000000ll;
}

static int unhex(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Racily clean: a write in the same tick as our stat (taken after read_at) would leave
 * st as it is, so st cannot vouch for what was read. */
static bool racy(const struct stat *st, int64_t read_at) {
        return (int64_t) ns_of(&st->st_ctim) >= read_at - granularity_ns(st);
}

/* The entry to fill for st, its identity set; NULL on ENOMEM. */
static struct memo_entry *entry_to_fill(struct nb_digest_memo *m, const struct stat *st) {
        struct memo_entry *e = slot_for(m, (uint64_t) st->st_dev, (uint64_t) st->st_ino);
        if (!e)
                return NULL; /* ENOMEM: only an optimisation lost */
        e->size = (uint64_t) st->st_size;
        e->mtime = ns_of(&st->st_mtim);
        e->ctime = ns_of(&st->st_ctim);
        e->seen = true;
        if (e->dir)
                m->garbage += e->len; /* its old listing */
        e->dir = false;
        m->dirty = true;
        return e;
}

/* Listings replaced over a long life (nestbox worker) leave garbage in the arena: it
 * is copied afresh once most of it is that, so the memo stays the size of what it
 * remembers. */
static void compact(struct nb_digest_memo *m) {
        if (m->garbage < (1u << 20) || m->garbage * 2 < m->arena_len)
                return;
        size_t live = 0;
        for (size_t k = 0; k < m->n; k++)
                live += m->e[k].dir && !m->e[k].dead ? m->e[k].len : 0;
        unsigned char *a = malloc(live + 1);
        if (!a)
                return;
        size_t len = 0;
        for (size_t k = 0; k < m->n; k++) {
                struct memo_entry *e = &m->e[k];
                if (!e->dir || e->dead)
                        continue;
                memcpy(a + len, m->arena + e->listing, e->len);
                e->listing = len;
                len += e->len;
        }
        free(m->arena);
        m->arena = a;
        m->arena_len = len;
        m->arena_cap = live + 1;
        m->garbage = 0;
}

void nb_digest_memo_add(struct nb_digest_memo *m, const struct stat *st, int64_t read_at,
                        const char digest[NB_DIGEST_HEX_LEN + 1]) {
        if (!m || !nb_is_digest(digest) || racy(st, read_at))
                return;
        struct memo_entry *e = entry_to_fill(m, st);
        if (!e)
                return;
        for (int k = 0; k < 32; k++)
                e->sha[k] = (unsigned char) (unhex(digest[2 * k]) << 4 | unhex(digest[2 * k + 1]));
        compact(m);
}

const void *nb_digest_memo_find_listing(struct nb_digest_memo *m, const struct stat *st, size_t *len) {
        struct memo_entry *e = m ? find(m, st, true) : NULL;
        if (!e)
                return NULL;
        *len = e->len;
        return m->arena + e->listing;
}

void nb_digest_memo_add_listing(struct nb_digest_memo *m, const struct stat *st, int64_t read_at, const void *data,
                                size_t len) {
        if (!m || len > MAX_LISTING || racy(st, read_at))
                return;
        size_t off;
        /* The arena first: a failed append leaves the entry as it was. */
        if (arena_add(m, data, len, &off) < 0)
                return;
        struct memo_entry *e = entry_to_fill(m, st);
        if (!e) {
                m->garbage += len;
                return;
        }
        e->dir = true;
        e->listing = off;
        e->len = len;
        compact(m);
}

void nb_digest_memo_stats(const struct nb_digest_memo *m, uint64_t *looked_up, uint64_t *known) {
        *looked_up = m ? m->looked_up : 0;
        *known = m ? m->known : 0;
}

static void put_identity(unsigned char *p, const struct memo_entry *e) {
        nb_u64le(p, e->dev);
        nb_u64le(p + 8, e->ino);
        nb_u64le(p + 16, e->size);
        nb_u64le(p + 24, e->mtime);
        nb_u64le(p + 32, e->ctime);
}

static void save(struct nb_digest_memo *m) {
        size_t seen = 0, files = 0, bytes = sizeof(MEMO_MAGIC) - 1 + 8;
        for (size_t k = 0; k < m->n; k++)
                seen += m->e[k].seen;
        bool prune = m->n - seen > KEEP_UNSEEN && m->n - seen > 3 * seen;
        for (size_t k = 0; k < m->n; k++) {
                const struct memo_entry *e = &m->e[k];
                if ((prune && !e->seen) || e->dead)
                        continue;
                files += !e->dir;
                bytes += e->dir ? IDENTITY_LEN + 4 + e->len : ENTRY_LEN;
        }
        _cleanup_free_ unsigned char *buf = malloc(bytes);
        if (!buf)
                return;
        unsigned char *p = buf;
        memcpy(p, MEMO_MAGIC, sizeof(MEMO_MAGIC) - 1);
        p += sizeof(MEMO_MAGIC) - 1;
        nb_u64le(p, files);
        p += 8;
        /* Files first, then directories: two passes over the entries. */
        for (int pass = 0; pass < 2; pass++)
                for (size_t k = 0; k < m->n; k++) {
                        const struct memo_entry *e = &m->e[k];
                        if ((prune && !e->seen) || e->dead || e->dir != (pass == 1))
                                continue;
                        put_identity(p, e);
                        p += IDENTITY_LEN;
                        if (!e->dir) {
                                memcpy(p, e->sha, 32);
                                p += 32;
                                continue;
                        }
                        for (int b = 0; b < 4; b++)
                                *p++ = (unsigned char) (e->len >> (8 * b));
                        memcpy(p, m->arena + e->listing, e->len);
                        p += e->len;
                }
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        (void) nb_ac_put(&m->store, m->key, (const char *) buf, (size_t) (p - buf), &err);
}

void nb_digest_memo_flush(struct nb_digest_memo *m) {
        if (m && m->dirty && m->key[0]) {
                save(m);
                m->dirty = false;
        }
}

void nb_digest_memo_close(struct nb_digest_memo *m) {
        if (!m)
                return;
        if (m->dirty)
                save(m);
        free(m->e);
        free(m->index);
        free(m->arena);
        free(m);
}

void nb_digest_memo_closep(struct nb_digest_memo **m) {
        /* Only what nb_digest_memo_open handed out is saved: a half-opened one has no key. */
        if (*m && !(*m)->key[0])
                (*m)->dirty = false;
        nb_digest_memo_close(*m);
        *m = NULL;
}
