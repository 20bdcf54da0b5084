/* SPDX-License-Identifier: MIT */
/* The remote cache client: options, faults, statistics and the lookup path. The
 * upload path is remote_queue.c; HTTP is remote_http.c; the AC encoding remote_ac.c. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/curl_dl.h"
#include "cache/remote-internal.h"
#include "nestbox/cleanup.h"

/* http[s]://host[:port][/path]: no user, password, query or fragment. */
static int check_url(const char *url, struct nb_error *err) {
        static const char what[] = "--remote-cache %s: expected http[s]://HOST[:PORT][/PATH] without a user, password, "
                                   "query or fragment (credentials: NESTBOX_REMOTE_HEADER or netrc)";
        const char *why = NULL;
        if (nb_curl_load(&why) < 0)
                return nb_error_setx(err, ELIBACC, "remote cache: %s", why);
        CURLU *u = curl_url();
        if (!u)
                return nb_error_set(err, ENOMEM, "remote cache");
        char *scheme = NULL, *part = NULL;
        bool ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                  (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) && !strpbrk(url, "?#@");
        static const CURLUPart absent[] = { CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_QUERY, CURLUPART_FRAGMENT };
        for (size_t i = 0; ok && i < NB_ELEMENTSOF(absent); i++) {
                if (curl_url_get(u, absent[i], &part, 0) == CURLUE_OK)
                        ok = false;
                curl_free(part);
                part = NULL;
        }
        curl_free(scheme);
        curl_url_cleanup(u);
        /* The URL is printed in the message only when it holds no credential. */
        if (!ok)
                return nb_error_input(err, EINVAL, what, strpbrk(url, "@?#") ? "(not shown)" : url);
        return 0;
}

int nb_remote_new(const struct nb_remote_options *o, struct nb_remote **ret, struct nb_error *err) {
        int r = check_url(o->url, err);
        if (r < 0)
                return r;
        if (!(o->timeout_sec >= 0 && o->timeout_sec <= 3600))
                return nb_error_input(err, EINVAL, "--remote-timeout: expected seconds from 0 to 3600");
        struct nb_remote *rm = calloc(1, sizeof(*rm));
        if (!rm || !(rm->url = strdup(o->url))) {
                free(rm);
                return nb_error_set(err, ENOMEM, "remote cache");
        }
        rm->timeout_sec = o->timeout_sec > 0 ? o->timeout_sec : NB_REMOTE_TIMEOUT_DEFAULT;
        rm->readonly = o->readonly;
        rm->job_fd = rm->status_fd = -1;
        if ((r = nb_http_new(o, &rm->http, err)) < 0 || (r = nb_http_conn_new(rm->http, &rm->conn)) < 0) {
                if (!nb_error_message(err)[0])
                        nb_error_set(err, -r, "remote cache");
                nb_remote_free(rm);
                return r;
        }
        *ret = rm;
        return 0;
}

void nb_remote_free(struct nb_remote *r) {
        if (!r)
                return;
        nb_remote_finish(r);
        nb_http_conn_free(r->conn);
        nb_http_free(r->http);
        free(r->fault);
        free(r->url);
        free(r);
}

void nb_remote_freep(struct nb_remote **r) {
        nb_remote_free(*r);
        *r = NULL;
}

void nb_remote_fault(struct nb_remote *r, const char *what, const struct nb_error *err) {
        r->stats.errors++;
        if (!r->fault) {
                const char *why = err ? nb_error_message(err) : "";
                if (asprintf(&r->fault, "remote cache %s: %s%s%s; using the local cache only for the rest of this run",
                             r->url, what, *why ? ": " : "", why) < 0)
                        r->fault = NULL;
        }
        r->off = true;
}

void nb_remote_report(struct nb_remote *r, nb_cache_warn_fn warn, void *userdata) {
        if (!r)
                return;
        if (r->off && !r->reported && r->fault && warn)
                warn(r->fault, userdata);
        r->reported = r->reported || r->off;
}

void nb_remote_get_stats(struct nb_remote *r, struct nb_remote_stats *ret) {
        *ret = r->stats;
}

/* The record the local ac/ keeps is the artifact's result.json with the artifact's
 * digest: rebuilt here from the (checked) artifact, never taken from the server. */
