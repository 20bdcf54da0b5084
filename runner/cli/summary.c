/* SPDX-License-Identifier: MIT */
/* What `nestbox test` prints: one line per target, its failures, and one summary line
 * at the end. Everything that came out of a test (names, failure text, the log) is
 * untrusted and printed through nb_escape(), so it cannot forge a line or drive the
 * terminal. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/summary.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

#define FAILURE_LINES 12

/* Writes len bytes of text escaped; with keep_newlines its lines stay lines, each
 * after indent. */
static void put_escaped(const char *text, size_t len, const char *indent) {
        _cleanup_free_ char *e = nb_escape_bytes(text, len, indent ? NB_ESCAPE_KEEP_NEWLINES : 0);
        if (!e) {
                fputs("[out of memory]", stdout);
                return;
        }
        if (!indent) {
                fputs(e, stdout);
                return;
        }
        for (const char *p = e; *p;) {
                size_t n = strcspn(p, "\n");
                printf("%s%.*s\n", indent, (int) n, p);
                p += n + (p[n] == '\n');
        }
}

static void put_name(const char *s) {
        put_escaped(s, strlen(s), NULL);
}

void nb_summary_result(struct nb_summary *s, const struct nb_result *res, bool verbose) {
        const struct nb_junit_report *rep = res->report;
        /* Green passed, red failed, yellow flaky, timed out or interrupted (SGR 32, 31, 33). */
        const char *color = !s || !s->color                   ? NULL
                            : res->interrupted                 ? "33"
                            : res->status == NB_TARGET_PASSED  ? "32"
                            : res->status == NB_TARGET_TIMEOUT ? "33"
                            : res->status == NB_TARGET_FLAKY   ? "33"
                                                               : "31";
        put_name(res->target);
        if (res->shard_count > 1)
                printf(" [shard %u/%u]", res->shard_index, res->shard_count);
        printf("  %s%s%s%s%s in %.2fs (%zu tests", color ? "\033[" : "", color ? color : "", color ? "m" : "",
               res->interrupted ? "INTERRUPTED" : nb_target_status_name(res->status), color ? "\033[0m" : "",
               res->wall_sec, rep->tests);
        if (rep->failures + rep->errors)
                printf(", %zu failed", rep->failures + rep->errors);
        if (rep->skipped)
                printf(", %zu skipped", rep->skipped);
        printf(")%s", res->cached ? " (cached)" : "");
        if (s && s->runs_per_test > 1)
                printf("  run %u/%u", res->run, s->runs_per_test);
        if (res->shuffle)
                printf("  shuffled with seed %llu", (unsigned long long) res->seed);
        if (res->n_attempts)
                printf("  after %zu attempts", res->n_attempts);
        if ((res->status == NB_TARGET_FAILED || res->status == NB_TARGET_TIMEOUT) && !res->interrupted)
                printf("  seed %llu  " NB_REPRO_HINT_FMT, (unsigned long long) res->seed, res->action);
        fputc('\n', stdout);
        if (verbose)
                nb_summary_plan(res);
        if (res->why)
                put_escaped(res->why, strlen(res->why), "    ");
        _cleanup_free_ char *denied = res->denied ? nb_result_denied_text(res) : NULL;
        if (denied && *denied) {
                fputs("    denied: ", stdout);
                put_escaped(denied, strlen(denied), NULL); /* names from the record: escaped */
                fputc('\n', stdout);
        }
        const char *scope = nb_result_memory_scope(res);
        if (scope && strcmp(scope, "per process only") == 0)
                printf("    memory limited per process only (rlimit: no cgroup could be had)\n");
        if (res->status != NB_TARGET_PASSED)
                for (size_t i = 0; i < rep->n_testcases; i++) {
                        const struct nb_junit_testcase *tc = &rep->testcases[i];
                        if (tc->result.outcome != NB_JUNIT_FAILED && tc->result.outcome != NB_JUNIT_ERROR)
                                continue;
                        printf("  %s ", tc->result.outcome == NB_JUNIT_FAILED ? "FAILED" : "ERROR ");
                        put_name(tc->classname);
                        fputs(*tc->classname ? "::" : "", stdout);
                        put_name(tc->name);
                        fputc('\n', stdout);
                        const char *text = tc->result.text && *tc->result.text ? tc->result.text : tc->result.message;
                        if (text)
                                put_escaped(text, nb_junit_text_head_len(text, FAILURE_LINES), "      ");
                }
        if (res->status == NB_TARGET_FLAKY)
                for (size_t i = 0; i < rep->n_testcases; i++) {
                        const struct nb_junit_testcase *tc = &rep->testcases[i];
                        if (tc->n_reruns == 0)
                                continue;
                        fputs("  FLAKY  ", stdout);
                        put_name(tc->classname);
                        fputs(*tc->classname ? "::" : "", stdout);
                        put_name(tc->name);
                        printf(" (failed %zu of %zu attempts)\n", tc->n_reruns, tc->n_reruns + 1);
                }
        const struct nb_artifact_entry *log = nb_artifact_find(&res->artifact, "log");
        if (verbose && log)
                put_escaped(log->data, log->len, "");
        fflush(stdout);
        if (s)
                nb_summary_count(s, res);
}

