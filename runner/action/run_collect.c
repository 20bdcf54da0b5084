/* SPDX-License-Identifier: MIT */
/* After the sandbox: everything here reads what the test left behind, which is
 * untrusted. /out is read descriptor-relative and no-follow, each file capped; the
 * JUnit XML goes through the hardened parser; the log is capped head and tail. */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/replay.h"
#include "action/run.h"
#include "action/shard_plan.h"
#include "coverage/lcov.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

/* What the host takes from /out: each file at most OUT_FILE_MAX bytes, coverage and
 * undeclared outputs together at most OUT_TOTAL_MAX bytes and OUT_FILES_MAX
 * undeclared files (README, "nestbox test"). */
#define OUT_FILE_MAX (64u * 1024u * 1024u)
#define OUT_TOTAL_MAX (256u * 1024u * 1024u)
#define OUT_FILES_MAX 10000u

static const char *const coverage_files[] = { "coverage.data", "coverage.xml", "coverage.lcov" };

void nb_run_dir_freep(struct nb_run_dir *d) {
        if (d->out_fd >= 0)
                close(d->out_fd);
        d->out_fd = -1;
}

/* A runaway test printing gigabytes keeps its first and last words (the sandbox kept
 * them), with a line where the middle was. */
static int make_log(const struct nb_sandbox_result *s, char **ret, size_t *ret_len) {
        size_t len = s->output ? s->output_len : 0, head = s->output ? s->output_head : 0;
        uint64_t cut = s->output_total > len ? s->output_total - len : 0;
        char marker[96] = "";
        int m = cut ? snprintf(marker, sizeof(marker), "\n[... nestbox: log cut here, %llu bytes left out ...]\n",
                               (unsigned long long) cut)
                    : 0;
        char *buf = malloc(len + (size_t) m + 1);
        if (!buf)
                return -ENOMEM;
        /* Byte for byte (a NUL the test printed stays), the marker between head and tail. */
        if (len)
                memcpy(buf, s->output, head);
        memcpy(buf + head, marker, (size_t) m);
        if (len)
                memcpy(buf + head + (size_t) m, s->output + head, len - head);
        buf[len + (size_t) m] = 0;
        *ret = buf;
        *ret_len = len + (size_t) m;
        return 0;
}

static int append_log(char **log, size_t *len, const char *text) {
        size_t n = strlen(text);
        char *grown = realloc(*log, *len + n + 1);
        if (!grown)
                return -ENOMEM;
        memcpy(grown + *len, text, n + 1);
        *log = grown;
        *len += n;
        return 0;
}

static char *why_no_report(const struct nb_action *a, const struct nb_sandbox_result *s, const char *parse_error,
                           const char *running) {
        char *why = NULL;
        int k;
        if (s->cancelled)
                k = asprintf(&why, "interrupted by %s%s%s (SIGABRT, then SIGKILL)", s->cancelled == SIGINT ? "SIGINT" : "SIGTERM",
                             running ? " in " : "", running ? running : "");
        else if (s->timed_out && running)
                k = asprintf(&why, "timed out after %.0fs in %s (SIGABRT, then SIGKILL)", (double) a->policy.timeout_ms / 1000,
                             running);
        else if (s->timed_out)
                k = asprintf(&why, "timed out after %.0fs (SIGABRT, then SIGKILL)", (double) a->policy.timeout_ms / 1000);
        else if (s->oom_killed)
                k = asprintf(&why, "killed: out of memory (limit %llu bytes, %s)", (unsigned long long) a->policy.memory,
                             nb_limit_backend_name(s->memory_backend));
        else if (s->signal)
                k = asprintf(&why, "pytest died of signal %d (%s) before writing junit.xml", s->signal, strsignal(s->signal));
        else if (parse_error)
                k = asprintf(&why, "junit.xml unusable (%s); pytest exited with status %d", parse_error, s->exit_code);
        else
                k = asprintf(&why, "pytest exited with status %d without writing junit.xml", s->exit_code);
        return k < 0 ? NULL : why;
}

