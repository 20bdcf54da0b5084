/* SPDX-License-Identifier: MIT */
/* nestbox merge: one junit.xml and one coverage report from the outputs of any number
 * of shards, machines and runs. Everything it reads came from somewhere else (CI
 * artifacts of other machines): each file is read beneath the directory given,
 * no-follow and size-capped, parsed by the hardened readers (junit.h, lcov.h), the
 * walk is bounded in depth and in entries, and every problem is one line naming the
 * file: the names of files and folders are escaped (nb_escape) as they are read, so no
 * message carries a terminal control sequence an input planted in a folder's name. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/result.h"
#include "cache/artifact.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "cli/summary.h"
#include "coverage/lcov.h"
#include "junit/junit.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "workspace/json_read.h"
#include "workspace/target_folder.h"

static const char usage[] =
        "usage: nestbox merge [-o DIR] ARTIFACT|OUTPUT_DIR...\n"
        "\n"
        "Combines what `nestbox test --output` wrote (an OUTPUT_DIR, walked for every\n"
        "<target>/, <target>/shard-K-of-N/ and run-R/ folder holding a result.json) or artifacts\n"
        "(the tar.zst nestbox stores: result.json, junit.xml, coverage.lcov) of any number of\n"
        "shards, machines and runs into:\n"
        "  DIR/junit.xml      one <testsuite> per target, its shards folded in, testcases\n"
        "                     sorted by classname and name; reruns of a test as Surefire's\n"
        "                     flakyFailure/rerunFailure\n"
        "  DIR/coverage.lcov  line hits summed over every input (paths relative to the\n"
        "                     workspace root)\n"
        "  DIR/coverage.xml   Cobertura XML regenerated from the summed LCOV\n"
        "\n"
        "  -o DIR, --output DIR  where to write them (default: merged)\n"
        "  -h, --help         this text\n"
        "\n"
        "Prints each input's line and the summary line `nestbox test` prints (the time is\n"
        "the inputs' wall time added up), and one line per target and run whose shards\n"
        "are missing (how many of N, the first three named), per shard duplicated (the\n"
        "same shard twice: the first is kept) and per target whose tests ran in more than\n"
        "one of its shards (machines that planned from different cache contents): 20 such\n"
        "lines at most, then one saying how many were left out. Inputs are untrusted:\n"
        "sizes are capped, names escaped, and every problem is one line naming the file.\n"
        "Exit status: 0 all passed, 1 a test failed, a shard is missing or a test ran in\n"
        "two shards, 2 usage or an unreadable input, 4 a shard timed out (and none failed\n"
        "otherwise).\n";

#define MAX_UNITS 100000u
#define MAX_DEPTH (NB_TARGET_MAX_DEPTH + 8u) /* a target's components, its shard and run */
#define MAX_ENTRIES 1000000u
#define RESULT_MAX (1u << 20)
#define ARTIFACT_MAX (512u * 1024u * 1024u)
#define MAX_WALL 1e12 /* seconds: the junit reader's cap on a testcase's time (NB_JUNIT_MAX_TIME) */

/* One shard of one run of one target, as read back. */
struct unit {
        char *source; /* the folder or artifact, as printed: escaped (nb_escape) */
        struct nb_result res; /* target, status, shard, run, wall, cached, why, report */
};

struct merge {
        struct unit *v;
        size_t n, cap, entries;
        struct nb_coverage_sum cov;
};

static void merge_done(struct merge *m) {
        for (size_t i = 0; i < m->n; i++) {
                free(m->v[i].source);
                nb_result_done(&m->v[i].res);
        }
        free(m->v);
        nb_coverage_sum_done(&m->cov);
}

struct blob {
        const char *data;
        size_t len;
};

static int bad(struct nb_error *err, const char *source, const char *file, const char *why) {
        return nb_error_input(err, EBADMSG, "%s/%s: %s", source, file, why);
}

/* A retried result's attempts, for the summary's "after N attempts"; a list that is
 * not well-formed is left out (-ENOMEM only). */
