/* SPDX-License-Identifier: MIT */
/* Inside the worker's watched digests: the report records (digest_watch_record.c),
 * written by a request's process, read by the worker. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/digest_watch.h"

/* A growable record; oom set once a put failed (then it is not sent). */
struct buf {
        unsigned char *p;
        size_t len, cap;
        bool oom;
};

void nb_wr_put(struct buf *b, const void *data, size_t len);
void nb_wr_put_u32(struct buf *b, uint32_t v);
void nb_wr_put_u64(struct buf *b, uint64_t v);
void nb_wr_put_str(struct buf *b, const char *s, size_t len);
/* A tree part: strv sources, strv tests, the files, the tree digest. */
void nb_wr_put_tree(struct buf *b, const struct nb_tree *tree, char **sources, char **tests,
                    const char digest[NB_DIGEST_HEX_LEN + 1]);

/* Reading one back, every length checked: bad is set at the first that does not fit. */
struct reader {
        const unsigned char *p;
        size_t left;
        bool bad;
};

const unsigned char *nb_wr_take(struct reader *r, size_t len);
uint32_t nb_wr_get_u32(struct reader *r);
uint64_t nb_wr_get_u64(struct reader *r);
/* A new C string; NULL when bad or out of memory. */
char *nb_wr_get_str(struct reader *r);
/* A tree part into the collection's results; -EINVAL when it is not one. */
int nb_wr_parse_tree(const unsigned char *data, size_t len, struct nb_tree *tree, char ***ret_sources,
                     char ***ret_tests, char digest[NB_DIGEST_HEX_LEN + 1]);