static int record_from_artifact(const char *blob, size_t len, const char *action, const char *artifact_digest,
                                char **ret, struct nb_error *err) {
        struct nb_artifact art = { 0 };
        int r = nb_artifact_unpack(blob, len, "undeclared/", &art, err);
        if (r < 0)
                return r;
        const struct nb_artifact_entry *e = nb_artifact_find(&art, "result.json");
        json_auto_t *j = e ? json_loadb(e->data, e->len, JSON_REJECT_DUPLICATES, NULL) : NULL;
        const char *a = json_string_value(json_object_get(j, "action"));
        if (!j || !a || strcmp(a, action) != 0 || json_object_get(j, "artifact") ||
            json_object_set_new(j, "artifact", json_string(artifact_digest)) < 0) {
                nb_artifact_done(&art);
                return nb_error_set(err, EBADMSG, "artifact %s: no result.json for this action", artifact_digest);
        }
        nb_artifact_done(&art);
        *ret = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(6));
        return *ret ? 0 : nb_error_set(err, ENOMEM, "remote cache");
}

int nb_remote_fetch(struct nb_remote *r, struct nb_store *s, const char *action_digest) {
        if (!r || r->off)
                return -ENOENT;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_free_ char *ac = NULL, *blob = NULL, *record = NULL, *ac_path = NULL, *cas_path = NULL;
        size_t ac_len = 0, blob_len = 0;
        char digest[NB_DIGEST_HEX_LEN + 1], got[NB_DIGEST_HEX_LEN + 1];
        uint64_t size = 0;
        if (asprintf(&ac_path, "ac/%s", action_digest) < 0)
                return -ENOMEM;
        int k = nb_http_get(r->conn, ac_path, NB_REMOTE_AC_MAX, &ac, &ac_len, &err);
        if (k == -ENOENT) {
                r->stats.misses += 1;
                return -ENOENT;
        }
        if (k < 0) {
                nb_remote_fault(r, "lookup", &err);
                return k == -ENOMEM ? k : -ENOENT;
        }
        if (nb_remote_ac_artifact((const uint8_t *) ac, ac_len, digest, &size) < 0) {
                nb_remote_fault(r, "lookup", (nb_error_set(&err, EBADMSG, "ac/%s: not an ActionResult naming an artifact",
                                                           action_digest), &err));
                return -ENOENT;
        }
        if (asprintf(&cas_path, "cas/%s", digest) < 0)
                return -ENOMEM;
        k = nb_http_get(r->conn, cas_path, (size_t) size, &blob, &blob_len, &err);
        if (k == -ENOENT) { /* evicted: the entry is stale, which is a miss */
                r->stats.misses += 1;
                return -ENOENT;
        }
        if (k < 0) {
                nb_remote_fault(r, "download", &err);
                return k == -ENOMEM ? k : -ENOENT;
        }
        nb_sha256_hex(blob, blob_len, got);
        if (blob_len != size || strcmp(got, digest) != 0) {
                nb_remote_fault(r, "download", (nb_error_set(&err, EBADMSG, "cas/%s: the server sent bytes of another "
                                                             "digest", digest), &err));
                return -ENOENT;
        }
        r->stats.bytes_down += ac_len + blob_len;
        if ((k = record_from_artifact(blob, blob_len, action_digest, digest, &record, &err)) < 0) {
                nb_remote_fault(r, "download", &err);
                return k == -ENOMEM ? k : -ENOENT;
        }
        /* Kept locally: the local store checks the digest again as it writes. A copy
         * the server still holds, so unsynced (cas.h: NB_RECOVERABLE): a power cut
         * costs a download again, never a wrong result. */
        if ((k = nb_cas_put_as(s, blob, blob_len, NB_RECOVERABLE, got, &err)) < 0 ||
            (k = nb_ac_put_as(s, action_digest, record, strlen(record), NB_RECOVERABLE, &err)) < 0) {
                if (s->warn) {
                        _cleanup_free_ char *line = NULL;
                        if (asprintf(&line, "remote result not kept locally: %s", nb_error_message(&err)) >= 0)
                                s->warn(line, s->userdata);
                }
                return k == -ENOMEM ? k : -ENOENT;
        }
        r->stats.hits += 1;
        return 0;
}
