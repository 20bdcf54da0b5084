/* SPDX-License-Identifier: MIT */
/* One `nestbox run` invocation as a function: what cmd_run and each of the worker's
 * requests call. It prints nothing; the caller prints the reply. */
#pragma once

#include <stdbool.h>

#include "cache/remote.h"

struct nb_run_context {
        const char *cache_arg; /* the worker's --cache (NULL: the default cache) */
        bool in_worker;        /* then --cache in a request is refused */
        const struct nb_remote_options *remote; /* the worker's --remote-cache and friends */
};

struct nb_run_reply {
        char *text;    /* the result JSON (one line), the error line, or the manual */
        int exit_code; /* as `nestbox run` exits */
        bool failed;   /* text is "nestbox: <error>" */
        bool help;     /* text is the manual */
        bool in_events; /* --events -: the result went to stdout in run_finished; print nothing */
};

/* argv[0] is the verb ("run"). Always returns 0 with reply filled (text NULL only when
 * out of memory). */
int nb_run_request(int argc, char **argv, const struct nb_run_context *ctx, struct nb_run_reply *reply);
void nb_run_reply_done(struct nb_run_reply *r);
