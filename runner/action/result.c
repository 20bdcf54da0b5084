/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/result.h"
#include "action/shard_plan.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"
#include "nestbox/sandbox.h"

#define RECORD_MAX (1u << 20)

const char *nb_target_status_name(enum nb_target_status s) {
        switch (s) {
        case NB_TARGET_PASSED: return "PASSED";
        case NB_TARGET_FAILED: return "FAILED";
        case NB_TARGET_TIMEOUT: return "TIMEOUT";
        case NB_TARGET_FLAKY: return "FLAKY";
        }
        return "?";
}

int nb_target_status_from_name(const char *s, enum nb_target_status *ret) {
        static const enum nb_target_status all[] = { NB_TARGET_PASSED, NB_TARGET_FAILED, NB_TARGET_TIMEOUT,
                                                     NB_TARGET_FLAKY };
        for (size_t i = 0; s && i < NB_ELEMENTSOF(all); i++)
                if (strcmp(s, nb_target_status_name(all[i])) == 0) {
                        *ret = all[i];
                        return 0;
                }
        return -EINVAL;
}

int nb_result_exit_code(const struct nb_result *r) {
        return r->status == NB_TARGET_PASSED || r->status == NB_TARGET_FLAKY ? 0 : r->status == NB_TARGET_TIMEOUT ? 4 : 1;
}

void nb_result_done(struct nb_result *r) {
        free(r->target);
        free(r->memory_backend);
        free(r->pids_backend);
        free(r->why);
        json_decref(r->denied);
        nb_strv_free(r->order);
        nb_strv_free(r->failed_ids);
        free(r->attempts);
        nb_junit_report_free(r->report);
        nb_artifact_done(&r->artifact);
        free(r->artifact_blob);
        free(r->stored_blob);
        memset(r, 0, sizeof(*r));
}

int nb_result_full_artifact(const struct nb_result *r, struct nb_artifact *tmp, const struct nb_artifact **ret,
                            struct nb_error *err) {
        *tmp = (struct nb_artifact) {};
        if (!r->artifact_blob) {
                *ret = &r->artifact;
                return 0;
        }
        int k = nb_artifact_unpack(r->artifact_blob, r->artifact_blob_len, NULL, tmp, err);
        if (k < 0)
                return k;
        *ret = tmp;
        return 0;
}

char *nb_result_denied_text(const struct nb_result *r) {
        _cleanup_free_ char *text = strdup("");
        const char *name;
        json_t *count;
        json_object_foreach(r->denied, name, count) {
                char *next = NULL;
                if (!text || asprintf(&next, "%s%s%s(2) x%lld", text, *text ? ", " : "", name,
                                      (long long) json_integer_value(count)) < 0)
                        return NULL;
                free(text);
                text = next;
        }
        return TAKE_PTR(text);
}

const char *nb_result_memory_scope(const struct nb_result *r) {
        if (!r->memory)
                return NULL;
        return r->memory_backend && strcmp(r->memory_backend, nb_limit_backend_name(NB_LIMIT_RLIMIT)) == 0
                       ? "per process only" : "sandbox";
}

