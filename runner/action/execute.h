/* SPDX-License-Identifier: MIT */
/* One action from start to result, as `nestbox test`, `nestbox run` and the worker all
 * do it: resolve, a cache hit replays the result without starting Python, a miss runs
 * it and stores the result. */
#pragma once

#include <signal.h>
#include <stdbool.h>

#include "action/action.h"
#include "action/result.h"
#include "cache/cas.h"
#include "cache/remote.h"

struct nb_cache_modes {
        bool no_cache;       /* neither read nor write the result cache */
        bool force;          /* run even when cached (and store the new result) */
        bool cache_failures; /* replay cached failures too (else only passes) */
        /* NULL, or the cell that makes runs cancellable (nb_sandbox_config.cancel): an
         * interrupted result is returned (interrupted set) but never stored. */
        volatile sig_atomic_t *cancel;
        struct nb_remote_options remote; /* --remote-cache and friends (url NULL: none) */
};

/* With s->remote: a local miss asks the remote (what it serves is checked and kept
 * locally, then replayed from there); a result stored after a run is queued for
 * upload when it passed (or with cache_failures). Remote faults are never errors:
 * their one warning goes through s->warn.
 * A result that cannot be stored (a full disk) is still returned, with one line
 * through s->warn: the cache is an optimisation, never the reason a run fails. */
int nb_action_execute(struct nb_action *a, struct nb_store *s, const struct nb_cache_modes *m, struct nb_result *ret,
                      struct nb_error *err);

/* Whether a cached result of this status is replayed: a pass, a FLAKY (cached as
 * flaky: its failed attempts are in its report), a failure with cache_failures. */
bool nb_result_replayable(const struct nb_result *r, const struct nb_cache_modes *m);

/* Stores a finished result under r->action (and queues its upload) as
 * nb_action_execute() does; nothing with no_cache or when it was interrupted. A
 * failure to store is one line through s->warn, never an error. */
void nb_action_keep(struct nb_store *s, const struct nb_cache_modes *m, struct nb_result *r);