static int read_attempts(struct unit *u, json_t *a) {
        size_t n = json_array_size(a);
        if (!json_is_array(a) || n == 0 || n > 1000)
                return 0;
        _cleanup_free_ struct nb_attempt_record *v = calloc(n, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(a, i), *k = json_object_get(e, "attempt");
                if (!json_is_integer(k) || json_integer_value(k) < 1 || json_integer_value(k) > 1000 ||
                    nb_target_status_from_name(json_string_value(json_object_get(e, "status")), &v[i].status) < 0)
                        return 0;
                v[i].attempt = (unsigned) json_integer_value(k);
        }
        u->res.attempts = TAKE_PTR(v);
        u->res.n_attempts = n;
        return 0;
}

static int read_result(struct unit *u, struct blob j, struct nb_error *err) {
        int r;
        json_auto_t *doc = j.len <= RESULT_MAX ? json_loadb(j.data, j.len, JSON_REJECT_DUPLICATES, NULL) : NULL;
        json_t *shard = json_object_get(doc, "shard"), *d = json_object_get(doc, "durations");
        const char *target = json_string_value(json_object_get(doc, "target"));
        const char *status = json_string_value(json_object_get(doc, "status"));
        json_t *idx = json_object_get(shard, "index"), *cnt = json_object_get(shard, "count");
        json_t *run = json_object_get(doc, "run"), *wall = json_object_get(d, "wall");
        if (!doc)
                return bad(err, u->source, "result.json", "not a JSON document of at most 1 MiB");
        if (!target || !nb_valid_name(target) || !json_is_integer(idx) || !json_is_integer(cnt) ||
            !json_is_integer(run) || json_integer_value(cnt) < 1 || json_integer_value(cnt) > 100000 ||
            json_integer_value(idx) < 1 || json_integer_value(idx) > json_integer_value(cnt) ||
            json_integer_value(run) < 1 || json_integer_value(run) > 1000000 || !json_is_number(wall) || !status)
                return bad(err, u->source, "result.json", "not a nestbox.result/v1 (target, shard, run, status, "
                           "durations.wall)");
        /* NaN fails both comparisons; 1e308 would be printed as 309 digits. */
        if (!(json_number_value(wall) >= 0 && json_number_value(wall) <= MAX_WALL))
                return bad(err, u->source, "result.json", "durations.wall is not from 0 to 1e12 seconds");
        if (nb_target_status_from_name(status, &u->res.status) < 0)
                return bad(err, u->source, "result.json", "status is none of PASSED, FAILED, TIMEOUT, FLAKY");
        /* The summary's repro hint names the action: every nestbox.result/v1 has one,
         * and one that is not a digest would leave a bare `nestbox repro`. */
        const char *action = json_string_value(json_object_get(doc, "action"));
        if (!action || strlen(action) != NB_DIGEST_HEX_LEN || strspn(action, "0123456789abcdef") != NB_DIGEST_HEX_LEN)
                return bad(err, u->source, "result.json", "action is not a digest (64 lowercase hex digits)");
        memcpy(u->res.action, action, NB_DIGEST_HEX_LEN + 1);
        /* The seed, when it is well-formed (an older result.json goes without it). */
        json_t *seed = json_object_get(doc, "seed");
        if (json_is_integer(seed) && json_integer_value(seed) >= 0)
                u->res.seed = (uint64_t) json_integer_value(seed);
        u->res.shuffle = json_is_true(json_object_get(doc, "shuffle"));
        if ((r = read_attempts(u, json_object_get(doc, "attempts"))) < 0)
                return nb_error_set(err, -r, "%s", u->source);
        const char *why = json_string_value(json_object_get(doc, "why"));
        if (!(u->res.target = strdup(target)) || (why && !(u->res.why = strdup(why))))
                return nb_error_set(err, ENOMEM, "%s", u->source);
        u->res.shard_index = (unsigned) json_integer_value(idx);
        u->res.shard_count = (unsigned) json_integer_value(cnt);
        u->res.run = (unsigned) json_integer_value(run);
        u->res.wall_sec = json_number_value(wall);
        u->res.cached = json_is_true(json_object_get(doc, "cached"));
        return 0;
}