void nb_summary_count(struct nb_summary *s, const struct nb_result *res) {
        s->targets++;
        s->tests += res->report->tests;
        s->cached += res->cached;
        s->passed += res->status == NB_TARGET_PASSED;
        s->flaky += res->status == NB_TARGET_FLAKY;
        s->interrupted += res->interrupted != 0;
        s->failed += res->status == NB_TARGET_FAILED && !res->interrupted;
        s->timed_out += res->status == NB_TARGET_TIMEOUT;
}

void nb_summary_plan(const struct nb_result *res) {
        const struct nb_shard_plan_info *p = &res->plan;
        if (!p->set)
                return;
        printf("  plan: shard %u/%u: %u of %u tests, %.2fs expected (largest shard %.2fs, ideal %.2fs; %u of the %u "
               "with learned durations)\n", res->shard_index, res->shard_count, p->tests, p->collected, p->expected_sec,
               p->largest_sec, p->ideal_sec, p->known, p->tests);
        fflush(stdout);
}

/* A failed target outranks a timed-out one (the manual's "4: a target timed out, and
 * none failed otherwise"); errors of nestbox's own outrank both, an interruption all. */
static int exit_rank(int code) {
        static const int order[] = { NB_EXIT_PASSED, NB_EXIT_TIMEOUT, NB_EXIT_FAILED, NB_EXIT_INFRA, NB_EXIT_USAGE,
                                     NB_EXIT_SIGTERM, NB_EXIT_SIGINT };
        for (size_t i = 0; i < NB_ELEMENTSOF(order); i++)
                if (order[i] == code)
                        return (int) i;
        return 0;
}

void nb_exit_worst(int *acc, int code) {
        if (exit_rank(code) > exit_rank(*acc))
                *acc = code;
}

void nb_summary_interrupted(int sig, const struct nb_target *const *not_run, size_t n) {
        printf("interrupted by %s; ", sig == SIGINT ? "SIGINT" : "SIGTERM");
        if (n == 0)
                fputs("every target had started", stdout);
        else
                printf("not run (%zu): ", n);
        for (size_t i = 0; i < n; i++) {
                fputs(i ? ", " : "", stdout);
                put_name(not_run[i]->name);
        }
        fputc('\n', stdout);
        fflush(stdout);
}

void nb_summary_print(const struct nb_summary *s) {
        printf("%zu %s%s", s->targets, s->count_runs ? "run" : "target", s->targets == 1 ? "" : "s");
        if (s->items && s->items != s->targets)
                printf(", %zu work items", s->items);
        printf(": %zu passed, %zu failed", s->passed, s->failed);
        if (s->flaky)
                printf(", %zu flaky", s->flaky);
        if (s->timed_out)
                printf(", %zu timed out", s->timed_out);
        if (s->interrupted)
                printf(", %zu interrupted", s->interrupted);
        if (s->errors)
                printf(", %zu not run (error)", s->errors);
        printf(", %zu cached, %zu tests in %.1fs\n", s->cached, s->tests, s->wall_sec);
        fflush(stdout);
}
