/* SPDX-License-Identifier: MIT */
/* Which warm interpreter (sandbox/zygote.c) serves an action, if any: one per (venv,
 * hash seed), started by the process that owns the run (`nestbox test` before its
 * items fork, `nestbox worker` on first use) and inherited by every item process.
 * README "Warm interpreter". */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "action/action.h"
#include "action/execute.h"
#include "cache/cache_dir.h"
#include "nestbox/sandbox.h"

/* --zygote (1) / --no-zygote (0) / neither (-1): then NESTBOX_ZYGOTE=1 (or 0) decides,
 * and without it the zygote serves where it pays: a `nestbox test` group of two or
 * more actions of one venv and seed, and every action of `nestbox worker`. */
void nb_zygote_set_mode(int on);
bool nb_zygote_enabled(void); /* not turned off */
bool nb_zygote_forced(void);  /* turned on: a group of one has a zygote too */

/* What prewarm tells its caller: with err NULL, that it builds a's venv now (which
 * target a venv build announced next is for); with err, that a's group has no zygote
 * (its actions run cold) and why. */
typedef void (*nb_zygote_note_fn)(const struct nb_action *a, const struct nb_error *err, void *userdata);

/* `nestbox test`, in the run's own process, before items fork: resolves the actions
 * (as their items would) and, per group of one (lockfile, wheelhouse, python, seed)
 * with at least two actions whose result is not in the local cache (one when
 * forced; looking no further than its first eight hits), builds its venv and starts
 * its zygote: a run of hits, and a run of one target, starts no Python. None with
 * a remote cache (a local miss may be a remote hit, which must not build a venv). */
void nb_zygote_prewarm(struct nb_action *const *actions, size_t n, struct nb_store *s, const struct nb_cache_modes *m,
                       nb_zygote_note_fn note, void *userdata);

/* `nestbox worker`: makes the socket on which its request processes ask for a
 * zygote, and returns the worker's end to poll (-1: the zygote is off; -errno).
 * A request that finds none asks, runs cold, and the requests forked after the
 * worker read it (nb_zygote_serve_ready) have it; one that failed is dropped
 * (nb_zygote_failed), its in-flight targets left to finish, and started again once. */
int nb_zygote_serve_start(void);
void nb_zygote_serve_ready(void);

/* The zygote for an action whose venv is at venv_path, or NULL (the cold path). */
struct nb_zygote *nb_zygote_for(const struct nb_action *a, struct nb_cache_dir *cache, const char *venv_path);
/* That zygote failed the action (which then runs cold): a worker drops it and
 * starts another for the actions after. */
void nb_zygote_failed(const struct nb_action *a, struct nb_cache_dir *cache, const char *venv_path);

/* Stops every zygote this process started (at exit). */
void nb_zygote_stop_all(void);
