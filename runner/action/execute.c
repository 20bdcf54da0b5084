/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/execute.h"
#include "action/replay.h"
#include "action/run.h"
#include "action/timings.h"
#include "cache/remote.h"
#include "nestbox/cleanup.h"

int nb_action_execute(struct nb_action *a, struct nb_store *s, const struct nb_cache_modes *m, struct nb_result *ret,
                      struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        int r = nb_action_resolve(a, s->dir, err);
        if (r < 0)
                return r;
        if (!m->no_cache && !m->force) {
                uint64_t t0 = nb_timing_now();
                r = nb_result_lookup(s, a, ret, err);
                /* A local miss asks the remote, which keeps what it finds locally. */
                if (r == -ENOENT && s->remote && nb_remote_fetch(s->remote, s, a->resolved.digest) == 0) {
                        nb_error_clear(err);
                        r = nb_result_lookup(s, a, ret, err);
                }
                nb_remote_report(s->remote, s->warn, s->userdata);
                nb_timing_add(NB_PHASE_LOOKUP, t0);
                if (r == 0 && nb_result_replayable(ret, m)) {
                        nb_replay_note_last(s->dir, a->target, a->resolved.digest);
                        return 0;
                }
                nb_result_done(ret);
                if (r == -ENOMEM)
                        return r;
                nb_error_clear(err);
        }
        if ((r = nb_action_run(a, s->dir, m->cancel, ret, err)) < 0) {
                nb_result_done(ret);
                return nb_error_wrap(err, r, "target \"%s\"", a->target);
        }
        nb_action_keep(s, m, ret);
        return 0;
}

bool nb_result_replayable(const struct nb_result *r, const struct nb_cache_modes *m) {
        return r->status == NB_TARGET_PASSED || r->status == NB_TARGET_FLAKY || m->cache_failures;
}

void nb_action_keep(struct nb_store *s, const struct nb_cache_modes *m, struct nb_result *ret) {
        /* Nor a result that finished while the cancel was on its way: a ^C during the
         * set-up can reach an item's process only after its sandbox has ended. */
        if (m->no_cache || ret->interrupted || (m->cancel && *m->cancel))
                return;
        uint64_t t0 = nb_timing_now();
        _cleanup_error_ struct nb_error serr = NB_ERROR_INIT;
        if (nb_result_store(s, ret, &serr) < 0 && s->warn) {
                _cleanup_free_ char *line = NULL;
                if (asprintf(&line, "result of \"%s\" not cached: %s", ret->target, nb_error_message(&serr)) >= 0)
                        s->warn(line, s->userdata);
        } else {
                /* `nestbox repro TARGET` replays this one. */
                nb_replay_note_last(s->dir, ret->target, ret->action);
                if (s->remote && nb_result_replayable(ret, m))
                        nb_remote_upload(s->remote, s, ret);
        }
        nb_remote_report(s->remote, s->warn, s->userdata);
        nb_timing_add(NB_PHASE_STORE, t0);
}
