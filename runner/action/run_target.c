/* SPDX-License-Identifier: MIT */
/* nb_run_target: the steps of one action, in order:
 *   collect + digest + materialise the declared inputs   -> /work (ro)
 *   build or reuse the locked venv                       -> /venv (ro)
 *   a fresh run directory, its out/ owned by the sandbox  -> /out (rw)
 *   pytest in the sandbox, output to the run's log
 *   read /out/junit.xml back safely, or synthesize a report saying why there is none */
#include <errno.h>
#include <glob.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "action/run_target.h"
#include "workspace/tree.h"
#include "python/support.h"
#include "python/venv.h"

#define LOG_KEEP_HEAD (256u * 1024u)
#define LOG_KEEP_TAIL (256u * 1024u)

extern char **environ;

const char *nb_target_status_name(enum nb_target_status s) {
        switch (s) {
        case NB_TARGET_PASSED: return "PASSED";
        case NB_TARGET_FAILED: return "FAILED";
        case NB_TARGET_TIMEOUT: return "TIMEOUT";
        }
        return "?";
}

void nb_target_run_done(struct nb_target_run *r) {
        nb_junit_report_free(r->report);
        free(r->log);
        free(r->why);
        if (r->run_dir && r->cache)
                (void) nb_rm_rf_at(r->cache->fd, r->run_dir);
        free(r->run_dir);
        if (r->out_fd >= 0)
                close(r->out_fd);
        memset(r, 0, sizeof(*r));
        r->out_fd = -1;
}

/* The directory pytest starts collecting from, for each tests glob: its components
 * up to the first one with a wildcard (a glob "a/b/STAR-STAR" gives "a/b"). */
static char *glob_base(const char *glob) {
        const char *wild = strpbrk(glob, "*?[");
        if (!wild)
                return strdup(glob);
        const char *slash = wild;
        while (slash > glob && *slash != '/')
                slash--;
        return slash == glob ? strdup(".") : strndup(glob, (size_t) (slash - glob));
}

static int setenv_u64(struct nb_sandbox_config *cfg, const char *k, uint64_t v) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
        return nb_sandbox_setenv(cfg, k, buf);
}

static int build_environment(struct nb_sandbox_config *cfg, const struct nb_target *t, const struct nb_run_options *o,
                             uint64_t seed) {
        _cleanup_free_ char *pythonpath = NULL;
        size_t len = 0;
        for (char **r = t->source_roots; *r; r++)
                len += strlen(*r) + 8;
        pythonpath = calloc(1, len + 1);
        if (!pythonpath)
                return -ENOMEM;
        for (char **r = t->source_roots; *r; r++) {
                if (*pythonpath)
                        strcat(pythonpath, ":");
                strcat(pythonpath, strcmp(*r, ".") == 0 ? "/work" : "/work/");
                if (strcmp(*r, ".") != 0)
                        strcat(pythonpath, *r);
        }
        unsigned shards = o->shard_count > 1 ? o->shard_count : 1;
        struct { const char *k, *v; } fixed[] = {
                { "PATH", "/venv/bin:/usr/bin:/bin" },
                { "HOME", "/tmp/home" },
                { "TMPDIR", "/tmp" },
                { "LANG", "C.UTF-8" },
                { "TZ", "UTC" },
                { "PYTHONDONTWRITEBYTECODE", "1" },
                { "PYTHONFAULTHANDLER", "1" },
                { "PYTHONPATH", pythonpath },
                { "TEST_TMPDIR", "/tmp" },
                { "XML_OUTPUT_FILE", "/out/junit.xml" },
                { "TEST_SHARD_STATUS_FILE", "/out/shard_status" },
                { "TEST_UNDECLARED_OUTPUTS_DIR", "/out/undeclared" },
                { "TEST_TARGET", t->name },
        };
        int r = 0;
        for (size_t i = 0; r >= 0 && i < NB_ELEMENTSOF(fixed); i++)
                r = nb_sandbox_setenv(cfg, fixed[i].k, fixed[i].v);
        if (r >= 0)
                r = setenv_u64(cfg, "PYTHONHASHSEED", seed % 4294967296ull);
        if (r >= 0)
                r = setenv_u64(cfg, "TEST_RANDOM_SEED", seed);
        if (r >= 0)
                r = setenv_u64(cfg, "TEST_SHARD_INDEX", o->shard_count > 1 ? o->shard_index : 0);
        if (r >= 0)
                r = setenv_u64(cfg, "TEST_TOTAL_SHARDS", shards);
        /* Passed through by name only: the host's environment never leaks otherwise. */
        for (char **name = t->env; r >= 0 && *name; name++) {
                const char *v = getenv(*name);
                if (v)
                        r = nb_sandbox_setenv(cfg, *name, v);
        }
        return r;
}