/* One input's three files (junit.xml and result.json required). */
static int add_unit(struct merge *m, const char *source, struct blob result, struct blob junit, struct blob lcov,
                    struct nb_error *err) {
        if (m->n >= MAX_UNITS)
                return nb_error_input(err, E2BIG, "%s: more than %u results in all", source, MAX_UNITS);
        if (NB_RESERVE(m->v, m->cap, m->n, 1, 16) < 0)
                return nb_error_set(err, ENOMEM, "%s", source);
        struct unit *u = &m->v[m->n];
        *u = (struct unit) { .source = strdup(source) };
        if (!u->source)
                return nb_error_set(err, ENOMEM, "%s", source);
        m->n++;
        if (!junit.data)
                return bad(err, source, "junit.xml", "missing");
        int r = read_result(u, result, err);
        if (r < 0)
                return r;
        if ((r = nb_junit_parse(junit.data, junit.len, &u->res.report, err)) < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_wrap(err, r, "%s/junit.xml", source));
        /* The claim gives way to the evidence: failures in the report fail the shard. */
        if ((u->res.status == NB_TARGET_PASSED || u->res.status == NB_TARGET_FLAKY) &&
            (u->res.report->failures || u->res.report->errors))
                u->res.status = NB_TARGET_FAILED;
        if (lcov.data) {
                _cleanup_free_ char *name = NULL;
                if (asprintf(&name, "%s/coverage.lcov", source) < 0)
                        return nb_error_set(err, ENOMEM, "%s", source);
                if ((r = nb_lcov_parse(&m->cov.lcov, lcov.data, lcov.len, name, err)) < 0)
                        return r;
                m->cov.inputs++;
        }
        return 0;
}

static int read_opt(int dfd, const char *name, size_t max, char **data, size_t *len, const char *source,
                    struct nb_error *err) {
        int r = nb_read_file_beneath(dfd, name, max, data, len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_set(err, -r, "%s/%s", source, name));
        return 0;
}

static int unit_from_dir(struct merge *m, int dfd, const char *source, struct nb_error *err) {
        _cleanup_free_ char *result = NULL, *junit = NULL, *lcov = NULL;
        size_t rl = 0, jl = 0, ll = 0;
        int r;
        if ((r = read_opt(dfd, "result.json", RESULT_MAX, &result, &rl, source, err)) < 0 ||
            (r = read_opt(dfd, "junit.xml", NB_JUNIT_MAX_SIZE, &junit, &jl, source, err)) < 0 ||
            (r = read_opt(dfd, "coverage.lcov", NB_LCOV_MAX_SIZE, &lcov, &ll, source, err)) < 0)
                return r;
        return add_unit(m, source, (struct blob) { result, rl }, (struct blob) { junit, jl }, (struct blob) { lcov, ll },
                        err);
}

static int cmp_name(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Every folder beneath dfd holding a result.json is one input; an undeclared/ (what
 * a test wrote) is never walked, other folders below an input are (the output of a
 * target named below it: lib/tests inside lib's). The combined files at the top of
 * an output dir are not inputs. */
static int walk(struct merge *m, int dfd, const char *source, unsigned depth, struct nb_error *err) {
        struct stat st;
        bool unit = depth > 0 && fstatat(dfd, "result.json", &st, AT_SYMLINK_NOFOLLOW) == 0;
        int r;
        if (unit && (r = unit_from_dir(m, dfd, source, err)) < 0)
                return r;
        if (depth >= MAX_DEPTH)
                return nb_error_input(err, ELOOP, "%s: folders nested deeper than %u", source, MAX_DEPTH);
        DIR *d = NULL;
        if ((r = nb_opendir_at(dfd, ".", &d)) < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_set(err, -r, "%s", source));
        /* Sorted names: the same inputs are read (and reported) in the same order. */
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d))) {
                if (++m->entries > MAX_ENTRIES) {
                        closedir(d);
                        return nb_error_input(err, E2BIG, "%s: more than %u entries in all", source, MAX_ENTRIES);
                }
                /* What a test wrote is never an input, whoever's folder it is in. */
                if ((de->d_type != DT_DIR && de->d_type != DT_UNKNOWN) || strcmp(de->d_name, "undeclared") == 0)
                        continue;
                if (NB_RESERVE(names, cap, n, 2, 16) < 0) { /* this name and the NULL */
                        closedir(d);
                        return nb_error_set(err, ENOMEM, "%s", source);
                }
                if (!(names[n] = strdup(de->d_name))) {
                        closedir(d);
                        return nb_error_set(err, ENOMEM, "%s", source);
                }
                names[++n] = NULL;
        }
        closedir(d);
        if (names)
                nb_qsort(names, n, sizeof(char *), cmp_name);
        for (size_t i = 0; i < n; i++) {
                _cleanup_close_ int sub = nb_open_beneath(dfd, names[i], O_RDONLY | O_DIRECTORY, 0);
                if (sub < 0)
                        continue; /* a symlink or a file: not ours to follow */
                /* A folder's name is the input's to choose: escaped once here, it is
                 * safe in every message that names the folder or what is in it. */
                _cleanup_free_ char *name = nb_escape(names[i], 0), *path = NULL;
                if (!name || asprintf(&path, "%s/%s", source, name) < 0)
                        return nb_error_set(err, ENOMEM, "%s", source);
                if ((r = walk(m, sub, path, depth + 1, err)) < 0)
                        return r;
        }
        return 0;
}

