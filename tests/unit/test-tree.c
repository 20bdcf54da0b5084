/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache_dir.h"
#include "cache/digest.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "test.h"
#include "action/action.h"
#include "workspace/tree.h"

/* A scratch workspace:
 *   lib/src/python/lib/{__init__.py, util.py, data.txt, deep/a/b/c.py}
 *   lib/src/python/lib/__pycache__/util.py   (skipped by wildcards)
 *   project1/src/python/app/main.py
 *   project1/test/python/{conftest.py, test_main.py (executable)}
 *   .git/hooks/x.py, README.md                (undeclared) */
struct ws {
        char path[32];
        int fd;
};

static void put(int dfd, const char *path, const char *data, mode_t mode) {
        const char *slash = strrchr(path, '/');
        if (slash) {
                _cleanup_free_ char *dir = strndup(path, (size_t) (slash - path));
                _cleanup_close_ int d = nb_mkdir_p_beneath(dfd, dir, 0755);
                CHECK(d >= 0);
        }
        (void) unlinkat(dfd, path, 0);
        CHECK_EQ_INT(nb_write_file_beneath(dfd, path, data, strlen(data), mode), 0);
        CHECK(fchmodat(dfd, path, mode, 0) == 0);
}

static void ws_open(struct ws *w) {
        strcpy(w->path, "/tmp/nb-test-tree.XXXXXX");
        CHECK(mkdtemp(w->path) != NULL);
        w->fd = open(w->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(w->fd >= 0);
        put(w->fd, "lib/src/python/lib/__init__.py", "", 0644);
        put(w->fd, "lib/src/python/lib/util.py", "def f():\n    return 1\n", 0644);
        put(w->fd, "lib/src/python/lib/data.txt", "data\n", 0644);
        put(w->fd, "lib/src/python/lib/deep/a/b/c.py", "C = 3\n", 0644);
        put(w->fd, "lib/src/python/lib/__pycache__/util.py", "stale\n", 0644);
        put(w->fd, "project1/src/python/app/main.py", "print('hi')\n", 0644);
        put(w->fd, "project1/test/python/conftest.py", "\n", 0644);
        put(w->fd, "project1/test/python/test_main.py", "def test(): pass\n", 0755);
        put(w->fd, ".git/hooks/x.py", "git\n", 0644);
        put(w->fd, "README.md", "readme\n", 0644);
}

static void ws_close(struct ws *w) {
        close(w->fd);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, w->path), 0);
}

/* Collects a NULL-terminated list of globs; returns the error code. */
static int collect(int fd, struct nb_tree *t, struct nb_error *err, const char *const *globs) {
        nb_tree_clear(t);
        return nb_tree_collect(fd, globs, NULL, NULL, t, err);
}

/* The collected paths joined by " ", for comparisons that read like the tree. */
static char *paths(const struct nb_tree *t) {
        char *s = strdup("");
        for (size_t i = 0; s && i < t->n_files; i++) {
                char *n = NULL;
                if (asprintf(&n, "%s%s%s", s, i ? " " : "", t->files[i].path) < 0)
                        n = NULL;
                free(s);
                s = n;
        }
        return s;
}

#define CHECK_PATHS(t, want)                                    \
        do {                                                    \
                _cleanup_free_ char *_p = paths(t);             \
                CHECK_EQ_STR(_p, want);                         \
        } while (0)

