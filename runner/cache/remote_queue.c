/* SPDX-License-Identifier: MIT */
/* Uploads: a process forked on the first upload (not a thread: the sandbox forks,
 * and a fork taken while another thread holds a lock deadlocks the child) reads jobs
 * from a pipe: an action digest, its artifact's digest and the exit code, one
 * PIPE_BUF-atomic record each. For each it reads the artifact back from the local
 * store (checked against its digest there), uploads the CAS blobs a HEAD does not
 * find (the artifact, junit.xml, the log, coverage.*, the empty stderr), then the
 * ActionResult, so an AC entry never names a blob the server lacks. After its first
 * fault it uploads nothing more. At the end of the jobs it writes its statistics and
 * its fault to a second pipe and exits; nb_remote_finish() waits for that, at most
 * the timeout, and kills it after. A full job pipe drops the upload, never waits. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "action/result.h"
#include "cache/cas-internal.h"
#include "cache/remote-internal.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

struct job {
        char action[NB_DIGEST_HEX_LEN + 1];
        char artifact[NB_DIGEST_HEX_LEN + 1];
        int exit_code;
};

struct status {
        struct nb_remote_stats stats;
        uint32_t fault_len; /* then that many bytes of the fault's message */
};

static bool separate_blob(const char *name) {
        return strcmp(name, "junit.xml") == 0 || strcmp(name, "log") == 0 || strncmp(name, "coverage.", 9) == 0;
}

static int put_blob(struct nb_remote *r, const struct nb_remote_blob *b, struct nb_error *err) {
        char path[8 + NB_DIGEST_HEX_LEN];
        snprintf(path, sizeof(path), "cas/%s", b->digest);
        int k = nb_http_head(r->conn, path, err);
        if (k != -ENOENT)
                return k;
        nb_error_clear(err);
        if ((k = nb_http_put(r->conn, path, b->data, b->len, err)) == 0)
                r->stats.bytes_up += b->len;
        return k;
}

static int upload_one(struct nb_remote *r, struct nb_store *s, const struct job *j, struct nb_error *err) {
        _cleanup_free_ char *blob = NULL;
        size_t blob_len = 0;
        int k = nb_cas_get(s, j->artifact, &blob, &blob_len, err);
        if (k == -ENOENT)
                return 0; /* gone from the local cache meanwhile: nothing to share */
        struct nb_artifact art = { 0 };
        if (k < 0 || (k = nb_artifact_unpack(blob, blob_len, "undeclared/", &art, err)) < 0)
                return k;
        _cleanup_free_ struct nb_remote_blob *b = calloc(art.n + 1, sizeof(*b));
        _cleanup_free_ uint8_t *ac = NULL;
        size_t n = 0, ac_len = 0;
        if (!b) {
                nb_artifact_done(&art);
                return nb_error_set(err, ENOMEM, "upload");
        }
        b[n++] = (struct nb_remote_blob) { .path = NB_REMOTE_ARTIFACT_PATH, .data = blob, .len = blob_len };
        memcpy(b[0].digest, j->artifact, sizeof(b[0].digest));
        const struct nb_remote_blob *log = NULL;
        for (size_t i = 0; i < art.n; i++) {
                const struct nb_artifact_entry *e = &art.entries[i];
                if (!separate_blob(e->name))
                        continue;
                if (strcmp(e->name, "log") == 0)
                        log = &b[n];
                b[n] = (struct nb_remote_blob) { .path = e->name, .data = e->data, .len = e->len };
                nb_sha256_hex(e->data, e->len, b[n++].digest);
        }
        struct nb_remote_blob empty = { .data = "", .len = 0 };
        nb_sha256_hex("", 0, empty.digest);
        for (size_t i = 0; k >= 0 && i < n; i++)
                k = put_blob(r, &b[i], err);
        if (k >= 0)
                k = put_blob(r, &empty, err);
        if (k >= 0 && (k = nb_remote_ac_encode(b, n, j->exit_code, log, &empty, &ac, &ac_len)) < 0)
                nb_error_set(err, -k, "upload");
        nb_artifact_done(&art);
        char path[8 + NB_DIGEST_HEX_LEN];
        snprintf(path, sizeof(path), "ac/%s", j->action);
        if (k < 0 || (k = nb_http_put(r->conn, path, ac, ac_len, err)) < 0)
                return k;
        r->stats.bytes_up += ac_len;
        r->stats.uploads++;
        return 0;
}

