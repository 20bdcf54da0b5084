/* SPDX-License-Identifier: MIT */
/* nestbox repro: re-run a recorded action exactly, or step inside its sandbox. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "action/bundle.h"
#include "action/replay.h"
#include "action/run.h"
#include "action/terminal.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "cli/summary.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

#define MAX_RUNS 10000u

static const char usage[] =
        "usage: nestbox repro [options] REF\n"
        "\n"
        "Re-runs a recorded action exactly: the same input tree (from the cache), the same\n"
        "venv, environment, seed (PYTHONHASHSEED), shard, run number, pytest arguments and\n"
        "limits; never a cache hit, and nothing it does is cached. REF is\n"
        "  an action digest, or a unique prefix of one (4 hex digits or more): the\n"
        "      \"action\" of a run's result.json;\n"
        "  a target name: its last run with this cache (test, run or worker);\n"
        "  a bundle file made by `nestbox bundle` (here or on another machine).\n"
        "The action must digest to the recorded one again: a changed interpreter or\n"
        "nestbox, or inputs that are no longer those it ran with, are refused (exit 2).\n"
        "A bundle's action is rebuilt from its own files and replayed even where the\n"
        "interpreter differs (a note says so).\n"
        "\n"
        "  --runs N           run it N times, each in a fresh sandbox, and say how many failed\n"
        "  --shell            instead of pytest, an interactive shell in that sandbox: the\n"
        "                     target's files at /work (the cwd), /venv, the environment\n"
        "                     (PYTHONHASHSEED, TEST_* ...) and the memory and pids limits;\n"
        "                     no timeout unless --timeout; job control and resizing work (a\n"
        "                     pty of its own, relayed); exits with the shell's status\n"
        "  --python           the same with a Python prompt (/venv/bin/python)\n"
        "  --timeout SECONDS  a time limit for --shell or --python\n"
        "  --keep-tmp         keep /tmp and /out of each run on the host, in\n"
        "                     <cache>/kept/<digest>-<n>/{tmp,out}, named in the output; /tmp is\n"
        "                     then a directory on the host's disk rather than a capped tmpfs,\n"
        "                     and /out is copied out regular files only (links are skipped)\n"
        "  --wheelhouse DIR   for a bundle made without --with-wheels: where its wheels are\n"
        "  --cache DIR        the cache (default $XDG_CACHE_HOME/nestbox or ~/.cache/nestbox)\n"
        NB_REMOTE_USAGE
        "                     (repro fetches a recorded action and its artifact from there;\n"
        "                     its tree and venv must be in the local cache or at their\n"
        "                     recorded paths: carry them with `nestbox bundle`)\n"
        "  -v, --verbose      print each run's full log\n"
        "  -h, --help         this text\n"
        "\n"
        "Prints what it replays, then each run's line as `nestbox test` does, and with\n"
        "--runs N: '10 of 10 runs failed (recorded FAILED)'.\n"
        "Exit status as `nestbox test`: 0 every run passed, 1 a run failed, 2 usage or input\n"
        "error (unknown or ambiguous REF, missing wheels), 3 sandbox or infrastructure\n"
        "error, 4 a run timed out; with --shell or --python the shell's own status.\n";

enum { OPT_CACHE = 256, OPT_RUNS, OPT_SHELL, OPT_PYTHON, OPT_KEEP_TMP, OPT_WHEELHOUSE };

static const struct option options[] = {
        { "cache", required_argument, NULL, OPT_CACHE },
        { "runs", required_argument, NULL, OPT_RUNS },
        { "shell", no_argument, NULL, OPT_SHELL },
        { "python", no_argument, NULL, OPT_PYTHON },
        { "timeout", required_argument, NULL, NB_OPT_TIMEOUT },
        { "keep-tmp", no_argument, NULL, OPT_KEEP_TMP },
        { "wheelhouse", required_argument, NULL, OPT_WHEELHOUSE },
        NB_REMOTE_OPTIONS,
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        {},
};

struct repro {
        const char *cache_arg, *wheelhouse;
        unsigned runs;
        bool shell, python, keep_tmp, verbose;
        double timeout_sec;
        struct nb_cache_modes modes;
};

static volatile sig_atomic_t cancelled;

static void on_cancel(int sig) {
        if (cancelled)
                _exit(128 + sig);
        cancelled = sig;
}

static int parse_uint(const char *opt, const char *arg, unsigned max, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || !isdigit((unsigned char) arg[0]) || v < 1 || v > max)
                return nb_die(NB_EXIT_USAGE, "%s %s: expected a number from 1 to %u", opt, arg, max);
        *ret = (unsigned) v;
        return 0;
}

static int parse_args(int argc, char **argv, struct repro *o) {
        int c;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "hv", options, NULL)) != -1) {
                int r = 0;
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0) - 1; /* -1: print nothing more, exit 0 */
                case 'v':
                        o->verbose = true;
                        break;
                case OPT_CACHE:
                        o->cache_arg = optarg;
                        break;
                case OPT_RUNS:
                        r = parse_uint("--runs", optarg, MAX_RUNS, &o->runs);
                        break;
                case OPT_SHELL:
                        o->shell = true;
                        break;
                case OPT_PYTHON:
                        o->python = true;
                        break;
                case NB_OPT_TIMEOUT: {
                        unsigned secs;
                        r = parse_uint("--timeout", optarg, 7 * 86400, &secs);
                        o->timeout_sec = secs;
                        break;
                }
                case OPT_KEEP_TMP:
                        o->keep_tmp = true;
                        break;
                case OPT_WHEELHOUSE:
                        o->wheelhouse = optarg;
                        break;
                default:
                        r = nb_other_option("repro", argv[optind - 1], c, optarg, NULL, &o->modes);
                }
                if (r != 0)
                        return r;
        }
        if (argc - optind != 1)
                return nb_die(NB_EXIT_USAGE, "expected one REF (a digest, a target or a bundle); see 'nestbox repro "
                              "--help'");
        if (o->shell && o->python)
                return nb_die(NB_EXIT_USAGE, "--shell and --python: choose one");
        if ((o->shell || o->python) && o->runs > 1)
                return nb_die(NB_EXIT_USAGE, "--runs is for test runs, not --shell or --python");
        if (o->timeout_sec > 0 && !o->shell && !o->python)
                return nb_die(NB_EXIT_USAGE, "--timeout is for --shell and --python: a test run keeps the action's "
                              "own timeout");
        return 0;
}