static json_t *attempts_to_json(const struct nb_result *r) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < r->n_attempts; i++)
                if (json_array_append_new(a, json_pack("{s:I, s:s, s:s}", "attempt", (json_int_t) r->attempts[i].attempt,
                                                       "action", r->attempts[i].action, "status",
                                                       nb_target_status_name(r->attempts[i].status))) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

/* why may quote what a test wrote (the path that broke a cap), bytes JSON cannot hold
 * when they are not UTF-8: escaped (\xNN) then, never the result lost over it. */
static json_t *why_json(const char *why) {
        json_t *s = json_string(why);
        if (s)
                return s;
        _cleanup_free_ char *e = nb_escape(why, NB_ESCAPE_KEEP_NEWLINES);
        return e ? json_string(e) : NULL;
}

json_t *nb_result_to_json(const struct nb_result *r, unsigned flags) {
        const struct nb_junit_report *rep = r->report;
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:{s:I, s:I}, s:I, s:I, s:I, s:I, s:I,"
                              " s:{s:f, s:f, s:f}, s:{s:i, s:i, s:b, s:b, s:I}, s:{s:f, s:I, s:I, s:s, s:s}}",
                              "schema", NB_RESULT_SCHEMA, "target", r->target, "status", nb_target_status_name(r->status),
                              "exit_code", nb_result_exit_code(r), "action", r->action, "tree", r->tree, "venv", r->venv,
                              "seed", (json_int_t) r->seed,
                              "shard", "index", (json_int_t) r->shard_index, "count", (json_int_t) r->shard_count,
                              "run", (json_int_t) r->run,
                              "tests", (json_int_t) (rep ? rep->tests : 0), "failures", (json_int_t) (rep ? rep->failures : 0),
                              "errors", (json_int_t) (rep ? rep->errors : 0), "skipped", (json_int_t) (rep ? rep->skipped : 0),
                              "durations", "wall", r->wall_sec, "user", r->user_sec, "sys", r->sys_sec,
                              "pytest", "exit_code", r->exit_code, "signal", r->signal, "timed_out", r->timed_out,
                              "oom_killed", r->oom_killed, "peak_rss_bytes", (json_int_t) r->peak_rss_bytes,
                              "limits", "timeout", r->timeout_sec, "memory", (json_int_t) r->memory,
                              "pids", (json_int_t) r->pids, "memory_backend", r->memory_backend ? r->memory_backend : "",
                              "pids_backend", r->pids_backend ? r->pids_backend : "");
        if (!j)
                return NULL;
        int k = json_object_set_new(j, "why", r->why ? why_json(r->why) : json_null());
        const char *scope = nb_result_memory_scope(r);
        k |= json_object_set_new(json_object_get(j, "limits"), "memory_scope", scope ? json_string(scope) : json_null());
        k |= json_object_set_new(j, "denied", r->denied ? json_deep_copy(r->denied) : json_null());
        if (r->plan.set)
                k |= json_object_set_new(j, "shard_plan",
                                         json_pack("{s:I, s:I, s:I, s:f, s:f, s:f}", "tests", (json_int_t) r->plan.tests,
                                                   "collected", (json_int_t) r->plan.collected,
                                                   "known", (json_int_t) r->plan.known,
                                                   "expected_sec", r->plan.expected_sec,
                                                   "largest_sec", r->plan.largest_sec, "ideal_sec", r->plan.ideal_sec));
        k |= json_object_set_new(j, "attempt", json_integer((json_int_t) (r->attempt ? r->attempt : 1)));
        k |= json_object_set_new(j, "shuffle", json_boolean(r->shuffle));
        if (r->warm) /* only then: a cold run's result.json is what it always was */
                k |= json_object_set_new(j, "warm", json_true());
        if (r->order && !(flags & NB_RESULT_JSON_RECORD))
                k |= json_object_set_new(j, "order", nb_strv_to_json(r->order));
        if (r->failed_ids)
                k |= json_object_set_new(j, "failed_node_ids", nb_strv_to_json(r->failed_ids));
        if (r->n_attempts)
                k |= json_object_set_new(j, "attempts", attempts_to_json(r));
        if (flags & NB_RESULT_JSON_ARTIFACT)
                k |= json_object_set_new(j, "artifact", r->artifact_digest[0] ? json_string(r->artifact_digest) : json_null());
        if (flags & NB_RESULT_JSON_CACHED)
                k |= json_object_set_new(j, "cached", json_boolean(r->cached));
        if (k < 0) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static int junit_xml(const struct nb_result *r, size_t max, char **ret, size_t *ret_len) {
        char seed[32], shard[32], run[32], attempt[32];
        snprintf(seed, sizeof(seed), "%llu", (unsigned long long) r->seed);
        snprintf(shard, sizeof(shard), "%u/%u", r->shard_index, r->shard_count);
        snprintf(run, sizeof(run), "%u", r->run);
        _cleanup_free_ char *denied = r->denied ? nb_result_denied_text(r) : NULL;
        if (r->denied && !denied)
                return -ENOMEM;
        snprintf(attempt, sizeof(attempt), "%u", r->attempt ? r->attempt : 1);
        const struct nb_junit_property props[] = {
                { "target", r->target }, { "shard", shard }, { "run", run }, { "attempt", attempt },
                { "seed", seed }, { "shuffle", r->shuffle ? "true" : "false" }, { "cached", r->cached ? "true" : "false" },
                { "denied", denied && *denied ? denied : "none" },
        };
        /* The suite is named after the target, so a combined report keeps them apart. */
        struct nb_junit_report named = *r->report;
        named.name = r->target;
        /* "denied" only where denials were counted: "none" must mean none. */
        return nb_junit_report_to_xml_within(&named, props, NB_ELEMENTSOF(props) - !r->denied, max, ret, ret_len);
}

int nb_result_junit_xml(const struct nb_result *r, char **ret, size_t *ret_len) {
        return junit_xml(r, SIZE_MAX / 4, ret, ret_len);
}

/* What a stored report may be: what nestbox reads back, less room for the property
 * a replay changes (cached="true"). */
#define STORED_JUNIT_MAX (NB_JUNIT_MAX_SIZE - 4096u)

int nb_result_stored_junit_xml(struct nb_result *r, char **ret, size_t *ret_len) {
        int k = junit_xml(r, STORED_JUNIT_MAX, ret, ret_len);
        if (k != -EFBIG)
                return k;
        _cleanup_free_ char *why = NULL;
        if (asprintf(&why, "/out/junit.xml: nestbox's copy of the report (escaped, with its properties) is more "
                     "than the %u bytes it reads back", NB_JUNIT_MAX_SIZE) < 0)
                return -ENOMEM;
        struct nb_junit_report *small = NULL;
        if ((k = nb_junit_error_report(r->target, "nestbox", why, NULL, &small)) < 0)
                return k;
        nb_junit_report_free(r->report);
        r->report = small;
        free(r->why);
        r->why = TAKE_PTR(why);
        r->status = NB_TARGET_FAILED;
        return junit_xml(r, STORED_JUNIT_MAX, ret, ret_len);
}

int nb_result_seal(struct nb_result *r, struct nb_error *err) {
        json_auto_t *j = nb_result_to_json(r, 0);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
        int k;
        if (!text || (k = nb_artifact_add(&r->artifact, "result.json", text, strlen(text))) < 0)
                return nb_error_set(err, ENOMEM, "result.json");
        return 0;
}

int nb_result_store(struct nb_store *s, struct nb_result *r, struct nb_error *err) {
        _cleanup_free_ char *blob = NULL;
        size_t len = 0;
        char digest[NB_DIGEST_HEX_LEN + 1];
        int k = nb_artifact_pack(&r->artifact, &blob, &len, err);
        if (k < 0 || (k = nb_cas_put(s, blob, len, digest, err)) < 0)
                return k;
        memcpy(r->artifact_digest, digest, sizeof(digest));
        free(r->stored_blob);
        r->stored_blob = TAKE_PTR(blob);
        r->stored_blob_len = len;
        json_auto_t *rec = nb_result_to_json(r, NB_RESULT_JSON_ARTIFACT | NB_RESULT_JSON_RECORD);
        _cleanup_free_ char *text = rec ? json_dumps(rec, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        if (!text) {
                r->artifact_digest[0] = 0;
                return nb_error_set(err, ENOMEM, "action record");
        }
        if ((k = nb_ac_put(s, r->action, text, strlen(text), err)) < 0)
                r->artifact_digest[0] = 0;
        return k;
}

/* ---- reading a record back ---- */

static int get_str(json_t *o, const char *key, char **ret) {
        const char *s = json_string_value(json_object_get(o, key));
        if (!s)
                return -EINVAL;
        return (*ret = strdup(s)) ? 0 : -ENOMEM;
}

static int get_digest(json_t *o, const char *key, char out[NB_DIGEST_HEX_LEN + 1]) {
        const char *s = json_string_value(json_object_get(o, key));
        if (!s || !nb_is_digest(s))
                return -EINVAL;
        memcpy(out, s, NB_DIGEST_HEX_LEN + 1);
        return 0;
}

static int get_uint(json_t *o, const char *key, uint64_t *ret) {
        json_t *v = json_object_get(o, key);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EINVAL;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int attempts_from_record(json_t *a, struct nb_result *r) {
        if (!a)
                return 0;
        size_t n = json_array_size(a);
        if (!json_is_array(a) || n == 0 || n > 1000)
                return -EINVAL;
        _cleanup_free_ struct nb_attempt_record *v = calloc(n, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(a, i);
                uint64_t attempt;
                int k = get_uint(e, "attempt", &attempt);
                if (k < 0 || (k = get_digest(e, "action", v[i].action)) < 0 ||
                    (k = nb_target_status_from_name(json_string_value(json_object_get(e, "status")), &v[i].status)) < 0)
                        return k;
                v[i].attempt = (unsigned) attempt;
        }
        r->attempts = TAKE_PTR(v);
        r->n_attempts = n;
        return 0;
}

/* Only what a replay shows and the record claims; the counts come from junit.xml. */
static int result_from_record(json_t *rec, struct nb_result *r) {
        json_t *d = json_object_get(rec, "durations"), *py = json_object_get(rec, "pytest");
        json_t *lim = json_object_get(rec, "limits"), *shard = json_object_get(rec, "shard");
        uint64_t shard_index, shard_count, run, pids, memory, rss;
        if (!json_is_object(d) || !json_is_object(py) || !json_is_object(lim) || !json_is_object(shard))
                return -EINVAL;
        int k = nb_target_status_from_name(json_string_value(json_object_get(rec, "status")), &r->status);
        if (k < 0 || (k = get_str(rec, "target", &r->target)) < 0 || (k = get_digest(rec, "tree", r->tree)) < 0 ||
            (k = get_digest(rec, "venv", r->venv)) < 0 || (k = get_uint(rec, "seed", &r->seed)) < 0 ||
            (k = get_uint(shard, "index", &shard_index)) < 0 || (k = get_uint(shard, "count", &shard_count)) < 0 ||
            (k = get_uint(rec, "run", &run)) < 0 || (k = get_uint(lim, "pids", &pids)) < 0 ||
            (k = get_uint(lim, "memory", &memory)) < 0 || (k = get_uint(py, "peak_rss_bytes", &rss)) < 0 ||
            (k = get_str(lim, "memory_backend", &r->memory_backend)) < 0 ||
            (k = get_str(lim, "pids_backend", &r->pids_backend)) < 0)
                return k;
        uint64_t attempt = 1;
        if (json_object_get(rec, "attempt") && (k = get_uint(rec, "attempt", &attempt)) < 0)
                return k;
        r->attempt = (unsigned) attempt;
        r->shuffle = json_is_true(json_object_get(rec, "shuffle"));
        if ((k = attempts_from_record(json_object_get(rec, "attempts"), r)) < 0)
                return k;
        r->shard_index = (unsigned) shard_index;
        r->shard_count = (unsigned) shard_count;
        r->run = (unsigned) run;
        r->pids = pids;
        r->memory = memory;
        r->peak_rss_bytes = rss;
        r->wall_sec = json_number_value(json_object_get(d, "wall"));
        r->user_sec = json_number_value(json_object_get(d, "user"));
        r->sys_sec = json_number_value(json_object_get(d, "sys"));
        r->timeout_sec = json_number_value(json_object_get(lim, "timeout"));
        r->exit_code = (int) json_integer_value(json_object_get(py, "exit_code"));
        r->signal = (int) json_integer_value(json_object_get(py, "signal"));
        r->timed_out = json_is_true(json_object_get(py, "timed_out"));
        r->oom_killed = json_is_true(json_object_get(py, "oom_killed"));
        json_t *denied = json_object_get(rec, "denied");
        if (json_is_object(denied))
                r->denied = json_deep_copy(denied);
        if (nb_shard_plan_from_json(json_object_get(rec, "shard_plan"), &r->plan) < 0)
                return -EINVAL;
        const char *why = json_string_value(json_object_get(rec, "why"));
        if (why && !(r->why = strdup(why)))
                return -ENOMEM;
        return 0;
}

/* FLAKY is a pass whose report carries the failed runs before it (Surefire's
 * flakyFailure): the evidence of the last attempt plus its reruns. */
static enum nb_target_status status_from_evidence(const struct nb_result *r) {
        if (r->timed_out)
                return NB_TARGET_TIMEOUT;
        if (r->why || r->exit_code != 0 || r->signal || r->report->failures || r->report->errors)
                return NB_TARGET_FAILED;
        for (size_t i = 0; i < r->report->n_testcases; i++)
                if (r->report->testcases[i].n_reruns > 0 && r->attempt > 1)
                        return NB_TARGET_FLAKY;
        return NB_TARGET_PASSED;
}

/* An array of strings (jansson checked they are UTF-8) as a vector; anything else
 * leaves it unknown (NULL). -ENOMEM only. */
static int strv_from_json(json_t *a, char ***ret) {
        *ret = NULL;
        if (!json_is_array(a) || json_array_size(a) == 0)
                return 0;
        size_t n = json_array_size(a);
        _cleanup_strv_free_ char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *s = json_string_value(json_array_get(a, i));
                if (!s)
                        return 0;
                if (!(v[i] = strdup(s)))
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(v);
        return 0;
}

int nb_result_from_record(json_t *rec, char **blob, size_t blob_len, struct nb_result *ret, struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        const struct nb_artifact_entry *junit;
        int r;
        if ((r = result_from_record(rec, ret)) < 0 || (r = get_digest(rec, "action", ret->action)) < 0 ||
            (r = nb_artifact_unpack(*blob, blob_len, "undeclared/", &ret->artifact, err)) < 0 ||
            !(junit = nb_artifact_find(&ret->artifact, "junit.xml")) ||
            (r = nb_junit_parse(junit->data, junit->len, &ret->report, err)) < 0) {
                nb_result_done(ret);
                nb_error_clear(err);
                return r == -ENOMEM ? nb_error_set(err, ENOMEM, "result record") : -EINVAL;
        }
        /* The record leaves the order out (it can be long): result.json in the artifact
         * has it. */
        const struct nb_artifact_entry *res = nb_artifact_find(&ret->artifact, "result.json");
        json_auto_t *doc = res ? json_loadb(res->data, res->len, 0, NULL) : NULL;
        if ((ret->shuffle && (r = strv_from_json(json_object_get(doc, "order"), &ret->order)) < 0) ||
            (r = strv_from_json(json_object_get(rec, "failed_node_ids"), &ret->failed_ids)) < 0) {
                nb_result_done(ret);
                return nb_error_set(err, -r, "result record");
        }
        (void) get_digest(rec, "artifact", ret->artifact_digest); /* null until stored */
        ret->cached = json_is_true(json_object_get(rec, "cached"));
        ret->warm = json_is_true(json_object_get(rec, "warm"));
        ret->artifact_blob = TAKE_PTR(*blob);
        ret->artifact_blob_len = blob_len;
        return 0;
}

int nb_result_from_entry(const char *text, size_t len, const struct nb_action *a, nb_result_blob_fn fetch,
                         void *userdata, struct nb_result *ret, char artifact[NB_DIGEST_HEX_LEN + 1],
                         struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        _cleanup_free_ char *blob = NULL;
        size_t blob_len = 0;
        json_auto_t *rec = len <= RECORD_MAX ? json_loadb(text, len, 0, NULL) : NULL;
        if (!rec || get_digest(rec, "artifact", artifact) < 0)
                return -ENOENT; /* an older nestbox's record, or an interpreter probe's */
        int r = fetch(userdata, artifact, &blob, &blob_len, err);
        if (r < 0)
                return r;
        /* The record names its action; a record filed under another digest is damage. */
        if (json_object_set_new(rec, "action", json_string(a->resolved.digest)) < 0)
                return nb_error_set(err, ENOMEM, "cache record");
        if ((r = nb_result_from_record(rec, &blob, blob_len, ret, err)) < 0 || strcmp(ret->target, a->target) != 0) {
                nb_result_done(ret);
                return r == -ENOMEM ? r : -ENOENT;
        }
        /* A record is a claim; its JUnit report and exit are the evidence. A status
         * they contradict (a PASSED with failures, say) was written by someone else:
         * damage, so a miss, never a pass. */
        if (ret->status != status_from_evidence(ret)) {
                nb_result_done(ret);
                return -ENOENT;
        }
        ret->cached = true;
        return 0;
}

static int cas_fetch(void *userdata, const char *digest, char **ret, size_t *ret_len, struct nb_error *err) {
        return nb_cas_get(userdata, digest, ret, ret_len, err);
}

int nb_result_lookup(struct nb_store *s, const struct nb_action *a, struct nb_result *ret, struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = nb_ac_get(s, a->resolved.digest, &text, &len, err);
        if (r < 0)
                return r;
        char artifact[NB_DIGEST_HEX_LEN + 1];
        if ((r = nb_result_from_entry(text, len, a, cas_fetch, s, ret, artifact, err)) < 0)
                return r;
        nb_store_touch(s, "ac", a->resolved.digest);
        nb_store_touch(s, "cas", artifact);
        return 0;
}
