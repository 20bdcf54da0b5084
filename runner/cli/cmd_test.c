/* SPDX-License-Identifier: MIT */
/* nestbox test: run a workspace's targets, each in its own sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache_dir.h"
#include "cli/cli.h"
#include "junit/junit.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "action/action.h"
#include "action/run_target.h"
#include "workspace/workspace.h"

static const char usage[] =
        "usage: nestbox test [options] [WORKSPACE] [TARGET...]\n"
        "\n"
        "Runs the targets of the workspace (the directory holding nestbox.json; default: the\n"
        "current directory), all of them when none is named. Each target's declared files\n"
        "are mounted read-only at /work, its locked venv at /venv, and pytest runs in the\n"
        "sandbox (see nestbox sandbox --help) with junit written to /out/junit.xml.\n"
        "\n"
        "  --cache DIR        the cache (default $XDG_CACHE_HOME/nestbox or ~/.cache/nestbox)\n"
        "  --output DIR       write DIR/<target>/junit.xml and log, and DIR/junit.xml for all\n"
        "  --seed N           PYTHONHASHSEED and TEST_RANDOM_SEED (default: from the target name)\n"
        "  --shard K/N        run shard K of N (1-based), exported as TEST_SHARD_INDEX/TOTAL\n"
        "  --coverage         measure coverage for every target (else each target's setting);\n"
        "                     --output gets coverage.lcov, coverage.xml and coverage.data\n"
        "  --no-cache         neither read nor write the result cache\n"
        "  --force            run even when the result is cached (and store the new result)\n"
        "  --cache-failures   replay cached failures too (by default only passes are replayed)\n"
        "  -v, --verbose      print each target's full log\n"
        "  -h, --help         this text\n"
        "\n"
        "Prints one line per target, like 'project1/tests  PASSED in 0.84s (48 tests)', and for\n"
        "a failing target its failing tests with the first lines of each failure.\n"
        "Exit status: 0 all passed, 1 a target failed, 2 usage or input error (bad\n"
        "nestbox.json, missing wheel, wrong hash), 3 sandbox or infrastructure error,\n"
        "4 a target timed out (and none failed otherwise).\n";

enum { OPT_CACHE = 256, OPT_OUTPUT, OPT_SEED, OPT_SHARD, OPT_COVERAGE, OPT_NO_CACHE, OPT_FORCE, OPT_CACHE_FAILURES };

static const struct option options[] = {
        { "cache", required_argument, NULL, OPT_CACHE },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "seed", required_argument, NULL, OPT_SEED },
        { "shard", required_argument, NULL, OPT_SHARD },
        { "coverage", no_argument, NULL, OPT_COVERAGE },
        { "no-cache", no_argument, NULL, OPT_NO_CACHE },
        { "force", no_argument, NULL, OPT_FORCE },
        { "cache-failures", no_argument, NULL, OPT_CACHE_FAILURES },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        {},
};

#define FAILURE_LINES 12

static bool is_workspace(const char *dir) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, NB_WORKSPACE_FILE) < 0)
                return false;
        struct stat st;
        bool ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
        free(p);
        return ok;
}

static void print_indented(const char *text, size_t len) {
        const char *p = text, *end = text + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
                printf("      %.*s\n", (int) n, p);
                p += n + 1;
        }
}

static void print_target(const struct nb_target *t, const struct nb_action_result *run, bool verbose) {
        const struct nb_junit_report *rep = run->report;
        printf("%s  %s in %.2fs (%zu tests", t->name, nb_target_status_name(run->status), run->wall_sec, rep->tests);
        if (rep->failures + rep->errors)
                printf(", %zu failed", rep->failures + rep->errors);
        if (rep->skipped)
                printf(", %zu skipped", rep->skipped);
        printf(")%s\n", run->cached ? " (cached)" : "");
        if (run->why)
                printf("    %s\n", run->why);
        if (run->status != NB_TARGET_PASSED)
                for (size_t i = 0; i < rep->n_testcases; i++) {
                        const struct nb_junit_testcase *tc = &rep->testcases[i];
                        if (tc->result.outcome != NB_JUNIT_FAILED && tc->result.outcome != NB_JUNIT_ERROR)
                                continue;
                        printf("  %s %s%s%s\n", tc->result.outcome == NB_JUNIT_FAILED ? "FAILED" : "ERROR ",
                               tc->classname, *tc->classname ? "::" : "", tc->name);
                        const char *text = tc->result.text && *tc->result.text ? tc->result.text : tc->result.message;
                        if (text)
                                print_indented(text, nb_junit_text_head_len(text, FAILURE_LINES));
                }
        const struct nb_artifact_entry *log = nb_artifact_find(&run->artifact, "log");
        if (verbose && log)
                fwrite(log->data, 1, log->len, stdout);
        fflush(stdout);
}

/* Output paths are derived from target names: anything but a plain relative path
 * character becomes "_", so a name cannot climb out of --output. */
