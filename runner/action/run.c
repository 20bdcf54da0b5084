/* SPDX-License-Identifier: MIT */
/* nb_action_run: the steps of one run of a resolved action, in order:
 *   materialise the declared inputs (or find the named tree)  -> /work (ro)
 *   build or reuse the locked venv                            -> /venv (ro)
 *   nestbox's own driver                                      -> /nestbox (ro)
 *   the log a pipe the supervisor drains; /out a capped tmpfs
 *   pytest in the sandbox
 *   what came out -> a result (run_collect.c) */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/run.h"
#include "action/shard_plan.h"
#include "action/terminal.h"
#include "action/timings.h"
#include "action/zygote_run.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/sandbox.h"
#include "python/support.h"
#include "python/venv.h"

static int setenv_u64(struct nb_sandbox_config *cfg, const char *k, uint64_t v) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
        return nb_sandbox_setenv(cfg, k, buf);
}

/* "/work/a:/work/b" for source roots a and b ("." is /work itself); with only_sources,
 * only the roots holding a declared source file (what coverage measures). */
static char *work_paths(const struct nb_action *a, const char *sep, bool only_sources) {
        size_t len = 1;
        for (char **r = a->source_roots; *r; r++)
                len += strlen(*r) + 8;
        char *s = calloc(1, len);
        if (!s)
                return NULL;
        for (char **r = a->source_roots; *r; r++) {
                bool dot = strcmp(*r, ".") == 0, holds = dot || !only_sources;
                size_t n = strlen(*r);
                for (char **f = a->sources; !holds && *f; f++)
                        holds = strncmp(*f, *r, n) == 0 && (*f)[n] == '/';
                if (!holds)
                        continue;
                if (*s)
                        strcat(s, sep);
                strcat(s, dot ? "/work" : "/work/");
                if (!dot)
                        strcat(s, *r);
        }
        return s;
}

/* What decides how the interpreter starts, the same for every target of a venv and
 * seed: a warm interpreter (zygote_run.c) is started with exactly this. */
int nb_run_interpreter_env(struct nb_sandbox_config *cfg, uint32_t hash_seed) {
        const struct { const char *k, *v; } fixed[] = {
                { "PATH", "/venv/bin:/usr/bin:/bin" },
                { "HOME", "/tmp/home" },
                { "TMPDIR", "/tmp" },
                { "LANG", "C.UTF-8" },
                { "TZ", "UTC" },
                { "PYTHONDONTWRITEBYTECODE", "1" },
                { "PYTHONFAULTHANDLER", "1" },
        };
        int r = 0;
        for (size_t i = 0; r >= 0 && i < NB_ELEMENTSOF(fixed); i++)
                r = nb_sandbox_setenv(cfg, fixed[i].k, fixed[i].v);
        return r < 0 ? r : setenv_u64(cfg, "PYTHONHASHSEED", hash_seed);
}

static int build_environment(struct nb_sandbox_config *cfg, const struct nb_action *a) {
        _cleanup_free_ char *pythonpath = work_paths(a, ":", false);
        if (!pythonpath)
                return -ENOMEM;
        const struct { const char *k, *v; } fixed[] = {
                { "PYTHONPATH", pythonpath },
                { "TEST_TMPDIR", "/tmp" },
                { "XML_OUTPUT_FILE", "/out/junit.xml" },
                { "TEST_SHARD_STATUS_FILE", "/out/shard_status" },
                { "TEST_UNDECLARED_OUTPUTS_DIR", "/out/undeclared" },
                { "TEST_TARGET", a->target },
        };
        int r = nb_run_interpreter_env(cfg, (uint32_t) (a->seed % 4294967296ull));
        for (size_t i = 0; r >= 0 && i < NB_ELEMENTSOF(fixed); i++)
                r = nb_sandbox_setenv(cfg, fixed[i].k, fixed[i].v);
        const struct { const char *k; uint64_t v; } numbers[] = {
                { "TEST_RANDOM_SEED", a->seed },
                { "TEST_SHARD_INDEX", a->shard_index - 1 }, /* Bazel's are 0-based */
                { "TEST_TOTAL_SHARDS", a->shard_count },
                { "TEST_RUN_NUMBER", a->run },
                { "NESTBOX_ATTEMPT", a->attempt ? a->attempt : 1 },
        };
        for (size_t i = 0; r >= 0 && i < NB_ELEMENTSOF(numbers); i++)
                r = setenv_u64(cfg, numbers[i].k, numbers[i].v);
        /* What the action passes, by name and value: nothing else of the host's. */
        for (char **e = a->env; r >= 0 && *e; e++) {
                size_t n = strcspn(*e, "=");
                _cleanup_free_ char *name = strndup(*e, n);
                r = name ? nb_sandbox_setenv(cfg, name, (*e)[n] ? *e + n + 1 : "") : -ENOMEM;
        }
        return r;
}

