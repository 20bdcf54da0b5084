/* SPDX-License-Identifier: MIT */
/* Locked venvs (runner/python/venv.c) from small wheels built here and the host's
 * /usr/bin/python3: the digest, building once, and nothing left behind by a failure. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/cache_dir.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "python/interp.h"
#include "python/venv.h"
#include "test.h"
#include "wheel-maker.h"

#define PYTHON "/usr/bin/python3"

struct fixture {
        char root[40];
        int fd;
        char *lock, *house; /* absolute paths */
        struct nb_cache_dir cache;
        char demo[NB_DIGEST_HEX_LEN + 1], extra[NB_DIGEST_HEX_LEN + 1];
};

/* The venv's own python on the host, as a developer would check it (nb_python_run
 * is for the system's interpreters in a sandbox). */
static int host_run(char *const argv[], char **out, int *status) {
        int fds[2];
        if (pipe(fds) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid == 0) {
                dup2(fds[1], 1);
                close(fds[0]);
                execv(argv[0], argv);
                _exit(127);
        }
        close(fds[1]);
        size_t len = 0;
        int r = nb_read_fd(fds[0], 1 << 20, out, &len);
        close(fds[0]);
        waitpid(pid, status, 0);
        return r;
}

static void fixture_open(struct fixture *f) {
        strcpy(f->root, "/tmp/nb-test-venv.XXXXXX");
        CHECK(mkdtemp(f->root) != NULL);
        f->fd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(f->fd >= 0);
        CHECK(asprintf(&f->lock, "%s/default.lock", f->root) > 0);
        CHECK(asprintf(&f->house, "%s/wheels", f->root) > 0);
        _cleanup_close_ int house = nb_mkdir_p_beneath(f->fd, "wheels", 0755);
        CHECK(house >= 0);
        CHECK_EQ_INT(test_write_wheel(house, "demo-1.0-py3-none-any.whl", "demo", "1.0", f->demo), 0);
        CHECK_EQ_INT(test_write_wheel(house, "extra-2.0-py3-none-any.whl", "extra", "2.0", f->extra), 0);
        _cleanup_free_ char *cache = NULL;
        CHECK(asprintf(&cache, "%s/cache", f->root) > 0);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(nb_cache_dir_open(&f->cache, cache, &err), 0);
}

static void fixture_close(struct fixture *f) {
        nb_cache_dir_close(&f->cache);
        close(f->fd);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, f->root), 0);
        free(f->lock);
        free(f->house);
}