static char *output_subdir(const char *name) {
        char *s = strdup(name);
        if (!s)
                return NULL;
        for (char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '/' || (*p == '.' && p != s && p[-1] != '/' && p[-1] != '.')))
                        *p = '_';
        return s;
}

static int write_target_output(int out_dir, const struct nb_target *t, struct nb_action_result *run,
                               const struct nb_run_options *o, char **ret_xml, struct nb_error *err) {
        _cleanup_free_ char *sub = output_subdir(t->name);
        if (!sub)
                return nb_error_set(err, ENOMEM, "--output");
        _cleanup_close_ int dir = nb_mkdir_p_beneath(out_dir, sub, 0755);
        if (dir < 0)
                return nb_error_set(err, -dir, "--output: %s", sub);
        _cleanup_close_ int d = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
                return nb_error_set(err, errno, "--output: %s", sub);
        int r = nb_artifact_extract(&run->artifact, d, err);
        if (r < 0)
                return nb_error_wrap(err, r, "--output: %s", sub);
        /* junit.xml again, now with the properties of this invocation. */
        char seed[32], shard[32];
        snprintf(seed, sizeof(seed), "%llu", (unsigned long long) run->seed);
        snprintf(shard, sizeof(shard), "%u/%u", o->shard_count > 1 ? o->shard_index + 1 : 1,
                 o->shard_count > 1 ? o->shard_count : 1);
        const struct nb_junit_property props[] = {
                { "target", t->name }, { "shard", shard }, { "attempt", "1" }, { "seed", seed },
                { "cached", run->cached ? "true" : "false" },
        };
        /* The suite is named after the target, so the combined report keeps them apart. */
        char *name = strdup(t->name);
        if (!name)
                return nb_error_set(err, ENOMEM, "--output");
        free(run->report->name);
        run->report->name = name;
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        if ((r = nb_junit_report_to_xml(run->report, props, NB_ELEMENTSOF(props), &xml, &len)) < 0 ||
            (r = nb_write_file_atomic(d, "junit.xml", xml, len, 0644)) < 0)
                return nb_error_set(err, -r, "--output: %s/junit.xml", sub);
        *ret_xml = TAKE_PTR(xml);
        return 0;
}

struct combined {
        char *suites; /* the <testsuite> elements, one per target */
        size_t len;
        size_t tests, failures, errors, skipped;
        double time;
};

/* Adds the <testsuite> element of one target's report (our own writer's output, so
 * its shape is known) to the combined report. */
static int combined_add(struct combined *c, const char *xml, const struct nb_junit_report *r) {
        const char *start = strstr(xml, "<testsuite ");
        const char *end = start ? strstr(start, "</testsuite>") : NULL;
        if (!start)
                return -EINVAL;
        if (end)
                end += strlen("</testsuite>");
        else if (!(end = strstr(start, "/>")) || (end += 2, false))
                return -EINVAL;
        size_t n = (size_t) (end - start);
        char *grown = realloc(c->suites, c->len + n + 4);
        if (!grown)
                return -ENOMEM;
        c->suites = grown;
        memcpy(c->suites + c->len, "  ", 2);
        memcpy(c->suites + c->len + 2, start, n);
        c->len += n + 3;
        c->suites[c->len - 1] = '\n';
        c->suites[c->len] = 0;
        c->tests += r->tests;
        c->failures += r->failures;
        c->errors += r->errors;
        c->skipped += r->skipped;
        c->time += r->time;
        return 0;
}

