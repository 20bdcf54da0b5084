/* SPDX-License-Identifier: MIT */
/* The digest memo: the SHA-256 of each declared file remembered under its identity
 * (device, inode, size, mtime, ctime; as git's index and the wheel hashes do), so an
 * unchanged workspace is stat'ed, not read; and the listing of each directory a glob
 * walked, under the directory's identity (as git's untracked cache does), so an
 * unchanged directory is stat'ed, not listed. Any entry made, removed or renamed in a
 * directory moves its mtime and ctime.
 *
 * One memo per workspace root (its device and inode), kept as one record in the action
 * cache (ac/, so it is digest-checked, written atomically and aged by gc like any
 * record). A damaged or unreadable memo is a memo with nothing in it: it can cost a
 * re-hash, never a wrong digest.
 *
 * Racy entries (git's "racily clean" problem): a write within the filesystem's
 * timestamp granularity of our stat leaves the identity as it was. Any write changes
 * ctime, which no one can set back; so a file is remembered only when its ctime is
 * older, by more than the granularity, than the moment nestbox started reading it
 * (nb_digest_memo_now()). A file written that recently is hashed again next time. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "cache/digest.h"

struct nb_store;
struct nb_digest_memo;

/* Loads the memo of the workspace whose root is root_fd. Never fails but for ENOMEM:
 * a missing or damaged memo starts empty. */
int nb_digest_memo_open(struct nb_store *s, int root_fd, struct nb_digest_memo **ret);

/* True when m is the memo of the root root_fd. */
bool nb_digest_memo_is_for(const struct nb_digest_memo *m, int root_fd);

/* The clock a file's ctime is compared with: read it before opening the file. */
int64_t nb_digest_memo_now(void);

/* The remembered digest of the file st describes (a regular file), or false. */
bool nb_digest_memo_find(struct nb_digest_memo *m, const struct stat *st, char out[NB_DIGEST_HEX_LEN + 1]);

/* Remembers the digest of the file st describes, read from read_at on
 * (nb_digest_memo_now()); a file changed too recently is not remembered. */
void nb_digest_memo_add(struct nb_digest_memo *m, const struct stat *st, int64_t read_at,
                        const char digest[NB_DIGEST_HEX_LEN + 1]);

/* The listing remembered for the directory st describes (a blob the caller made; valid
 * until m is next changed), or NULL. */
const void *nb_digest_memo_find_listing(struct nb_digest_memo *m, const struct stat *st, size_t *len);

/* Remembers the listing of the directory st describes (st taken before listing it),
 * listed from read_at on; one changed too recently is not remembered. */
void nb_digest_memo_add_listing(struct nb_digest_memo *m, const struct stat *st, int64_t read_at, const void *data,
                                size_t len);

/* Files looked up so far, and how many of them it knew. */
void nb_digest_memo_stats(const struct nb_digest_memo *m, uint64_t *looked_up, uint64_t *known);

/* Writes the memo back now when it changed since it was opened or last flushed: a
 * process forked for one target (the -j pool) may end without closing it. */
void nb_digest_memo_flush(struct nb_digest_memo *m);

/* Writes the memo back when it changed, then frees it. Best effort: a memo that
 * cannot be written is only a slower next run. */
void nb_digest_memo_close(struct nb_digest_memo *m);
void nb_digest_memo_closep(struct nb_digest_memo **m);
