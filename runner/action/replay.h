/* SPDX-License-Identifier: MIT */
/* Replaying a recorded action (README "Reproducing"): every run's artifact holds
 * action.json, the action as it ran (its globs expanded) with the digests it resolved
 * to, so `nestbox repro <digest>` rebuilds it from the cache alone:
 *
 *   {"schema": "nestbox.replay/v1", "digest": D, "tree": T, "venv": V,
 *    "action": <nestbox.action/v1>}
 *
 * The artifact is a CAS blob (digest-checked on read) named by the action record, and
 * the rebuilt action must digest to D again: a record that lies about its action, or
 * inputs that changed since, are refused rather than replayed as something else. A
 * target's last run is a pointer <cache>/last/<sha256(target)> holding its action
 * digest; it is a hint, checked the same way. */
#pragma once

#include "action/action.h"
#include "cache/cas.h"

#define NB_REPLAY_SCHEMA "nestbox.replay/v1"
#define NB_REPLAY_ENTRY "action.json"
#define NB_REPLAY_MIN_PREFIX 4 /* hex digits a digest prefix needs, as git's */

/* action.json of a resolved action. */
int nb_replay_record(const struct nb_action *a, char **ret);

struct nb_replay {
        struct nb_action *action;
        char digest[NB_DIGEST_HEX_LEN + 1]; /* as recorded */
        char tree[NB_DIGEST_HEX_LEN + 1];
        char venv[NB_DIGEST_HEX_LEN + 1];
        char *status; /* the recorded result's status ("FAILED"), NULL when unknown */
        /* As the artifact holds them (nb_replay_load), for a bundle: action.json and
         * result.json; NULL otherwise. */
        char *record, *result;
        size_t record_len, result_len;
};
void nb_replay_done(struct nb_replay *rp);

/* Parses action.json (untrusted: strict, as action files are). name is for messages. */
int nb_replay_parse(const char *text, size_t len, const char *name, struct nb_replay *ret, struct nb_error *err);

/* REF -> an action digest: a whole digest (as it is: a remote may hold it), a unique
 * prefix (at least NB_REPLAY_MIN_PREFIX hex digits) of one recorded in ac/, or a
 * target name (its last run). Not found and ambiguous (the candidates listed) are
 * NB_ERROR_INPUT. */
int nb_replay_find(struct nb_store *s, const char *ref, char out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err);

/* Reads the recorded action of digest from the cache (asking s->remote on a local
 * miss). */
int nb_replay_load(struct nb_store *s, const char *digest, struct nb_replay *ret, struct nb_error *err);

/* Makes the action runnable here: its tree and venv from the cache when the cache has
 * them (else from the recorded root, lockfile and wheelhouse), then resolves it. When
 * strict, its digest must be the recorded one (an error saying what changed
 * otherwise); a bundle on another machine is not strict, since its interpreter is
 * another file. */
int nb_replay_prepare(struct nb_replay *rp, struct nb_cache_dir *cache, bool strict, struct nb_error *err);

/* Remembers digest as target's last run (best effort: a failure to write is not an
 * error, the cache is an optimisation). */
void nb_replay_note_last(struct nb_cache_dir *cache, const char *target, const char *digest);