static int collect_report(const struct nb_action *a, int out_fd, const struct nb_sandbox_result *s, const char *log,
                          size_t log_len, const char *stack, struct nb_result *ret) {
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        _cleanup_error_ struct nb_error perr = NB_ERROR_INIT;
        const char *parse_error = NULL;
        int r = nb_read_file_beneath(out_fd, "junit.xml", NB_JUNIT_MAX_SIZE, &xml, &len);
        if (r >= 0) {
                if (nb_junit_parse(xml, len, &ret->report, &perr) < 0)
                        parse_error = nb_error_message(&perr);
        } else if (r != -ENOENT) {
                nb_error_set(&perr, -r, "reading it");
                parse_error = nb_error_message(&perr);
        }
        if (ret->report && !s->timed_out && !s->cancelled)
                return 0;
        /* A report from a run that then timed out (or was interrupted) is incomplete:
         * say so instead. */
        nb_junit_report_free(TAKE_PTR(ret->report));
        /* On a timeout (or ^C) the driver's record names the test that was running,
         * and faulthandler (on the sandbox's SIGABRT) left every thread's stack. */
        _cleanup_strv_free_ char **running = NULL;
        if ((s->timed_out || s->cancelled) && (r = nb_run_read_ids(out_fd, NB_RECORD_CURRENT, 4096, 1, &running)) < 0)
                return r;
        const char *current = running ? running[0] : NULL;
        if (!(ret->why = why_no_report(a, s, parse_error, current)))
                return -ENOMEM;
        /* The log's end, its NULs left out (a log is bytes, the report's text is not):
         * whatever follows one is shown too. */
        size_t tail = log ? (log_len > 8192 ? 8192 : log_len) : 0;
        _cleanup_free_ char *log_tail = log ? malloc(tail + 1) : NULL;
        if (log && !log_tail)
                return -ENOMEM;
        size_t kept = 0;
        for (size_t i = log_len - tail; log && i < log_len; i++)
                if (log[i])
                        log_tail[kept++] = log[i];
        if (log_tail)
                log_tail[kept] = 0;
        const char *details = log_tail;
        if (stack && *stack)
                details = stack;
        if ((r = nb_junit_error_report(a->target, "nestbox", ret->why, details, &ret->report)) < 0 || !current)
                return r;
        struct nb_junit_testcase *tc = &ret->report->testcases[0];
        free(tc->classname);
        free(tc->name);
        tc->classname = tc->name = NULL;
        if ((r = nb_nodeid_split(current, &tc->classname, &tc->name)) < 0) {
                tc->classname = strdup("");
                tc->name = strdup("");
        }
        return r;
}

/* coverage.lcov is read as the combined report will read it: one that does not parse
 * fails its own target here, never stored to fail the run's sum later. */
static int check_lcov(const char *name, const char *data, size_t len, struct nb_error *err) {
        if (strcmp(name, "coverage.lcov") != 0)
                return 0;
        _cleanup_(nb_lcov_done) struct nb_lcov check = {};
        return nb_lcov_parse(&check, data, len, name, err);
}

static int add_out_file(struct nb_artifact *art, int out_fd, const char *name, size_t *total, struct nb_error *err) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = nb_read_file_beneath(out_fd, name, OUT_FILE_MAX, &data, &len);
        /* Not there, a link or not a regular file (a fifo): skipped, as in undeclared/. */
        if (r == -ENOENT || r == -ELOOP || r == -EINVAL)
                return 0;
        if (r < 0)
                return nb_error_set(err, -r, "/out/%s", name);
        if (len > OUT_TOTAL_MAX - *total)
                return nb_error_setx(err, EFBIG, "adding %s takes the outputs beyond %u bytes in all", name, OUT_TOTAL_MAX);
        if ((r = check_lcov(name, data, len, err)) < 0)
                return r;
        *total += len;
        return nb_artifact_add(art, name, data, len);
}