static _Noreturn void uploader(struct nb_remote *r, struct nb_store *s, int jobs, int status) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_IGN);
        struct nb_store mine = *s;
        mine.warn = NULL; /* the parent reports; this process prints nothing */
        /* A fresh easy handle: the parent's connections stay the parent's. */
        nb_http_conn_free(r->conn);
        r->conn = NULL;
        if (nb_http_conn_new(r->http, &r->conn) < 0)
                nb_remote_fault(r, "upload", NULL);
        struct job j;
        while (nb_read_full(jobs, &j, sizeof(j)) == (ssize_t) sizeof(j)) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                j.action[NB_DIGEST_HEX_LEN] = j.artifact[NB_DIGEST_HEX_LEN] = 0;
                if (!r->off && upload_one(r, &mine, &j, &err) < 0)
                        nb_remote_fault(r, "upload", &err);
        }
        struct status st = { .stats = r->stats, .fault_len = r->fault ? (uint32_t) strlen(r->fault) : 0 };
        char buf[sizeof(st) + 2048];
        if (st.fault_len > sizeof(buf) - sizeof(st))
                st.fault_len = sizeof(buf) - sizeof(st);
        memcpy(buf, &st, sizeof(st));
        if (st.fault_len)
                memcpy(buf + sizeof(st), r->fault, st.fault_len);
        (void) !write(status, buf, sizeof(st) + st.fault_len);
        _exit(0);
}

static int start(struct nb_remote *r, struct nb_store *s) {
        int jobs[2], status[2];
        if (pipe2(jobs, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(status, O_CLOEXEC) < 0) {
                close(jobs[0]), close(jobs[1]);
                return -errno;
        }
        fflush(NULL); /* nothing buffered is written twice */
        pid_t pid = fork();
        if (pid == 0) {
                close(jobs[1]);
                close(status[0]);
                uploader(r, s, jobs[0], status[1]);
        }
        close(jobs[0]);
        close(status[1]);
        if (pid < 0) {
                close(jobs[1]), close(status[0]);
                return -errno;
        }
        fcntl(jobs[1], F_SETFL, O_NONBLOCK);
        r->uploader = pid;
        r->job_fd = jobs[1];
        r->status_fd = status[0];
        return 0;
}

void nb_remote_upload(struct nb_remote *r, struct nb_store *s, const struct nb_result *res) {
        if (!r || r->readonly || r->off || !nb_is_digest(res->artifact_digest))
                return;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        int k = r->uploader > 0 ? 0 : start(r, s);
        if (k < 0) {
                nb_remote_fault(r, "upload", (nb_error_set(&err, -k, "starting the uploader"), &err));
                return;
        }
        struct job j = { .exit_code = res->exit_code };
        memcpy(j.action, res->action, sizeof(j.action));
        memcpy(j.artifact, res->artifact_digest, sizeof(j.artifact));
        ssize_t w;
        while ((w = write(r->job_fd, &j, sizeof(j))) < 0 && errno == EINTR)
                ;
        if (w != (ssize_t) sizeof(j))
                r->stats.errors++; /* the queue is full: dropped, not waited for */
}

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* What the uploader wrote before it exited: 0, or -ETIMEDOUT. */
static int read_status(struct nb_remote *r, char *buf, size_t cap, size_t *len) {
        double deadline = now() + r->timeout_sec;
        *len = 0;
        for (;;) {
                double left = deadline - now();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = r->status_fd, .events = POLLIN };
                int k = poll(&p, 1, (int) (left * 1000) + 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -ETIMEDOUT;
                ssize_t n = read(r->status_fd, buf + *len, cap - *len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0 || (*len += (size_t) n) == cap)
                        return 0;
        }
}

void nb_remote_finish(struct nb_remote *r) {
        if (!r || r->uploader <= 0)
                return;
        close(r->job_fd);
        r->job_fd = -1;
        char buf[sizeof(struct status) + 2048];
        size_t len = 0;
        int k = read_status(r, buf, sizeof(buf), &len);
        if (k < 0)
                kill(r->uploader, SIGKILL);
        while (waitpid(r->uploader, NULL, 0) < 0 && errno == EINTR)
                ;
        r->uploader = 0;
        close(r->status_fd);
        r->status_fd = -1;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct status st;
        if (k < 0 || len < sizeof(st)) {
                nb_error_set(&err, k < 0 ? -k : EPIPE, "uploads not finished within --remote-timeout");
                nb_remote_fault(r, "upload", &err);
                return;
        }
        memcpy(&st, buf, sizeof(st));
        r->stats.uploads += st.stats.uploads;
        r->stats.bytes_up += st.stats.bytes_up;
        r->stats.errors += st.stats.errors;
        if (st.fault_len && st.fault_len <= len - sizeof(st) && !r->fault) {
                r->fault = strndup(buf + sizeof(st), st.fault_len);
                r->off = true;
        }
}