/* The source roots coverage measures: those holding declared sources, not tests. */
static int coverage_roots(const struct nb_target *t, char **ret) {
        size_t len = 1;
        for (char **r = t->source_roots; *r; r++)
                len += strlen(*r) + 8;
        char *s = calloc(1, len);
        if (!s)
                return -ENOMEM;
        for (char **r = t->source_roots; *r; r++) {
                bool holds_sources = false;
                size_t n = strlen(*r);
                for (char **g = t->sources; *g; g++)
                        holds_sources |= strcmp(*r, ".") == 0 || (strncmp(*g, *r, n) == 0 && (*g)[n] == '/');
                if (!holds_sources)
                        continue;
                if (*s)
                        strcat(s, ",");
                strcat(s, strcmp(*r, ".") == 0 ? "/work" : "/work/");
                if (strcmp(*r, ".") != 0)
                        strcat(s, *r);
        }
        *ret = s;
        return 0;
}

static int build_argv(struct nb_sandbox_config *cfg, const struct nb_target *t, const struct nb_run_options *o,
                      bool coverage) {
        size_t n = 0, cap = 24;
        for (char **a = t->pytest_args; *a; a++)
                cap++;
        for (char **g = t->tests; *g; g++)
                cap++;
        _cleanup_free_ char **argv = calloc(cap + 1, sizeof(char *));
        _cleanup_strv_free_ char **owned = calloc(cap + 1, sizeof(char *));
        size_t n_owned = 0;
        if (!argv || !owned)
                return -ENOMEM;
        argv[n++] = (char *) "/venv/bin/python";
        argv[n++] = (char *) "/nestbox/driver.py";
        if (coverage) {
                char *roots = NULL;
                if (coverage_roots(t, &roots) < 0)
                        return -ENOMEM;
                owned[n_owned++] = roots;
                argv[n++] = (char *) "--coverage";
                argv[n++] = roots;
        }
        if (o->shard_count > 1) {
                char *shard = NULL;
                if (asprintf(&shard, "%u/%u", o->shard_index, o->shard_count) < 0)
                        return -ENOMEM;
                owned[n_owned++] = shard;
                argv[n++] = (char *) "--shard";
                argv[n++] = shard;
        }
        argv[n++] = (char *) "--";
        const char *fixed[] = { "-p", "no:cacheprovider", "--junitxml=/out/junit.xml", "--rootdir=/work",
                                "-o", "junit_family=xunit2" };
        for (size_t i = 0; i < NB_ELEMENTSOF(fixed); i++)
                argv[n++] = (char *) fixed[i];
        for (char **a = t->pytest_args; *a; a++)
                argv[n++] = *a;
        size_t first_base = n_owned;
        for (char **g = t->tests; *g; g++) {
                char *base = glob_base(*g);
                if (!base)
                        return -ENOMEM;
                bool dup = false;
                for (size_t i = first_base; i < n_owned; i++)
                        dup |= strcmp(owned[i], base) == 0;
                if (dup) {
                        free(base);
                        continue;
                }
                owned[n_owned++] = base;
                argv[n++] = base;
        }
        argv[n] = NULL;
        return nb_sandbox_set_argv(cfg, argv);
}