TEST(glob_semantics) {
        struct ws w;
        ws_open(&w);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;

        /* "**" at the start: any depth from the root; skips __pycache__ and .git. */
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "**/*.py", NULL }), 0);
        CHECK_PATHS(&t, "lib/src/python/lib/__init__.py lib/src/python/lib/deep/a/b/c.py "
                        "lib/src/python/lib/util.py project1/src/python/app/main.py "
                        "project1/test/python/conftest.py project1/test/python/test_main.py");

        /* "**" in the middle: zero or more directories. */
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "lib/src/**/c.py", NULL }), 0);
        CHECK_PATHS(&t, "lib/src/python/lib/deep/a/b/c.py");
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "project1/**/python/**/test_main.py", NULL }), 0);
        CHECK_PATHS(&t, "project1/test/python/test_main.py");

        /* "**" at the end: every file below, whatever its name. */
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "lib/src/python/lib/**", NULL }), 0);
        CHECK_PATHS(&t, "lib/src/python/lib/__init__.py lib/src/python/lib/data.txt "
                        "lib/src/python/lib/deep/a/b/c.py lib/src/python/lib/util.py");

        /* "*" stays within one component. */
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "lib/src/python/lib/*.py", NULL }), 0);
        CHECK_PATHS(&t, "lib/src/python/lib/__init__.py lib/src/python/lib/util.py");
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "lib/*/c.py", NULL }), -ENOENT);
        CHECK_EQ_STR(nb_error_message(&err), "glob \"lib/*/c.py\" matched no files");
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "*/src/python/*/main.py", NULL }), 0);
        CHECK_PATHS(&t, "project1/src/python/app/main.py");

        /* ? and [...] */
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "project1/test/python/[ct]?st_*.py", NULL }), 0);
        CHECK_PATHS(&t, "project1/test/python/test_main.py");

        /* A literal path, and a wildcard naming a skipped directory literally. */
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "README.md", ".git/hooks/*.py", NULL }), 0);
        CHECK_PATHS(&t, ".git/hooks/x.py README.md");

        /* Overlapping globs: each file once. */
        CHECK_EQ_INT(collect(w.fd, &t, &err,
                             (const char *[]) { "lib/**/*.py", "lib/src/python/lib/util.py", "**/util.py", NULL }),
                     0);
        CHECK_EQ_INT(t.n_files, 3);

        /* A glob that matches nothing is an error naming it; a directory gets a hint. */
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "**/*.py", "project1/tset/**/*.py", NULL }),
                     -ENOENT);
        CHECK_EQ_STR(nb_error_message(&err), "glob \"project1/tset/**/*.py\" matched no files");
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "lib/src/python", NULL }), -ENOENT);
        CHECK_EQ_STR(nb_error_message(&err), "glob \"lib/src/python\" matched no files (it matches a directory: "
                                             "add \"/**\" for the files below)");

        /* Globs that leave the workspace never reach the disk. */
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "../*", NULL }), -EINVAL);
        CHECK_EQ_STR(nb_error_message(&err),
                     "glob \"../*\": \"..\" is not allowed (paths must stay inside the workspace)");
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "/etc/passwd", NULL }), -EINVAL);
        ws_close(&w);
}

TEST(files_carry_size_exec_and_digest) {
        struct ws w;
        ws_open(&w);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "project1/**/*.py", NULL }), 0);
        CHECK_EQ_INT(t.n_files, 3);
        const struct nb_tree_file *f = &t.files[2];
        CHECK_EQ_STR(f->path, "project1/test/python/test_main.py");
        CHECK(f->exec);
        CHECK(!t.files[0].exec);
        CHECK_EQ_INT(f->size, strlen("def test(): pass\n"));
        char want[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex("def test(): pass\n", f->size, want);
        CHECK_EQ_STR(f->digest, want);
        ws_close(&w);
}

TEST(source_roots_must_be_directories) {
        struct ws w;
        ws_open(&w);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;
        const char *globs[] = { "**/*.py", NULL };
        CHECK_EQ_INT(nb_tree_collect(w.fd, globs, (const char *[]) { "lib/src/python", ".", NULL }, NULL, &t, &err), 0);
        nb_tree_clear(&t);
        CHECK_EQ_INT(nb_tree_collect(w.fd, globs, (const char *[]) { "README.md", NULL }, NULL, &t, &err), -ENOTDIR);
        CHECK_EQ_STR(nb_error_message(&err), "source root \"README.md\" is not a directory");
        CHECK_EQ_INT(nb_tree_collect(w.fd, globs, (const char *[]) { "lib/src/pyhton", NULL }, NULL, &t, &err), -ENOENT);
        CHECK_EQ_STR(nb_error_message(&err), "source root \"lib/src/pyhton\": No such file or directory");
        CHECK(symlinkat("/usr", w.fd, "usr") == 0);
        CHECK_EQ_INT(nb_tree_collect(w.fd, globs, (const char *[]) { "usr", NULL }, NULL, &t, &err), -ELOOP);
        CHECK_EQ_STR(nb_error_message(&err), "source root \"usr\" is a symlink (nestbox never follows symlinks)");
        CHECK_EQ_INT(nb_tree_collect(w.fd, globs, (const char *[]) { "../", NULL }, NULL, &t, &err), -EINVAL);
        ws_close(&w);
}

