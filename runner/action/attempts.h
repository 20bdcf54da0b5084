/* SPDX-License-Identifier: MIT */
/* Runs and attempts of one target (README, "Flaky tests"): --runs-per-test N runs it
 * N times, each run its own action (its run number and seed in the digest, so never a
 * cache hit of another); --attempts N retries a failed run up to N times in all, only
 * its failed tests when the driver recorded their node ids, keeping the run's seed.
 * A run that fails and then passes is FLAKY; its report carries the failed attempts
 * as Surefire's <flakyFailure>/<flakyError>, a run that never passes its later
 * failures as <rerunFailure>/<rerunError>. The folded result is stored under the
 * first attempt's digest, so it replays as it ended (cached as flaky).
 *
 * Library code: each run is a work item of `nestbox test` (schedule/), whose process
 * calls nb_action_execute_attempts(); the caller prints and picks exit codes. */
#pragma once

#include <stdbool.h>

#include "action/execute.h"

/* A retry selects at most this many node ids (they travel in the driver's argv);
 * more, and the whole target runs again. */
#define NB_RETRY_MAX_IDS 1000u
#define NB_RETRY_MAX_ID_BYTES (256u * 1024u)

/* --until-failure without --max-runs. */
#define NB_UNTIL_FAILURE_DEFAULT_RUNS 100u

/* The action of a retry of a: the same action (run, seed, shard, everything) with
 * this attempt number, keeping only the tests select names (NULL: all). Built
 * through the action's JSON, as `nestbox run` would read it. */
int nb_action_retry(const struct nb_action *a, unsigned attempt, char **select, struct nb_action **ret,
                    struct nb_error *err);

/* nb_action_execute() of a (attempt 1) and, while it fails, of its retries, up to
 * attempts in all: the result after the last attempt, folded as above. What each
 * work item's process runs. */
int nb_action_execute_attempts(struct nb_action *a, unsigned attempts, struct nb_store *s,
                               const struct nb_cache_modes *m, struct nb_result *ret, struct nb_error *err);

/* Whether a result is a failure a retry or --until-failure cares about. */
static inline bool nb_result_failed(const struct nb_result *r) {
        return r->status == NB_TARGET_FAILED || r->status == NB_TARGET_TIMEOUT;
}
