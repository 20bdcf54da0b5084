/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/action.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/sandbox.h"
#include "python/support.h"

#define ACTION_FORMAT "nestbox-action-1"
#define RECORD_MAX (1u << 20)
#define OUT_FILE_MAX (64u * 1024u * 1024u)
#define OUT_TOTAL_MAX (256u * 1024u * 1024u)

static const char *const coverage_files[] = { "coverage.data", "coverage.xml", "coverage.lcov" };

void nb_action_done(struct nb_action *a) {
        nb_tree_clear(&a->tree);
}

void nb_action_result_done(struct nb_action_result *r) {
        nb_junit_report_free(r->report);
        nb_artifact_done(&r->artifact);
        free(r->why);
        memset(r, 0, sizeof(*r));
}

static uint64_t seed_from_name(const char *target) {
        char hex[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex(target, strlen(target), hex);
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v * 16 + (uint64_t) (hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
        return v;
}

static void hash_strv(struct nb_hasher *h, char **v) {
        size_t n = 0;
        while (v[n])
                n++;
        nb_hasher_update_u64(h, n);
        for (size_t i = 0; i < n; i++)
                nb_hasher_update_str(h, v[i]);
}

/* The interpreter as the venv digest sees it, but from stat alone: a hit must not run
 * Python. A replaced interpreter changes its mtime. */
static int hash_interpreter(struct nb_hasher *h, const char *python, struct nb_error *err) {
        _cleanup_free_ char *real = realpath(python, NULL);
        struct stat st;
        if (!real || stat(real, &st) < 0)
                return nb_error_set(err, errno, "python %s", python);
        nb_hasher_update_str(h, real);
        nb_hasher_update_u64(h, (uint64_t) st.st_size);
        nb_hasher_update_u64(h, (uint64_t) st.st_mtim.tv_sec * 1000000000ull + (uint64_t) st.st_mtim.tv_nsec);
        return 0;
}

static int hash_file(struct nb_hasher *h, const char *path, struct nb_error *err) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        char hex[NB_DIGEST_HEX_LEN + 1];
        int r;
        if (fd < 0)
                return nb_error_set(err, errno, "%s", path);
        if ((r = nb_sha256_fd(fd, hex)) < 0)
                return nb_error_set(err, -r, "%s", path);
        nb_hasher_update_str(h, hex);
        return 0;
}

int nb_action_prepare(const struct nb_workspace *ws, const struct nb_target *t, const struct nb_run_options *o,
                      struct nb_action *a, struct nb_error *err) {
        memset(a, 0, sizeof(*a));
        a->target = t;
        a->seed = o->seed_set ? o->seed : seed_from_name(t->name);
        a->coverage = o->coverage || t->coverage;
        int r = nb_tree_collect_target(ws, t, &a->tree, err);
        if (r < 0)
                return r;
        if ((r = nb_tree_digest(&a->tree, a->tree_digest)) < 0)
                return nb_error_set(err, -r, "target \"%s\": digest", t->name);

        struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return nb_error_set(err, ENOMEM, "action digest");
        /* The executor and its policy. */
        nb_hasher_update_str(h, ACTION_FORMAT);
        nb_hasher_update_str(h, NESTBOX_VERSION);
        char support[NB_DIGEST_HEX_LEN + 1];
        nb_support_digest(support);
        nb_hasher_update_str(h, support);
        size_t n;
        const struct nb_denied_syscall *deny = nb_seccomp_deny_list(&n);
        for (size_t i = 0; i < n; i++)
                nb_hasher_update_str(h, deny[i].name);
        nb_hasher_update_u64(h, t->timeout_ms);
        nb_hasher_update_u64(h, t->memory);
        nb_hasher_update_u64(h, t->pids);
        /* The interpreter and the locked venv. */
        if ((r = hash_interpreter(h, ws->python, err)) < 0 || (r = hash_file(h, t->resolve->lockfile_path, err)) < 0) {
                nb_hasher_freep(&h);
                return nb_error_wrap(err, r, "target \"%s\"", t->name);
        }
        /* The inputs and how they are run. */
        nb_hasher_update_str(h, t->name);
        nb_hasher_update_str(h, a->tree_digest);
        hash_strv(h, t->source_roots);
        hash_strv(h, t->tests);
        hash_strv(h, t->pytest_args);
        for (char **name = t->env; *name; name++) {
                const char *v = getenv(*name);
                nb_hasher_update_str(h, *name);
                nb_hasher_update_u64(h, v != NULL);
                nb_hasher_update_str(h, v ? v : "");
        }
        nb_hasher_update_u64(h, o->shard_count > 1 ? o->shard_count : 1);
        nb_hasher_update_u64(h, o->shard_count > 1 ? o->shard_index : 0);
        nb_hasher_update_u64(h, a->seed);
        nb_hasher_update_u64(h, a->coverage);
        nb_hasher_finish(h, a->digest);
        return 0;
}

static json_t *record_json(const struct nb_action *a, const struct nb_target_run *run, const struct nb_action_result *r) {
        const struct nb_junit_report *rep = r->report;
        json_t *j = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:I, s:s, s:s, s:s}",
                              "version", 1, "target", a->target->name, "status", nb_target_status_name(r->status),
                              "tests", (json_int_t) rep->tests, "failures", (json_int_t) rep->failures,
                              "errors", (json_int_t) rep->errors, "skipped", (json_int_t) rep->skipped,
                              "wall_sec", r->wall_sec, "seed", (json_int_t) r->seed, "action", a->digest,
                              "tree", a->tree_digest, "venv", run ? run->venv_digest : "");
        if (!j)
                return NULL;
        json_object_set_new(j, "why", r->why ? json_string(r->why) : json_null());
        if (run) {
                const struct nb_sandbox_result *s = &run->sandbox;
                json_object_set_new(j, "exit_code", json_integer(s->exit_code));
                json_object_set_new(j, "signal", json_integer(s->signal));
                json_object_set_new(j, "timed_out", json_boolean(s->timed_out));
                json_object_set_new(j, "oom_killed", json_boolean(s->oom_killed));
                json_object_set_new(j, "user_sec", json_real(s->user_sec));
                json_object_set_new(j, "sys_sec", json_real(s->sys_sec));
                json_object_set_new(j, "peak_rss_bytes", json_integer((json_int_t) s->peak_rss_bytes));
                json_object_set_new(j, "limits", json_pack("{s:s, s:s}", "memory", nb_limit_backend_name(s->memory_backend),
                                                           "pids", nb_limit_backend_name(s->pids_backend)));
        }
        return j;
}

