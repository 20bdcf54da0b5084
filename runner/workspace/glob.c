/* SPDX-License-Identifier: MIT */
/* Collecting a declared tree (tree.h nb_tree_collect): globs expanded one directory
 * listing at a time (listing.c), each match stat'ed once, its digest remembered by
 * the digest memo or read. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/digest_watch.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "workspace/listing.h"
#include "workspace/tree-internal.h"

/* A match and what the walk's lstat saw of it: the digest memo's key (only that: a
 * whole struct stat per file was half of the walk's memory at 10,000 files). */
struct found {
        char *path;
        dev_t dev;
        ino_t ino;
        off_t size;
        mode_t mode;
        struct timespec mtim, ctim;
};

static int cmp_found(const void *a, const void *b) {
        return nb_tree_path_cmp(((const struct found *) a)->path, ((const struct found *) b)->path);
}

/* A directory the walk entered, kept open for the next glob that passes through it. */
struct opened {
        char *rel;
        int fd;
};

struct collector {
        const char *glob;  /* the glob being expanded, quoted for messages */
        char **comps;      /* its components, consecutive "**" folded into one */
        size_t n_comps;
        size_t matches;    /* files it matched */
        bool matched_dir;  /* its last component matched a directory */
        struct found *found; /* every match so far, duplicates included */
        size_t n_paths, cap;
        struct nb_lister lister;
        /* By depth, the directories last entered: literal paths (what `nestbox actions`
         * prints, one per file) share their parents, so each is opened once per
         * collection rather than once per file below it. */
        struct opened opened[NB_TREE_MAX_DEPTH];
        struct nb_error *err;
};

/* Closes opened[depth] and everything deeper (entered from it). */
static void opened_drop(struct collector *c, size_t depth) {
        for (size_t k = depth; k < NB_TREE_MAX_DEPTH && c->opened[k].rel; k++) {
                free(c->opened[k].rel);
                close(c->opened[k].fd);
                c->opened[k] = (struct opened) {};
        }
}

static void collector_done(struct collector *c) {
        for (size_t i = 0; i < c->n_paths; i++)
                free(c->found[i].path);
        free(c->found);
        opened_drop(c, 0);
        nb_lister_done(&c->lister);
        nb_strv_freep(&c->comps);
}

static bool has_magic(const char *comp) {
        return strpbrk(comp, "*?[\\") != NULL;
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
        _cleanup_free_ char *path = nb_tree_join(rel, name);
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
        if (st.st_nlink > 1)
                nb_digest_watch_file(dfd, name); /* a write through another link is told only to the file */
        if (NB_RESERVE(c->found, c->cap, c->n_paths, 1, 64) < 0)
                return nb_error_set(c->err, ENOMEM, "glob %s", c->glob);
        c->found[c->n_paths++] = (struct found) { TAKE_PTR(path), st.st_dev, st.st_ino, st.st_size, st.st_mode,
                                                  st.st_mtim, st.st_ctim };
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
        if (depth >= NB_TREE_MAX_DEPTH)
                return nb_error_setx(c->err, ELOOP, "glob %s: more than %d directories deep at %s", c->glob,
                                     NB_TREE_MAX_DEPTH, rel);
        _cleanup_free_ char *sub = nb_tree_join(rel, name);
        if (!sub)
                return nb_error_set(c->err, ENOMEM, "glob %s", c->glob);
        /* The same path from the same root, entered before by this collection: the
         * same directory (deeper entries are only ever replaced from here down). */
        struct opened *o = &c->opened[depth];
        if (!o->rel || strcmp(o->rel, sub) != 0) {
                int fd = open_dir(dfd, name, O_RDONLY);
                if (fd == -ENOENT || fd == -ENOTDIR)
                        return 0; /* gone, or not a directory: no match below it */
                if (fd == -ELOOP)
                        return symlink_error(c, sub);
                if (fd < 0)
                        return nb_error_set(c->err, -fd, "glob %s: %s", c->glob, sub);
                opened_drop(c, depth);
                *o = (struct opened) { TAKE_PTR(sub), fd };
        }
        return walk(c, o->fd, o->rel, i, depth + 1);
}

static bool entry_is_dir(int dfd, const char *name, unsigned char type) {
        struct stat st;
        if (type != DT_UNKNOWN)
                return type == DT_DIR; /* DT_LNK is not: links are not descended */
        return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Matches comps[i..] in directory dfd (at rel, "" for the root). */
static int walk(struct collector *c, int dfd, const char *rel, size_t i, unsigned depth) {
        const char *pat = c->comps[i];
        bool last = i + 1 == c->n_comps;
        bool globstar = strcmp(pat, "**") == 0;
        nb_digest_watch_dir(dfd, rel); /* before it is read: nestbox worker's watch (cache/digest_watch.h) */

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
        _cleanup_(nb_listing_done) struct nb_listing l = {};
        int k = nb_list_dir(&c->lister, dfd, depth == 0, &l);
        if (k < 0)
                return nb_error_set(c->err, -k, "glob %s: %s", c->glob, *rel ? rel : ".");
        for (size_t e = 0; e < l.n; e++) {
                const char *name = nb_listing_name(&l, e);
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
        _cleanup_(collector_done) struct collector c = { .lister = { .memo = memo }, .err = err };
        for (const char *const *g = globs; g && *g; g++) {
                int r = expand_glob(root_fd, *g, &c);
                if (r < 0)
                        return r;
        }
        /* Sorted listings leave the paths in tree order unless globs overlap or a "**"
         * meets its rest twice: sort only then. */
        for (size_t i = 1; i < c.n_paths; i++)
                if (nb_tree_path_cmp(c.found[i - 1].path, c.found[i].path) >= 0) {
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
                const struct found *m = &c.found[i];
                struct stat seen = { .st_dev = m->dev, .st_ino = m->ino, .st_size = m->size, .st_mode = m->mode,
                                     .st_mtim = m->mtim, .st_ctim = m->ctim };
                int r = hash_file(root_fd, f, &seen, memo, err);
                if (r < 0)
                        return r;
        }
        *ret = t;
        t = (struct nb_tree) NB_TREE_INIT;
        return 0;
}
