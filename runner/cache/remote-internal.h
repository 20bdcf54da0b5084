/* SPDX-License-Identifier: MIT */
/* Shared by remote.c (lookups), remote_queue.c (uploads), remote_http.c (libcurl)
 * and remote_ac.c (the ActionResult encoding). Not for use outside cache/remote*. */
#pragma once

#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/artifact.h"
#include "cache/digest.h"
#include "cache/remote.h"

#define NB_REMOTE_AC_MAX (1u << 20)             /* bytes of one ActionResult */
#define NB_REMOTE_BLOB_MAX NB_ARTIFACT_MAX_TOTAL /* bytes of one blob */
#define NB_REMOTE_QUEUE_MAX (512u << 20)        /* bytes waiting to be uploaded */
#define NB_REMOTE_ARTIFACT_PATH "nestbox/artifact.tar.zst"

/* ---- remote_http.c: libcurl, one easy handle (and so one kept-alive connection) per
 * thread that uses it, one share handle (DNS, TLS sessions) per process ---- */
struct nb_http;
struct nb_http_conn;

int nb_http_new(const struct nb_remote_options *o, struct nb_http **ret, struct nb_error *err);
void nb_http_free(struct nb_http *h);
int nb_http_conn_new(struct nb_http *h, struct nb_http_conn **ret);
void nb_http_conn_free(struct nb_http_conn *c);
/* Makes every transfer in progress, and every later one, end with -ECANCELED. */
void nb_http_abort(struct nb_http *h);

/* path is "ac/<digest>" or "cas/<digest>". GET: 0 with the body (at most max bytes,
 * else -EFBIG); -ENOENT on 404. HEAD: 0 present, -ENOENT absent. PUT: 0 when answered
 * 200, 201 or 204. Other answers and transport errors: -errno with err. Transient
 * ones (connection refused or reset, 5xx) are retried a bounded number of times with
 * backoff; a timeout is not. */
int nb_http_get(struct nb_http_conn *c, const char *path, size_t max, char **ret, size_t *ret_len,
                struct nb_error *err);
int nb_http_head(struct nb_http_conn *c, const char *path, struct nb_error *err);
int nb_http_put(struct nb_http_conn *c, const char *path, const void *data, size_t len, struct nb_error *err);

/* The pieces of a request, apart so the unit tests reach them: the URL of path
 * (the base URL without its trailing "/", then "/" path; NULL on ENOMEM); whether a
 * try that ended with curl_code (a CURLcode) and HTTP status is tried again (only
 * transient faults, and a bounded number of times), and how long the wait before
 * retry number attempt + 1 is; whether NESTBOX_REMOTE_HEADER's value is one line
 * "Name: value" (0, or -EINVAL with err naming the variable, never the value). */
char *nb_http_url(const struct nb_http *h, const char *path);
bool nb_http_retry(int curl_code, long status, int attempt);
long nb_http_backoff_ms(int attempt);
int nb_http_check_header(const char *value, struct nb_error *err);

/* ---- remote_ac.c: ActionResult <-> bytes ---- */
struct nb_remote_blob {
        const char *path; /* the output file's path; NULL for stdout/stderr */
        const void *data;
        size_t len;
        char digest[NB_DIGEST_HEX_LEN + 1];
};

/* files[] become output_files; stdout and stderr their digests. */
int nb_remote_ac_encode(const struct nb_remote_blob *files, size_t n, int exit_code,
                        const struct nb_remote_blob *out, const struct nb_remote_blob *errb, uint8_t **ret,
                        size_t *ret_len);
/* The artifact's digest and size in an (untrusted) encoded ActionResult; -EBADMSG
 * when it is malformed or names no valid artifact. */
int nb_remote_ac_artifact(const uint8_t *data, size_t len, char digest[NB_DIGEST_HEX_LEN + 1], uint64_t *size);

/* ---- the client, shared by remote.c and remote_queue.c ---- */
struct nb_remote {
        char *url;
        double timeout_sec;
        bool readonly;
        struct nb_http *http;
        struct nb_http_conn *conn; /* this process's */
        bool off;                  /* after the first fault */
        char *fault;               /* the first fault's message */
        bool reported;
        struct nb_remote_stats stats;
        /* the uploader (remote_queue.c): a process forked on the first upload */
        pid_t uploader;
        int job_fd;    /* jobs to it; -1 */
        int status_fd; /* its statistics and fault at the end; -1 */
};

/* Remembers the first fault (with the remote's URL) and turns the remote off. */
void nb_remote_fault(struct nb_remote *r, const char *what, const struct nb_error *err);
