/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/events.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

int nb_events_open(const char *arg, struct nb_events *ev, struct nb_error *err) {
        ev->f = strcmp(arg, "-") == 0 ? stdout : fopen(arg, "we");
        if (!ev->f)
                return nb_error_classify(err, NB_ERROR_USAGE, nb_error_set(err, errno, "--events %s", arg));
        return 0;
}

struct nb_pending_venv {
        char *target;
        char digest[NB_DIGEST_HEX_LEN + 1];
        double seconds;
};

void nb_events_close(struct nb_events *ev) {
        for (size_t i = 0; i < ev->n_pending; i++)
                free(ev->pending[i].target);
        free(ev->pending);
        ev->pending = NULL;
        ev->n_pending = ev->cap_pending = 0;
        if (ev->f && ev->f != stdout)
                fclose(ev->f);
        else if (ev->f)
                fflush(ev->f);
        ev->f = NULL;
}

/* A string from a test (a name): JSON escapes what it must; text that is not UTF-8 is
 * escaped the way the summary prints it. */
static json_t *text(const char *s) {
        json_t *j = json_string(s);
        if (j)
                return j;
        _cleanup_free_ char *e = nb_escape(s, 0);
        return e ? json_string(e) : json_string("");
}

/* A line jansson wrote with JSON_ENSURE_ASCII, with DEL (which it leaves raw) as
 * \u007F, spelled as jansson spells its escapes: outside a string JSON has no DEL,
 * so every one is inside a string. */
static int put_ascii(const char *line, FILE *f) {
        for (const char *p = line;;) {
                size_t n = strcspn(p, "\x7f");
                if (fwrite(p, 1, n, f) != n)
                        return -EIO;
                if (!p[n])
                        return 0;
                if (fputs("\\u007F", f) < 0)
                        return -EIO;
                p += n + 1;
        }
}

static void emit(struct nb_events *ev, const char *event, json_t *fields) {
        if (!ev->f) {
                json_decref(fields);
                return;
        }
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        json_auto_t *j = fields ? fields : json_object();
        if (!j || json_object_set_new(j, "schema", json_string(NB_EVENTS_SCHEMA)) < 0 ||
            json_object_set_new(j, "event", json_string(event)) < 0 ||
            json_object_set_new(j, "time", json_real((double) now.tv_sec + (double) now.tv_nsec / 1e9)) < 0)
                return;
        /* A test's names may hold C1 controls (U+009B is a CSI) and DEL, which jansson
         * writes raw, and the events may go to a terminal: every character outside
         * printable ASCII is written as a \u escape, the same string once parsed. */
        _cleanup_free_ char *line = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII |
                                                      JSON_REAL_PRECISION(15));
        errno = 0;
        if (line && !ev->error && (put_ascii(line, ev->f) < 0 || fputc('\n', ev->f) < 0 || fflush(ev->f) != 0))
                ev->error = errno ? errno : EIO;
}

int nb_events_check(const struct nb_events *ev, const char *arg) {
        if (!ev->error)
                return 0;
        return nb_die(NB_EXIT_INFRA, "--events %s: events were lost: %s", arg, strerror(ev->error));
}

void nb_events_run_started(struct nb_events *ev, const char *command, size_t items, unsigned jobs) {
        ev->started = true;
        emit(ev, "run_started", json_pack("{s:s, s:I, s:I}", "command", command, "items", (json_int_t) items, "jobs",
                                          (json_int_t) jobs));
}

void nb_events_venv_built(struct nb_events *ev, const char *target, const char *digest, double seconds) {
        emit(ev, "venv_built", json_pack("{s:o, s:s, s:f}", "target", text(target), "venv", digest, "seconds", seconds));
}

void nb_events_venv_built_early(struct nb_events *ev, const char *target, const char *digest, double seconds) {
        char *t = ev->f ? strdup(target) : NULL;
        if (ev->f && (!t || NB_RESERVE(ev->pending, ev->cap_pending, ev->n_pending, 1, 4) < 0)) {
                free(t);
                nb_events_venv_built(ev, target, digest, seconds); /* out of memory: told now rather than never */
                return;
        }
        if (!t)
                return;
        struct nb_pending_venv *p = &ev->pending[ev->n_pending++];
        *p = (struct nb_pending_venv) { .target = t, .seconds = seconds };
        (void) snprintf(p->digest, sizeof(p->digest), "%s", digest);
}

/* The pending venv_built of target (NULL: all of them), in the order they came. */
static void tell_pending(struct nb_events *ev, const char *target) {
        size_t kept = 0;
        for (size_t i = 0; i < ev->n_pending; i++) {
                struct nb_pending_venv *p = &ev->pending[i];
                if (target && strcmp(p->target, target) != 0) {
                        ev->pending[kept++] = *p;
                        continue;
                }
                nb_events_venv_built(ev, p->target, p->digest, p->seconds);
                free(p->target);
        }
        ev->n_pending = kept;
}

static json_t *shard(unsigned index, unsigned count) {
        return json_pack("{s:I, s:I}", "index", (json_int_t) index, "count", (json_int_t) count);
}

