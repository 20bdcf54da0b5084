/* SPDX-License-Identifier: MIT */
/* SHA-256 digests (OpenSSL's libcrypto), as 64 lowercase hex characters. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define NB_DIGEST_HEX_LEN 64

struct nb_hasher;

struct nb_hasher *nb_hasher_new(void);
void nb_hasher_update(struct nb_hasher *h, const void *data, size_t len);
/* Feeds a string with its length first, so ("ab","c") and ("a","bc") differ. */
void nb_hasher_update_str(struct nb_hasher *h, const char *s);
/* v as 8 little-endian bytes: the u64 of every digest and record nestbox encodes. */
void nb_u64le(unsigned char b[8], uint64_t v);
void nb_hasher_update_u64(struct nb_hasher *h, uint64_t v);
/* Feeds what identifies a file's content without reading it, as git's index does:
 * device, inode, size, mtime and ctime (which no one can set back after a write). */
struct stat;
void nb_hasher_update_file_identity(struct nb_hasher *h, const struct stat *st);
/* Writes the hex digest (NB_DIGEST_HEX_LEN + 1 bytes) and frees h. */
void nb_hasher_finish(struct nb_hasher *h, char out[NB_DIGEST_HEX_LEN + 1]);
void nb_hasher_freep(struct nb_hasher **h);

void nb_sha256_hex(const void *data, size_t len, char out[NB_DIGEST_HEX_LEN + 1]);
/* Digests the whole of fd from its current offset. */
int nb_sha256_fd(int fd, char out[NB_DIGEST_HEX_LEN + 1]);
/* nb_sha256_fd(), also writing every byte read to copy_to when copy_to >= 0 (so the
 * digest is of exactly the bytes copied); *size (may be NULL) gets the byte count. */
int nb_sha256_fd_copy(int fd, int copy_to, char out[NB_DIGEST_HEX_LEN + 1], uint64_t *size);

/* The one streaming read loop: reads fd from its current offset to the end in chunks
 * (retrying on EINTR), handing each to fn. Stops at fn's first negative return and
 * returns it; -errno when a read fails. (nb_read_fd in nestbox/fs.h is the one that
 * reads a whole, size-capped file into memory.) */
typedef int (*nb_chunk_fn)(const void *data, size_t len, void *userdata);
int nb_read_chunks(int fd, nb_chunk_fn fn, void *userdata);

/* True when s is 64 lowercase hex characters. */
int nb_is_digest(const char *s);
