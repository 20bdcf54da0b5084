/* SPDX-License-Identifier: MIT */
/* The result of an action (nestbox.result/v1; runner/action/schema/result.schema.json):
 * produced once, by a run (run.c) or a cache hit (result.c), and serialised by one
 * function, nb_result_to_json(): to result.json in the artifact, to the record the
 * cache keeps under the action digest, and to what `nestbox run` prints. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "action/action.h"
#include "cache/artifact.h"
#include "cache/cas.h"
#include "junit/junit.h"

#define NB_RESULT_SCHEMA "nestbox.result/v1"

enum nb_target_status {
        NB_TARGET_PASSED,
        NB_TARGET_FAILED,  /* tests failed, or pytest could not run them */
        NB_TARGET_TIMEOUT, /* the target's timeout fired */
        NB_TARGET_FLAKY,   /* a run failed and a later attempt of it passed (attempts.c) */
};

const char *nb_target_status_name(enum nb_target_status s);
/* The status of that name ("PASSED", ...); -EINVAL for another (or NULL). */
int nb_target_status_from_name(const char *s, enum nb_target_status *ret);

/* One attempt of a retried run: what result.json's "attempts" lists. */
struct nb_attempt_record {
        unsigned attempt;
        char action[NB_DIGEST_HEX_LEN + 1];
        enum nb_target_status status;
};

/* What the driver planned for a shard (/out/shard_plan.json, action/shard_plan.c). */
struct nb_shard_plan_info {
        bool set;
        unsigned tests, collected, known;
        double expected_sec, largest_sec, ideal_sec;
};

struct nb_result {
        char *target;
        enum nb_target_status status;
        char action[NB_DIGEST_HEX_LEN + 1];
        char tree[NB_DIGEST_HEX_LEN + 1];
        char venv[NB_DIGEST_HEX_LEN + 1];
        char artifact_digest[NB_DIGEST_HEX_LEN + 1]; /* "" until stored */
        uint64_t seed;
        unsigned shard_index, shard_count, run;
        unsigned attempt; /* 1-based; of a retried result, the attempts it took */
        bool shuffle;
        char **order;     /* with shuffle: node ids in the order they ran; NULL when not known */
        char **failed_ids; /* node ids that failed, as the driver recorded them; NULL when none */
        struct nb_attempt_record *attempts; /* of a retried result (attempts.c), else NULL */
        size_t n_attempts;
        double wall_sec, user_sec, sys_sec;
        /* How the command in the sandbox ended. */
        int exit_code; /* -1 when it did not exit normally */
        int signal;
        bool timed_out, oom_killed;
        uint64_t peak_rss_bytes;
        /* The limits in force, and what enforced them. */
        double timeout_sec;
        uint64_t memory, pids;
        char *memory_backend, *pids_backend;
        char *why; /* one line when the report was synthesized; NULL otherwise */
        /* The denial report: {"mount": 1, ...} by syscall, sorted; NULL when the run did
         * not count denials (no seccomp user notification, or the report off). */
        json_t *denied;
        struct nb_shard_plan_info plan; /* set only for a shard */
        bool cached;
        bool warm; /* run in a warm interpreter (README "Warm interpreter"): "warm" in result.json */
        int interrupted; /* the SIGINT/SIGTERM that cut the run short; never stored */
        struct nb_junit_report *report; /* never NULL in a finished result */
        struct nb_artifact artifact;    /* junit.xml, log, coverage.*, undeclared/, result.json */
        /* A cache hit unpacks all but undeclared/ into artifact and keeps the packed
         * bytes here for nb_result_full_artifact(); NULL when artifact is whole. */
        char *artifact_blob;
        size_t artifact_blob_len;
        /* The bytes nb_result_store() put in the cache, kept: an item's process sends
         * them to the parent, which then needs no read of a blob that a concurrent
         * `cache gc` may have taken meanwhile. */
        char *stored_blob;
        size_t stored_blob_len;
};

/* The whole artifact: r->artifact itself, or (a cache hit) all of it unpacked into
 * *tmp, which the caller frees with nb_artifact_done(). */
