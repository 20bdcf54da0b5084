/* SPDX-License-Identifier: MIT */
/* Directory listings for the glob walk, remembered by the digest memo (listing.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "workspace/listing.h"

/* getdents64's buffer: a directory of a few hundred entries in one call. */
#define DENTS_BUF (32u << 10)

static bool skipped(const char *name) {
        return strcmp(name, "__pycache__") == 0 || strcmp(name, ".git") == 0 || strcmp(name, ".nestbox") == 0;
}

void nb_listing_done(struct nb_listing *l) {
        free(l->v);
        free(l->names);
}

static int cmp_entry(const void *a, const void *b, void *names) {
        return strcmp((const char *) names + ((const struct nb_listing_entry *) a)->name,
                      (const char *) names + ((const struct nb_listing_entry *) b)->name);
}

/* Room for one more entry in l->v. */
static int grow(struct nb_listing *l) {
        return NB_RESERVE(l->v, l->cap, l->n, 1, 64);
}

static int listing_add(struct nb_listing *l, const char *name, unsigned char type) {
        size_t len = strlen(name) + 1;
        if (grow(l) < 0)
                return -ENOMEM;
        if (NB_RESERVE(l->names, l->names_cap, l->len, len, 1024) < 0)
                return -ENOMEM;
        memcpy(l->names + l->len, name, len);
        l->v[l->n++] = (struct nb_listing_entry) { l->len, type };
        l->len += len;
        return 0;
}

/* Filesystems known to move a directory's mtime and ctime on every entry made,
 * removed or renamed in it (POSIX asks it of all; network and FUSE filesystems may
 * cache or make up their times): only their listings are remembered. Asked once per
 * device. */
static bool dir_times_trusted(struct nb_lister *c, int fd, dev_t dev) {
        if (!c->fs_asked || c->fs_dev != dev) {
                struct statfs sf;
                c->fs_ok = fstatfs(fd, &sf) == 0 &&
                           (sf.f_type == EXT4_SUPER_MAGIC || sf.f_type == XFS_SUPER_MAGIC ||
                            sf.f_type == BTRFS_SUPER_MAGIC || sf.f_type == TMPFS_MAGIC);
                c->fs_dev = dev;
                c->fs_asked = true;
        }
        return c->fs_ok;
}

/* A listing as the memo keeps it: per entry, in order, its type byte, name and NUL. */
static int listing_pack(const struct nb_listing *l, char **ret, size_t *len) {
        char *b = malloc(l->len + l->n + 1);
        if (!b)
                return -ENOMEM;
        char *p = b;
        for (size_t e = 0; e < l->n; e++) {
                const char *name = l->names + l->v[e].name;
                size_t n = strlen(name) + 1;
                *p++ = (char) l->v[e].type;
                memcpy(p, name, n);
                p += n;
        }
        *ret = b;
        *len = (size_t) (p - b);
        return 0;
}

/* The inverse of listing_pack into an empty l; -EINVAL for anything listing_pack would
 * not have made (names empty, with "/", unsorted or repeated, unterminated, ".", ".."
 * or skipped). */
static int listing_unpack(struct nb_listing *l, const char *blob, size_t len) {
        l->names = malloc(len + 1);
        if (!l->names)
                return -ENOMEM;
        memcpy(l->names, blob, len);
        l->len = l->names_cap = len;
        const char *prev = NULL;
        for (size_t off = 0; off < len;) {
                if (len - off < 3) /* a type, one byte of name, its NUL */
                        return -EINVAL;
                const char *name = l->names + off + 1;
                const char *end = memchr(name, 0, len - off - 1);
                if (!end || end == name || memchr(name, '/', (size_t) (end - name)) || strcmp(name, ".") == 0 ||
                    strcmp(name, "..") == 0 || skipped(name) || (prev && strcmp(prev, name) >= 0))
                        return -EINVAL;
                if (grow(l) < 0)
                        return -ENOMEM;
                l->v[l->n++] = (struct nb_listing_entry) { (size_t) (name - l->names), (unsigned char) l->names[off] };
                prev = name;
                off = (size_t) (end - l->names) + 1;
        }
        return 0;
}

/* Reads directory fd from its start into l with getdents64, straight into one buffer
 * reused for every directory, then sorts it. */
static int read_dir(struct nb_lister *c, int fd, struct nb_listing *l) {
        if (!c->dents) {
                c->dents = malloc(DENTS_BUF);
                if (!c->dents)
                        return -ENOMEM;
        }
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        for (;;) {
                ssize_t n = getdents64(fd, c->dents, DENTS_BUF);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                for (ssize_t off = 0; off < n;) {
                        const struct dirent64 *de = (const struct dirent64 *) (c->dents + off);
                        off += de->d_reclen;
                        const char *name = de->d_name;
                        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || skipped(name))
                                continue;
                        int r = listing_add(l, name, de->d_type);
                        if (r < 0)
                                return r;
                }
        }
        if (l->n > 1)
                qsort_r(l->v, l->n, sizeof(*l->v), cmp_entry, l->names);
        return 0;
}

/* Lists directory dfd into l, sorted: as the memo remembers it when the directory's
 * identity (dev, inode, size, mtime, ctime) is what it was then, else read (through a
 * descriptor of its own when dfd is borrowed: its offset is not ours to move). A
 * remembered listing gives the names only: every entry the glob wants is still
 * stat'ed or opened no-follow on its own, so a type the listing got wrong is caught
 * there. */
int nb_list_dir(struct nb_lister *c, int dfd, bool borrowed, struct nb_listing *l) {
        /* Before the stat: see nb_digest_memo_now(). */
        int64_t read_at = nb_digest_memo_now();
        struct stat st;
        bool memo = c->memo && fstat(dfd, &st) == 0 && S_ISDIR(st.st_mode) && dir_times_trusted(c, dfd, st.st_dev);
        if (memo) {
                size_t len;
                const char *blob = nb_digest_memo_find_listing(c->memo, &st, &len);
                if (blob) {
                        int r = listing_unpack(l, blob, len);
                        if (r != -EINVAL)
                                return r;
                        nb_listing_done(l); /* not one we made: list it afresh */
                        *l = (struct nb_listing) {};
                }
        }
        _cleanup_close_ int own = borrowed ? nb_open_beneath(dfd, ".", O_RDONLY | O_DIRECTORY, 0) : -1;
        if (borrowed && own < 0)
                return own;
        int r = read_dir(c, borrowed ? own : dfd, l);
        if (r < 0 || !memo)
                return r;
        _cleanup_free_ char *blob = NULL;
        size_t len;
        if (listing_pack(l, &blob, &len) == 0)
                nb_digest_memo_add_listing(c->memo, &st, read_at, blob, len);
        return 0;
}

void nb_lister_done(struct nb_lister *c) {
        free(c->dents);
        c->dents = NULL;
}