TEST(symlinks_are_never_followed) {
        struct ws w;
        ws_open(&w);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;

        /* A link to a directory outside, met while expanding "**": not descended. */
        CHECK(symlinkat("/usr/lib", w.fd, "lib/src/python/lib/escape") == 0);
        CHECK(symlinkat("..", w.fd, "lib/src/python/lib/up") == 0);
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "lib/**/*.py", NULL }), 0);
        CHECK_EQ_INT(t.n_files, 3);

        /* A link matched as a file is refused, wherever it points. */
        CHECK(symlinkat("/etc/passwd", w.fd, "project1/src/python/app/evil.py") == 0);
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "project1/**/*.py", NULL }), -ELOOP);
        CHECK_EQ_STR(nb_error_message(&err),
                     "glob \"project1/**/*.py\": \"project1/src/python/app/evil.py\" is a symlink; declared inputs "
                     "must be regular files (nestbox never follows symlinks: declare the file at its real path)");
        CHECK(t.n_files == 0);
        CHECK(unlinkat(w.fd, "project1/src/python/app/evil.py", 0) == 0);
        CHECK(symlinkat("main.py", w.fd, "project1/src/python/app/alias.py") == 0);
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "project1/src/**", NULL }), -ELOOP);
        CHECK(unlinkat(w.fd, "project1/src/python/app/alias.py", 0) == 0);

        /* A link named literally on the way. */
        CHECK(symlinkat("/etc", w.fd, "etc") == 0);
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "etc/passwd", NULL }), -ELOOP);
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "etc/*", NULL }), -ELOOP);
        CHECK(strstr(nb_error_message(&err), "\"etc\" is a symlink") != NULL);

        /* Not a regular file. */
        CHECK(mkfifoat(w.fd, "lib/src/python/lib/pipe.py", 0644) == 0);
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "lib/**/*.py", NULL }), -EINVAL);
        CHECK_EQ_STR(nb_error_message(&err),
                     "glob \"lib/**/*.py\": \"lib/src/python/lib/pipe.py\" is not a regular file");
        ws_close(&w);
}

static void digest_of(int fd, const char *const *globs, char out[NB_DIGEST_HEX_LEN + 1]) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;
        strcpy(out, "none");
        CHECK_EQ_INT(collect(fd, &t, &err, globs), 0);
        CHECK_EQ_INT(nb_tree_digest(&t, out), 0);
}

TEST(digest_depends_on_declared_content_only) {
        struct ws w, w2;
        ws_open(&w);
        ws_open(&w2);
        const char *const globs[] = { "lib/**/*.py", "project1/**/*.py", NULL };
        const char *const reversed[] = { "project1/**/*.py", "lib/**/*.py", "lib/src/python/lib/util.py", NULL };
        char base[NB_DIGEST_HEX_LEN + 1], d[NB_DIGEST_HEX_LEN + 1];
        digest_of(w.fd, globs, base);
        CHECK(nb_is_digest(base));

        /* Same files elsewhere (another machine, another checkout): same digest. */
        digest_of(w2.fd, globs, d);
        CHECK_EQ_STR(d, base);
        /* Glob order and overlap. */
        digest_of(w.fd, reversed, d);
        CHECK_EQ_STR(d, base);
        /* mtimes. */
        struct timespec old[2] = { { 1000, 0 }, { 1000, 0 } };
        CHECK(utimensat(w.fd, "lib/src/python/lib/util.py", old, 0) == 0);
        digest_of(w.fd, globs, d);
        CHECK_EQ_STR(d, base);
        /* Undeclared files. */
        put(w.fd, "lib/src/python/lib/notes.txt", "x", 0644);
        put(w.fd, "project1/src/python/app/__pycache__/main.py", "x", 0644);
        digest_of(w.fd, globs, d);
        CHECK_EQ_STR(d, base);

        /* One changed byte. */
        put(w.fd, "lib/src/python/lib/util.py", "def f():\n    return 2\n", 0644);
        digest_of(w.fd, globs, d);
        CHECK(strcmp(d, base) != 0);
        put(w.fd, "lib/src/python/lib/util.py", "def f():\n    return 1\n", 0644);
        digest_of(w.fd, globs, d);
        CHECK_EQ_STR(d, base);
        /* A flipped exec bit. */
        CHECK(fchmodat(w.fd, "project1/src/python/app/main.py", 0755, 0) == 0);
        digest_of(w.fd, globs, d);
        CHECK(strcmp(d, base) != 0);
        CHECK(fchmodat(w.fd, "project1/src/python/app/main.py", 0644, 0) == 0);
        /* A renamed file, and a file moved to another directory. */
        CHECK(renameat(w.fd, "lib/src/python/lib/util.py", w.fd, "lib/src/python/lib/utils.py") == 0);
        digest_of(w.fd, globs, d);
        CHECK(strcmp(d, base) != 0);
        CHECK(renameat(w.fd, "lib/src/python/lib/utils.py", w.fd, "lib/src/python/lib/deep/util.py") == 0);
        digest_of(w.fd, globs, d);
        CHECK(strcmp(d, base) != 0);
        ws_close(&w);
        ws_close(&w2);
}