/* A problem with what the test left in /out is the target's failure; out of memory
 * stays ours. */
static int fail_for_out(struct nb_result *ret, int r, struct nb_error *err) {
        if (r == -ENOMEM)
                return r;
        char *why = NULL;
        if (asprintf(&why, "/out: %s", nb_error_message(err)) < 0)
                return -ENOMEM;
        free(ret->why);
        ret->why = why;
        ret->status = NB_TARGET_FAILED;
        nb_error_clear(err);
        return 0;
}

static int collect_outputs(const struct nb_action *a, int out_fd, struct nb_result *ret, struct nb_error *err) {
        int r;
        size_t total = 0; /* coverage files count against the outputs' cap too */
        /* Only where the action measures coverage: a test that writes them unasked
         * decides nothing. */
        for (size_t i = 0; a->coverage && i < NB_ELEMENTSOF(coverage_files); i++)
                if ((r = add_out_file(&ret->artifact, out_fd, coverage_files[i], &total, err)) < 0)
                        return fail_for_out(ret, r, err);
        _cleanup_close_ int und = nb_open_beneath(out_fd, "undeclared", O_RDONLY | O_DIRECTORY, 0);
        if (und >= 0 && (r = nb_artifact_add_tree(&ret->artifact, und, "undeclared/", OUT_FILE_MAX, OUT_TOTAL_MAX, &total,
                                                  OUT_FILES_MAX, err)) < 0)
                return fail_for_out(ret, r, err);
        return 0;
}

static int fill_result(const struct nb_action *a, const struct nb_sandbox_result *s, struct nb_result *ret) {
        memcpy(ret->action, a->resolved.digest, sizeof(ret->action));
        memcpy(ret->tree, a->resolved.tree_digest, sizeof(ret->tree));
        memcpy(ret->venv, a->resolved.venv_digest, sizeof(ret->venv));
        ret->seed = a->seed;
        ret->shard_index = a->shard_index;
        ret->shard_count = a->shard_count;
        ret->run = a->run;
        ret->attempt = a->attempt ? a->attempt : 1;
        ret->shuffle = a->shuffle;
        ret->wall_sec = s->wall_sec;
        ret->user_sec = s->user_sec;
        ret->sys_sec = s->sys_sec;
        ret->exit_code = s->exit_code;
        ret->signal = s->signal;
        ret->timed_out = s->timed_out;
        ret->interrupted = s->cancelled;
        ret->oom_killed = s->oom_killed;
        ret->warm = s->warm;
        ret->peak_rss_bytes = s->peak_rss_bytes;
        ret->timeout_sec = (double) a->policy.timeout_ms / 1000.0;
        ret->memory = a->policy.memory;
        ret->pids = a->policy.pids;
        ret->target = strdup(a->target);
        ret->memory_backend = strdup(nb_limit_backend_name(s->memory_backend));
        ret->pids_backend = strdup(nb_limit_backend_name(s->pids_backend));
        if (s->denials_reported) {
                ret->denied = json_object();
                for (size_t i = 0; ret->denied && i < s->n_denied; i++)
                        if (json_object_set_new(ret->denied, s->denied[i].name, json_integer((json_int_t) s->denied[i].count)) < 0)
                                return -ENOMEM;
                if (!ret->denied)
                        return -ENOMEM;
        }
        return ret->target && ret->memory_backend && ret->pids_backend ? 0 : -ENOMEM;
}

/* pytest failed but no test did: say why, so no FAILED line stands without a reason.
 * pytest's 5 (nothing collected, `-k nomatch`) fails the target: a target that runs
 * nothing is a mistake in its globs or arguments, not a pass. */