/* pytest is handed exactly the declared test files, each once; conftest.py and
 * __init__.py files are in the tree (pytest finds them itself) but not collected. */
static bool is_test_module(const char *path) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        return strcmp(base, "conftest.py") != 0 && strcmp(base, "__init__.py") != 0;
}

static int build_argv(struct nb_sandbox_config *cfg, const struct nb_action *a) {
        size_t cap = 24;
        for (char **v = a->pytest_args; *v; v++)
                cap++;
        for (char **v = a->tests; *v; v++)
                cap += 3; /* the file, and "--omit" it from coverage */
        for (char **v = a->select; v && *v; v++)
                cap += 2;
        _cleanup_free_ const char **argv = calloc(cap + 1, sizeof(char *));
        _cleanup_free_ char *roots = NULL, *shard = NULL, *shuffle = NULL;
        if (!argv)
                return -ENOMEM;
        size_t n = 0;
        argv[n++] = "/venv/bin/python";
        argv[n++] = "/nestbox/driver.py";
        if (a->coverage) {
                if (!(roots = work_paths(a, ",", true)))
                        return -ENOMEM;
                argv[n++] = "--coverage";
                argv[n++] = roots;
                /* Coverage measures the declared sources: never the test files, even
                 * where they share a source root with the code. */
                for (char **v = a->tests; *v; v++) {
                        argv[n++] = "--omit";
                        argv[n++] = *v;
                }
        }
        if (a->shard_count > 1) {
                if (asprintf(&shard, "%u/%u", a->shard_index - 1, a->shard_count) < 0) {
                        shard = NULL;
                        return -ENOMEM;
                }
                argv[n++] = "--shard";
                argv[n++] = shard;
        }
        if (a->shuffle) {
                if (asprintf(&shuffle, "%llu", (unsigned long long) a->seed) < 0) {
                        shuffle = NULL;
                        return -ENOMEM;
                }
                argv[n++] = "--shuffle";
                argv[n++] = shuffle;
        }
        for (char **v = a->select; v && *v; v++) {
                argv[n++] = "--select";
                argv[n++] = *v;
        }
        argv[n++] = "--";
        static const char *const fixed[] = { "-p", "no:cacheprovider", "--junitxml=/out/junit.xml", "--rootdir=/work",
                                             "-o", "junit_family=xunit2" };
        for (size_t i = 0; i < NB_ELEMENTSOF(fixed); i++)
                argv[n++] = fixed[i];
        for (char **v = a->pytest_args; *v; v++)
                argv[n++] = *v;
        for (char **v = a->tests; *v; v++)
                if (is_test_module(*v))
                        argv[n++] = *v;
        argv[n] = NULL;
        return nb_sandbox_set_argv(cfg, (char *const *) argv);
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

struct inputs {
        char *tree_path, *support_path, *venv_path;
        char *plan_path; /* the shard plan, mounted at /nestbox/plan; NULL: none */
        int held[3];
};

static void inputs_done(struct inputs *in) {
        free(in->tree_path);
        free(in->support_path);
        free(in->venv_path);
        free(in->plan_path);
        for (int i = 0; i < 3; i++)
                if (in->held[i] >= 0)
                        close(in->held[i]);
        *in = (struct inputs) { .held = { -1, -1, -1 } };
}

static int cache_path(struct nb_cache_dir *cache, const char *ns, const char *digest, char **ret) {
        return asprintf(ret, "%s/%s/%s", cache->path, ns, digest) < 0 ? -ENOMEM : 0;
}

/* Materialises (or finds) the tree, the driver and the venv, then holds each so a
 * concurrent `nestbox cache gc` leaves them alone. -ENOENT with all paths set: one
 * vanished before it was held; try again. */
static int ensure_inputs(const struct nb_action *a, struct nb_cache_dir *cache, struct inputs *in,
                         struct nb_error *err) {
        int r;
        uint64_t t0 = nb_timing_now();
        if (a->tree_given[0])
                r = cache_path(cache, "trees", a->tree_given, &in->tree_path);
        else {
                _cleanup_close_ int root_fd = open(a->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (root_fd < 0)
                        return nb_error_set(err, errno, "root %s", a->root);
                r = nb_tree_materialize_as(cache, &a->resolved.tree, a->resolved.tree_digest, root_fd, &in->tree_path,
                                           err);
        }
        if (r >= 0)
                r = nb_shard_plan_materialize(cache, a, &in->plan_path, err);
        if (r >= 0)
                r = nb_support_materialize(cache, &in->support_path, err);
        nb_timing_add(NB_PHASE_TREES, t0);
        if (r < 0)
                return r == -ENOMEM ? nb_error_set(err, ENOMEM, "inputs") : r;
        t0 = nb_timing_now();
        if (a->resolved.venv) {
                struct nb_venv_info venv = { 0 };
                if ((r = nb_venv_materialize(cache, a->resolved.venv, &venv, err)) < 0)
                        return r;
                in->venv_path = TAKE_PTR(venv.path);
        } else if ((r = cache_path(cache, "venvs", a->venv_given, &in->venv_path)) < 0)
                return nb_error_set(err, ENOMEM, "inputs");
        const char *paths[] = { in->tree_path, in->support_path, in->venv_path };
        size_t prefix = strlen(cache->path) + 1;
        for (int i = 0; i < 3; i++) {
                r = nb_cache_dir_hold(cache, paths[i] + prefix, &in->held[i]);
                if (r == -ENOENT)
                        return r;
                if (r < 0)
                        return nb_error_set(err, -r, "holding %s", paths[i]);
        }
        nb_timing_add(NB_PHASE_VENV, t0);
        return 0;
}

static int hold_inputs(const struct nb_action *a, struct nb_cache_dir *cache, struct inputs *in,
                       struct nb_error *err) {
        int r;
        for (int attempt = 0;; attempt++) {
                r = ensure_inputs(a, cache, in, err);
                if (r != -ENOENT || attempt == 2 || !in->tree_path || !in->venv_path)
                        break;
                inputs_done(in); /* gc took one away between ensuring and holding it */
        }
        if (r == -ENOENT && in->venv_path)
                return nb_error_setx(err, EAGAIN, "the cache's copies of its inputs kept disappearing (a gc with a "
                                     "tiny --max-size running in a loop?)");
        return r;
}

static int configure(struct nb_sandbox_config *cfg, const struct nb_action *a, const struct inputs *in,
                     const struct nb_run_options *o) {
        int r;
        _cleanup_free_ char *kept_tmp = NULL;
        if (o && o->keep_dir && asprintf(&kept_tmp, "%s/tmp", o->keep_dir) < 0)
                return -ENOMEM;
        if ((r = nb_sandbox_add_system_dirs(cfg)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, in->tree_path, "/work", 0)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, in->venv_path, "/venv", 0)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, in->support_path, "/nestbox", 0)) < 0 ||
            (in->plan_path && (r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, in->plan_path, "/nestbox/plan", 0)) < 0) ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_OUT_TMPFS, NULL, "/out", NB_OUT_SIZE)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_DIR, NULL, "/out/undeclared", 0)) < 0 ||
            (r = kept_tmp ? nb_sandbox_add_mount(cfg, NB_MOUNT_BIND, kept_tmp, "/tmp", 0)
                          : nb_sandbox_add_mount(cfg, NB_MOUNT_TMPFS, NULL, "/tmp", NB_TMP_SIZE)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_DIR, NULL, "/tmp/home", 0)) < 0 ||
            (r = build_environment(cfg, a)) < 0 ||
            (r = o && o->argv ? nb_sandbox_set_argv(cfg, o->argv) : build_argv(cfg, a)) < 0)
                return r;
        for (char *const *e = o ? o->extra_env : NULL; e && *e && r >= 0; e += 2)
                r = nb_sandbox_setenv(cfg, e[0], e[1]);
        if (r < 0)
                return r;
        if (!(cfg->cwd = strdup("/work")))
                return -ENOMEM;
        cfg->timeout_sec = (double) a->policy.timeout_ms / 1000.0;
        cfg->memory_bytes = a->policy.memory;
        cfg->pids_max = a->policy.pids;
        return 0;
}

