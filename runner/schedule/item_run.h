/* SPDX-License-Identifier: MIT */
/* What an item's process does (nb_item_run) and what the pool's process makes of the
 * frames it sends (struct nb_item_outcome). The result travels as its record (the
 * JSON the cache keeps) and, when it was not stored, its packed artifact; a stored one
 * is read back from the cache, the path a cache hit takes. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "action/execute.h"
#include "action/result.h"
#include "cache/remote.h"
#include "schedule/pool.h"

enum {
        NB_FRAME_VENV_BUILT = 'V', /* "<digest> <seconds>" */
        NB_FRAME_WARNING = 'W',    /* one line for the user */
        NB_FRAME_REMOTE_OFF = 'F', /* the remote cache's one fault line: it is off */
        NB_FRAME_RESULT = 'R',     /* the record, with "cached" and "interrupted" */
        NB_FRAME_ARTIFACT = 'A',   /* the packed artifact of a result not stored */
        NB_FRAME_ERROR = 'E',      /* {"message", "code", "class"}: no result */
        NB_FRAME_REMOTE = 'M',     /* struct nb_remote_stats */
};

/* In the item's process: executes it->action with s and m (s->warn and the venv hook
 * are pointed at fd) and sends its frames; waits for its remote uploads. Returns the
 * process's exit status (0; 3 when the pipe broke). */
int nb_item_run(struct nb_work_item *it, struct nb_store *s, const struct nb_cache_modes *m, int fd);

struct nb_item_outcome {
        json_t *record;
        char *blob;
        size_t blob_len;
        bool failed; /* err holds why */
        struct nb_error err;
        bool has_remote;
        struct nb_remote_stats remote;
        bool repeated_fault; /* its remote fault was one the run had already had */
};

/* Keeps what f carries when it is a result, artifact, error or remote frame. */
void nb_item_outcome_frame(struct nb_item_outcome *o, const struct nb_frame *f);

/* The result the frames made: 0 with *ret filled; -ENOENT when none came (the process
 * died first); other -errno with err. */
int nb_item_outcome_result(struct nb_item_outcome *o, struct nb_store *s, struct nb_result *ret, struct nb_error *err);

void nb_item_outcome_done(struct nb_item_outcome *o);
