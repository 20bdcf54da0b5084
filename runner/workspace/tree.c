/* SPDX-License-Identifier: MIT */
/* Declared input trees (tree.h): glob expansion and hashing, the Merkle digest, and
 * the read-only copy in the cache. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "cache/build_lock.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "workspace/tree.h"

/* Deeper than this is a loop or a mistake, and each level holds a descriptor. */
#define MAX_DEPTH 256
/* getdents64's buffer: a directory of a few hundred entries in one call. */
#define DENTS_BUF (32u << 10)

/* Tree order: byte-wise with "/" below every other byte (and the end below "/"), so
 * a directory's files sort together and right where the directory's name sorts. */
static int path_cmp(const char *a, const char *b) {
        /* Equal bytes are equal keys: only the first difference needs mapping. */
        while (*a && *a == *b)
                a++, b++;
        int ka = !*a ? -1 : *a == '/' ? 0 : (unsigned char) *a + 1;
        int kb = !*b ? -1 : *b == '/' ? 0 : (unsigned char) *b + 1;
        return ka == kb ? 0 : ka < kb ? -1 : 1;
}

/* A match and what the walk's lstat saw of it: the digest memo's key. */
struct found {
        char *path;
        struct stat st;
};

static int cmp_found(const void *a, const void *b) {
        return path_cmp(((const struct found *) a)->path, ((const struct found *) b)->path);
}

struct collector {
        const char *glob;  /* the glob being expanded, quoted for messages */
        char **comps;      /* its components, consecutive "**" folded into one */
        size_t n_comps;
        size_t matches;    /* files it matched */
        bool matched_dir;  /* its last component matched a directory */
        struct found *found; /* every match so far, duplicates included */
        size_t n_paths, cap;
        char *dents; /* DENTS_BUF bytes for getdents64, made on first use */
        struct nb_digest_memo *memo; /* may be NULL */
        dev_t fs_dev; /* the device dir_times_trusted() last asked about */
        bool fs_asked, fs_ok;
        struct nb_error *err;
};

static void collector_done(struct collector *c) {
        for (size_t i = 0; i < c->n_paths; i++)
                free(c->found[i].path);
        free(c->found);
        free(c->dents);
        nb_strv_freep(&c->comps);
}

static bool skipped(const char *name) {
        return strcmp(name, "__pycache__") == 0 || strcmp(name, ".git") == 0 || strcmp(name, ".nestbox") == 0;
}

static bool has_magic(const char *comp) {
        return strpbrk(comp, "*?[\\") != NULL;
}

static char *join(const char *rel, const char *name) {
        size_t a = strlen(rel), b = strlen(name), sep = a > 0;
        char *r = malloc(a + sep + b + 1);
        if (!r)
                return NULL;
        memcpy(r, rel, a);
        r[a] = '/';
        memcpy(r + a + sep, name, b + 1);
        return r;
}

static int symlink_error(struct collector *c, const char *path) {
        _cleanup_free_ char *q = nb_quote(path);
        return nb_error_setx(c->err, ELOOP,
                             "glob %s: %s is a symlink; declared inputs must be regular files "
                             "(nestbox never follows symlinks: declare the file at its real path)",
                             c->glob, q ? q : path);
}

/* name in dfd matched the glob's last component. */
static int candidate(struct collector *c, int dfd, const char *rel, const char *name) {
        _cleanup_free_ char *path = join(rel, name);
        if (!path)
                return nb_error_set(c->err, ENOMEM, "glob %s", c->glob);
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : nb_error_set(c->err, errno, "glob %s: %s", c->glob, path);
        if (S_ISDIR(st.st_mode)) {
                c->matched_dir = true;
                return 0;
        }
        if (S_ISLNK(st.st_mode))
                return symlink_error(c, path);
        if (!S_ISREG(st.st_mode)) {
                _cleanup_free_ char *q = nb_quote(path);
                return nb_error_setx(c->err, EINVAL, "glob %s: %s is not a regular file", c->glob, q ? q : path);
        }
        if (c->n_paths == c->cap) {
                size_t ncap = c->cap ? c->cap * 2 : 64;
                struct found *np = realloc(c->found, ncap * sizeof(*np));
                if (!np)
                        return nb_error_set(c->err, ENOMEM, "glob %s", c->glob);
                c->found = np;
                c->cap = ncap;
        }
        c->found[c->n_paths++] = (struct found) { TAKE_PTR(path), st };
        c->matches++;
        return 0;
}

