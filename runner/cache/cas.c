/* SPDX-License-Identifier: MIT */
/* Reads and writes of the content-addressed store and the action cache (cas.h).
 * Stats, gc and verify are in cas_maint.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cache/cas-internal.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

/* A blob larger than this is not something nestbox stored (artifacts are capped at
 * 1 GiB): reading it would only exhaust memory. */
#define CAS_MAX_BLOB ((size_t) 2 * 1024 * 1024 * 1024)

int nb_cas_entry_rel(const char *ns, const char *digest, char rel[NB_ENTRY_REL_MAX]) {
        if (!ns || !nb_is_digest(digest))
                return -EINVAL;
        int n;
        if (strcmp(ns, "cas") == 0 || strcmp(ns, "ac") == 0)
                n = snprintf(rel, NB_ENTRY_REL_MAX, "%s/%.2s/%s", ns, digest, digest);
        else if (strcmp(ns, "venvs") == 0 || strcmp(ns, "trees") == 0)
                n = snprintf(rel, NB_ENTRY_REL_MAX, "%s/%s", ns, digest);
        else
                return -EINVAL;
        return n > 0 && n < NB_ENTRY_REL_MAX ? 0 : -EINVAL;
}

int nb_cas_check_fd(int fd, const char *digest, const char **why) {
        char got[NB_DIGEST_HEX_LEN + 1];
        int r = nb_sha256_fd(fd, got);
        if (r < 0)
                return r;
        if (strcmp(got, digest) != 0) {
                *why = "content does not match its digest";
                return 1;
        }
        return 0;
}

/* Parses the header line; 0 and the body's digest in want, or 1 (damaged). */
static int parse_ac_header(const char *buf, size_t len, char want[NB_DIGEST_HEX_LEN + 1], const char **why) {
        const size_t magic = sizeof(NB_AC_MAGIC) - 1;
        if (len < NB_AC_HEADER_LEN || memcmp(buf, NB_AC_MAGIC, magic) != 0 || buf[NB_AC_HEADER_LEN - 1] != '\n') {
                *why = "truncated or malformed record header";
                return 1;
        }
        memcpy(want, buf + magic, NB_DIGEST_HEX_LEN);
        want[NB_DIGEST_HEX_LEN] = 0;
        if (!nb_is_digest(want)) {
                *why = "truncated or malformed record header";
                return 1;
        }
        return 0;
}

int nb_ac_check_fd(int fd, const char **why) {
        char header[NB_AC_HEADER_LEN];
        ssize_t n = nb_read_full(fd, header, sizeof(header));
        if (n < 0)
                return (int) n;
        char want[NB_DIGEST_HEX_LEN + 1];
        int r = parse_ac_header(header, (size_t) n, want, why);
        if (r != 0)
                return r;
        r = nb_cas_check_fd(fd, want, why);
        if (r == 1)
                *why = "record body does not match its header (truncated or altered)";
        return r;
}

void nb_cas_drop_damaged(struct nb_store *s, const char *rel, int fd, const char *why, bool remove) {
        struct nb_cache_dir *c = s->dir;
        const char *outcome = "";
        _cleanup_free_ char *failure = NULL;
        if (remove) {
                struct stat a, b;
                bool same = true;
                /* A concurrent put may have renamed a good copy over the bad one since
                 * we read it: then there is nothing left to remove. */
                if (fd >= 0)
                        same = fstat(fd, &a) == 0 && fstatat(c->fd, rel, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
                               a.st_dev == b.st_dev && a.st_ino == b.st_ino;
                int r = same ? nb_rm_rf_at(c->fd, rel) : 0;
                if (r < 0 && asprintf(&failure, "; cannot remove it: %s", strerror(-r)) < 0)
                        failure = NULL;
                outcome = !same ? "; already replaced by another writer"
                          : r < 0 ? (failure ? failure : "; cannot remove it") : "; removed";
        }
        if (!s->warn)
                return;
        _cleanup_free_ char *msg = NULL;
        if (asprintf(&msg, "cache: %s/%s: %s%s", c->path, rel, why, outcome) < 0)
                return;
        s->warn(msg, s->userdata);
}

void nb_store_touch(struct nb_store *s, const char *ns, const char *digest) {
        char rel[NB_ENTRY_REL_MAX];
        if (nb_cas_entry_rel(ns, digest, rel) < 0)
                return;
        /* Best effort by design: a failed touch only makes the entry look older to gc. */
        (void) nb_cache_use_touch(s->dir->fd, rel, -1);
}

/* A name in tmp/ no other writer can pick: our pid and 64 random bits. */
static int tmp_name(const char *ns, char **ret) {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t) sizeof(rnd)) {
                /* No entropy yet (early boot): O_EXCL still guarantees we never share. */
                struct timespec ts;
                (void) clock_gettime(CLOCK_MONOTONIC, &ts);
                rnd = (uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 30) ^ (uint64_t) random();
        }
        return asprintf(ret, "tmp/%s.%d.%016llx", ns, (int) getpid(), (unsigned long long) rnd) < 0 ? -ENOMEM : 0;
}