static int combined_write(int out_dir, const struct combined *c) {
        _cleanup_free_ char *doc = NULL;
        int n = asprintf(&doc,
                         "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<testsuites tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"%zu\" time=\"%.3f\">\n"
                         "%s</testsuites>\n",
                         c->tests, c->failures, c->errors, c->skipped, c->time, c->suites ? c->suites : "");
        if (n < 0)
                return -ENOMEM;
        return nb_write_file_atomic(out_dir, "junit.xml", doc, (size_t) n, 0644);
}

static int parse_shard(const char *s, struct nb_run_options *o) {
        unsigned k, n;
        char tail;
        if (sscanf(s, "%u/%u%c", &k, &n, &tail) != 2 || n == 0 || k == 0 || k > n || n > 100000)
                return nb_die(NB_EXIT_USAGE, "--shard %s: expected K/N with 1 <= K <= N", s);
        o->shard_index = k - 1;
        o->shard_count = n;
        return 0;
}

static int exit_rank(int code) {
        static const int order[] = { NB_EXIT_PASSED, NB_EXIT_FAILED, NB_EXIT_TIMEOUT, NB_EXIT_INFRA, NB_EXIT_USAGE };
        for (size_t i = 0; i < NB_ELEMENTSOF(order); i++)
                if (order[i] == code)
                        return (int) i;
        return 0;
}

static void worst(int *acc, int code) {
        if (exit_rank(code) > exit_rank(*acc))
                *acc = code;
}

struct cache_modes {
        bool no_cache, force, cache_failures;
};

static void warn_line(const char *message, void *userdata) {
        (void) userdata;
        fprintf(stderr, "nestbox: %s\n", message);
}

/* One target: a cache hit replays its result without starting Python; a miss runs it
 * and stores the result. A result that cannot be stored (a full disk) is still
 * reported: the cache is an optimisation, never the reason a run fails. */
static int run_one(const struct nb_workspace *ws, const struct nb_target *t, struct nb_store *store,
                   const struct nb_run_options *o, const struct cache_modes *m, struct nb_action_result *res,
                   struct nb_error *err) {
        __attribute__((cleanup(nb_action_done))) struct nb_action action = { 0 };
        int r = nb_action_prepare(ws, t, o, &action, err);
        if (r < 0)
                return r;
        if (!m->no_cache && !m->force) {
                r = nb_action_lookup(store, &action, res, err);
                if (r == 0 && (res->status == NB_TARGET_PASSED || m->cache_failures))
                        return 0;
                nb_action_result_done(res);
                nb_error_clear(err);
        }
        __attribute__((cleanup(nb_target_run_done))) struct nb_target_run run;
        r = nb_run_target(ws, t, &action.tree, action.seed, store->dir, o, &run, err);
        if (r >= 0)
                r = nb_action_result_from_run(&action, &run, res, err);
        if (r < 0)
                return r;
        /* Stored while the run directory still exists: its space is freed only after. */
        if (!m->no_cache) {
                _cleanup_error_ struct nb_error serr = NB_ERROR_INIT;
                if (nb_action_store(store, &action, res, &serr) < 0)
                        fprintf(stderr, "nestbox: result of \"%s\" not cached: %s\n", t->name, nb_error_message(&serr));
        }
        return 0;
}

static void workspace_freep(struct nb_workspace **ws) {
        nb_workspace_freep(ws);
}

