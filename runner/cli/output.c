/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/output.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "workspace/json_read.h"
#include "workspace/target_folder.h"

int nb_output_open(const char *arg, int *ret_fd, struct nb_error *err) {
        int fd = nb_mkdir_p_user(arg, 0755);
        if (fd < 0)
                return nb_error_classify(err, NB_ERROR_USAGE, nb_error_set(err, -fd, "--output %s", arg));
        *ret_fd = fd;
        return 0;
}

int nb_output_forget_reports(int out_dir, const char *arg, struct nb_error *err) {
        static const char *const reports[] = { "junit.xml", "coverage.lcov", "coverage.xml" };
        for (size_t i = 0; i < NB_ELEMENTSOF(reports); i++)
                if (unlinkat(out_dir, reports[i], 0) < 0 && errno != ENOENT)
                        return nb_error_set(err, errno, "--output %s/%s", arg, reports[i]);
        return 0;
}

/* Output paths are derived from target names (nb_target_folder: a plain relative
 * path, one per target), so a name cannot climb out of --output. A shard's folder is
 * <target>/shard-K-of-N, so shards (on one machine or many) never collide, and with
 * several runs each has its own run-R inside, so that merge finds every run. */
static char *output_subdir(const char *name, unsigned shard_index, unsigned shard_count, unsigned run,
                           unsigned runs) {
        char *s = NULL;
        char shard[64] = "", in_run[32] = "";
        if (shard_count > 1)
                (void) snprintf(shard, sizeof(shard), "/shard-%u-of-%u", shard_index, shard_count);
        if (runs > 1)
                (void) snprintf(in_run, sizeof(in_run), "/run-%u", run);
        _cleanup_free_ char *folder = nb_target_folder(name);
        if (!folder || asprintf(&s, "%s%s%s", folder, shard, in_run) < 0)
                return NULL;
        return s;
}

/* Whether name is the folder of a sibling in this layout, in the very spelling
 * output_subdir gives it: "shard-K-of-N" of the count wanted, or "run-R" with R <= of. */
static bool sibling_of(const char *name, bool shards, unsigned of) {
        unsigned k, n;
        if (shards)
                return nb_output_shard_folder(name, &k, &n) && n == of && k >= 1 && k <= n;
        return nb_output_run_folder(name, &k) && k >= 1 && k <= of;
}

/* What a folder of DIR keeps when it is cleared for an item. */
struct keep {
        const struct nb_workspace *ws; /* NULL: no other target to spare */
        const char *self;              /* the target's name */
        int sibling; /* -1: none; 0: run-R with R <= of; 1: shard-K-of-N with N == of */
        unsigned of;
};

/* Whether DIR/path is, or holds, the folder of another target of the workspace
 * (targets lib and lib/tests: clearing lib's folder must spare lib/tests'). With no
 * workspace (`nestbox run`), any folder but those --output itself names may be one. */
static int holds_another_target(const struct keep *k, const char *path) {
        const char *base = strrchr(path, '/');
        if (nb_output_reserved(base ? base + 1 : path))
                return 0; /* undeclared/, run-N, shard-K-of-N: never a target's (nb_target_name_problem) */
        if (!k->ws)
                return 1;
        size_t len = strlen(path);
        for (size_t i = 0; k->ws && i < k->ws->n_targets; i++) {
                const struct nb_target *t = &k->ws->targets[i];
                if (strcmp(t->name, k->self) == 0)
                        continue;
                _cleanup_free_ char *f = output_subdir(t->name, 1, 1, 1, 1);
                if (!f)
                        return -ENOMEM;
                if (strncmp(f, path, len) == 0 && (f[len] == 0 || f[len] == '/'))
                        return 1;
        }
        return 0;
}

/* Empties DIR/dir but for what k keeps, never following a link: dir is opened
 * beneath DIR with no link on the way (none there: nothing to clear), and each entry
 * goes by its own name. */