int nb_run_keep_dir(struct nb_cache_dir *cache, const char *digest, char **ret, struct nb_error *err) {
        if (mkdirat(cache->fd, "kept", 0755) < 0 && errno != EEXIST)
                return nb_error_set(err, errno, "%s/kept", cache->path);
        _cleanup_free_ char *rel = NULL;
        for (unsigned n = 1;; n++) {
                free(rel);
                if (asprintf(&rel, "kept/%s-%u", digest, n) < 0) {
                        rel = NULL;
                        return nb_error_set(err, ENOMEM, "--keep-tmp");
                }
                if (mkdirat(cache->fd, rel, 0755) == 0)
                        break;
                if (errno != EEXIST || n == 100000)
                        return nb_error_set(err, errno, "%s/%s", cache->path, rel);
        }
        /* /tmp is written by the sandbox's user, so it is theirs; out/ is written by us. */
        uid_t uid;
        gid_t gid;
        nb_sandbox_host_ids(&uid, &gid);
        static const char *const subdirs[] = { "tmp", "tmp/home", "out" };
        for (size_t i = 0; i < NB_ELEMENTSOF(subdirs); i++) {
                _cleanup_free_ char *sub = NULL;
                if (asprintf(&sub, "%s/%s", rel, subdirs[i]) < 0)
                        return nb_error_set(err, ENOMEM, "--keep-tmp");
                if (mkdirat(cache->fd, sub, i < 2 ? 0700 : 0755) < 0 ||
                    (i < 2 && fchownat(cache->fd, sub, uid, gid, AT_SYMLINK_NOFOLLOW) < 0))
                        return nb_error_set(err, errno, "%s/%s", cache->path, sub);
        }
        if (asprintf(ret, "%s/%s", cache->path, rel) < 0)
                return nb_error_set(err, ENOMEM, "--keep-tmp");
        return 0;
}