TEST(digest_format_is_pinned) {
        /* Cached trees on every machine are named by this: it must not drift. */
        struct nb_tree_file files[] = {
                { (char *) "a/b.py", 1, false, "" },
                { (char *) "a.py", 0, true, "" },
        };
        nb_sha256_hex("x", 1, files[0].digest);
        nb_sha256_hex("", 0, files[1].digest);
        struct nb_tree t = { files, 2 };
        char d[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(nb_tree_digest(&t, d), 0);
        CHECK_EQ_STR(d, "f96e7e24fbe53fea2a97274e6ad725985af03bb8e579fde3cf5932582a7ac3f9");
        /* Not in tree order ("a.py" sorts after the directory "a"): refused. */
        struct nb_tree_file swapped[] = { files[1], files[0] };
        struct nb_tree bad = { swapped, 2 };
        CHECK_EQ_INT(nb_tree_digest(&bad, d), -EINVAL);
        struct nb_tree empty = NB_TREE_INIT;
        CHECK_EQ_INT(nb_tree_digest(&empty, d), 0);
}

/* Every entry below dfd as "path:mode" lines in readdir-independent (sorted) order. */
static void list_tree(int dfd, const char *rel, char ***out, size_t *n) {
        int lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_closedir_ DIR *d = fdopendir(lfd);
        CHECK(d != NULL);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                struct stat st;
                CHECK(fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0);
                char *line = NULL;
                CHECK(asprintf(&line, "%s%s%s:%o", rel, *rel ? "/" : "", de->d_name, st.st_mode & 07777) > 0);
                *out = realloc(*out, (*n + 2) * sizeof(char *));
                (*out)[(*n)++] = line;
                (*out)[*n] = NULL;
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        _cleanup_free_ char *subrel = strndup(line, (size_t) (strrchr(line, ':') - line));
                        list_tree(sub, subrel, out, n);
                }
        }
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static char *tree_listing(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(fd >= 0);
        _cleanup_strv_free_ char **v = NULL;
        size_t n = 0;
        if (fd >= 0)
                list_tree(fd, "", &v, &n);
        if (n)
                qsort(v, n, sizeof(char *), cmp_str);
        char *s = strdup("");
        for (size_t i = 0; i < n; i++) {
                char *next = NULL;
                CHECK(asprintf(&next, "%s%s\n", s, v[i]) > 0);
                free(s);
                s = next;
        }
        return s;
}