static int clear_dir(int out_dir, const char *dir, const struct keep *k) {
        _cleanup_close_ int fd = nb_open_beneath(out_dir, dir, O_RDONLY | O_DIRECTORY, 0);
        if (fd == -ENOENT)
                return 0;
        if (fd < 0)
                return fd;
        DIR *d = NULL;
        int r = nb_opendir_at(fd, ".", &d);
        if (r < 0)
                return r;
        _cleanup_strv_free_ char **gone = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        while (r == 0 && (de = nb_readdir_no_dots(d))) {
                struct stat st;
                bool is_dir = de->d_type == DT_DIR ||
                              (de->d_type == DT_UNKNOWN && fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                               S_ISDIR(st.st_mode));
                if (is_dir && k->sibling >= 0 && sibling_of(de->d_name, k->sibling == 1, k->of))
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                int held = is_dir ? holds_another_target(k, path) : 0;
                if (held < 0)
                        r = held;
                else if (!held && (NB_RESERVE(gone, cap, n, 2, 8) < 0 || !(gone[n] = strdup(de->d_name))))
                        r = -ENOMEM;
                else if (!held)
                        gone[++n] = NULL;
        }
        if (r == 0 && errno)
                r = -errno;
        closedir(d);
        for (size_t i = 0; r == 0 && i < n; i++)
                r = nb_rm_rf_at(fd, gone[i]);
        return r;
}

/* "--output: DIR/sub: reason", or, when a link stood in the way, the link it met:
 * nothing beneath --output is followed, and the user is told which one to remove. */
static int output_failed(int out_dir, const char *sub, int r, struct nb_error *err) {
        _cleanup_free_ char *link = r == -ELOOP ? nb_link_beneath(out_dir, sub) : NULL;
        if (link)
                return nb_error_setx(err, ELOOP, "--output: %s is a symbolic link; nothing beneath --output is followed",
                                     link);
        return nb_error_set(err, r, "--output: %s", sub);
}

int nb_output_clear(int out_dir, const char *name, unsigned shard_index, unsigned shard_count, unsigned run,
                    unsigned runs, const struct nb_workspace *ws, struct nb_error *err) {
        if (!run)
                run = 1;
        _cleanup_free_ char *target = output_subdir(name, 1, 1, 1, 1),
                            *shard = output_subdir(name, shard_index, shard_count, 1, 1),
                            *own = output_subdir(name, shard_index, shard_count, run, runs);
        if (!target || !shard || !own)
                return nb_error_set(err, ENOMEM, "--output");
        /* From the target's folder down to the item's own, each level keeps its
         * siblings of this layout (and other targets' folders), the item's own is emptied. */
        struct keep k = { ws, name, -1, 0 };
        int r = 0;
        if (shard_count > 1) {
                k.sibling = 1;
                k.of = shard_count;
                r = clear_dir(out_dir, target, &k);
        }
        if (r == 0 && runs > 1) {
                k.sibling = 0;
                k.of = runs;
                r = clear_dir(out_dir, shard, &k);
        }
        if (r == 0) {
                k.sibling = -1;
                r = clear_dir(out_dir, own, &k);
        }
        return r < 0 ? output_failed(out_dir, own, r, err) : 0;
}

static json_t *outputs_json(const char *out_arg, const char *sub, const struct nb_result *r) {
        _cleanup_free_ char *base = realpath(out_arg, NULL);
        _cleanup_free_ char *dir = NULL;
        if (!base || asprintf(&dir, "%s/%s", base, sub) < 0)
                return NULL;
        json_t *o = json_pack("{s:s, s:s+, s:s+, s:[]}", "dir", dir, "junit", dir, "/junit.xml", "log", dir, "/log",
                              "coverage");
        for (size_t i = 0; o && i < r->artifact.n; i++)
                if (strncmp(r->artifact.entries[i].name, "coverage.", 9) == 0) {
                        _cleanup_free_ char *p = NULL;
                        if (asprintf(&p, "%s/%s", dir, r->artifact.entries[i].name) < 0 ||
                            json_array_append_new(json_object_get(o, "coverage"), json_string(p)) < 0) {
                                json_decref(o);
                                return NULL;
                        }
                }
        return o;
}