static int why_failed_without_failures(struct nb_result *r) {
        if (r->exit_code == 0 || r->report->failures || r->report->errors)
                return 0;
        int k = r->exit_code < 0 ? asprintf(&r->why, "pytest died of signal %d (%s)", r->signal, strsignal(r->signal))
                : r->exit_code == 5 && r->report->tests == 0
                        ? asprintf(&r->why, "no tests collected (or all deselected; pytest exit status 5)")
                        : asprintf(&r->why, "pytest exited with status %d%s", r->exit_code,
                                   r->exit_code == 4 ? " (a usage error: see the log)" : "");
        if (k < 0) {
                r->why = NULL;
                return -ENOMEM;
        }
        return 0;
}

static enum nb_target_status classify(const struct nb_result *r) {
        if (r->interrupted)
                return NB_TARGET_FAILED;
        if (r->timed_out)
                return NB_TARGET_TIMEOUT;
        if (r->why || r->exit_code != 0 || r->report->failures || r->report->errors)
                return NB_TARGET_FAILED;
        return NB_TARGET_PASSED;
}

int nb_run_collect(const struct nb_action *a, struct nb_run_dir *run, const struct nb_sandbox_result *sandbox,
                   struct nb_result *ret, struct nb_error *err) {
        if (run->out_fd < 0)
                return nb_error_setx(err, EIO, "the sandbox handed back no /out");
        _cleanup_free_ char *log = NULL, *xml = NULL;
        size_t log_len = 0, xml_len = 0;
        _cleanup_free_ char *stack = NULL;
        int r = make_log(sandbox, &log, &log_len);
        /* faulthandler wrote the stacks to /out for the report: the log gets them too,
         * where they would have been. */
        bool aborted = sandbox->timed_out || sandbox->cancelled;
        if (r >= 0 && aborted && (r = nb_run_read_text(run->out_fd, NB_RECORD_STACK, NB_RECORD_STACK_MAX, &stack)) >= 0 &&
            stack && *stack)
                r = append_log(&log, &log_len, stack);
        if (r < 0)
                return nb_error_set(err, -r, "the log");
        if ((r = fill_result(a, sandbox, ret)) < 0 ||
            (r = collect_report(a, run->out_fd, sandbox, log, log_len, stack, ret)) < 0)
                return nb_error_set(err, -r, "the report");
        if (!ret->why && (r = why_failed_without_failures(ret)) < 0)
                return nb_error_set(err, -r, "the report");
        ret->status = classify(ret);
        if (a->shard_count > 1)
                nb_shard_plan_collect(run->out_fd, &ret->plan);
        if ((a->shuffle && (r = nb_run_read_ids(run->out_fd, NB_RECORD_ORDER, NB_RECORD_IDS_MAX_BYTES, NB_RECORD_IDS_MAX,
                                                 &ret->order)) < 0) ||
            (r = nb_run_read_ids(run->out_fd, NB_RECORD_FAILED, NB_RECORD_IDS_MAX_BYTES, NB_RECORD_IDS_MAX,
                                 &ret->failed_ids)) < 0)
                return nb_error_set(err, -r, "the driver's records");
        if ((r = collect_outputs(a, run->out_fd, ret, err)) < 0)
                return nb_error_wrap(err, r, "artifact");
        if ((r = nb_result_stored_junit_xml(ret, &xml, &xml_len)) < 0 ||
            (r = nb_artifact_add(&ret->artifact, "junit.xml", xml, xml_len)) < 0 ||
            (r = nb_artifact_add(&ret->artifact, "log", log, log_len)) < 0)
                return nb_error_set(err, -r, "artifact");
        /* What `nestbox repro` rebuilds the action from (replay.h). */
        _cleanup_free_ char *replay = NULL;
        if ((r = nb_replay_record(a, &replay)) < 0 ||
            (r = nb_artifact_add(&ret->artifact, NB_REPLAY_ENTRY, replay, strlen(replay))) < 0)
                return nb_error_set(err, -r, "artifact");
        return nb_result_seal(ret, err);
}