static bool dir_is_empty(int dfd, const char *name) {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_closedir_ DIR *d = fd >= 0 ? fdopendir(TAKE_FD(fd)) : NULL;
        struct dirent *de;
        while (d && (de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        return false;
        return d != NULL;
}

TEST(materialize_copies_declared_files_read_only_once) {
        struct ws w;
        ws_open(&w);
        char cache_path[] = "/tmp/nb-test-tree-cache.XXXXXX";
        CHECK(mkdtemp(cache_path) != NULL);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_dir cache;
        CHECK_EQ_INT(nb_cache_dir_open(&cache, cache_path, &err), 0);

        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "lib/**/*.py", "project1/test/**", NULL }), 0);
        char digest[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(nb_tree_digest(&t, digest), 0);

        _cleanup_free_ char *path = NULL, *want_path = NULL;
        CHECK_EQ_INT(nb_tree_materialize(&cache, &t, w.fd, &path, &err), 0);
        CHECK(asprintf(&want_path, "%s/trees/%s", cache.path, digest) > 0);
        CHECK_EQ_STR(path, want_path);

        /* Exactly the declared files, read-only, the exec bit kept; dirs 0555. */
        _cleanup_free_ char *listing = tree_listing(want_path);
        CHECK_EQ_STR(listing,
                     "lib/src/python/lib/__init__.py:444\n"
                     "lib/src/python/lib/deep/a/b/c.py:444\n"
                     "lib/src/python/lib/deep/a/b:555\n"
                     "lib/src/python/lib/deep/a:555\n"
                     "lib/src/python/lib/deep:555\n"
                     "lib/src/python/lib/util.py:444\n"
                     "lib/src/python/lib:555\n"
                     "lib/src/python:555\n"
                     "lib/src:555\n"
                     "lib:555\n"
                     "project1/test/python/conftest.py:444\n"
                     "project1/test/python/test_main.py:555\n"
                     "project1/test/python:555\n"
                     "project1/test:555\n"
                     "project1:555\n");
        struct stat st;
        CHECK(stat(want_path, &st) == 0 && (st.st_mode & 07777) == 0555);
        _cleanup_close_ int tfd = open(want_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_free_ char *data = NULL;
        CHECK_EQ_INT(nb_read_file_beneath(tfd, "lib/src/python/lib/util.py", 1024, &data, NULL), 0);
        CHECK_EQ_STR(data, "def f():\n    return 1\n");
        /* A copy, not a link: editing the source later does not reach the tree. */
        CHECK(fstatat(tfd, "lib/src/python/lib/util.py", &st, 0) == 0 && st.st_nlink == 1);
        CHECK(dir_is_empty(cache.fd, "tmp"));

        /* Second time: reused as it is. The source has changed since (a copy would
         * notice and fail), so success proves nothing was copied. */
        put(w.fd, "lib/src/python/lib/util.py", "changed\n", 0644);
        _cleanup_free_ char *again = NULL;
        CHECK_EQ_INT(nb_tree_materialize(&cache, &t, w.fd, &again, &err), 0);
        CHECK_EQ_STR(again, want_path);

        /* A writable root (a crash between publish and seal) is sealed on reuse. */
        CHECK(chmod(want_path, 0755) == 0);
        free(again);
        again = NULL;
        CHECK_EQ_INT(nb_tree_materialize(&cache, &t, w.fd, &again, &err), 0);
        CHECK(stat(want_path, &st) == 0 && (st.st_mode & 07777) == 0555);

        close(tfd);
        tfd = -1;
        nb_cache_dir_close(&cache);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, cache_path), 0);
        ws_close(&w);
}

TEST(materialize_refuses_a_file_changed_since_collect) {
        struct ws w;
        ws_open(&w);
        char cache_path[] = "/tmp/nb-test-tree-cache.XXXXXX";
        CHECK(mkdtemp(cache_path) != NULL);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_dir cache;
        CHECK_EQ_INT(nb_cache_dir_open(&cache, cache_path, &err), 0);
        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "**/*.py", NULL }), 0);

        /* Same size, one byte different. */
        put(w.fd, "project1/src/python/app/main.py", "print('HI')\n", 0644);
        char *path = NULL;
        CHECK_EQ_INT(nb_tree_materialize(&cache, &t, w.fd, &path, &err), -ESTALE);
        CHECK(path == NULL);
        CHECK(strstr(nb_error_message(&err), "project1/src/python/app/main.py changed while nestbox was reading it")
              != NULL);
        /* Nothing half-built is left, nothing published. */
        CHECK(dir_is_empty(cache.fd, "tmp"));
        CHECK(dir_is_empty(cache.fd, "trees"));

        /* Same content, exec bit flipped. */
        put(w.fd, "project1/src/python/app/main.py", "print('hi')\n", 0755);
        CHECK_EQ_INT(nb_tree_materialize(&cache, &t, w.fd, &path, &err), -ESTALE);
        /* A file swapped for a link since. */
        put(w.fd, "project1/src/python/app/main.py", "print('hi')\n", 0644);
        CHECK(unlinkat(w.fd, "lib/src/python/lib/util.py", 0) == 0);
        CHECK(symlinkat("/etc/passwd", w.fd, "lib/src/python/lib/util.py") == 0);
        CHECK_EQ_INT(nb_tree_materialize(&cache, &t, w.fd, &path, &err), -ELOOP);
        CHECK(dir_is_empty(cache.fd, "tmp"));
        CHECK(dir_is_empty(cache.fd, "trees"));

        nb_cache_dir_close(&cache);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, cache_path), 0);
        ws_close(&w);
}