static int walk(struct collector *c, int dfd, const char *rel, size_t i, unsigned depth);

/* nb_open_beneath() of a directory, telling a symlink (-ELOOP) from a file (-ENOTDIR):
 * with O_NOFOLLOW | O_DIRECTORY the kernel answers ENOTDIR for both. */
static int open_dir(int dfd, const char *path, int flags) {
        int fd = nb_open_beneath(dfd, path, flags | O_DIRECTORY, 0);
        if (fd != -ENOTDIR)
                return fd;
        _cleanup_close_ int pfd = nb_open_beneath(dfd, path, O_PATH, 0);
        struct stat st;
        if (pfd >= 0 && fstat(pfd, &st) == 0 && S_ISLNK(st.st_mode))
                return -ELOOP;
        return -ENOTDIR;
}

/* Opens rel/name (a directory we are about to expand) and walks comps[i..] in it. */
static int descend(struct collector *c, int dfd, const char *rel, const char *name, size_t i, unsigned depth) {
        if (depth >= MAX_DEPTH)
                return nb_error_setx(c->err, ELOOP, "glob %s: more than %d directories deep at %s", c->glob,
                                     MAX_DEPTH, rel);
        _cleanup_free_ char *sub = join(rel, name);
        if (!sub)
                return nb_error_set(c->err, ENOMEM, "glob %s", c->glob);
        _cleanup_close_ int fd = open_dir(dfd, name, O_RDONLY);
        if (fd == -ENOENT || fd == -ENOTDIR)
                return 0; /* gone, or not a directory: no match below it */
        if (fd == -ELOOP)
                return symlink_error(c, sub);
        if (fd < 0)
                return nb_error_set(c->err, -fd, "glob %s: %s", c->glob, sub);
        return walk(c, fd, sub, i, depth + 1);
}

static bool entry_is_dir(int dfd, const char *name, unsigned char type) {
        struct stat st;
        if (type != DT_UNKNOWN)
                return type == DT_DIR; /* DT_LNK is not: links are not descended */
        return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* One directory's entries, read whole and sorted by name. Walked in that order, each
 * directory's matches (and its subdirectories' right where their names sort) come out
 * in tree order, so the usual globs need no sort of the collected paths afterwards:
 * at 10,000 files that sort was a sixth of the digest of an unchanged workspace. */
struct entry {
        size_t name; /* offset into names */
        unsigned char type;
};

struct listing {
        struct entry *v;
        size_t n, cap;
        char *names;
        size_t len, names_cap;
};

static void listing_done(struct listing *l) {
        free(l->v);
        free(l->names);
}

static int cmp_entry(const void *a, const void *b, void *names) {
        return strcmp((const char *) names + ((const struct entry *) a)->name,
                      (const char *) names + ((const struct entry *) b)->name);
}

