/* SPDX-License-Identifier: MIT */
/* What `nestbox test` shows while it runs (progress.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "action/result.h"
#include "schedule/item.h"

enum nb_color_mode { NB_COLOR_AUTO, NB_COLOR_ALWAYS, NB_COLOR_NEVER };

/* --color=auto|always|never; -1 when it is none of them. */
int nb_color_parse(const char *arg);
/* always, or auto on a terminal with NO_COLOR unset (or empty, as no-color.org says). */
bool nb_color_wanted(enum nb_color_mode m);

struct nb_progress;

/* live: the status block is drawn (stdout is a terminal whose TERM is not "dumb");
 * otherwise every call but the counting ones does nothing. */
struct nb_progress *nb_progress_new(const struct nb_work_item *items, size_t n, unsigned jobs);
void nb_progress_free(struct nb_progress *p);
bool nb_progress_live(const struct nb_progress *p);

void nb_progress_started(struct nb_progress *p, const struct nb_work_item *it);
/* res NULL: it gave no result (an error). */
void nb_progress_finished(struct nb_progress *p, const struct nb_work_item *it, const struct nb_result *res);
/* Erases the block, so a line can be printed where it was; nb_progress_show redraws it. */
void nb_progress_hide(struct nb_progress *p);
void nb_progress_show(struct nb_progress *p);
/* Erases the block for good; on a terminal repeats the lines of the targets that did
 * not pass, so they are on screen above the summary. */
void nb_progress_end(struct nb_progress *p);
