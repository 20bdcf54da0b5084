/* SPDX-License-Identifier: MIT */
/* The shared remote cache (README "Remote cache"): Bazel's HTTP cache protocol, as
 * bazel-remote, nginx with WebDAV and commercial caches speak it:
 *
 *   GET/HEAD/PUT URL/ac/<action digest>   an REAPI ActionResult (remote.proto) whose
 *                                         output files name CAS blobs: the artifact
 *                                         (nestbox/artifact.tar.zst), junit.xml, the
 *                                         log, coverage.*; stdout is the log
 *   GET/HEAD/PUT URL/cas/<sha256>         a blob, named by the SHA-256 of its bytes
 *
 * Every byte a server sends is untrusted: sizes are capped, every blob is checked
 * against its digest before it is used or kept. Faults (down, refusing, 5xx, a stall,
 * a wrong digest) never fail a run: the first one turns the remote off for the rest of
 * the process and is reported once through nb_remote_report(). Uploads run in a
 * process of their own so they never hold up the next action. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "cache/cache_dir.h"
#include "cache/cas.h"
#include "nestbox/error.h"

struct nb_result;

#define NB_REMOTE_TIMEOUT_DEFAULT 60.0 /* seconds */

/* What the CLI parses (--remote-cache and friends, remote_cache in nestbox.json). */
struct nb_remote_options {
        const char *url;     /* NULL: no remote cache */
        bool readonly;       /* --remote-cache-readonly: reads, never writes */
        double timeout_sec;  /* --remote-timeout; 0: NB_REMOTE_TIMEOUT_DEFAULT */
        const char *ca_file; /* --remote-cache-ca: a private CA (PEM) */
        /* Send NESTBOX_REMOTE_HEADER: only to a URL the invoker gave (the flag), never
         * to one the workspace names. A netrc entry is matched by host in either case. */
        bool send_header;
};

struct nb_remote_stats {
        uint64_t hits, misses, uploads, bytes_down, bytes_up, errors;
};

struct nb_remote;

/* Checks the URL (http or https; no user, password, query or fragment: credentials
 * come from NESTBOX_REMOTE_HEADER or netrc, never from the command line) and the
 * header; connects lazily. Usage errors are classified as such. */
int nb_remote_new(const struct nb_remote_options *o, struct nb_remote **ret, struct nb_error *err);

/* Waits for pending uploads (at most the timeout), then frees. NULL is fine. */
void nb_remote_free(struct nb_remote *r);
void nb_remote_freep(struct nb_remote **r);

/* On a local miss: fetches the action's ActionResult and artifact, checks them and
 * keeps them in the local store, so that nb_result_lookup() then hits. 0 when kept;
 * -ENOENT on a miss, when the remote is off, or on a fault (remembered for
 * nb_remote_report); -ENOMEM. */
int nb_remote_fetch(struct nb_remote *r, struct nb_store *s, const char *action_digest);

/* Queues the upload of a result stored in s (res->artifact_digest set) and returns at
 * once. Nothing happens when the remote is read-only or off. */
void nb_remote_upload(struct nb_remote *r, struct nb_store *s, const struct nb_result *res);

/* Waits until every queued upload is done, at most the timeout; a timeout is a fault. */
void nb_remote_finish(struct nb_remote *r);

/* The one warning line of a run, through warn, the first time it is called after a
 * fault; nothing otherwise. */
void nb_remote_report(struct nb_remote *r, nb_cache_warn_fn warn, void *userdata);

void nb_remote_get_stats(struct nb_remote *r, struct nb_remote_stats *ret);
/* Adds counters kept elsewhere to r's: `test -j N` runs each item in a process of its
 * own, with its own copy of the remote, and folds their counters into the run's. */
void nb_remote_add_stats(struct nb_remote *r, const struct nb_remote_stats *add);

/* The counters of the run that last used a remote with this cache, for `nestbox cache
 * stats`: <cache>/last-remote.json, written (atomically) by nb_remote_save_stats once
 * the uploads are done (nb_remote_finish). load: 0, -ENOENT when there is none (or it
 * is damaged), -ENOMEM; free ret->url. */
struct nb_remote_last {
        struct nb_remote_stats stats;
        char *url;
        time_t finished;
        bool readonly;
};
int nb_remote_save_stats(struct nb_remote *r, struct nb_cache_dir *c, struct nb_error *err);
int nb_remote_load_stats(struct nb_cache_dir *c, struct nb_remote_last *ret);