static int fsync_at(int dirfd, const char *rel) {
        _cleanup_close_ int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

/* Removes the temporary file on every path but a successful rename. */
struct tmp_file {
        int dirfd;
        char *rel;
};

static void tmp_file_cleanup(struct tmp_file *t) {
        if (t->rel) {
                int saved = errno;
                (void) unlinkat(t->dirfd, t->rel, 0);
                errno = saved;
        }
        free(t->rel);
}

/* The one write protocol: tmp/<unique>, write, fsync, rename into ns/ab/<digest>,
 * fsync of the fan-out directory. A crash at any moment leaves the old entry or the
 * new one; a failed write (ENOSPC, EDQUOT, EIO) leaves only what was there before.
 * NB_RECOVERABLE leaves out the fsyncs, never the rename: kill -9 still leaves one
 * entry or the other, and what a power cut may tear is read as damage (cas.h). */
static int store(struct nb_store *s, const char *ns, const char *digest, const struct iovec *iov, size_t n_iov,
                 enum nb_durability durability, struct nb_error *err) {
        bool sync = durability == NB_DURABLE;
        struct nb_cache_dir *c = s->dir;
        char rel[NB_ENTRY_REL_MAX];
        if (nb_cas_entry_rel(ns, digest, rel) < 0)
                return nb_error_setx(err, EINVAL, "cache: '%s' is not a digest", digest);
        _cleanup_(tmp_file_cleanup) struct tmp_file tmp = { c->fd, NULL };
        if (tmp_name(ns, &tmp.rel) < 0)
                return nb_error_set(err, ENOMEM, "cache");
        /* Read-only: an entry is never modified in place, only replaced. */
        _cleanup_close_ int fd = openat(c->fd, tmp.rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
        if (fd < 0) {
                int e = errno;
                free(TAKE_PTR(tmp.rel)); /* nothing was created */
                return nb_error_set(err, e, "cache %s: storing %s", c->path, rel);
        }
        int r = 0;
        for (size_t i = 0; i < n_iov && r >= 0; i++)
                r = nb_write_all(fd, iov[i].iov_base, iov[i].iov_len);
        if (r >= 0 && sync && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = -errno; /* NFS and quotas may report a failed write only here */
        if (r < 0)
                return nb_error_set(err, r, "cache %s: storing %s (nothing stored)", c->path, rel);

        /* "cas/ab": made on first use; its own entry in cas/ must be durable too. */
        char fanout[8];
        snprintf(fanout, sizeof(fanout), "%s/%.2s", ns, digest);
        if (mkdirat(c->fd, fanout, 0755) == 0) {
                r = sync ? fsync_at(c->fd, ns) : 0;
                if (r < 0)
                        return nb_error_set(err, r, "cache %s: syncing %s", c->path, ns);
        } else if (errno != EEXIST)
                return nb_error_set(err, errno, "cache %s: creating %s", c->path, fanout);
        if (renameat(c->fd, tmp.rel, c->fd, rel) < 0)
                return nb_error_set(err, errno, "cache %s: storing %s (nothing stored)", c->path, rel);
        free(TAKE_PTR(tmp.rel)); /* renamed: nothing left to clean up */
        r = sync ? fsync_at(c->fd, fanout) : 0;
        if (r < 0)
                return nb_error_set(err, r, "cache %s: syncing %s", c->path, fanout);
        return 0;
}

/* The blob at rel, open, when it is whole: a regular file of len bytes whose content
 * has the digest (hashing it costs less than the write and fsyncs it saves); else -1. */
static int open_whole(struct nb_store *s, const char *rel, const char *digest, size_t len) {
        _cleanup_close_ int fd = nb_open_beneath(s->dir->fd, rel, O_RDONLY | O_NONBLOCK, 0);
        struct stat st;
        const char *why = NULL;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size != (uint64_t) len ||
            nb_cas_check_fd(fd, digest, &why) != 0)
                return -1;
        return TAKE_FD(fd);
}

/* A blob already in place (fd) that a durable put relies on: a recoverable write may
 * have left it (and its name in the fan-out directory) unsynced. */
static int make_durable(struct nb_store *s, int fd, const char *digest) {
        if (fsync(fd) < 0)
                return -errno;
        char fanout[8];
        snprintf(fanout, sizeof(fanout), "cas/%.2s", digest);
        int r = fsync_at(s->dir->fd, fanout);
        return r < 0 ? r : fsync_at(s->dir->fd, "cas");
}

int nb_cas_put_as(struct nb_store *s, const void *data, size_t len, enum nb_durability durability,
                  char digest_out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err) {
        char digest[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex(data, len, digest);
        char rel[NB_ENTRY_REL_MAX];
        int r = nb_cas_entry_rel("cas", digest, rel);
        if (r < 0)
                return nb_error_set(err, r, "cache");
        /* The same blob already in place (same size and content: a copy a power cut
         * left torn is written again) is marked used instead. */
        _cleanup_close_ int whole = open_whole(s, rel, digest, len);
        if (whole >= 0) {
                if (durability == NB_DURABLE && (r = make_durable(s, whole, digest)) < 0)
                        return nb_error_set(err, r, "cache %s: syncing %s", s->dir->path, rel);
                nb_store_touch(s, "cas", digest);
        } else {
                struct iovec iov = { (void *) data, len };
                r = store(s, "cas", digest, &iov, 1, durability, err);
                if (r < 0)
                        return r;
        }
        memcpy(digest_out, digest, sizeof(digest));
        return 0;
}

int nb_cas_put(struct nb_store *s, const void *data, size_t len, char digest_out[NB_DIGEST_HEX_LEN + 1],
               struct nb_error *err) {
        return nb_cas_put_as(s, data, len, NB_DURABLE, digest_out, err);
}

int nb_ac_put_as(struct nb_store *s, const char *action_digest, const char *record, size_t len,
                 enum nb_durability durability, struct nb_error *err) {
        char body_digest[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex(record, len, body_digest);
        char header[NB_AC_HEADER_LEN + 1];
        snprintf(header, sizeof(header), NB_AC_MAGIC "%s\n", body_digest);
        struct iovec iov[2] = { { header, NB_AC_HEADER_LEN }, { (void *) record, len } };
        /* Always written: a newer result for the same action replaces the old one. */
        return store(s, "ac", action_digest, iov, 2, durability, err);
}

int nb_ac_put(struct nb_store *s, const char *action_digest, const char *record, size_t len, struct nb_error *err) {
        return nb_ac_put_as(s, action_digest, record, len, NB_DURABLE, err);
}

/* Opens and reads an entry whole. 0 with *fd open, -ENOENT when absent. */
static int read_entry(struct nb_store *s, const char *rel, int *ret_fd, char **data, size_t *len,
                      const char **why) {
        _cleanup_close_ int fd = nb_open_beneath(s->dir->fd, rel, O_RDONLY | O_NONBLOCK, 0);
        if (fd == -ENOENT || fd == -ENOTDIR)
                return -ENOENT;
        if (fd < 0) {
                if (fd != -ELOOP && fd != -EXDEV)
                        return fd;
                *why = "not a regular file";
                return 1;
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode)) {
                *why = "not a regular file";
                *ret_fd = TAKE_FD(fd);
                return 1;
        }
        int r = nb_read_fd_sized(fd, st.st_size > 0 && (size_t) st.st_size < CAS_MAX_BLOB ? (size_t) st.st_size : 4096,
                                 CAS_MAX_BLOB, data, len); /* one read, no regrowing */
        if (r == -EFBIG) {
                *why = "larger than any entry nestbox writes";
                *ret_fd = TAKE_FD(fd);
                return 1;
        }
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Shared tail of both gets: a damaged entry is removed, reported once, and a miss. */
static int get_entry(struct nb_store *s, const char *ns, const char *digest, char **ret, size_t *ret_len,
                     struct nb_error *err) {
        char rel[NB_ENTRY_REL_MAX];
        if (nb_cas_entry_rel(ns, digest, rel) < 0)
                return nb_error_setx(err, EINVAL, "cache: '%s' is not a digest", digest ? digest : "");
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        const char *why = NULL;
        int r = read_entry(s, rel, &fd, &data, &len, &why);
        if (r == -ENOENT)
                return r; /* a plain miss is not an error worth a message */
        if (r < 0)
                return nb_error_set(err, r, "cache %s/%s", s->dir->path, rel);
        size_t skip = 0;
        if (r == 0) {
                char want[NB_DIGEST_HEX_LEN + 1], got[NB_DIGEST_HEX_LEN + 1];
                if (strcmp(ns, "ac") == 0) {
                        r = parse_ac_header(data, len, want, &why);
                        skip = NB_AC_HEADER_LEN;
                } else
                        memcpy(want, digest, sizeof(want));
                if (r == 0) {
                        nb_sha256_hex(data + skip, len - skip, got);
                        if (strcmp(got, want) != 0) {
                                why = skip ? "record body does not match its header (truncated or altered)"
                                           : "content does not match its digest";
                                r = 1;
                        }
                }
        }
        if (r == 1) {
                nb_cas_drop_damaged(s, rel, fd, why, true);
                return -ENOENT;
        }
        if (skip)
                memmove(data, data + skip, len - skip + 1); /* keeps the trailing NUL */
        *ret_len = len - skip;
        *ret = TAKE_PTR(data);
        return 0;
}

int nb_cas_get(struct nb_store *s, const char *digest, char **data, size_t *len, struct nb_error *err) {
        return get_entry(s, "cas", digest, data, len, err);
}

int nb_ac_get(struct nb_store *s, const char *action_digest, char **record, size_t *len, struct nb_error *err) {
        return get_entry(s, "ac", action_digest, record, len, err);
}
