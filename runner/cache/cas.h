/* SPDX-License-Identifier: MIT */
/* The content-addressed store and the action cache (HACKING.md, "Cache and artifacts"):
 *
 *   <cache>/cas/ab/abcdef...   a blob, named by the SHA-256 of its bytes
 *   <cache>/ac/ab/abcdef...    action digest -> result record (JSON), written with a
 *                              header line holding the SHA-256 of the body
 *
 * Every write is tmp/ + fsync + rename (nb_write_file_atomic semantics, via the cache's
 * tmp/ directory), so a crash at any moment leaves the old entry or the new one, never
 * half of one. Every read checks the digest; a bad entry is removed, reported once
 * through the warn callback, and treated as a miss. Several processes may share one
 * cache: the same blob written twice is the same file. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache_dir.h"
#include "cache/digest.h"
#include "nestbox/error.h"

/* Called once per damaged entry found (and removed) during a read: "cache: <path>:
 * <what was wrong>; removed". May be NULL. */
typedef void (*nb_cache_warn_fn)(const char *message, void *userdata);

struct nb_remote;

struct nb_store {
        struct nb_cache_dir *dir;
        nb_cache_warn_fn warn;
        void *userdata;
        struct nb_remote *remote; /* the shared remote cache (cache/remote.h), or NULL */
};

/* What a write must survive. kill -9 never leaves half an entry either way (tmp +
 * rename); the difference is a power cut.
 * NB_DURABLE: file and directories fsynced. The default of nb_cas_put and nb_ac_put.
 * NB_RECOVERABLE: renamed into place unsynced: a copy of what a remote cache serves
 *   (cache/remote.c). A power cut may lose it or leave it empty or torn; every read
 *   checks an entry against its digest, so that is damage removed and a miss (the
 *   remote serves it again), never a wrong result. */
enum nb_durability {
        NB_DURABLE,
        NB_RECOVERABLE,
};

/* Stores data; writes its digest to digest_out. Existing identical blob: no write
 * (a durable put fsyncs it, in case a recoverable one left it).
 * -ENOSPC and friends come back with err filled; the cache is left as it was. */
int nb_cas_put(struct nb_store *s, const void *data, size_t len, char digest_out[NB_DIGEST_HEX_LEN + 1],
               struct nb_error *err);
int nb_cas_put_as(struct nb_store *s, const void *data, size_t len, enum nb_durability durability,
                  char digest_out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err);

/* Reads the blob; -ENOENT when absent or damaged (then removed, warned once). */
int nb_cas_get(struct nb_store *s, const char *digest, char **data, size_t *len, struct nb_error *err);

/* Stores the action's result record (any bytes, JSON by convention). */
int nb_ac_put(struct nb_store *s, const char *action_digest, const char *record, size_t len, struct nb_error *err);
int nb_ac_put_as(struct nb_store *s, const char *action_digest, const char *record, size_t len,
                 enum nb_durability durability, struct nb_error *err);

/* Reads it back; -ENOENT when absent or damaged (removed, warned once). */
int nb_ac_get(struct nb_store *s, const char *action_digest, char **record, size_t *len, struct nb_error *err);

/* Marks an entry as used now (for LRU gc): updates its atime/mtime. */
void nb_store_touch(struct nb_store *s, const char *ns, const char *digest);

struct nb_cache_stats {
        uint64_t cas_entries, cas_bytes;
        uint64_t ac_entries, ac_bytes;
        uint64_t venv_entries, venv_bytes;
        uint64_t tree_entries, tree_bytes;
        uint64_t tmp_entries, tmp_bytes;
};
int nb_cache_stats(struct nb_cache_dir *c, struct nb_cache_stats *st, struct nb_error *err);

/* Removes least-recently-used entries (cas, ac, venvs, trees; by mtime, oldest first)
 * until the total is at most max_bytes; also removes tmp/ leftovers older than an hour.
 * *freed gets the bytes removed. */
int nb_cache_gc(struct nb_cache_dir *c, uint64_t max_bytes, uint64_t *freed, struct nb_error *err);

/* Checks every entry: cas blobs against their names, ac records against their header,
 * venvs for their completion marker, trees for being a directory (only whole trees are
 * ever renamed in, so re-digesting them would find nothing). Each damaged entry is
 * reported through warn; with repair it is removed. Returns the number of damaged
 * entries (>= 0) or -errno. */
int nb_cache_verify(struct nb_store *s, bool repair, struct nb_error *err);