/* The record's status when it is one nestbox writes (FLAKY included), else fallback. */
static const char *recorded_status(const char *s, const char *fallback) {
        enum nb_target_status st;
        return nb_target_status_from_name(s, &st) == 0 ? nb_target_status_name(st) : fallback;
}

static void print_header(const struct nb_replay *rp, const char *ref, bool bundle) {
        const struct nb_action *a = rp->action;
        _cleanup_free_ char *target = nb_escape(a->target, 0);
        printf("repro %s: action %.16s, seed %llu, shard %u/%u, run %u", target ? target : "?", a->resolved.digest,
               (unsigned long long) a->seed, a->shard_index, a->shard_count, a->run);
        if (rp->status)
                printf(" (recorded %s)", recorded_status(rp->status, "?"));
        printf("\n");
        if (bundle && strcmp(a->resolved.digest, rp->digest) != 0)
                printf("note: %s was recorded as action %.16s; here it digests to %.16s (another interpreter or "
                       "nestbox version)\n", ref, rp->digest, a->resolved.digest);
        fflush(stdout);
}

/* A prompt naming the target, with only characters no shell expands. */
static char *prompt(const char *target) {
        _cleanup_free_ char *safe = strdup(target);
        if (!safe)
                return NULL;
        for (char *p = safe; *p; p++)
                if (!isalnum((unsigned char) *p) && !strchr("/_.-", *p))
                        *p = '_';
        char *ps1 = NULL;
        return asprintf(&ps1, "[nestbox %s] \\w\\$ ", safe) < 0 ? NULL : ps1;
}

static void print_kept(const char *dir) {
        if (dir)
                printf("kept /tmp and /out in %s/{tmp,out}\n", dir);
        fflush(stdout);
}

static int session(const struct repro *o, struct nb_cache_dir *cache, const struct nb_action *a) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_free_ char *ps1 = prompt(a->target), *keep = NULL;
        if (!ps1)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        /* bash when the host has it (the sandbox sees the host's /usr), else sh. */
        char *bash[] = { (char *) "/bin/bash", (char *) "--norc", (char *) "--noprofile", (char *) "-i", NULL };
        char *sh[] = { (char *) "/bin/sh", (char *) "-i", NULL };
        char *python[] = { (char *) "/venv/bin/python", NULL };
        const char *term = getenv("TERM");
        char *env[] = { (char *) "PS1", ps1, (char *) "TERM", (char *) (term ? term : "xterm"), NULL };
        struct nb_run_options ro = {
                .argv = o->python ? python : access("/bin/bash", X_OK) == 0 ? bash : sh,
                .extra_env = env,
                .timeout_sec = o->timeout_sec,
        };
        if (o->keep_tmp && nb_run_keep_dir(cache, a->resolved.digest, &keep, &err) < 0)
                return nb_fail(&err);
        ro.keep_dir = keep;
        int status = 0;
        int r = nb_action_session(a, cache, &ro, &status, &err);
        if (r < 0)
                return nb_fail(&err);
        print_kept(keep);
        return status;
}