TEST(collect_target_uses_sources_tests_and_roots) {
        struct ws w;
        ws_open(&w);
        static const char doc[] =
                "{\"version\": 1, \"resolves\": {\"r\": {\"lockfile\": \"l\", \"wheelhouse\": \"w\"}},"
                " \"targets\": {\"p1\": {\"sources\": [\"project1/src/python/**/*.py\"],"
                " \"tests\": [\"project1/test/python/test_*.py\"], \"resolve\": \"r\","
                " \"source_roots\": [\"project1/src/python\", \"project1/tset/python\"]}}}";
        put(w.fd, "nestbox.json", doc, 0644);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        CHECK_EQ_INT(nb_workspace_load(w.path, &ws, &err), 0);
        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;
        if (ws) {
                const struct nb_target *tg = &ws->targets[0];
                _cleanup_strv_free_ char **sources = NULL, **tests = NULL;
                CHECK_EQ_INT(nb_action_collect(ws->root_fd, tg->sources, tg->tests, tg->source_roots, NULL, &t, &sources,
                                               &tests, &err), -ENOENT);
                CHECK_EQ_STR(nb_error_message(&err), "source root \"project1/tset/python\": No such file or directory");
                free(ws->targets[0].source_roots[1]);
                ws->targets[0].source_roots[1] = NULL;
                CHECK_EQ_INT(nb_action_collect(ws->root_fd, tg->sources, tg->tests, tg->source_roots, NULL, &t, &sources,
                                               &tests, &err), 0);
                CHECK_PATHS(&t, "project1/src/python/app/main.py project1/test/python/test_main.py");
                CHECK(sources && sources[0] && strcmp(sources[0], "project1/src/python/app/main.py") == 0 && !sources[1]);
                CHECK(tests && tests[0] && strcmp(tests[0], "project1/test/python/test_main.py") == 0 && !tests[1]);
        }
        ws_close(&w);
}

TEST(materialize_across_filesystems) {
        /* A cache on another filesystem than the workspace: neither a reflink nor
         * copy_file_range may work there, the read/write fallback must. */
        struct stat shm, tmp;
        if (stat("/dev/shm", &shm) < 0 || stat("/tmp", &tmp) < 0 || shm.st_dev == tmp.st_dev)
                return;
        struct ws w;
        ws_open(&w);
        char cache_path[] = "/dev/shm/nb-test-tree-cache.XXXXXX";
        CHECK(mkdtemp(cache_path) != NULL);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_dir cache;
        CHECK_EQ_INT(nb_cache_dir_open(&cache, cache_path, &err), 0);
        _cleanup_(nb_tree_clear) struct nb_tree t = NB_TREE_INIT;
        CHECK_EQ_INT(collect(w.fd, &t, &err, (const char *[]) { "**/*.py", NULL }), 0);
        _cleanup_free_ char *path = NULL;
        CHECK_EQ_INT(nb_tree_materialize(&cache, &t, w.fd, &path, &err), 0);
        _cleanup_close_ int tfd = path ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        _cleanup_free_ char *data = NULL;
        CHECK_EQ_INT(nb_read_file_beneath(tfd, "project1/src/python/app/main.py", 1024, &data, NULL), 0);
        CHECK_EQ_STR(data, "print('hi')\n");
        nb_cache_dir_close(&cache);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, cache_path), 0);
        ws_close(&w);
}

/* nb_cache_dir_sync: every file and directory of a finished entry made durable, by an
 * fsync each for a tree's few files and one syncfs past 64; a loop of directories is
 * refused as the seal refuses it. */
TEST(sync_of_a_finished_entry) {
        char path[] = "/tmp/nb-test-sync.XXXXXX";
        CHECK(mkdtemp(path) != NULL);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(fd >= 0);
        put(fd, "a/b/one.py", "1\n", 0644);
        put(fd, "two.py", "2\n", 0755);
        CHECK_EQ_INT(nb_cache_dir_sync(fd, 8), 0);
        for (int i = 0; i < 70; i++) {
                char name[32];
                snprintf(name, sizeof(name), "many/m%02d.py", i);
                put(fd, name, "x\n", 0644);
        }
        CHECK_EQ_INT(nb_cache_dir_sync(fd, 8), 0);
        put(fd, "d1/d2/d3/deep.py", "3\n", 0644);
        CHECK_EQ_INT(nb_cache_dir_sync(fd, 2), -ELOOP);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, path), 0);
}
