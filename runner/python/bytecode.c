/* SPDX-License-Identifier: MIT */
/* Bytecode for a venv being built (bytecode.h). The interpreter compiles in a sandbox
 * like a test's: the venv mounted read-only at /venv, where every later run sees it,
 * and a capped /out tmpfs as the only thing it can write (-X pycache_prefix puts the
 * .pyc files there rather than beside the sources). The host then copies back, for
 * each .py file nestbox itself installed, the one .pyc of that name: the walk is over
 * the venv's own tree, so what the sandbox left in /out is only ever read by a name
 * nestbox chose, no-follow and size-capped. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "python/bytecode.h"
#include "python/venv.h"

/* tmpfs pages are only what compileall writes; a venv's bytecode is tens of MB. */
#define PYC_OUT_SIZE (1ull << 30)
#define PYC_FILE_MAX (64u << 20)
#define COMPILE_TIMEOUT_SEC 1800.0
#define PYC_PREFIX "/out/pyc"

struct copy_back {
        const char *tag; /* "cpython-311" */
        unsigned max_depth;
};

/* "mod.py" -> "mod.cpython-311.pyc"; NULL when name is not a module source. */
static char *pyc_name(const struct copy_back *c, const char *name) {
        size_t n = strlen(name);
        if (n < 4 || strcmp(name + n - 3, ".py") != 0)
                return NULL;
        char *s = NULL;
        return asprintf(&s, "%.*s.%s.pyc", (int) (n - 3), name, c->tag) < 0 ? NULL : s;
}

static int copy_pyc(const struct copy_back *c, int out_dir, int venv_dir, int *cache_dir, const char *name) {
        _cleanup_free_ char *pyc = pyc_name(c, name), *data = NULL;
        if (!pyc)
                return 0;
        size_t len = 0;
        /* Missing (a file that did not compile), a link, a directory or too big: no
         * bytecode for that module, which Python then compiles in memory. */
        if (nb_read_file_beneath(out_dir, pyc, PYC_FILE_MAX, &data, &len) < 0)
                return 0;
        if (*cache_dir < 0) {
                *cache_dir = nb_mkdir_p_beneath(venv_dir, "__pycache__", 0755);
                if (*cache_dir < 0)
                        return *cache_dir;
        }
        return nb_write_file_beneath(*cache_dir, pyc, data, len, 0644);
}

static int copy_dir(const struct copy_back *c, int out_dir, int venv_dir, unsigned depth) {
        if (depth > c->max_depth)
                return -ELOOP;
        _cleanup_closedir_ DIR *d = NULL;
        int r = nb_opendir_at(venv_dir, ".", &d);
        if (r < 0)
                return r;
        _cleanup_close_ int cache_dir = -1;
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d))) {
                struct stat st;
                if (strcmp(de->d_name, "__pycache__") == 0)
                        continue;
                if (fstatat(venv_dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
                if (S_ISREG(st.st_mode))
                        r = copy_pyc(c, out_dir, venv_dir, &cache_dir, de->d_name);
                else if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int out_sub = nb_open_beneath(out_dir, de->d_name, O_RDONLY | O_DIRECTORY, 0);
                        _cleanup_close_ int venv_sub = out_sub < 0 ? -1
                                : nb_open_beneath(venv_dir, de->d_name, O_RDONLY | O_DIRECTORY, 0);
                        if (out_sub >= 0 && venv_sub < 0)
                                return venv_sub;
                        r = out_sub < 0 ? 0 : copy_dir(c, out_sub, venv_sub, depth + 1);
                }
                if (r < 0)
                        return r;
                errno = 0;
        }
        return errno ? -errno : 0;
}

int nb_venv_compile_bytecode(const struct nb_python *py, int root, const char *where, unsigned max_depth,
                             struct nb_error *err) {
        if (!*py->cache_tag)
                return 0; /* an implementation without bytecode files */
        _cleanup_free_ char *site = nb_venv_site_packages(py), *inside = NULL, *prefix = NULL, *out_site = NULL;
        if (!site || asprintf(&inside, NB_VENV_MOUNT "/%s", site) < 0 ||
            asprintf(&prefix, "-Xpycache_prefix=" PYC_PREFIX) < 0 ||
            asprintf(&out_site, "pyc" NB_VENV_MOUNT "/%s", site) < 0)
                return nb_error_set(err, ENOMEM, "venv");
        /* unchecked-hash pycs are valid for an immutable tree and reproducible. */
        char *argv[] = { py->path, (char *) "-I", prefix, (char *) "-m", (char *) "compileall", (char *) "-q",
                         (char *) "--invalidation-mode", (char *) "unchecked-hash", inside, NULL };
        /* Cancellable: compileall takes a ^C for an interruption and exits 1, as for a
         * file that does not compile, and a venv published then would lack bytecode
         * for good. */
        const struct nb_python_run_opts opts = { .venv = where, .out_size = PYC_OUT_SIZE,
                                                 .timeout_sec = COMPILE_TIMEOUT_SEC, .cancellable = true };
        _cleanup_free_ char *said = NULL;
        _cleanup_close_ int out_fd = -1;
        int status = 0;
        int r = nb_python_run(argv, &opts, &said, &status, &out_fd, err);
        if (r < 0)
                return nb_error_wrap(err, r, "venv %s: compiling bytecode", where);
        /* compileall exits 1 when a file does not compile (a wheel's Python 2
         * leftovers): no reason to refuse the venv; the rest still has bytecode. */
        _cleanup_close_ int out_dir = nb_open_beneath(out_fd, out_site, O_RDONLY | O_DIRECTORY, 0);
        if (out_dir < 0)
                return 0;
        _cleanup_close_ int venv_dir = nb_open_beneath(root, site, O_RDONLY | O_DIRECTORY, 0);
        if (venv_dir < 0)
                return nb_error_set(err, -venv_dir, "venv %s/%s", where, site);
        const struct copy_back c = { .tag = py->cache_tag, .max_depth = max_depth };
        r = copy_dir(&c, out_dir, venv_dir, 0);
        if (r == -ELOOP)
                return nb_error_input(err, EINVAL, "venv: the wheels nest directories deeper than %u levels", max_depth);
        if (r < 0)
                return nb_error_set(err, -r, "venv %s: installing bytecode", where);
        return 0;
}