int nb_output_write(int out_dir, const char *out_arg, const struct nb_result *r, unsigned runs, json_t **ret_outputs,
                    struct nb_error *err) {
        _cleanup_free_ char *sub = output_subdir(r->target, r->shard_index, r->shard_count, r->run, runs);
        if (!sub)
                return nb_error_set(err, ENOMEM, "--output");
        /* The folder was emptied as the item started (nb_output_clear). */
        _cleanup_close_ int dir = nb_mkdir_p_beneath(out_dir, sub, 0755);
        if (dir < 0)
                return output_failed(out_dir, sub, dir, err);
        _cleanup_close_ int d = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
                return nb_error_set(err, errno, "--output: %s", sub);
        _cleanup_(nb_artifact_done) struct nb_artifact tmp = {};
        const struct nb_artifact *art;
        int k = nb_result_full_artifact(r, &tmp, &art, err);
        if (k < 0)
                return nb_error_wrap(err, k, "--output: %s", sub);
        k = nb_artifact_extract(art, d, err);
        if (k < 0)
                return nb_error_wrap(err, k, "--output: %s", sub);
        /* A replayed junit.xml says so: cached is this invocation's property. */
        if (r->cached) {
                _cleanup_free_ char *xml = NULL;
                size_t len = 0;
                if ((k = nb_result_junit_xml(r, &xml, &len)) < 0 || (k = nb_write_file_atomic(d, "junit.xml", xml, len, 0644)) < 0)
                        return nb_error_set(err, -k, "--output: %s/junit.xml", sub);
        }
        json_auto_t *full = nb_result_to_json(r, NB_RESULT_JSON_ARTIFACT | NB_RESULT_JSON_CACHED);
        _cleanup_free_ char *text = full ? json_dumps(full, JSON_SORT_KEYS | JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
        if (!text)
                return nb_error_set(err, ENOMEM, "--output");
        if ((k = nb_write_file_atomic(d, "result.json", text, strlen(text), 0644)) < 0)
                return nb_error_set(err, -k, "--output: %s/result.json", sub);
        if (ret_outputs && !(*ret_outputs = outputs_json(out_arg, sub, r)))
                return nb_error_set(err, ENOMEM, "--output");
        return 0;
}

static int parse_seed(const char *arg, struct nb_action_options *o) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        /* Seeds travel as JSON integers, which are signed 64-bit. */
        if (errno || end == arg || *end || *arg == '-' || v > (unsigned long long) INT64_MAX)
                return nb_die(NB_EXIT_USAGE, "--seed %s: expected an integer from 0 to %lld", arg, (long long) INT64_MAX);
        o->seed = v;
        o->seed_set = true;
        return 0;
}

static int parse_shard(const char *arg, struct nb_action_options *o) {
        unsigned k, n;
        char tail;
        if (sscanf(arg, "%u/%u%c", &k, &n, &tail) != 2 || n == 0 || k == 0 || k > n || n > 100000)
                return nb_die(NB_EXIT_USAGE, "--shard %s: expected K/N with 1 <= K <= N", arg);
        o->shard_index = k;
        o->shard_count = n;
        return 0;
}

/* Seconds, as nestbox.json's timeout: positive, at most a week, rounded up to 1 ms;
 * or one of Bazel's categories. */
static int parse_timeout(const char *opt, const char *arg, struct nb_action_options *o) {
        char *end = NULL;
        if (nb_timeout_category(arg, &o->timeout_ms) == 0)
                return 0;
        errno = 0;
        double s = strtod(arg, &end);
        if (errno || end == arg || *end || !(s > 0) || s > 7 * 24 * 3600.0)
                return nb_die(NB_EXIT_USAGE, "%s %s: expected a positive number of seconds (at most a week) or "
                              "short, moderate, long, eternal", opt, arg);
        uint64_t ms = (uint64_t) (s * 1000.0);
        o->timeout_ms = (double) ms < s * 1000.0 ? ms + 1 : ms;
        return 0;
}

static int parse_count(const char *opt, const char *arg, unsigned max, unsigned *ret) {
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || *arg == '-' || v < 1 || v > max)
                return nb_die(NB_EXIT_USAGE, "%s %s: expected an integer from 1 to %u", opt, arg, max);
        *ret = (unsigned) v;
        return 0;
}

static int parse_memory(const char *arg, struct nb_action_options *o) {
        if (nb_parse_size(arg, &o->memory) < 0 || o->memory == 0)
                return nb_die(NB_EXIT_USAGE, "--memory %s: expected a size such as 512M or 2G", arg);
        return 0;
}