/* path is opened, shown (path escaped) is what messages name. */
static int add_artifact(struct merge *m, const char *path, const char *shown, struct nb_error *err) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fd < 0 ? -errno : nb_read_fd(fd, ARTIFACT_MAX, &data, &len);
        if (r < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_set(err, -r, "%s", shown));
        _cleanup_(nb_artifact_done) struct nb_artifact art = {};
        /* Only what merge reads is kept: the log and undeclared outputs, whatever their
         * size, are checked and passed over. */
        static const char *const merge_reads[] = { "result.json", "junit.xml", "coverage.lcov", NULL };
        if ((r = nb_artifact_unpack_only(data, len, merge_reads, &art, err)) < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_wrap(err, r, "%s", shown));
        const struct nb_artifact_entry *res = nb_artifact_find(&art, "result.json"),
                                       *junit = nb_artifact_find(&art, "junit.xml"),
                                       *lcov = nb_artifact_find(&art, "coverage.lcov");
        if (!res)
                return bad(err, shown, "result.json", "missing");
        return add_unit(m, shown, (struct blob) { res->data, res->len },
                        (struct blob) { junit ? junit->data : NULL, junit ? junit->len : 0 },
                        (struct blob) { lcov ? lcov->data : NULL, lcov ? lcov->len : 0 }, err);
}

static int add_input(struct merge *m, const char *path, struct nb_error *err) {
        _cleanup_free_ char *shown = nb_escape(path, 0);
        if (!shown)
                return nb_error_set(err, ENOMEM, "merge");
        struct stat st;
        if (stat(path, &st) < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_set(err, errno, "%s", shown));
        if (!S_ISDIR(st.st_mode))
                return add_artifact(m, path, shown, err);
        _cleanup_close_ int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_set(err, errno, "%s", shown));
        /* An output dir of one target (DIR/<target>/) is itself an input. */
        if (fstatat(dfd, "result.json", &st, AT_SYMLINK_NOFOLLOW) == 0)
                return unit_from_dir(m, dfd, shown, err);
        size_t before = m->n;
        int r = walk(m, dfd, shown, 0, err);
        if (r == 0 && m->n == before)
                return nb_error_input(err, ENOENT, "%s: no result.json beneath it (not a nestbox test --output)", shown);
        return r;
}

static int cmp_unit(const void *a, const void *b) {
        const struct nb_result *x = &((const struct unit *) a)->res, *y = &((const struct unit *) b)->res;
        int c = strcmp(x->target, y->target);
        if (c == 0)
                c = (x->run > y->run) - (x->run < y->run);
        if (c == 0)
                c = (x->shard_count > y->shard_count) - (x->shard_count < y->shard_count);
        if (c == 0)
                c = (x->shard_index > y->shard_index) - (x->shard_index < y->shard_index);
        return c ? c : strcmp(((const struct unit *) a)->source, ((const struct unit *) b)->source);
}

static bool same_shard(const struct nb_result *x, const struct nb_result *y) {
        return strcmp(x->target, y->target) == 0 && x->run == y->run && x->shard_count == y->shard_count &&
               x->shard_index == y->shard_index;
}

/* A result.json may claim shard 1 of 100000 and a merge may hold 100000 of them: the
 * lines naming missing, duplicated or split shards are this many at most, then one
 * line says how many were left out; a target's missing shards are one line naming
 * the first MISSING_NAMED. */
#define MAX_PROBLEM_LINES 20u
#define MISSING_NAMED 3u

struct problems {
        size_t lines, left_out;
};

/* Whether one more problem line may be printed (else it is counted as left out). */
static bool say(struct problems *p) {
        if (p->lines < MAX_PROBLEM_LINES) {
                p->lines++;
                return true;
        }
        p->left_out++;
        return false;
}