static int listing_add(struct listing *l, const char *name, unsigned char type) {
        size_t len = strlen(name) + 1;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 64;
                struct entry *v = reallocarray(l->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        if (l->names_cap - l->len < len) {
                size_t cap = l->names_cap ? l->names_cap : 1024;
                while (cap - l->len < len)
                        cap *= 2;
                char *names = realloc(l->names, cap);
                if (!names)
                        return -ENOMEM;
                l->names = names;
                l->names_cap = cap;
        }
        memcpy(l->names + l->len, name, len);
        l->v[l->n++] = (struct entry) { l->len, type };
        l->len += len;
        return 0;
}

/* Filesystems known to move a directory's mtime and ctime on every entry made,
 * removed or renamed in it (POSIX asks it of all; network and FUSE filesystems may
 * cache or make up their times): only their listings are remembered. Asked once per
 * device. */
static bool dir_times_trusted(struct collector *c, int fd, dev_t dev) {
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
static int listing_pack(const struct listing *l, char **ret, size_t *len) {
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
 * not have made (names empty, with "/", unsorted or repeated, unterminated). */
static int listing_unpack(struct listing *l, const char *blob, size_t len) {
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
                if (!end || end == name || memchr(name, '/', (size_t) (end - name)) ||
                    (prev && strcmp(prev, name) >= 0))
                        return -EINVAL;
                if (l->n == l->cap) {
                        size_t cap = l->cap ? l->cap * 2 : 64;
                        struct entry *v = reallocarray(l->v, cap, sizeof(*v));
                        if (!v)
                                return -ENOMEM;
                        l->v = v;
                        l->cap = cap;
                }
                l->v[l->n++] = (struct entry) { (size_t) (name - l->names), (unsigned char) l->names[off] };
                prev = name;
                off = (size_t) (end - l->names) + 1;
        }
        return 0;
}

/* Reads directory fd from its start into l with getdents64, straight into one buffer
 * reused for every directory, then sorts it. */
static int read_dir(struct collector *c, int fd, struct listing *l) {
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
static int list_dir(struct collector *c, int dfd, bool borrowed, struct listing *l) {
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
                        listing_done(l); /* not one we made: list it afresh */
                        *l = (struct listing) {};
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

/* Matches comps[i..] in directory dfd (at rel, "" for the root). */
static int walk(struct collector *c, int dfd, const char *rel, size_t i, unsigned depth) {
        const char *pat = c->comps[i];
        bool last = i + 1 == c->n_comps;
        bool globstar = strcmp(pat, "**") == 0;

        if (!globstar && !has_magic(pat))
                /* A literal name: look it up, don't list the directory. */
                return last ? candidate(c, dfd, rel, pat) : descend(c, dfd, rel, pat, i + 1, depth);

        /* "**" followed by a last component with a wildcard: one listing serves both,
         * the wildcard matched here and the directories descended into. */
        const char *then = globstar && i + 2 == c->n_comps && has_magic(c->comps[i + 1]) ? c->comps[i + 1] : NULL;
        if (globstar && !last && !then) {
                /* "**" as zero directories: the rest of the glob right here. */
                int r = walk(c, dfd, rel, i + 1, depth);
                if (r < 0)
                        return r;
        }

        /* The root is the caller's descriptor (depth 0): its offset is not ours to move. */
        _cleanup_(listing_done) struct listing l = {};
        int k = list_dir(c, dfd, depth == 0, &l);
        if (k < 0)
                return nb_error_set(c->err, -k, "glob %s: %s", c->glob, *rel ? rel : ".");
        for (size_t e = 0; e < l.n; e++) {
                const char *name = l.names + l.v[e].name;
                unsigned char type = l.v[e].type;
                int r = 0;
                if (globstar) {
                        /* "**" as one or more directories; trailing, also every file here. */
                        if (then && fnmatch(then, name, 0) == 0)
                                r = candidate(c, dfd, rel, name);
                        if (r < 0)
                                return r;
                        if (entry_is_dir(dfd, name, type))
                                r = descend(c, dfd, rel, name, i, depth);
                        else if (last)
                                r = candidate(c, dfd, rel, name);
                } else if (fnmatch(pat, name, 0) == 0) {
                        if (last)
                                r = candidate(c, dfd, rel, name);
                        else if (entry_is_dir(dfd, name, type))
                                r = descend(c, dfd, rel, name, i + 1, depth);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Splits glob into components, folding "**" runs ("**" + "/" + "**" means what "**" means). */
static int split_glob(const char *glob, char ***ret, size_t *n) {
        size_t cap = 1;
        for (const char *s = glob; *s; s++)
                cap += *s == '/';
        _cleanup_strv_free_ char **v = calloc(cap + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        size_t k = 0;
        for (const char *s = glob;;) {
                size_t len = strcspn(s, "/");
                bool star2 = len == 2 && s[0] == '*' && s[1] == '*';
                if (!(star2 && k > 0 && strcmp(v[k - 1], "**") == 0)) {
                        v[k] = strndup(s, len);
                        if (!v[k++])
                                return -ENOMEM;
                }
                if (!s[len])
                        break;
                s += len + 1;
        }
        *n = k;
        *ret = TAKE_PTR(v);
        return 0;
}

static int expand_glob(int root_fd, const char *glob, struct collector *c) {
        _cleanup_free_ char *q = nb_quote(glob);
        if (!q)
                return nb_error_set(c->err, ENOMEM, "glob");
        const char *problem = nb_check_relative_path(glob, false);
        if (problem)
                return nb_error_setx(c->err, EINVAL, "glob %s: %s", q, problem);
        nb_strv_freep(&c->comps);
        c->comps = NULL;
        if (split_glob(glob, &c->comps, &c->n_comps) < 0)
                return nb_error_set(c->err, ENOMEM, "glob %s", q);
        c->glob = q;
        c->matches = 0;
        c->matched_dir = false;
        int r = walk(c, root_fd, "", 0, 0);
        c->glob = NULL;
        if (r < 0)
                return r;
        if (c->matches == 0)
                return nb_error_setx(c->err, ENOENT, "glob %s matched no files%s", q,
                                     c->matched_dir ? " (it matches a directory: add \"/**\" for the files below)"
                                                    : "");
        return 0;
}

static int check_source_root(int root_fd, const char *path, struct nb_error *err) {
        _cleanup_free_ char *q = nb_quote(path);
        if (!q)
                return nb_error_set(err, ENOMEM, "source root");
        const char *problem = nb_check_relative_path(path, true);
        if (problem)
                return nb_error_setx(err, EINVAL, "source root %s: %s", q, problem);
        _cleanup_close_ int fd = open_dir(root_fd, path, O_PATH);
        if (fd == -ENOTDIR)
                return nb_error_setx(err, ENOTDIR, "source root %s is not a directory", q);
        if (fd == -ELOOP)
                return nb_error_setx(err, ELOOP, "source root %s is a symlink (nestbox never follows symlinks)", q);
        if (fd < 0)
                return nb_error_set(err, -fd, "source root %s", q);
        return 0;
}

/* The file's digest: remembered under the identity the walk saw (memo), or read.
 * Opened beneath the root again (so no link on the way is followed now either). */
static int hash_file(int root_fd, struct nb_tree_file *f, const struct stat *seen, struct nb_digest_memo *memo,
                     struct nb_error *err) {
        if (nb_digest_memo_find(memo, seen, f->digest)) {
                f->size = (uint64_t) seen->st_size;
                f->exec = (seen->st_mode & S_IXUSR) != 0;
                return 0;
        }
        int64_t read_at = nb_digest_memo_now();
        _cleanup_close_ int fd = nb_open_beneath(root_fd, f->path, O_RDONLY | O_NONBLOCK, 0);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return nb_error_set(err, fd < 0 ? -fd : errno, "%s", f->path);
        if (!S_ISREG(st.st_mode))
                return nb_error_setx(err, EINVAL, "%s: not a regular file", f->path);
        f->exec = (st.st_mode & S_IXUSR) != 0;
        int r = nb_sha256_fd_copy(fd, -1, f->digest, &f->size);
        if (r < 0)
                return nb_error_set(err, r, "%s", f->path);
        /* Only what the file still is: st from before the read, the size read. */
        if (f->size == (uint64_t) st.st_size)
                nb_digest_memo_add(memo, &st, read_at, f->digest);
        return 0;
}

int nb_tree_collect(int root_fd, const char *const *globs, const char *const *source_roots,
                    struct nb_digest_memo *memo, struct nb_tree *ret, struct nb_error *err) {
        for (const char *const *s = source_roots; s && *s; s++) {
                int r = check_source_root(root_fd, *s, err);
                if (r < 0)
                        return r;
        }
        _cleanup_(collector_done) struct collector c = { .memo = memo, .err = err };
        for (const char *const *g = globs; g && *g; g++) {
                int r = expand_glob(root_fd, *g, &c);
                if (r < 0)
                        return r;
        }
        /* Sorted listings leave the paths in tree order unless globs overlap or a "**"
         * meets its rest twice: sort only then. */
        for (size_t i = 1; i < c.n_paths; i++)
                if (path_cmp(c.found[i - 1].path, c.found[i].path) >= 0) {
                        nb_qsort(c.found, c.n_paths, sizeof(struct found), cmp_found);
                        break;
                }

        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;
        t.files = calloc(c.n_paths + 1, sizeof(struct nb_tree_file));
        if (!t.files)
                return nb_error_set(err, ENOMEM, "tree");
        for (size_t i = 0; i < c.n_paths; i++) {
                if (t.n_files > 0 && strcmp(t.files[t.n_files - 1].path, c.found[i].path) == 0)
                        continue; /* matched by more than one glob */
                struct nb_tree_file *f = &t.files[t.n_files++];
                f->path = TAKE_PTR(c.found[i].path);
                int r = hash_file(root_fd, f, &c.found[i].st, memo, err);
                if (r < 0)
                        return r;
        }
        *ret = t;
        t = (struct nb_tree) NB_TREE_INIT;
        return 0;
}

int nb_tree_merge(struct nb_tree *a, struct nb_tree *b, struct nb_tree *ret) {
        struct nb_tree m = { calloc(a->n_files + b->n_files + 1, sizeof(struct nb_tree_file)), 0 };
        if (!m.files)
                return -ENOMEM;
        size_t i = 0, j = 0;
        while (i < a->n_files || j < b->n_files) {
                int c = i == a->n_files ? 1 : j == b->n_files ? -1 : path_cmp(a->files[i].path, b->files[j].path);
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

/* The digest of the directory whose files are t->files[*i..] while their paths start
 * with the plen bytes of prefix; consumes them. */
static int dir_digest(const struct nb_tree *t, size_t *i, const char *prefix, size_t plen,
                      char out[NB_DIGEST_HEX_LEN + 1]) {
        _cleanup_(nb_hasher_freep) struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return -ENOMEM;
        nb_hasher_update_str(h, "nestbox-tree-v1");
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
                nb_hasher_update_str(h, slash ? "dir" : "file");
                nb_hasher_update_u64(h, nlen);
                nb_hasher_update(h, name, nlen);
                nb_hasher_update_u64(h, !slash && f->exec);
                nb_hasher_update_str(h, slash ? child : f->digest);
        }
        nb_hasher_finish(TAKE_PTR(h), out);
        return 0;
}

int nb_tree_digest(const struct nb_tree *t, char out[NB_DIGEST_HEX_LEN + 1]) {
        /* Out of order or repeated, a directory would be hashed in pieces: refuse. */
        for (size_t k = 1; k < t->n_files; k++)
                if (path_cmp(t->files[k - 1].path, t->files[k].path) >= 0)
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
        _cleanup_free_ char *final_rel = join("trees", digest);
        _cleanup_free_ char *path = final_rel ? join(cache->path, final_rel) : NULL;
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
        r = nb_cache_dir_seal(tfd, MAX_DEPTH);
        if (r < 0)
                return nb_error_set(err, r, "cache %s/%s", cache->path, tmp.rel);
        /* The data must be on disk before the rename that publishes it. */
        r = nb_cache_dir_sync(tfd, MAX_DEPTH);
        if (r < 0)
                return nb_error_set(err, r, "cache %s/%s", cache->path, tmp.rel);
        r = nb_cache_dir_publish(cache, tmp.rel, final_rel, err);
        free(TAKE_PTR(tmp.rel)); /* renamed, or removed by publish */
        if (r < 0)
                return r;
        /* Sealed only now: moving a directory to another parent needs write permission
         * on it (its ".." entry changes). A tree someone else published is sealed too. */
        _cleanup_close_ int fd = nb_open_beneath(cache->fd, final_rel, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0 || fchmod(fd, 0555) < 0)
                return nb_error_set(err, fd < 0 ? -fd : errno, "cache %s", path);
        *ret_path = TAKE_PTR(path);
        return 0;
}
