/* SPDX-License-Identifier: MIT */
/* Shared between cas.c (reads and writes) and cas_maint.c (stats, gc, verify): how an
 * entry is named and how a stored file is checked, so a read and `cache verify` can
 * never disagree about what "damaged" means. */
#pragma once

#include <stdbool.h>

#include "cache/cas.h"

/* "nestbox-ac 1 " + 64 hex + "\n" */
#define NB_AC_MAGIC "nestbox-ac 1 "
#define NB_AC_HEADER_LEN (sizeof(NB_AC_MAGIC) - 1 + NB_DIGEST_HEX_LEN + 1)

/* Longest entry path relative to the cache root: "venvs/" or "cas/ab/" plus a digest. */
#define NB_ENTRY_REL_MAX 96

/* Writes "cas/ab/<digest>", "ac/ab/<digest>", "venvs/<digest>" or "trees/<digest>" into
 * rel. -EINVAL for an unknown namespace or a digest that is not 64 lowercase hex. */
int nb_cas_entry_rel(const char *ns, const char *digest, char rel[NB_ENTRY_REL_MAX]);

/* Checks an open cas blob (from its current offset) against its digest, or an open ac
 * record against its own header. 0 when good, 1 when damaged (*why says how), -errno
 * when it could not be read. */
int nb_cas_check_fd(int fd, const char *digest, const char **why);
int nb_ac_check_fd(int fd, const char **why);

/* Removes a damaged entry and reports it once through s->warn. When fd >= 0 the file is
 * only unlinked if it is still the one that was read (another process may have
 * replaced it with a good copy since). */
void nb_cas_drop_damaged(struct nb_store *s, const char *rel, int fd, const char *why, bool remove);