/* Coverage needs coverage.py in the locked venv; say so before starting anything. */
static bool venv_has_coverage(const char *venv_path) {
        _cleanup_free_ char *pattern = NULL;
        if (asprintf(&pattern, "%s/lib/python*/site-packages/coverage/__init__.py", venv_path) < 0)
                return false;
        glob_t g;
        bool found = glob(pattern, GLOB_NOSORT, NULL, &g) == 0 && g.gl_pathc > 0;
        globfree(&g);
        return found;
}

/* The run directory holds the log, which we write; nothing of the host is writable
 * inside. /out is a size-capped tmpfs the sandbox hands back (NB_MOUNT_OUT_TMPFS). */
static int make_run_dir(struct nb_cache_dir *cache, char **ret_rel, int *ret_log_fd, struct nb_error *err) {
        _cleanup_free_ char *rel = NULL;
        int r = nb_cache_dir_mkdtemp(cache, "run", &rel, err);
        if (r < 0)
                return r;
        _cleanup_close_ int run = nb_open_beneath(cache->fd, rel, O_RDONLY | O_DIRECTORY, 0);
        if (run < 0)
                return nb_error_set(err, -run, "run directory %s/%s", cache->path, rel);
        int log = openat(run, "log", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (log < 0)
                return nb_error_set(err, errno, "%s/%s/log", cache->path, rel);
        *ret_log_fd = log;
        *ret_rel = TAKE_PTR(rel);
        return 0;
}

/* The log, capped: a runaway test printing gigabytes keeps its first and last words. */
static int read_log(int fd, char **ret, size_t *ret_len) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        size_t size = (size_t) st.st_size;
        bool cut = size > LOG_KEEP_HEAD + LOG_KEEP_TAIL;
        static const char marker[] = "\n[... nestbox: log cut here ...]\n";
        size_t want = cut ? LOG_KEEP_HEAD + sizeof(marker) - 1 + LOG_KEEP_TAIL : size;
        char *buf = malloc(want + 1);
        if (!buf)
                return -ENOMEM;
        size_t n = 0;
        struct { off_t off; size_t len; } parts[2] = { { 0, cut ? LOG_KEEP_HEAD : size },
                                                       { (off_t) (size - LOG_KEEP_TAIL), cut ? LOG_KEEP_TAIL : 0 } };
        for (int i = 0; i < 2; i++) {
                if (i == 1 && cut) {
                        memcpy(buf + n, marker, sizeof(marker) - 1);
                        n += sizeof(marker) - 1;
                }
                size_t done = 0;
                while (done < parts[i].len) {
                        ssize_t k = pread(fd, buf + n, parts[i].len - done, parts[i].off + (off_t) done);
                        if (k <= 0)
                                break;
                        done += (size_t) k;
                        n += (size_t) k;
                }
        }
        buf[n] = 0;
        *ret = buf;
        *ret_len = n;
        return 0;
}

static char *why_no_report(const struct nb_target *t, const struct nb_sandbox_result *s, const char *parse_error) {
        char *why = NULL;
        int k;
        if (s->timed_out)
                k = asprintf(&why, "timed out after %.0fs (SIGABRT, then SIGKILL)", (double) t->timeout_ms / 1000);
        else if (s->oom_killed)
                k = asprintf(&why, "killed: out of memory (limit %llu bytes, %s)", (unsigned long long) t->memory,
                             nb_limit_backend_name(s->memory_backend));
        else if (s->signal)
                k = asprintf(&why, "pytest died of signal %d (%s) before writing junit.xml", s->signal, strsignal(s->signal));
        else if (parse_error)
                k = asprintf(&why, "junit.xml unusable (%s); pytest exited with status %d", parse_error, s->exit_code);
        else
                k = asprintf(&why, "pytest exited with status %d without writing junit.xml", s->exit_code);
        return k < 0 ? NULL : why;
}