/* The missing shards of one group (target, run, count): how many, the first few. */
struct missing {
        size_t n;
        unsigned n_named, named[MISSING_NAMED];
};

/* Shards from..to-1 are missing: counted, not walked (there may be 99999). */
static void add_missing(struct missing *g, unsigned from, unsigned to) {
        if (to <= from)
                return;
        for (unsigned k = from; k < to && g->n_named < MISSING_NAMED; k++)
                g->named[g->n_named++] = k;
        g->n += to - from;
}

static void say_missing(struct problems *p, const struct nb_result *r, const struct missing *g) {
        if (g->n == 0 || !say(p))
                return;
        if (g->n == 1) {
                fprintf(stderr, "nestbox: merge: missing: %s shard %u of %u (run %u)\n", r->target, g->named[0],
                        r->shard_count, r->run);
                return;
        }
        fprintf(stderr, "nestbox: merge: missing: %zu of %u shards of %s (run %u): ", g->n, r->shard_count, r->target,
                r->run);
        for (unsigned k = 0; k < g->n_named; k++)
                fprintf(stderr, "%s%u", k == 0 ? "" : ", ", g->named[k]);
        if (g->n > g->n_named)
                fprintf(stderr, " and %zu more", g->n - g->n_named);
        fputc('\n', stderr);
}

/* Sorted units: says which are duplicated (drops the later copies, *keep) and which
 * shards of a group (target, run, count) are missing; returns how many are. */
static size_t check_shards(const struct unit *u, size_t n, bool *keep, struct problems *p) {
        size_t missing = 0;
        for (size_t i = 0, j; i < n; i = j) {
                struct missing g = {};
                unsigned want = 1;
                for (j = i; j < n && strcmp(u[j].res.target, u[i].res.target) == 0 && u[j].res.run == u[i].res.run &&
                            u[j].res.shard_count == u[i].res.shard_count;
                     j++) {
                        keep[j] = !(j > i && same_shard(&u[j].res, &u[j - 1].res));
                        if (!keep[j]) {
                                if (say(p))
                                        fprintf(stderr, "nestbox: merge: duplicated: %s shard %u of %u (run %u) in %s "
                                                "and %s; the first is kept\n", u[j].res.target, u[j].res.shard_index,
                                                u[j].res.shard_count, u[j].res.run, u[j - 1].source, u[j].source);
                                continue;
                        }
                        add_missing(&g, want, u[j].res.shard_index);
                        want = u[j].res.shard_index + 1;
                }
                add_missing(&g, want, u[i].res.shard_count + 1);
                say_missing(p, &u[i].res, &g);
                missing += g.n;
        }
        return missing;
}

struct seen {
        const struct nb_junit_testcase *tc;
        unsigned shard;
};

static int cmp_seen(const void *a, const void *b) {
        const struct seen *x = a, *y = b;
        int c = strcmp(x->tc->classname, y->tc->classname);
        if (c == 0)
                c = strcmp(x->tc->name, y->tc->name);
        return c ? c : (x->shard > y->shard) - (x->shard < y->shard);
}

/* A test in two shards of one split means the shards were planned from different
 * durations (machines that started from different cache contents): then some test
 * may have run in none. Says so per split; returns how many splits are affected. */
static size_t check_split(const struct unit *u, size_t n, const bool *keep, struct problems *p) {
        size_t bad_splits = 0;
        for (size_t i = 0, j; i < n; i = j) {
                size_t cases = 0;
                for (j = i; j < n && strcmp(u[j].res.target, u[i].res.target) == 0 && u[j].res.run == u[i].res.run &&
                            u[j].res.shard_count == u[i].res.shard_count;
                     j++)
                        cases += keep[j] ? u[j].res.report->n_testcases : 0;
                if (u[i].res.shard_count < 2 || cases < 2)
                        continue;
                _cleanup_free_ struct seen *v = calloc(cases, sizeof(*v));
                if (!v)
                        continue; /* a check, not the merge: out of memory skips it */
                size_t k = 0;
                for (size_t x = i; x < j; x++)
                        for (size_t t = 0; keep[x] && t < u[x].res.report->n_testcases; t++)
                                v[k++] = (struct seen) { &u[x].res.report->testcases[t], u[x].res.shard_index };
                nb_qsort(v, k, sizeof(*v), cmp_seen);
                size_t twice = 0, first = 0;
                for (size_t t = 1; t < k; t++)
                        if (v[t].shard != v[t - 1].shard && cmp_seen(&(struct seen) { v[t].tc, 0 },
                                                                     &(struct seen) { v[t - 1].tc, 0 }) == 0 &&
                            twice++ == 0)
                                first = t;
                if (!twice)
                        continue;
                bad_splits++;
                if (!say(p))
                        continue;
                _cleanup_free_ char *cls = nb_escape(v[first].tc->classname, 0), *name = nb_escape(v[first].tc->name, 0);
                fprintf(stderr, "nestbox: merge: %s (run %u): %zu tests ran in more than one of its %u shards (%s::%s "
                        "first): the shards were planned from different durations; give every machine the same "
                        "cache contents\n", u[i].res.target, u[i].res.run, twice, u[i].res.shard_count,
                        cls ? cls : "?", name ? name : "?");
        }
        return bad_splits;
}