void nb_events_target_started(struct nb_events *ev, const char *target, unsigned shard_index, unsigned shard_count,
                              unsigned run) {
        emit(ev, "target_started", json_pack("{s:o, s:o, s:I}", "target", text(target), "shard",
                                             shard(shard_index, shard_count), "run", (json_int_t) run));
        tell_pending(ev, target);
}

static const char *outcome(enum nb_junit_outcome o) {
        static const char *const names[] = { "passed", "failed", "error", "skipped" };
        return names[o];
}

void nb_events_result(struct nb_events *ev, const struct nb_result *res) {
        if (!ev->f)
                return;
        const struct nb_junit_report *rep = res->report;
        if (res->cached)
                emit(ev, "target_cached", json_pack("{s:o, s:s, s:s}", "target", text(res->target), "action", res->action,
                                                    "status", nb_target_status_name(res->status)));
        for (size_t i = 0; i < rep->n_testcases; i++) {
                const struct nb_junit_testcase *tc = &rep->testcases[i];
                _cleanup_free_ char *id = NULL;
                if (asprintf(&id, "%s%s%s", tc->classname, *tc->classname ? "::" : "", tc->name) < 0)
                        return;
                emit(ev, "testcase", json_pack("{s:o, s:o, s:s, s:f}", "target", text(res->target), "id", text(id),
                                               "outcome", outcome(tc->result.outcome), "duration", tc->time));
        }
        emit(ev, "target_finished",
             json_pack("{s:o, s:s, s:b, s:f, s:I, s:I, s:I, s:I, s:o, s:o, s:I}", "target", text(res->target), "status",
                       res->interrupted ? "INTERRUPTED" : nb_target_status_name(res->status), "cached", res->cached,
                       "wall", res->wall_sec, "tests", (json_int_t) rep->tests, "failures", (json_int_t) rep->failures,
                       "errors", (json_int_t) rep->errors, "skipped", (json_int_t) rep->skipped, "why",
                       res->why ? text(res->why) : json_null(), "shard", shard(res->shard_index, res->shard_count),
                       "run", (json_int_t) res->run));
}

void nb_events_target_error(struct nb_events *ev, const char *target, unsigned shard_index, unsigned shard_count,
                            unsigned run, const char *why) {
        emit(ev, "target_finished",
             json_pack("{s:o, s:s, s:b, s:f, s:I, s:I, s:I, s:I, s:o, s:o, s:I}", "target", text(target), "status",
                       "ERROR", "cached", 0, "wall", 0.0, "tests", (json_int_t) 0, "failures", (json_int_t) 0, "errors",
                       (json_int_t) 0, "skipped", (json_int_t) 0, "why", text(why), "shard",
                       shard(shard_index, shard_count), "run", (json_int_t) run));
}

/* run_finished, with one more field (key: value, taken) when key is not NULL. */
static void run_finished(struct nb_events *ev, const struct nb_summary *s, int exit_code, int sig,
                         const char *const *not_run, size_t n_not_run, const struct nb_remote_stats *remote,
                         const char *key, json_t *result) {
        if (!ev->f) {
                json_decref(result);
                return;
        }
        tell_pending(ev, NULL);
        json_t *names = json_array();
        for (size_t i = 0; names && i < n_not_run; i++)
                json_array_append_new(names, text(not_run[i]));
        json_t *rem = remote ? json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "hits", (json_int_t) remote->hits, "misses",
                                         (json_int_t) remote->misses, "uploads", (json_int_t) remote->uploads,
                                         "bytes_down", (json_int_t) remote->bytes_down, "bytes_up",
                                         (json_int_t) remote->bytes_up, "errors", (json_int_t) remote->errors)
                             : json_null();
        json_t *j = json_pack("{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}, s:i, s:o, s:o, s:o}", "summary", "targets",
                       (json_int_t) s->targets, "passed", (json_int_t) s->passed, "failed", (json_int_t) s->failed,
                       "timed_out", (json_int_t) s->timed_out, "interrupted", (json_int_t) s->interrupted, "errors",
                       (json_int_t) s->errors, "cached", (json_int_t) s->cached, "tests", (json_int_t) s->tests, "wall",
                       s->wall_sec, "exit_code", exit_code, "interrupted_by",
                       sig ? json_string(sig == SIGINT ? "SIGINT" : "SIGTERM") : json_null(), "not_run",
                       names ? names : json_array(), "remote", rem);
        if (j && result)
                json_object_set_new(j, key, result);
        else
                json_decref(result);
        emit(ev, "run_finished", j);
}

void nb_events_run_finished(struct nb_events *ev, const struct nb_summary *s, int exit_code, int sig,
                            const char *const *not_run, size_t n_not_run, const struct nb_remote_stats *remote,
                            json_t *result) {
        run_finished(ev, s, exit_code, sig, not_run, n_not_run, remote, "result", result);
}

void nb_events_run_failed(struct nb_events *ev, const char *command, unsigned jobs, int exit_code, const char *why) {
        if (!ev->f)
                return;
        if (!ev->started)
                nb_events_run_started(ev, command, 0, jobs);
        run_finished(ev, &(struct nb_summary) {}, exit_code, 0, NULL, 0, NULL, "error", why ? text(why) : NULL);
}