static int collect_report(const struct nb_target *t, int out_fd, struct nb_target_run *run) {
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        _cleanup_error_ struct nb_error perr = NB_ERROR_INIT;
        const char *parse_error = NULL;
        int r = nb_read_file_beneath(out_fd, "junit.xml", NB_JUNIT_MAX_SIZE, &xml, &len);
        if (r >= 0) {
                r = nb_junit_parse(xml, len, &run->report, &perr);
                if (r < 0)
                        parse_error = nb_error_message(&perr);
        } else if (r != -ENOENT) {
                nb_error_set(&perr, -r, "reading it");
                parse_error = nb_error_message(&perr);
        }
        if (run->report && !run->sandbox.timed_out)
                return 0;
        /* A report from a run that then timed out is incomplete: say so instead. */
        nb_junit_report_free(run->report);
        run->report = NULL;
        run->why = why_no_report(t, &run->sandbox, parse_error);
        if (!run->why)
                return -ENOMEM;
        const char *details = run->log ? run->log + (run->log_len > 8192 ? run->log_len - 8192 : 0) : NULL;
        return nb_junit_error_report(t->name, "nestbox", run->why, details, &run->report);
}

static enum nb_target_status classify(const struct nb_target_run *run) {
        if (run->sandbox.timed_out)
                return NB_TARGET_TIMEOUT;
        if (run->why || run->sandbox.exit_code != 0 || run->report->failures || run->report->errors)
                return NB_TARGET_FAILED;
        return NB_TARGET_PASSED;
}

struct inputs {
        char *tree_path, *support_path, *venv_path;
        char venv_digest[NB_DIGEST_HEX_LEN + 1];
        int held[3];
};

static void inputs_done(struct inputs *in) {
        free(in->tree_path);
        free(in->support_path);
        free(in->venv_path);
        for (int i = 0; i < 3; i++)
                if (in->held[i] >= 0)
                        close(in->held[i]);
        *in = (struct inputs) { .held = { -1, -1, -1 } };
}

/* Materialises (or finds) the tree, the driver and the venv, then holds each.
 * -ENOENT with all paths set: one vanished before it was held; try again. */
static int ensure_inputs(const struct nb_workspace *ws, const struct nb_target *t, const struct nb_tree *tree,
                         struct nb_cache_dir *cache, struct inputs *in, struct nb_error *err) {
        int r;
        if ((r = nb_tree_materialize(cache, tree, ws->root_fd, &in->tree_path, err)) < 0 ||
            (r = nb_support_materialize(cache, &in->support_path, err)) < 0)
                return r;
        struct nb_venv_info venv = { 0 };
        r = nb_venv_ensure(cache, ws->python, t->resolve->lockfile_path, t->resolve->wheelhouse_path, &venv, err);
        if (r < 0)
                return nb_error_wrap(err, r, "target \"%s\"", t->name);
        snprintf(in->venv_digest, sizeof(in->venv_digest), "%s", venv.digest);
        in->venv_path = TAKE_PTR(venv.path);
        const char *paths[] = { in->tree_path, in->support_path, in->venv_path };
        size_t prefix = strlen(cache->path) + 1;
        for (int i = 0; i < 3; i++) {
                r = nb_cache_dir_hold(cache, paths[i] + prefix, &in->held[i]);
                if (r == -ENOENT)
                        return r;
                if (r < 0)
                        return nb_error_set(err, -r, "holding %s", paths[i]);
        }
        return 0;
}

static void config_donep(struct nb_sandbox_config *c) {
        nb_sandbox_config_done(c);
}