/* /out as the test left it, copied into keep_dir/out through the descriptor: regular
 * files only (a link the test planted is skipped, never followed), capped as an
 * artifact is. */
static int keep_out(int out_fd, const char *keep_dir, struct nb_error *err) {
        _cleanup_(nb_artifact_done) struct nb_artifact art = {};
        _cleanup_free_ char *path = NULL;
        size_t total = 0;
        if (asprintf(&path, "%s/out", keep_dir) < 0)
                return nb_error_set(err, ENOMEM, "--keep-tmp");
        _cleanup_close_ int dest = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dest < 0)
                return nb_error_set(err, errno, "%s", path);
        int r = nb_artifact_add_tree(&art, out_fd, "", NB_ARTIFACT_MAX_ENTRY, NB_ARTIFACT_MAX_TOTAL, &total,
                                     NB_ARTIFACT_MAX_ENTRIES, err);
        if (r < 0 || (r = nb_artifact_extract(&art, dest, err)) < 0)
                return nb_error_wrap(err, r, "--keep-tmp: /out");
        return 0;
}

/* Everything up to the sandbox's start, shared by a test run and a session: the held
 * inputs and the configuration, released together. */
struct prepared {
        struct inputs in;
        struct nb_sandbox_config cfg;
};
#define PREPARED_INIT { .in.held = { -1, -1, -1 } }

static void prepared_done(struct prepared *p) {
        inputs_done(&p->in);
        nb_sandbox_config_done(&p->cfg);
}

static int prepare(const struct nb_action *a, struct nb_cache_dir *cache, const struct nb_run_options *o,
                   struct prepared *p, struct nb_error *err) {
        nb_sandbox_config_init(&p->cfg);
        int r = hold_inputs(a, cache, &p->in, err);
        if (r < 0)
                return r;
        if (a->coverage && !venv_has_coverage(p->in.venv_path))
                return nb_error_input(err, EINVAL, "coverage is on, but %s does not pin coverage",
                                      a->lockfile ? a->lockfile : "the venv");
        if ((r = configure(&p->cfg, a, &p->in, o)) < 0)
                return nb_error_set(err, -r, "sandbox configuration");
        return 0;
}

/* The warm interpreter where one serves this action (zygote_run.c), the cold path
 * where none does or it fails: the cold path stays the reference, and a zygote's
 * failure (in its setup: nothing of the test ran) is never the run's. */
static int run_sandbox(const struct nb_action *a, struct nb_cache_dir *cache, struct prepared *p,
                       const struct nb_run_options *o, struct nb_sandbox_result *sandbox, struct nb_error *err) {
        struct nb_zygote *z = o ? NULL : nb_zygote_for(a, cache, p->in.venv_path);
        if (z) {
                struct nb_error zerr = NB_ERROR_INIT;
                int r = nb_zygote_run(z, &p->cfg, sandbox, &zerr);
                bool cancelled = zerr.code == ECANCELED;
                if (r >= 0 || cancelled) {
                        if (r < 0)
                                nb_error_wrap(err, r, "%s", nb_error_message(&zerr));
                        nb_error_clear(&zerr);
                        return r;
                }
                if (r != -EXDEV && r != -ENOTSUP) /* the zygote failed, not the target */
                        nb_zygote_failed(a, cache, p->in.venv_path);
                nb_error_clear(&zerr);
                nb_sandbox_result_done(sandbox);
        }
        return nb_sandbox_run(&p->cfg, sandbox, err);
}