static int parse_remote(int c, const char *arg, struct nb_remote_options *ro) {
        char *end = NULL;
        double v;
        switch (c) {
        case NB_OPT_REMOTE_CACHE:
                ro->url = arg;
                ro->send_header = true; /* the invoker's own URL */
                return 0;
        case NB_OPT_REMOTE_READONLY:
                ro->readonly = true;
                return 0;
        case NB_OPT_REMOTE_CA:
                ro->ca_file = arg;
                return 0;
        case NB_OPT_REMOTE_TIMEOUT:
                errno = 0;
                v = strtod(arg, &end);
                if (errno || end == arg || *end || !(v > 0 && v <= 3600))
                        return nb_die(NB_EXIT_USAGE, "--remote-timeout %s: expected seconds, more than 0, at most 3600", arg);
                ro->timeout_sec = v;
                return 0;
        }
        return -1;
}

int nb_remote_open(struct nb_cache_modes *m, const char *workspace_url, struct nb_remote **ret) {
        *ret = NULL;
        struct nb_remote_options ro = m->remote;
        if (!ro.url && workspace_url) {
                ro.url = workspace_url;
                ro.send_header = false; /* the workspace is not trusted with the credential */
        }
        if (!ro.url || m->no_cache)
                return 0;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if (nb_remote_new(&ro, ret, &err) < 0)
                return nb_fail(&err);
        return 0;
}

void nb_remote_close(struct nb_remote *r, struct nb_cache_dir *cache, struct nb_remote_stats *stats) {
        if (stats)
                *stats = (struct nb_remote_stats) { 0 };
        if (!r)
                return;
        nb_remote_finish(r);
        nb_remote_report(r, nb_warn_line, NULL);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if (cache && nb_remote_save_stats(r, cache, &err) < 0)
                nb_warn_line(nb_error_message(&err), NULL);
        if (stats)
                nb_remote_get_stats(r, stats);
        nb_remote_free(r);
}

int nb_shared_option(int c, const char *arg, struct nb_action_options *o, struct nb_cache_modes *m) {
        if (m && c >= NB_OPT_REMOTE_CACHE && c <= NB_OPT_REMOTE_CA)
                return parse_remote(c, arg, &m->remote);
        if (o && (c == NB_OPT_TIMEOUT || c == NB_OPT_TEST_TIMEOUT))
                return parse_timeout(c == NB_OPT_TIMEOUT ? "--timeout" : "--test-timeout", arg, o);
        if (o && c == NB_OPT_RUNS_PER_TEST)
                return parse_count("--runs-per-test", arg, 100000, &o->runs);
        if (o && c == NB_OPT_MAX_RUNS)
                return parse_count("--max-runs", arg, 100000, &o->max_runs);
        if (o && c == NB_OPT_ATTEMPTS)
                return parse_count("--attempts", arg, NB_MAX_ATTEMPTS, &o->attempts);
        if (o && c == NB_OPT_MEMORY)
                return parse_memory(arg, o);
        if (o && c == NB_OPT_SEED)
                return parse_seed(arg, o);
        if (o && c == NB_OPT_SHARD)
                return parse_shard(arg, o);
        bool *flag = o && c == NB_OPT_COVERAGE ? &o->coverage
                   : o && c == NB_OPT_SHUFFLE ? &o->shuffle
                   : o && c == NB_OPT_UNTIL_FAILURE ? &o->until_failure
                   : o && c == NB_OPT_FLAKY_FAILS ? &o->flaky_fails
                   : m && c == NB_OPT_NO_CACHE ? &m->no_cache
                   : m && c == NB_OPT_FORCE ? &m->force
                   : m && c == NB_OPT_CACHE_FAILURES ? &m->cache_failures
                   : NULL;
        if (!flag)
                return -1;
        *flag = true;
        return 0;
}

void nb_warn_line(const char *message, void *userdata) {
        (void) userdata;
        fprintf(stderr, "nestbox: %s\n", message);
}

int nb_other_option(const char *verb, const char *opt, int c, const char *arg, struct nb_action_options *o,
                    struct nb_cache_modes *m) {
        int r = nb_shared_option(c, arg, o, m);
        if (r < 0)
                return nb_die(NB_EXIT_USAGE, "%s: unknown option or missing argument; see 'nestbox %s --help'", opt, verb);
        return r;
}

int nb_output_file(const char *opt, const char *path, const void *data, size_t len, struct nb_error *err) {
        _cleanup_close_ int base = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        int r = base < 0 ? -errno : nb_write_file_atomic(base, path[0] == '/' ? path + 1 : path, data, len, 0644);
        if (r < 0)
                return nb_error_classify(err, NB_ERROR_USAGE, nb_error_set(err, -r, "%s %s", opt, path));
        return 0;
}
