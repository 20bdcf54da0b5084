/* SPDX-License-Identifier: MIT */
/* Choosing a wheel: the best-tagged file for a requirement in the wheelhouse, and its
 * sha256 checked against the lock. Unpacking it is wheel_files.c's. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "python/wheel.h"

void nb_wheel_done(struct nb_wheel *w) {
        free(w->filename);
        w->filename = NULL;
}

/* Wheel filenames escape versions' "-" as "_" and may differ in case. */
static bool version_eq(const char *a, const char *b) {
        for (; *a && *b; a++, b++) {
                char x = (char) tolower((unsigned char) (*a == '-' ? '_' : *a));
                char y = (char) tolower((unsigned char) (*b == '-' ? '_' : *b));
                if (x != y)
                        return false;
        }
        return *a == *b;
}

bool nb_wheel_stem_matches(const char *stem, size_t len, const struct nb_requirement *req) {
        _cleanup_free_ char *copy = strndup(stem, len);
        if (!copy)
                return false;
        char *dash = strrchr(copy, '-');
        if (!dash)
                return false;
        *dash = 0;
        _cleanup_free_ char *norm = nb_pep503_normalize(copy);
        return norm && strcmp(norm, req->name) == 0 && version_eq(dash + 1, req->version);
}

/* "{name}-{ver}(-{build})?-{py}-{abi}-{plat}.whl": the tag score, 0 when the file is not
 * a wheel of req for this interpreter. */
static int wheel_score(const struct nb_python *py, const char *filename, const struct nb_requirement *req) {
        size_t len = strlen(filename);
        if (len < 4 || strcmp(filename + len - 4, ".whl") != 0)
                return 0;
        _cleanup_free_ char *s = strndup(filename, len - 4);
        if (!s)
                return -ENOMEM;
        char *parts[6];
        size_t n = 0;
        char *save = NULL;
        for (char *t = strtok_r(s, "-", &save); t; t = strtok_r(NULL, "-", &save)) {
                if (n == NB_ELEMENTSOF(parts))
                        return 0;
                parts[n++] = t;
        }
        if (n != 5 && n != 6)
                return 0;
        _cleanup_free_ char *name = nb_pep503_normalize(parts[0]);
        if (!name)
                return -ENOMEM;
        if (strcmp(name, req->name) != 0 || !version_eq(parts[1], req->version))
                return 0;
        return nb_python_tag_score(py, parts[n - 3], parts[n - 2], parts[n - 1]);
}

/* "typing_extensions-4.5.0-*.whl": what a matching filename looks like, for messages. */
static char *wanted_pattern(const struct nb_requirement *req) {
        _cleanup_free_ char *escaped = strdup(req->name);
        if (!escaped)
                return NULL;
        for (char *p = escaped; *p; p++)
                if (*p == '-')
                        *p = '_';
        char *s = NULL;
        if (asprintf(&s, "%s-%s-*.whl", escaped, req->version) < 0)
                return NULL;
        return s;
}

static int find_wheel(const struct nb_python *py, int wheelhouse_fd, const char *wheelhouse,
                      const struct nb_requirement *req, char **ret, struct nb_error *err) {
        /* A fresh open file description: readdir must start at the beginning whatever
         * earlier lookups did with wheelhouse_fd. */
        _cleanup_closedir_ DIR *d = NULL;
        int k = nb_opendir_at(wheelhouse_fd, ".", &d);
        if (k < 0)
                return nb_error_set(err, -k, "wheelhouse %s", wheelhouse);
        _cleanup_free_ char *best = NULL;
        int best_score = 0;
        struct dirent *de;
        errno = 0;
        while ((de = readdir(d))) {
                int s = wheel_score(py, de->d_name, req);
                if (s < 0)
                        return nb_error_set(err, -s, "wheelhouse %s", wheelhouse);
                /* Ties go to the smallest name, so the choice never depends on readdir order. */
                if (s > best_score || (s > 0 && s == best_score && strcmp(de->d_name, best) < 0)) {
                        free(best);
                        best = strdup(de->d_name);
                        if (!best)
                                return nb_error_set(err, ENOMEM, "wheelhouse %s", wheelhouse);
                        best_score = s;
                }
                errno = 0;
        }
        if (errno)
                return nb_error_set(err, errno, "wheelhouse %s", wheelhouse);
        if (!best) {
                _cleanup_free_ char *want = wanted_pattern(req);
                return nb_error_input(err, ENOENT, "%s==%s: no wheel in %s matches (wanted %s for %s-%s)", req->name,
                                      req->version, wheelhouse, want ? want : req->name, py->interp_tag, py->plat_tag);
        }
        *ret = TAKE_PTR(best);
        return 0;
}