static int write_outputs(struct merge *m, const bool *keep, const char *out_arg, struct nb_error *err) {
        _cleanup_close_ int out = -1;
        int r = nb_output_open(out_arg, &out, err);
        if (r < 0)
                return r;
        _cleanup_free_ const struct nb_junit_report **reports = calloc(m->n + 1, sizeof(*reports));
        if (!reports)
                return nb_error_set(err, ENOMEM, "merge");
        size_t k = 0;
        for (size_t i = 0; i < m->n; i++)
                if (keep[i]) {
                        /* Named after the target, so its shards fold into one suite. */
                        free(m->v[i].res.report->name);
                        if (!(m->v[i].res.report->name = strdup(m->v[i].res.target)))
                                return nb_error_set(err, ENOMEM, "merge");
                        reports[k++] = m->v[i].res.report;
                }
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        if ((r = nb_junit_folded_xml(reports, k, &xml, &len, err)) < 0)
                return r;
        if ((r = nb_write_file_atomic(out, "junit.xml", xml, len, 0644)) < 0)
                return nb_error_set(err, -r, "%s/junit.xml", out_arg);
        return nb_coverage_sum_write(&m->cov, out, err);
}

int cmd_merge(int argc, char **argv) {
        static const struct option options[] = {
                { "output", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *out_arg = "merged";
        int c;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
                if (c == 'h')
                        return nb_usage(stdout, usage, 0);
                if (c == 'o') {
                        out_arg = optarg;
                        continue;
                }
                _cleanup_free_ char *opt = nb_escape(argv[optind - 1], 0);
                return nb_die(NB_EXIT_USAGE, "%s: unknown option or missing argument; see 'nestbox merge --help'",
                              opt ? opt : "?");
        }
        if (optind >= argc)
                return nb_usage(stderr, usage, NB_EXIT_USAGE);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        __attribute__((cleanup(merge_done))) struct merge m = {};
        for (int i = optind; i < argc; i++)
                if (add_input(&m, argv[i], &err) < 0)
                        return nb_fail(&err);
        nb_qsort(m.v, m.n, sizeof(*m.v), cmp_unit);
        _cleanup_free_ bool *keep = calloc(m.n + 1, sizeof(*keep));
        if (!keep)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        struct problems p = {};
        size_t missing = check_shards(m.v, m.n, keep, &p) + check_split(m.v, m.n, keep, &p);
        if (p.left_out)
                fprintf(stderr, "nestbox: merge: %zu more lines of missing, duplicated or split shards left out\n",
                        p.left_out);
        if (write_outputs(&m, keep, out_arg, &err) < 0)
                return nb_fail(&err);
        struct nb_summary s = {};
        int status = NB_EXIT_PASSED;
        for (size_t i = 0; i < m.n; i++) {
                if (!keep[i])
                        continue;
                nb_summary_result(&s, &m.v[i].res, false);
                s.wall_sec += m.v[i].res.wall_sec;
                nb_exit_worst(&status, nb_result_exit_code(&m.v[i].res));
        }
        s.items = s.targets;
        s.targets = 0;
        for (size_t i = 0, last = SIZE_MAX; i < m.n; i++)
                if (keep[i]) {
                        s.targets += last == SIZE_MAX || strcmp(m.v[last].res.target, m.v[i].res.target) != 0;
                        last = i;
                }
        nb_summary_print(&s);
        if (missing)
                nb_exit_worst(&status, NB_EXIT_FAILED);
        return status;
}
