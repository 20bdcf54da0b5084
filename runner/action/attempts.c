/* SPDX-License-Identifier: MIT */
/* Runs and attempts of one target: see attempts.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/attempts.h"
#include "action/replay.h"
#include "nestbox/cleanup.h"

struct attempt_list {
        struct nb_result *v;
        size_t n;
};

static void attempt_list_done(struct attempt_list *l) {
        for (size_t i = 0; i < l->n; i++)
                nb_result_done(&l->v[i]);
        free(l->v);
}

/* What a retry of r runs: its failed tests, when the driver named them and they fit
 * in an argv. A timeout's hanging test never reported, so the whole target goes again. */
static char **retry_selection(const struct nb_result *r) {
        if (r->status == NB_TARGET_TIMEOUT || !r->failed_ids)
                return NULL;
        size_t n = 0, bytes = 0;
        for (char **v = r->failed_ids; *v; v++) {
                bytes += strlen(*v) + 1;
                if (++n > NB_RETRY_MAX_IDS || bytes > NB_RETRY_MAX_ID_BYTES)
                        return NULL;
        }
        return r->failed_ids;
}

/* Every attempt's log, one after the other, each under a line naming it. */
static int fold_logs(const struct attempt_list *l, char **ret, size_t *ret_len) {
        size_t len = 0;
        for (size_t i = 0; i < l->n; i++) {
                const struct nb_artifact_entry *e = nb_artifact_find(&l->v[i].artifact, "log");
                len += 128 + (e ? e->len : 0);
        }
        _cleanup_free_ char *buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < l->n; i++) {
                const struct nb_artifact_entry *e = nb_artifact_find(&l->v[i].artifact, "log");
                int k = snprintf(buf + o, 128, "---- nestbox: attempt %u of run %u, action %.12s: %s ----\n",
                                 l->v[i].attempt, l->v[i].run, l->v[i].action, nb_target_status_name(l->v[i].status));
                o += k > 0 && k < 128 ? (size_t) k : 0;
                if (e && e->len) {
                        memcpy(buf + o, e->data, e->len);
                        o += e->len;
                }
        }
        buf[o] = 0;
        *ret_len = o;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* The attempts as one result: the last attempt's, with every attempt's report merged
 * (Surefire's convention), under the first attempt's digest, FLAKY when it ended in
 * a pass. */
static int fold(struct attempt_list *l, struct nb_result *ret, struct nb_error *err) {
        _cleanup_free_ const struct nb_junit_report **reports = calloc(l->n, sizeof(*reports));
        _cleanup_free_ struct nb_attempt_record *records = calloc(l->n, sizeof(*records));
        if (!reports || !records)
                return nb_error_set(err, ENOMEM, "attempts");
        bool all_cached = true;
        for (size_t i = 0; i < l->n; i++) {
                reports[i] = l->v[i].report;
                records[i] = (struct nb_attempt_record) { .attempt = l->v[i].attempt, .status = l->v[i].status };
                memcpy(records[i].action, l->v[i].action, sizeof(records[i].action));
                all_cached = all_cached && l->v[i].cached;
        }
        _cleanup_junit_report_ struct nb_junit_report *merged = NULL;
        int r = nb_junit_merge(reports, l->n, NULL, &merged, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *log = NULL, *xml = NULL;
        size_t log_len = 0, xml_len = 0;
        if ((r = fold_logs(l, &log, &log_len)) < 0)
                return nb_error_set(err, -r, "attempts");

        struct nb_result *last = &l->v[l->n - 1];
        *ret = *last;
        memset(last, 0, sizeof(*last));
        l->n--;
        nb_junit_report_free(ret->report);
        ret->report = TAKE_PTR(merged);
        memcpy(ret->action, l->v[0].action, sizeof(ret->action));
        ret->status = ret->status == NB_TARGET_PASSED ? NB_TARGET_FLAKY : ret->status;
        ret->attempts = TAKE_PTR(records);
        ret->n_attempts = l->n + 1;
        ret->cached = all_cached;
        /* A replayed attempt's artifact lacks undeclared/: the fold keeps what it has. */
        free(TAKE_PTR(ret->artifact_blob));
        ret->artifact_blob_len = 0;
        free(TAKE_PTR(ret->stored_blob)); /* the last attempt's, not the fold's */
        ret->stored_blob_len = 0;
        ret->artifact_digest[0] = 0;
        /* The fold is stored under the first attempt's digest: `nestbox repro` of it
         * replays that action, so the record it reads is the first attempt's. */
        const struct nb_artifact_entry *first = nb_artifact_find(&l->v[0].artifact, NB_REPLAY_ENTRY);
        if (first && (r = nb_artifact_add(&ret->artifact, NB_REPLAY_ENTRY, first->data, first->len)) < 0)
                return nb_error_set(err, -r, "attempts");
        if ((r = nb_result_stored_junit_xml(ret, &xml, &xml_len)) < 0 ||
            (r = nb_artifact_add(&ret->artifact, "junit.xml", xml, xml_len)) < 0 ||
            (r = nb_artifact_add(&ret->artifact, "log", log, log_len)) < 0)
                return nb_error_set(err, -r, "attempts");
        return nb_result_seal(ret, err);
}

int nb_action_retry(const struct nb_action *a, unsigned attempt, char **select, struct nb_action **ret,
                    struct nb_error *err) {
        _cleanup_free_ char *json = NULL;
        _cleanup_action_ struct nb_action *b = NULL;
        int r = nb_action_to_json(a, &json);
        if (r < 0)
                return nb_error_set(err, -r, "target \"%s\": retry", a->target);
        if ((r = nb_action_from_json(json, strlen(json), "retry", &b, err)) < 0)
                return r;
        nb_strv_free(b->select);
        size_t n = 0;
        while (select && select[n])
                n++;
        if (!(b->select = calloc(n + 1, sizeof(char *))))
                return nb_error_set(err, ENOMEM, "target \"%s\": retry", a->target);
        for (size_t i = 0; i < n; i++)
                if (!(b->select[i] = strdup(select[i])))
                        return nb_error_set(err, ENOMEM, "target \"%s\": retry", a->target);
        b->attempt = attempt;
        *ret = TAKE_PTR(b);
        return 0;
}

int nb_action_execute_attempts(struct nb_action *a, unsigned attempts, struct nb_store *s,
                               const struct nb_cache_modes *m, struct nb_result *ret, struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        if (attempts == 0)
                attempts = 1;
        __attribute__((cleanup(attempt_list_done))) struct attempt_list l = { calloc(attempts, sizeof(*l.v)), 0 };
        if (!l.v)
                return nb_error_set(err, ENOMEM, "attempts");
        for (unsigned k = 1; k <= attempts; k++) {
                _cleanup_action_ struct nb_action *retry = NULL;
                int r = 0;
                if (k > 1)
                        r = nb_action_retry(a, k, retry_selection(&l.v[l.n - 1]), &retry, err);
                if (r < 0 || (r = nb_action_execute(k > 1 ? retry : a, s, m, &l.v[l.n], err)) < 0)
                        return r;
                l.n++;
                /* A replayed fold (its attempts are in it) is final, as it ended. */
                if (!nb_result_failed(&l.v[l.n - 1]) || l.v[l.n - 1].interrupted || l.v[l.n - 1].n_attempts)
                        break;
        }
        if (l.n == 1) {
                *ret = l.v[0];
                l.n = 0;
                return 0;
        }
        int r = fold(&l, ret, err);
        if (r < 0) {
                nb_result_done(ret);
                return r;
        }
        if (!ret->cached)
                nb_action_keep(s, m, ret);
        return 0;
}