/* Wheels are opened by name from a directory the user named; a symlinked wheel is
 * fine (a shared download cache often is one) because its bytes answer to the hash. */
enum nb_error_class nb_wheel_open_error_class(int r) {
        return nb_error_class_of_path(r);
}

int nb_wheel_open(int wheelhouse_fd, const char *filename) {
        _cleanup_close_ int fd = openat(wheelhouse_fd, filename, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        return TAKE_FD(fd);
}

static bool lock_has(const struct nb_requirement *req, const char *hex) {
        for (char **h = req->hashes; *h; h++)
                if (strcmp(*h, hex) == 0)
                        return true;
        return false;
}

int nb_wheel_hash_mismatch(const struct nb_requirement *req, const char *filename, const char *hex,
                           struct nb_error *err) {
        /* "lock says A or B": every hash the lock allows, so the user sees which to update. */
        _cleanup_free_ char *said = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&said, &n);
        if (!f)
                return nb_error_set(err, ENOMEM, "%s==%s", req->name, req->version);
        for (char **h = req->hashes; *h; h++)
                fprintf(f, "%s%s", h == req->hashes ? "" : " or ", *h);
        if (fclose(f) != 0)
                return nb_error_set(err, ENOMEM, "%s==%s", req->name, req->version);
        return nb_error_input(err, EBADMSG, "%s==%s: %s: sha256 mismatch: lock says %s, file is %s", req->name,
                              req->version, filename, said, hex);
}

/* The wheel's sha256, remembered in the action cache under the file's identity (device,
 * inode, size, mtime and ctime, as git's index does): a warm venv does not re-read
 * megabytes of wheels. Any write to the file changes its ctime, which no one can set
 * back; and a venv being built hashes every wheel again as it copies it. */
static int wheel_sha256(struct nb_store *store, int fd, char out[NB_DIGEST_HEX_LEN + 1]) {
        struct stat st;
        char key[NB_DIGEST_HEX_LEN + 1];
        if (!store || fstat(fd, &st) < 0)
                return nb_sha256_fd(fd, out);
        struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return -ENOMEM;
        nb_hasher_update_str(h, "nestbox-wheel-sha256-1");
        nb_hasher_update_file_identity(h, &st);
        nb_hasher_finish(h, key);
        _cleanup_free_ char *known = NULL;
        size_t len = 0;
        if (nb_ac_get(store, key, &known, &len, NULL) == 0 && len == NB_DIGEST_HEX_LEN && nb_is_digest(known)) {
                memcpy(out, known, NB_DIGEST_HEX_LEN + 1);
                return 0;
        }
        int r = nb_sha256_fd(fd, out);
        if (r >= 0)
                (void) nb_ac_put(store, key, out, NB_DIGEST_HEX_LEN, NULL); /* only an optimisation */
        return r;
}

int nb_wheel_select(struct nb_store *store, const struct nb_python *py, int wheelhouse_fd, const char *wheelhouse,
                    const struct nb_requirement *req, struct nb_wheel *ret, struct nb_error *err) {
        _cleanup_free_ char *filename = NULL;
        int r = find_wheel(py, wheelhouse_fd, wheelhouse, req, &filename, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = nb_wheel_open(wheelhouse_fd, filename);
        if (fd < 0)
                return nb_error_classify(err, nb_wheel_open_error_class(fd),
                                         nb_error_set(err, -fd, "%s==%s: %s/%s", req->name, req->version, wheelhouse,
                                                      filename));
        r = wheel_sha256(store, fd, ret->sha256);
        if (r < 0)
                return nb_error_set(err, -r, "%s==%s: %s/%s", req->name, req->version, wheelhouse, filename);
        if (!lock_has(req, ret->sha256))
                return nb_wheel_hash_mismatch(req, filename, ret->sha256, err);
        ret->filename = TAKE_PTR(filename);
        return 0;
}