static int runs(const struct repro *o, struct nb_cache_dir *cache, const struct nb_replay *rp) {
        struct sigaction sa = { .sa_handler = on_cancel, .sa_flags = SA_RESTART };
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGTERM, &sa, NULL);
        int status = NB_EXIT_PASSED;
        unsigned n = o->runs ? o->runs : 1, done = 0, failed = 0;
        struct nb_summary sum = { 0 };
        for (; done < n && !cancelled; done++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                _cleanup_free_ char *keep = NULL;
                if (o->keep_tmp && nb_run_keep_dir(cache, rp->action->resolved.digest, &keep, &err) < 0)
                        return nb_fail(&err);
                struct nb_run_options ro = { .keep_dir = keep };
                struct nb_result res;
                if (nb_action_run_with(rp->action, cache, &cancelled, &ro, &res, &err) < 0) {
                        if (cancelled)
                                break;
                        return nb_fail(&err);
                }
                if (n > 1)
                        printf("run %u/%u: ", done + 1, n);
                nb_summary_result(&sum, &res, o->verbose);
                print_kept(keep);
                failed += res.status != NB_TARGET_PASSED;
                nb_exit_worst(&status, res.interrupted ? (res.interrupted == SIGINT ? NB_EXIT_SIGINT : NB_EXIT_SIGTERM)
                                                       : nb_result_exit_code(&res));
                nb_result_done(&res);
        }
        if (n > 1) {
                printf("%u of %u runs failed", failed, done);
                if (rp->status)
                        printf(" (recorded %s)", recorded_status(rp->status, "FAILED"));
                printf("\n");
        }
        if (cancelled)
                return cancelled == SIGINT ? NB_EXIT_SIGINT : NB_EXIT_SIGTERM;
        return status;
}

static int load(const struct repro *o, struct nb_store *s, const char *ref, struct nb_replay *rp, char **bundle_tmp,
                struct nb_error *err) {
        if (nb_bundle_is_file(ref))
                return nb_bundle_open(s->dir, ref, o->wheelhouse, rp, bundle_tmp, err);
        char digest[NB_DIGEST_HEX_LEN + 1];
        int r = nb_replay_find(s, ref, digest, err);
        if (r < 0 || (r = nb_replay_load(s, digest, rp, err)) < 0)
                return r;
        /* A target's last-run pointer is a hint: the action must be that target's. */
        if (!nb_is_digest(ref) && strcmp(rp->action->target, ref) != 0 && strncmp(digest, ref, strlen(ref)) != 0)
                return nb_error_input(err, ENOENT, "%s: its last-run pointer names another target's action", ref);
        return nb_replay_prepare(rp, s->dir, true, err);
}

int cmd_repro(int argc, char **argv) {
        struct repro o = { 0 };
        int r = parse_args(argc, argv, &o);
        if (r != 0)
                return r < 0 ? 0 : r;
        const char *ref = argv[optind];
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if ((o.shell || o.python) && nb_terminal_check(&err) < 0)
                return nb_fail(&err);
        struct nb_cache_dir cache;
        if (nb_cache_dir_open(&cache, o.cache_arg, &err) < 0)
                return nb_fail(&err);
        struct nb_store store = { .dir = &cache, .warn = nb_warn_line };
        if ((r = nb_remote_open(&o.modes, NULL, &store.remote)) != 0) {
                nb_cache_dir_close(&cache);
                return r;
        }
        __attribute__((cleanup(nb_replay_done))) struct nb_replay rp = {};
        char *bundle_tmp = NULL;
        r = load(&o, &store, ref, &rp, &bundle_tmp, &err);
        nb_remote_close(TAKE_PTR(store.remote), &cache, NULL);
        if (r < 0)
                r = nb_fail(&err);
        else {
                print_header(&rp, ref, bundle_tmp != NULL);
                r = o.shell || o.python ? session(&o, &cache, rp.action) : runs(&o, &cache, &rp);
        }
        nb_bundle_cleanup(&cache, bundle_tmp);
        nb_cache_dir_close(&cache);
        return r;
}
