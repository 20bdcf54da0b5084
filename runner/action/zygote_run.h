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

/* --zygote / --no-zygote; without either, NESTBOX_ZYGOTE=1 (or 0) decides, and the
 * default is off. lazy: this process may start a zygote when an action first needs
 * one (the worker); otherwise only nb_zygote_prewarm starts them. */
void nb_zygote_set_mode(int on, bool lazy);
bool nb_zygote_enabled(void);

/* In the run's own process, before items fork: resolves a (as its item would), and
 * unless its result is in the local cache (a run of hits builds no venv and starts no
 * Python), builds its venv and starts the zygote for it, once per (lockfile,
 * wheelhouse, python, seed).
 * A zygote that cannot start leaves its actions to the cold path: -errno with err set
 * for the caller's one warning (an action that cannot even be resolved is its item's
 * to report: 0). */
int nb_zygote_prewarm(struct nb_action *a, struct nb_store *s, const struct nb_cache_modes *m, struct nb_error *err);

/* The zygote for an action whose venv is at venv_path, or NULL (the cold path). */
struct nb_zygote *nb_zygote_for(const struct nb_action *a, struct nb_cache_dir *cache, const char *venv_path);

/* Stops every zygote this process started (at exit). */
void nb_zygote_stop_all(void);
