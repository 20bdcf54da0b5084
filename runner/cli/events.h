/* SPDX-License-Identifier: MIT */
/* --events FILE|-: JSON lines as things happen (nestbox.events/v1, schema in
 * runner/action/schema/events.schema.json), for a build tool's UI. One object per
 * line, flushed as written, each with "schema", "event" and "time" (Unix seconds). */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "action/result.h"
#include "cache/remote.h"
#include "cli/summary.h"

#define NB_EVENTS_SCHEMA "nestbox.events/v1"

struct nb_events {
        FILE *f;   /* NULL: no --events */
        int error; /* the errno of the first event that could not be written, 0 */
        bool started; /* run_started was written */
        /* venv_built of venvs built before their target started (the warm
         * interpreter's): each told after its target's target_started. */
        struct nb_pending_venv *pending;
        size_t n_pending, cap_pending;
};

/* Opens --events arg ("-": stdout); a problem is a usage error. */
int nb_events_open(const char *arg, struct nb_events *ev, struct nb_error *err);
void nb_events_close(struct nb_events *ev);

void nb_events_run_started(struct nb_events *ev, const char *command, size_t items, unsigned jobs);
void nb_events_venv_built(struct nb_events *ev, const char *target, const char *digest, double seconds);
/* A venv built for target before any of its items started: venv_built waits for the
 * target's first target_started (or, when none comes, for run_finished). */
void nb_events_venv_built_early(struct nb_events *ev, const char *target, const char *digest, double seconds);
void nb_events_target_started(struct nb_events *ev, const char *target, unsigned shard_index, unsigned shard_count,
                              unsigned run);
/* target_cached (a replay), one testcase per testcase, then target_finished. */
void nb_events_result(struct nb_events *ev, const struct nb_result *res);
/* A target that gave no result: target_finished with status "ERROR" and why. */
void nb_events_target_error(struct nb_events *ev, const char *target, unsigned shard_index, unsigned shard_count,
                            unsigned run, const char *why);
/* A run that ends before it began (bad input, an unusable cache): run_started, if
 * it was not written yet, and run_finished with exit_code and error (why; NULL when
 * what went wrong was printed only), so a reader always sees the run end. */
void nb_events_run_failed(struct nb_events *ev, const char *command, unsigned jobs, int exit_code, const char *why);
/* After run_finished: 0, or the exit code once it has said in one line that events
 * were lost (a full disk: a build tool reading them would wait for the end). */
int nb_events_check(const struct nb_events *ev, const char *arg);
/* The summary, the exit code, what was not run when interrupted (sig 0: it was not),
 * the remote cache's counters (NULL: no remote cache) and, for `run`, the result
 * (taken; NULL: none). */
void nb_events_run_finished(struct nb_events *ev, const struct nb_summary *s, int exit_code, int sig,
                            const char *const *not_run, size_t n_not_run, const struct nb_remote_stats *remote,
                            json_t *result);