static void write_lock(struct fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void write_lock(struct fixture *f, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *text = NULL;
        CHECK(vasprintf(&text, fmt, ap) > 0);
        va_end(ap);
        CHECK_EQ_INT(test_write_text(f->fd, "default.lock", text), 0);
}

/* The plan's digest into out; the error code. */
static int resolve(struct fixture *f, char out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err) {
        _cleanup_(nb_venv_plan_freep) struct nb_venv_plan *p = NULL;
        int r = nb_venv_resolve(&f->cache, PYTHON, f->lock, f->house, &p, err);
        if (r < 0)
                return r;
        strcpy(out, nb_venv_plan_digest(p));
        return 0;
}

/* Entries in the cache's directory ns. */
static int count(struct fixture *f, const char *ns) {
        _cleanup_closedir_ DIR *d = NULL;
        if (nb_opendir_at(f->cache.fd, ns, &d) < 0)
                return -1;
        int n = 0;
        while (nb_readdir_no_dots(d))
                n++;
        return n;
}

TEST(resolve_digest) {
        struct fixture f;
        fixture_open(&f);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        char a[NB_DIGEST_HEX_LEN + 1] = "", b[NB_DIGEST_HEX_LEN + 1] = "", c[NB_DIGEST_HEX_LEN + 1] = "",
             d[NB_DIGEST_HEX_LEN + 1] = "", e[NB_DIGEST_HEX_LEN + 1] = "";
        write_lock(&f, "demo==1.0 --hash=sha256:%s\nextra==2.0 --hash=sha256:%s\n", f.demo, f.extra);
        CHECK_EQ_INT(resolve(&f, a, &err), 0);
        CHECK(nb_is_digest(a));
        /* Stable: again, and with the lockfile reordered and commented. */
        CHECK_EQ_INT(resolve(&f, b, &err), 0);
        CHECK_EQ_STR(b, a);
        write_lock(&f, "# reordered\nextra==2.0 --hash=sha256:%s\n\ndemo==1.0 --hash=sha256:%s\n", f.extra, f.demo);
        CHECK_EQ_INT(resolve(&f, b, &err), 0);
        CHECK_EQ_STR(b, a);
        /* A requirement fewer, or one whose marker drops it: another venv. */
        write_lock(&f, "demo==1.0 --hash=sha256:%s\n", f.demo);
        CHECK_EQ_INT(resolve(&f, c, &err), 0);
        CHECK(strcmp(c, a) != 0);
        write_lock(&f, "demo==1.0 --hash=sha256:%s\nextra==2.0 ; sys_platform == 'win32' --hash=sha256:%s\n",
                   f.demo, f.extra);
        CHECK_EQ_INT(resolve(&f, d, &err), 0);
        CHECK_EQ_STR(d, c);
        /* Other bytes for the same pin (and the lock updated to them): another venv. */
        _cleanup_close_ int house = open(f.house, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char rebuilt[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(test_write_wheel(house, "demo-1.0-py2.py3-none-any.whl", "demo", "1.0", rebuilt), 0);
        CHECK(unlinkat(house, "demo-1.0-py3-none-any.whl", 0) == 0);
        write_lock(&f, "demo==1.0 --hash=sha256:%s\n", rebuilt);
        CHECK_EQ_INT(resolve(&f, e, &err), 0);
        CHECK(nb_is_digest(e) && strcmp(e, c) != 0);
        fixture_close(&f);
}

TEST(materialize_once) {
        struct fixture f;
        fixture_open(&f);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        write_lock(&f, "demo==1.0 --hash=sha256:%s\n", f.demo);
        struct nb_venv_info first = {}, second = {};
        for (int i = 0; i < 2; i++) {
                _cleanup_(nb_venv_plan_freep) struct nb_venv_plan *p = NULL;
                CHECK_EQ_INT(nb_venv_resolve(&f.cache, PYTHON, f.lock, f.house, &p, &err), 0);
                if (!p)
                        break;
                CHECK_EQ_INT(nb_venv_materialize(&f.cache, p, i ? &second : &first, &err), 0);
        }
        CHECK(first.built);
        CHECK(!second.built);
        CHECK_EQ_STR(second.path, first.path);
        CHECK_EQ_STR(second.digest, first.digest);
        _cleanup_free_ char *want = NULL;
        CHECK(asprintf(&want, "%s/venvs/%s", f.cache.path, first.digest) > 0);
        CHECK_EQ_STR(first.path, want);
        CHECK_EQ_INT(count(&f, "venvs"), 1);
        CHECK_EQ_INT(count(&f, "tmp"), 0);

        /* Whole and sealed: the marker, read-only, and its python imports the wheel. */
        struct stat st;
        _cleanup_free_ char *marker = NULL, *python = NULL, *out = NULL;
        CHECK(asprintf(&marker, "%s/" NB_VENV_COMPLETE_MARKER, first.path) > 0);
        CHECK(stat(marker, &st) == 0 && S_ISREG(st.st_mode));
        CHECK(stat(first.path, &st) == 0 && (st.st_mode & 07777) == 0555);
        CHECK(asprintf(&python, "%s/bin/python", first.path) > 0);
        char *argv[] = { python, (char *) "-c", (char *) "import demo, sys; print(demo.WHEEL, sys.prefix)", NULL };
        int status = -1;
        CHECK_EQ_INT(host_run(argv, &out, &status), 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        _cleanup_free_ char *said = NULL;
        CHECK(asprintf(&said, "demo-1.0-py3-none-any.whl %s\n", first.path) > 0);
        CHECK_EQ_STR(out, said);
        nb_venv_info_done(&first);
        nb_venv_info_done(&second);
        fixture_close(&f);
}

/* The hash matches the lock, so resolving succeeds; building fails, and leaves nothing. */
static void check_failed_build(const struct test_zip_entry *entries, const char *text, int want, const char *msg) {
        struct fixture f;
        fixture_open(&f);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_close_ int house = open(f.house, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char hex[NB_DIGEST_HEX_LEN + 1] = "";
        if (entries)
                CHECK_EQ_INT(test_write_zip(house, "bad-1.0-py3-none-any.whl", entries, hex), 0);
        else {
                CHECK_EQ_INT(test_write_text(house, "bad-1.0-py3-none-any.whl", text), 0);
                nb_sha256_hex(text, strlen(text), hex);
        }
        write_lock(&f, "demo==1.0 --hash=sha256:%s\nbad==1.0 --hash=sha256:%s\n", f.demo, hex);
        _cleanup_(nb_venv_plan_freep) struct nb_venv_plan *p = NULL;
        CHECK_EQ_INT(nb_venv_resolve(&f.cache, PYTHON, f.lock, f.house, &p, &err), 0);
        struct nb_venv_info info = {};
        if (p)
                CHECK_EQ_INT(nb_venv_materialize(&f.cache, p, &info, &err), want);
        CHECK(strstr(nb_error_message(&err), msg) != NULL);
        CHECK_EQ_INT(err.klass, NB_ERROR_INPUT);
        CHECK(info.path == NULL);
        CHECK_EQ_INT(count(&f, "tmp"), 0);
        CHECK_EQ_INT(count(&f, "venvs"), 0);
        fixture_close(&f);
}

TEST(failure_leaves_nothing) {
        check_failed_build(NULL, "not a zip", -EBADMSG, "bad-1.0-py3-none-any.whl: not a zip archive");
        const struct test_zip_entry escape[] = {
                { "bad-1.0.dist-info/METADATA", "Name: bad\n", 0 }, { "../../../../x.py", "x", 0 }, { NULL, NULL, 0 },
        };
        check_failed_build(escape, NULL, -EINVAL, "escapes the venv");
        const struct test_zip_entry clash[] = {
                { "bad-1.0.data/data/pyvenv.cfg", "home = /tmp\n", 0 }, { NULL, NULL, 0 },
        };
        check_failed_build(clash, NULL, -EINVAL, "would replace the venv's pyvenv.cfg");
}

/* Each error in what the user wrote is classified NB_ERROR_INPUT where it is found (so
 * the CLI exits 2); an unusable cache stays NB_ERROR_INFRA (exit 3). */
static void check_resolve_error(struct fixture *f, const char *python, const char *house, int want,
                                enum nb_error_class klass, const char *msg, int line) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_venv_plan_freep) struct nb_venv_plan *p = NULL;
        int r = nb_venv_resolve(&f->cache, python, f->lock, house ? house : f->house, &p, &err);
        if (r != want || err.klass != klass || !strstr(nb_error_message(&err), msg) || p) {
                fprintf(stderr, "test-venv.c:%d: r=%d class=%d \"%s\", wanted %d class=%d \"%s\"\n", line, r,
                        (int) err.klass, nb_error_message(&err), want, (int) klass, msg);
                nb_failures++;
        }
}
#define CHECK_RESOLVE_ERROR(python, house, want, klass, msg) \
        check_resolve_error(&f, python, house, want, klass, msg, __LINE__)

TEST(input_errors_are_classified) {
        struct fixture f;
        fixture_open(&f);
        /* A bad lockfile line, and a bad marker in one. */
        write_lock(&f, "demo>=1.0 --hash=sha256:%s\n", f.demo);
        CHECK_RESOLVE_ERROR(PYTHON, NULL, -EINVAL, NB_ERROR_INPUT, "default.lock:1: demo is not pinned");
        write_lock(&f, "demo==1.0 ; extra == 'x' --hash=sha256:%s\n", f.demo);
        CHECK_RESOLVE_ERROR(PYTHON, NULL, -EINVAL, NB_ERROR_INPUT, "variable 'extra' is not supported");
        /* A missing wheel, a hash mismatch. */
        write_lock(&f, "absent==1.0 --hash=sha256:%s\n", f.demo);
        CHECK_RESOLVE_ERROR(PYTHON, NULL, -ENOENT, NB_ERROR_INPUT, "absent==1.0: no wheel in");
        write_lock(&f, "demo==1.0 --hash=sha256:%s\n", f.extra);
        CHECK_RESOLVE_ERROR(PYTHON, NULL, -EBADMSG, NB_ERROR_INPUT, "demo==1.0: demo-1.0-py3-none-any.whl: sha256 mismatch");
        /* An interpreter that is not Python or not there, a wheelhouse or lockfile not there. */
        write_lock(&f, "demo==1.0 --hash=sha256:%s\n", f.demo);
        CHECK_RESOLVE_ERROR("/bin/true", NULL, -EINVAL, NB_ERROR_INPUT, "not a Python 3 interpreter");
        CHECK_RESOLVE_ERROR("/nonexistent/python3", NULL, -ENOENT, NB_ERROR_INPUT, "python /nonexistent/python3");
        CHECK_RESOLVE_ERROR(PYTHON, "/nonexistent/wheels", -ENOENT, NB_ERROR_INPUT, "wheelhouse /nonexistent/wheels");
        CHECK(unlinkat(f.fd, "default.lock", 0) == 0);
        CHECK_RESOLVE_ERROR(PYTHON, NULL, -ENOENT, NB_ERROR_INPUT, "default.lock: No such file or directory");
        /* The machine's fault stays the machine's: a cache whose tmp/ is not a directory. */
        write_lock(&f, "demo==1.0 --hash=sha256:%s\n", f.demo);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_venv_plan_freep) struct nb_venv_plan *p = NULL;
        CHECK_EQ_INT(nb_venv_resolve(&f.cache, PYTHON, f.lock, f.house, &p, &err), 0);
        CHECK_EQ_INT(nb_rm_rf_at(f.cache.fd, "tmp"), 0);
        CHECK_EQ_INT(test_write_text(f.cache.fd, "tmp", "not a directory"), 0);
        struct nb_venv_info info = {};
        if (p)
                CHECK(nb_venv_materialize(&f.cache, p, &info, &err) < 0);
        CHECK_EQ_INT(err.klass, NB_ERROR_INFRA);
        CHECK(info.path == NULL);
        fixture_close(&f);
}
