/* SPDX-License-Identifier: MIT */
/* An action: one run of one target, named by the digest of everything that can change
 * its result (DESIGN.md): executor version and policy, interpreter identity, the
 * lockfile, the input tree, pytest arguments, environment, shard, seed, coverage.
 * The digest is computed without starting Python, so a cache hit never does. */
#pragma once

#include <stdbool.h>

#include "cache/artifact.h"
#include "cache/cas.h"
#include "cache/digest.h"
#include "action/run_target.h"
#include "workspace/tree.h"
#include "workspace/workspace.h"

struct nb_action {
        const struct nb_target *target;
        struct nb_tree tree;
        char tree_digest[NB_DIGEST_HEX_LEN + 1];
        char digest[NB_DIGEST_HEX_LEN + 1];
        uint64_t seed;
        bool coverage;
};

/* Collects the target's declared files and computes the action digest. */
int nb_action_prepare(const struct nb_workspace *ws, const struct nb_target *t, const struct nb_run_options *o,
                      struct nb_action *a, struct nb_error *err);
void nb_action_done(struct nb_action *a);

/* What a finished or replayed action gives: the artifact (junit.xml, log, coverage.*,
 * undeclared/..., result.json) and the parsed report. */
struct nb_action_result {
        enum nb_target_status status;
        struct nb_junit_report *report;
        struct nb_artifact artifact;
        double wall_sec;
        uint64_t seed;
        char *why;
        bool cached;
};
void nb_action_result_done(struct nb_action_result *r);

/* Turns a finished run into a result with its artifact. */
int nb_action_result_from_run(const struct nb_action *a, struct nb_target_run *run, struct nb_action_result *ret,
                              struct nb_error *err);

/* Stores the result under the action's digest: the artifact in cas/, the record in ac/. */
int nb_action_store(struct nb_store *s, const struct nb_action *a, const struct nb_action_result *r,
                    struct nb_error *err);

/* Looks the action up: 0 with *ret filled on a hit, -ENOENT on a miss (damaged entries
 * are removed, reported through the store's warn callback, and are misses). */
int nb_action_lookup(struct nb_store *s, const struct nb_action *a, struct nb_action_result *ret, struct nb_error *err);