int nb_action_run_with(const struct nb_action *a, struct nb_cache_dir *cache, volatile sig_atomic_t *cancel,
                       const struct nb_run_options *o, struct nb_result *ret, struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        __attribute__((cleanup(prepared_done))) struct prepared p = PREPARED_INIT;
        int r = prepare(a, cache, o, &p, err);
        if (r < 0)
                return r;
        struct nb_sandbox_config *cfg = &p.cfg;

        _cleanup_(nb_run_dir_freep) struct nb_run_dir run = { .out_fd = -1 };
        _cleanup_close_ int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0)
                return nb_error_set(err, errno, "/dev/null");
        cfg->cancel = cancel;
        cfg->stdin_fd = devnull;
        /* Never a host file: a test could fallocate it or seek to 1 TiB, and read its
         * host path back through /proc/self/fd. */
        cfg->capture_head = NB_LOG_KEEP_HEAD;
        cfg->capture_tail = NB_LOG_KEEP_TAIL;
        /* For the bench's on/off row only: the report changes no test's outcome. */
        const char *no_report = getenv("NESTBOX_NO_DENIAL_REPORT");
        cfg->no_denial_report = no_report && *no_report && strcmp(no_report, "0") != 0;
        __attribute__((cleanup(nb_sandbox_result_done))) struct nb_sandbox_result sandbox = {};
        uint64_t t0 = nb_timing_now();
        r = run_sandbox(a, cache, &p, o, &sandbox, err);
        nb_timing_add(NB_PHASE_SANDBOX, t0);
        if (r < 0)
                return r;
        run.out_fd = sandbox.out_fd;
        sandbox.out_fd = -1;
        t0 = nb_timing_now();
        r = nb_run_collect(a, &run, &sandbox, ret, err);
        nb_timing_add(NB_PHASE_READ_BACK, t0);
        if (r < 0)
                return r;
        if (o && o->keep_dir && run.out_fd >= 0 && (r = keep_out(run.out_fd, o->keep_dir, err)) < 0) {
                nb_result_done(ret);
                return r;
        }
        return 0;
}

int nb_action_run(const struct nb_action *a, struct nb_cache_dir *cache, volatile sig_atomic_t *cancel,
                  struct nb_result *ret, struct nb_error *err) {
        return nb_action_run_with(a, cache, cancel, NULL, ret, err);
}

static void terminal_closep(struct nb_terminal *t) {
        nb_terminal_close(t);
}

int nb_action_session(const struct nb_action *a, struct nb_cache_dir *cache, const struct nb_run_options *o,
                      int *ret_exit, struct nb_error *err) {
        __attribute__((cleanup(prepared_done))) struct prepared p = PREPARED_INIT;
        int r = prepare(a, cache, o, &p, err);
        if (r < 0)
                return r;
        struct nb_sandbox_config *cfg = &p.cfg;
        /* Only now, with the venv built: what went before printed on a sane terminal.
         * The session's own pty as stdio and controlling terminal; nothing captured,
         * and no timeout unless one was asked for. */
        __attribute__((cleanup(terminal_closep))) struct nb_terminal term = NB_TERMINAL_INIT;
        if ((r = nb_terminal_open(&term, err)) < 0)
                return r;
        cfg->stdin_fd = cfg->stdout_fd = cfg->stderr_fd = term.slave;
        cfg->controlling_tty = true;
        cfg->timeout_sec = o->timeout_sec;
        __attribute__((cleanup(nb_sandbox_result_done))) struct nb_sandbox_result sandbox = {};
        r = nb_sandbox_run(cfg, &sandbox, err);
        nb_terminal_close(&term);
        if (r < 0)
                return r;
        _cleanup_close_ int out_fd = sandbox.out_fd;
        sandbox.out_fd = -1;
        if (o->keep_dir && out_fd >= 0 && (r = keep_out(out_fd, o->keep_dir, err)) < 0)
                return r;
        *ret_exit = sandbox.exit_code >= 0 ? sandbox.exit_code : 128 + sandbox.signal;
        if (sandbox.timed_out)
                return nb_error_classify(err, NB_ERROR_TIMEOUT,
                                         nb_error_setx(err, ETIMEDOUT, "the session reached its timeout of %gs",
                                                       o->timeout_sec));
        return 0;
}