static int add_out_file(struct nb_artifact *art, int out_fd, const char *name, struct nb_error *err) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = nb_read_file_beneath(out_fd, name, OUT_FILE_MAX, &data, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return nb_error_set(err, -r, "/out/%s", name);
        return nb_artifact_add(art, name, data, len);
}

/* Turns a problem with what the test left in /out into the target's failure. Out of
 * memory stays our error. */
static int fail_for_out(struct nb_action_result *ret, int r, struct nb_error *err) {
        if (r == -ENOMEM)
                return r;
        char *why = NULL;
        if (asprintf(&why, "/out: %s", nb_error_message(err)) < 0)
                return -ENOMEM;
        free(ret->why);
        ret->why = why;
        ret->status = NB_TARGET_FAILED;
        nb_error_clear(err);
        return 0;
}

int nb_action_result_from_run(const struct nb_action *a, struct nb_target_run *run, struct nb_action_result *ret,
                              struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        ret->status = run->status;
        ret->report = TAKE_PTR(run->report);
        ret->wall_sec = run->sandbox.wall_sec;
        ret->seed = run->seed;
        ret->why = run->why ? strdup(run->why) : NULL;

        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        int r = nb_junit_report_to_xml(ret->report, NULL, 0, &xml, &len);
        if (r < 0 || (r = nb_artifact_add(&ret->artifact, "junit.xml", xml, len)) < 0 ||
            (r = nb_artifact_add(&ret->artifact, "log", run->log ? run->log : "", run->log_len)) < 0)
                return nb_error_set(err, -r, "artifact of \"%s\"", a->target->name);

        int out_fd = run->out_fd;
        if (out_fd < 0)
                return nb_error_setx(err, EIO, "artifact of \"%s\": the sandbox handed back no /out", a->target->name);
        /* What the test wrote is untrusted: each file read no-follow and size-capped.
         * A file that is too big, a link or a device is the test's failure, not ours. */
        for (size_t i = 0; i < NB_ELEMENTSOF(coverage_files); i++)
                if ((r = add_out_file(&ret->artifact, out_fd, coverage_files[i], err)) < 0 &&
                    (r = fail_for_out(ret, r, err)) < 0)
                        return nb_error_wrap(err, r, "artifact of \"%s\"", a->target->name);
        _cleanup_close_ int und = nb_open_beneath(out_fd, "undeclared", O_RDONLY | O_DIRECTORY, 0);
        if (und >= 0 && (r = nb_artifact_add_tree(&ret->artifact, und, "undeclared/", OUT_FILE_MAX, OUT_TOTAL_MAX, err)) < 0 &&
            (r = fail_for_out(ret, r, err)) < 0)
                return nb_error_wrap(err, r, "artifact of \"%s\"", a->target->name);

        json_auto_t *rec = record_json(a, run, ret);
        _cleanup_free_ char *text = rec ? json_dumps(rec, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
        if (!text || (r = nb_artifact_add(&ret->artifact, "result.json", text, strlen(text))) < 0)
                return nb_error_set(err, ENOMEM, "result.json");
        return 0;
}

int nb_action_store(struct nb_store *s, const struct nb_action *a, const struct nb_action_result *r,
                    struct nb_error *err) {
        _cleanup_free_ char *blob = NULL;
        size_t len = 0;
        char blob_digest[NB_DIGEST_HEX_LEN + 1];
        int k = nb_artifact_pack(&r->artifact, &blob, &len, err);
        if (k < 0 || (k = nb_cas_put(s, blob, len, blob_digest, err)) < 0)
                return k;
        const struct nb_artifact_entry *res = nb_artifact_find(&r->artifact, "result.json");
        json_auto_t *rec = res ? json_loadb(res->data, res->len, 0, NULL) : NULL;
        if (!rec)
                return nb_error_setx(err, EINVAL, "result.json missing from the artifact");
        json_object_set_new(rec, "artifact", json_string(blob_digest));
        _cleanup_free_ char *text = json_dumps(rec, JSON_SORT_KEYS | JSON_COMPACT);
        if (!text)
                return nb_error_set(err, ENOMEM, "action record");
        return nb_ac_put(s, a->digest, text, strlen(text), err);
}

static enum nb_target_status status_from_name(const char *s) {
        if (s && strcmp(s, "PASSED") == 0)
                return NB_TARGET_PASSED;
        if (s && strcmp(s, "TIMEOUT") == 0)
                return NB_TARGET_TIMEOUT;
        return NB_TARGET_FAILED;
}

int nb_action_lookup(struct nb_store *s, const struct nb_action *a, struct nb_action_result *ret, struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        _cleanup_free_ char *text = NULL, *blob = NULL;
        size_t len = 0, blob_len = 0;
        int r = nb_ac_get(s, a->digest, &text, &len, err);
        if (r < 0)
                return r;
        json_auto_t *rec = json_loadb(text, len, 0, NULL);
        const char *artifact = rec ? json_string_value(json_object_get(rec, "artifact")) : NULL;
        if (!artifact || !nb_is_digest(artifact))
                return -ENOENT;
        if ((r = nb_cas_get(s, artifact, &blob, &blob_len, err)) < 0)
                return r;
        if ((r = nb_artifact_unpack(blob, blob_len, &ret->artifact, err)) < 0)
                goto miss;
        const struct nb_artifact_entry *junit = nb_artifact_find(&ret->artifact, "junit.xml");
        if (!junit || nb_junit_parse(junit->data, junit->len, &ret->report, err) < 0)
                goto miss;
        ret->status = status_from_name(json_string_value(json_object_get(rec, "status")));
        ret->wall_sec = json_number_value(json_object_get(rec, "wall_sec"));
        ret->seed = (uint64_t) json_integer_value(json_object_get(rec, "seed"));
        const char *why = json_string_value(json_object_get(rec, "why"));
        ret->why = why ? strdup(why) : NULL;
        ret->cached = true;
        nb_store_touch(s, "ac", a->digest);
        nb_store_touch(s, "cas", artifact);
        return 0;
miss:
        nb_action_result_done(ret);
        nb_error_clear(err);
        return -ENOENT;
}