int cmd_test(int argc, char **argv) {
        const char *cache_arg = NULL, *output_arg = NULL;
        struct nb_run_options opts = { 0 };
        struct cache_modes modes = { 0 };
        int c;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+hv", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0);
                case 'v':
                        opts.verbose = true;
                        break;
                case OPT_CACHE:
                        cache_arg = optarg;
                        break;
                case OPT_OUTPUT:
                        output_arg = optarg;
                        break;
                case OPT_SEED: {
                        char *end = NULL;
                        errno = 0;
                        opts.seed = strtoull(optarg, &end, 10);
                        if (errno || end == optarg || *end || *optarg == '-')
                                return nb_die(NB_EXIT_USAGE, "--seed %s: expected a non-negative integer", optarg);
                        opts.seed_set = true;
                        break;
                }
                case OPT_SHARD:
                        if (parse_shard(optarg, &opts) != 0)
                                return NB_EXIT_USAGE;
                        break;
                case OPT_COVERAGE:
                        opts.coverage = true;
                        break;
                case OPT_NO_CACHE:
                        modes.no_cache = true;
                        break;
                case OPT_FORCE:
                        modes.force = true;
                        break;
                case OPT_CACHE_FAILURES:
                        modes.cache_failures = true;
                        break;
                default:
                        return nb_die(NB_EXIT_USAGE, "%s: unknown option or missing argument; see 'nestbox test --help'",
                                      argv[optind - 1]);
                }
        }
        const char *root = ".";
        if (optind < argc && is_workspace(argv[optind]))
                root = argv[optind++];

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        __attribute__((cleanup(workspace_freep))) struct nb_workspace *ws = NULL;
        if (nb_workspace_load(root, &ws, &err) < 0)
                return nb_die_error(NB_EXIT_USAGE, &err);

        /* The targets to run, validated before anything runs. */
        size_t n_targets = optind < argc ? (size_t) (argc - optind) : ws->n_targets;
        _cleanup_free_ const struct nb_target **targets = calloc(n_targets + 1, sizeof(*targets));
        if (!targets)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        for (size_t i = 0; i < n_targets; i++) {
                targets[i] = optind < argc ? nb_workspace_target(ws, argv[optind + (int) i]) : &ws->targets[i];
                if (!targets[i])
                        return nb_die(NB_EXIT_USAGE, "%s: no target \"%s\" (see %s/%s)", root, argv[optind + (int) i],
                                      root, NB_WORKSPACE_FILE);
        }

        struct nb_cache_dir cache;
        if (nb_cache_dir_open(&cache, cache_arg, &err) < 0)
                return nb_die_error(NB_EXIT_INFRA, &err);
        _cleanup_close_ int out_dir = -1;
        if (output_arg) {
                _cleanup_close_ int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (output_arg[0] == '/') {
                        _cleanup_close_ int slash = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                        out_dir = nb_mkdir_p_beneath(slash, output_arg + 1, 0755);
                } else
                        out_dir = nb_mkdir_p_beneath(cwd, output_arg, 0755);
                if (out_dir < 0) {
                        nb_cache_dir_close(&cache);
                        return nb_die(NB_EXIT_USAGE, "--output %s: %s", output_arg, strerror(-out_dir));
                }
        }

        int status = NB_EXIT_PASSED;
        struct nb_store store = { .dir = &cache, .warn = warn_line };
        struct combined combined = { 0 };
        for (size_t i = 0; i < n_targets; i++) {
                struct nb_action_result res = { 0 };
                nb_error_clear(&err);
                int r = run_one(ws, targets[i], &store, &opts, &modes, &res, &err);
                if (r < 0) {
                        int code = r == -EINVAL || r == -ENOENT || r == -EBADMSG || r == -ENOEXEC ? NB_EXIT_USAGE
                                                                                                  : NB_EXIT_INFRA;
                        nb_die_error(code, &err);
                        worst(&status, code);
                        nb_action_result_done(&res);
                        continue;
                }
                print_target(targets[i], &res, opts.verbose);
                worst(&status, res.status == NB_TARGET_PASSED ? NB_EXIT_PASSED
                               : res.status == NB_TARGET_TIMEOUT ? NB_EXIT_TIMEOUT : NB_EXIT_FAILED);
                nb_error_clear(&err);
                _cleanup_free_ char *xml = NULL;
                if (out_dir >= 0 && (write_target_output(out_dir, targets[i], &res, &opts, &xml, &err) < 0 ||
                                     combined_add(&combined, xml, res.report) < 0)) {
                        nb_die_error(NB_EXIT_INFRA, &err);
                        worst(&status, NB_EXIT_INFRA);
                }
                nb_action_result_done(&res);
        }
        if (out_dir >= 0 && combined_write(out_dir, &combined) < 0) {
                nb_die(NB_EXIT_INFRA, "--output %s: cannot write junit.xml", output_arg);
                worst(&status, NB_EXIT_INFRA);
        }
        free(combined.suites);
        nb_cache_dir_close(&cache);
        return status;
}