int nb_result_full_artifact(const struct nb_result *r, struct nb_artifact *tmp, const struct nb_artifact **ret,
                            struct nb_error *err);

void nb_result_done(struct nb_result *r);

/* The exit code a result gives on its own: 0 PASSED or FLAKY, 1 FAILED, 4 TIMEOUT. */
int nb_result_exit_code(const struct nb_result *r);

enum {
        NB_RESULT_JSON_ARTIFACT = 1 << 0, /* with "artifact" (the record, the CLI's output) */
        NB_RESULT_JSON_CACHED = 1 << 1,   /* with "cached" (the CLI's output) */
        NB_RESULT_JSON_RECORD = 1 << 2,   /* the cache's record: without "order", which can be long */
};
/* "mount(2) x1, ptrace(2) x3" from r->denied; "" for none, NULL when out of memory. */
char *nb_result_denied_text(const struct nb_result *r);
/* What the memory limit covers: "sandbox" (a cgroup), "per process only" (rlimit:
 * each process may use the limit), NULL when there is none. */
const char *nb_result_memory_scope(const struct nb_result *r);

/* The one serialiser. NULL when out of memory. */
json_t *nb_result_to_json(const struct nb_result *r, unsigned flags);

/* junit.xml of a result: its report with the properties target, shard, run, attempt,
 * seed, shuffle and cached, the suite named after the target. The artifact's copy and the one
 * --output writes for a replay both come from here. */
int nb_result_junit_xml(const struct nb_result *r, char **ret, size_t *ret_len);

/* The junit.xml stored in a result's artifact: nb_result_junit_xml() within what
 * nestbox reads back (NB_JUNIT_MAX_SIZE). A report that escapes past it (a test's
 * junit.xml within the cap can grow fivefold) fails the target instead: r's report
 * becomes one error testcase saying so, its status FAILED. */
int nb_result_stored_junit_xml(struct nb_result *r, char **ret, size_t *ret_len);

/* Adds result.json (nb_result_to_json without artifact and cached) to the artifact:
 * the last step of a run. */
int nb_result_seal(struct nb_result *r, struct nb_error *err);

/* Stores the artifact in cas/ and the record in ac/ under r->action; fills
 * r->artifact_digest. On failure (a full disk) the cache is left as it was. */
int nb_result_store(struct nb_store *s, struct nb_result *r, struct nb_error *err);

/* A result from its record (nb_result_to_json with NB_RESULT_JSON_ARTIFACT, "cached"
 * honoured) and its packed artifact, which it takes (*blob becomes NULL): what a
 * cache hit reads back, and what a parallel item's process hands its parent.
 * -EINVAL when they do not make a result; -ENOMEM with err. */
int nb_result_from_record(json_t *rec, char **blob, size_t blob_len, struct nb_result *ret, struct nb_error *err);

/* Where a record's artifact comes from: the store's cas/ for a lookup, memory for the
 * fuzzer. 0 with *ret (malloc'd) filled, or -errno (-ENOENT: a miss). */
typedef int (*nb_result_blob_fn)(void *userdata, const char *digest, char **ret, size_t *ret_len,
                                 struct nb_error *err);
/* A cache hit read back from the record's bytes (text, len, untrusted) and the artifact
 * they name, fetched by fetch: everything nb_result_lookup does once it has read the
 * record, without the store. Fills artifact with the digest the record names. */
int nb_result_from_entry(const char *text, size_t len, const struct nb_action *a, nb_result_blob_fn fetch,
                         void *userdata, struct nb_result *ret, char artifact[NB_DIGEST_HEX_LEN + 1],
                         struct nb_error *err);
/* Looks the action up: 0 with *ret filled (cached = true) on a hit, -ENOENT on a miss.
 * Damaged entries are removed, reported through the store's warn callback, and are
 * misses; so is a record that does not agree with its own junit.xml. */
int nb_result_lookup(struct nb_store *s, const struct nb_action *a, struct nb_result *ret, struct nb_error *err);