int nb_run_target(const struct nb_workspace *ws, const struct nb_target *t, const struct nb_tree *tree,
                  uint64_t seed, struct nb_cache_dir *cache, const struct nb_run_options *o,
                  struct nb_target_run *ret, struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        ret->out_fd = -1;
        ret->cache = cache;
        ret->seed = seed;
        bool coverage = o->coverage || t->coverage;

        /* 1. the declared inputs, nestbox's own driver and the locked venv, held for
         * the whole run so a concurrent `nestbox cache gc` leaves them alone */
        int r = nb_tree_digest(tree, ret->tree_digest);
        if (r < 0)
                return nb_error_set(err, -r, "target \"%s\": digest", t->name);
        __attribute__((cleanup(inputs_done))) struct inputs in = { .held = { -1, -1, -1 } };
        for (int attempt = 0;; attempt++) {
                r = ensure_inputs(ws, t, tree, cache, &in, err);
                if (r != -ENOENT || attempt == 2 || in.tree_path == NULL || in.venv_path == NULL)
                        break;
                inputs_done(&in); /* gc took one away between ensuring and holding it */
        }
        if (r == -ENOENT && in.venv_path)
                return nb_error_setx(err, EAGAIN, "target \"%s\": the cache's copies of its inputs kept "
                                     "disappearing (a gc with a tiny --max-size running in a loop?)", t->name);
        if (r < 0)
                return r;
        snprintf(ret->venv_digest, sizeof(ret->venv_digest), "%s", in.venv_digest);
        const char *tree_path = in.tree_path, *support_path = in.support_path, *venv_path = in.venv_path;
        if (coverage && !venv_has_coverage(venv_path))
                return nb_error_setx(err, EINVAL, "target \"%s\": coverage is on, but %s does not pin coverage",
                                     t->name, t->resolve->lockfile);

        /* 3. the run directory */
        _cleanup_close_ int log_fd = -1;
        if ((r = make_run_dir(cache, &ret->run_dir, &log_fd, err)) < 0)
                return r;
        _cleanup_close_ int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

        /* 4. the sandbox */
        __attribute__((cleanup(config_donep))) struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        if (nb_sandbox_add_system_dirs(&cfg) < 0 ||
            nb_sandbox_add_mount(&cfg, NB_MOUNT_RO_BIND, tree_path, "/work", 0) < 0 ||
            nb_sandbox_add_mount(&cfg, NB_MOUNT_RO_BIND, venv_path, "/venv", 0) < 0 ||
            nb_sandbox_add_mount(&cfg, NB_MOUNT_RO_BIND, support_path, "/nestbox", 0) < 0 ||
            nb_sandbox_add_mount(&cfg, NB_MOUNT_OUT_TMPFS, NULL, "/out", NB_OUT_SIZE) < 0 ||
            nb_sandbox_add_mount(&cfg, NB_MOUNT_DIR, NULL, "/out/undeclared", 0) < 0 ||
            nb_sandbox_add_mount(&cfg, NB_MOUNT_TMPFS, NULL, "/tmp", NB_TMP_SIZE) < 0 ||
            nb_sandbox_add_mount(&cfg, NB_MOUNT_DIR, NULL, "/tmp/home", 0) < 0 ||
            build_environment(&cfg, t, o, ret->seed) < 0 || build_argv(&cfg, t, o, coverage) < 0)
                return nb_error_set(err, ENOMEM, "target \"%s\": sandbox configuration", t->name);
        cfg.cwd = strdup("/work");
        cfg.timeout_sec = (double) t->timeout_ms / 1000.0;
        cfg.memory_bytes = t->memory;
        cfg.pids_max = t->pids;
        cfg.stdin_fd = devnull;
        cfg.stdout_fd = cfg.stderr_fd = log_fd;
        if (!cfg.cwd)
                return nb_error_set(err, ENOMEM, "run");

        r = nb_sandbox_run(&cfg, &ret->sandbox, err);
        if (r < 0)
                return nb_error_wrap(err, r, "target \"%s\"", t->name);
        ret->out_fd = TAKE_FD(ret->sandbox.out_fd);

        /* 5. what came out */
        if ((r = read_log(log_fd, &ret->log, &ret->log_len)) < 0)
                return nb_error_set(err, -r, "reading the log of \"%s\"", t->name);
        if ((r = collect_report(t, ret->out_fd, ret)) < 0)
                return nb_error_set(err, -r, "the report of \"%s\"", t->name);
        ret->status = classify(ret);
        return 0;
}
