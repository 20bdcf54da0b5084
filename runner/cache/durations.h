/* SPDX-License-Identifier: MIT */
/* Durations learned from results, kept in the cache for planning (README, "Shards").
 *
 *   <cache>/durations/<sha256(target)>.json  learned: every test's last duration
 *   <cache>/plans/<group digest>.json        pinned: what the shards of one group got,
 *                                            and what --machine plans a group from
 *
 * Both are nestbox.durations/v1: {"schema": ..., "tests": {"classname::name": ms}}, the
 * key being junit.xml's, so nestbox learns from the report it already parses and the
 * driver computes the same key from a pytest node id. A learned file changes after
 * every run; a pin never changes: the shards of an action group (the same target,
 * inputs and shard count; action/shard_plan.h) always get the same durations, so the
 * same split, so the same digests, and a second identical run is a cache hit. A new
 * group (a source changed, another shard count) pins what was learned by then. The
 * pins unused for 30 days are removed when a new one is made (a use touches its pin).
 * The files are the invoker's cache but the keys come from tests: they are read with a
 * size cap and checked value by value. Concurrent writers: tmp + rename, the last
 * one wins (a lost update costs balance, never correctness). */
#pragma once

#include <jansson.h>

#include "action/action.h"
#include "action/result.h"
#include "cache/cache_dir.h"
#include "nestbox/error.h"

#define NB_DURATIONS_SCHEMA "nestbox.durations/v1"
#define NB_DURATIONS_MAX_SIZE (64u * 1024u * 1024u)
#define NB_DURATIONS_MAX_TESTS 1000000u

/* The learned durations of target: *ret a JSON object {key: ms}, empty when nothing
 * was learned (or the file is unusable). */
int nb_durations_load(struct nb_cache_dir *c, const char *target, json_t **ret);

/* Adds what a run measured (its junit.xml's testcases) to the learned durations of its
 * target. A cached result teaches nothing. a (may be NULL) is the action that ran:
 * of a shard that passed whole, the tests its plan gave it that it did not run are
 * forgotten (they are gone, or renamed). */
int nb_durations_learn(struct nb_cache_dir *c, const struct nb_result *r, const struct nb_action *a,
                       struct nb_error *err);

/* Parses nestbox.durations/v1 text: *ret its "tests" object. -EINVAL when malformed. */
int nb_durations_parse(const char *text, size_t len, json_t **ret);

/* The canonical text of tests (keys sorted, compact): what a shard is handed. */
int nb_durations_text(json_t *tests, char **ret);

/* Seconds in all, for planning work items across machines. */
double nb_durations_total(json_t *tests);

/* The durations pinned for group (a digest hex), pinning target's learned ones when
 * there is no pin yet. *ret_text is canonical text, NULL when there are none;
 * *ret_tests (when ret_tests is not NULL) the same parsed. */
int nb_durations_pin(struct nb_cache_dir *c, const char *group, const char *target, char **ret_text,
                     json_t **ret_tests, struct nb_error *err);
