/* SPDX-License-Identifier: MIT */
/* Learned and pinned durations: see durations.h. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "action/shard_plan.h"
#include "cache/digest.h"
#include "cache/durations.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

static int learned_path(const char *target, char **ret) {
        char hex[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex(target, strlen(target), hex);
        return asprintf(ret, "durations/%s.json", hex) < 0 ? -ENOMEM : 0;
}

int nb_durations_parse(const char *text, size_t len, json_t **ret) {
        json_auto_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        json_t *schema = json_object_get(doc, "schema"), *tests = json_object_get(doc, "tests");
        if (!json_is_string(schema) || strcmp(json_string_value(schema), NB_DURATIONS_SCHEMA) != 0 ||
            !json_is_object(tests) || json_object_size(tests) > NB_DURATIONS_MAX_TESTS)
                return -EINVAL;
        const char *k;
        json_t *v;
        json_object_foreach(tests, k, v)
                if (!json_is_integer(v) || json_integer_value(v) < 0)
                        return -EINVAL;
        *ret = json_incref(tests);
        return 0;
}

static int read_doc(struct nb_cache_dir *c, const char *rel, json_t **ret) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = nb_read_file_beneath(c->fd, rel, NB_DURATIONS_MAX_SIZE, &text, &len);
        if (r < 0)
                return r;
        return nb_durations_parse(text, len, ret);
}

int nb_durations_load(struct nb_cache_dir *c, const char *target, json_t **ret) {
        _cleanup_free_ char *rel = NULL;
        if (learned_path(target, &rel) < 0)
                return -ENOMEM;
        if (read_doc(c, rel, ret) == 0)
                return 0;
        return (*ret = json_object()) ? 0 : -ENOMEM;
}

int nb_durations_text(json_t *tests, char **ret) {
        json_auto_t *doc = json_pack("{s:s, s:O}", "schema", NB_DURATIONS_SCHEMA, "tests", tests);
        *ret = doc ? json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        return *ret ? 0 : -ENOMEM;
}

double nb_durations_total(json_t *tests) {
        double sum = 0;
        const char *k;
        json_t *v;
        json_object_foreach(tests, k, v)
                sum += (double) json_integer_value(v) / 1000.0;
        return sum;
}

/* dir/name := tests' text. noreplace: only when there is none yet (-EEXIST else), so
 * that of several processes pinning at once the first wins and all read its pin. */
static int write_doc(struct nb_cache_dir *c, const char *dir, const char *name, json_t *tests, bool noreplace) {
        _cleanup_free_ char *text = NULL, *tmp = NULL;
        int r = nb_durations_text(tests, &text);
        if (r < 0)
                return r;
        _cleanup_close_ int d = nb_mkdir_p_beneath(c->fd, dir, 0755);
        if (d < 0)
                return d;
        /* A learned record is a hint, rewritten after every target: not worth two
         * fsyncs (1-3 ms), since nb_durations_load takes one a crash tore for none. A
         * pin names a plan that action digests carry: durable. */
        if (!noreplace)
                return nb_write_file_replace(d, name, text, strlen(text), 0644);
        if (asprintf(&tmp, ".%s.%d", name, (int) getpid()) < 0)
                return -ENOMEM;
        if ((r = nb_write_file_atomic(d, tmp, text, strlen(text), 0644)) < 0)
                return r;
        r = renameat2(d, tmp, d, name, RENAME_NOREPLACE) < 0 ? -errno : 0;
        if (r < 0)
                (void) unlinkat(d, tmp, 0);
        return r;
}

/* A shard that passed whole ran every test its plan gave it that still exists: the
 * ones it did not run are gone (or renamed), and their durations would go on
 * weighing on every later plan. Forgotten; a wrong guess (a -k among the pytest
 * arguments) costs balance until the test runs again, never correctness. */
static int forget_gone(json_t *learned, json_t *ran, const struct nb_result *r, const struct nb_action *a) {
        if (!a || a->shard_count <= 1 || !a->shard_durations || r->status != NB_TARGET_PASSED ||
            (a->select && a->select[0]))
                return 0;
        json_auto_t *plan = NULL;
        int k = nb_shard_plan_make(a->shard_durations, a->shard_count, &plan);
        if (k < 0)
                return k == -EINVAL ? 0 : k;
        const char *key;
        json_t *bin;
        json_object_foreach(json_object_get(plan, "tests"), key, bin)
                if (json_integer_value(bin) == (json_int_t) a->shard_index - 1 && !json_object_get(ran, key))
                        (void) json_object_del(learned, key);
        return 0;
}

int nb_durations_learn(struct nb_cache_dir *c, const struct nb_result *r, const struct nb_action *a,
                       struct nb_error *err) {
        if (r->cached || r->interrupted || !r->report)
                return 0;
        json_auto_t *tests = NULL, *ran = json_object();
        int k = nb_durations_load(c, r->target, &tests);
        if (k < 0 || !ran)
                return nb_error_set(err, k < 0 ? -k : ENOMEM, "durations of \"%s\"", r->target);
        for (size_t i = 0; i < r->report->n_testcases; i++) {
                const struct nb_junit_testcase *tc = &r->report->testcases[i];
                _cleanup_free_ char *key = NULL;
                if (asprintf(&key, "%s::%s", tc->classname, tc->name) < 0)
                        return nb_error_set(err, ENOMEM, "durations of \"%s\"", r->target);
                /* time is finite and >= 0 (the parser's promise); whole ms, at least 1. */
                json_int_t ms = (json_int_t) (tc->time * 1000.0 + 0.5);
                if (json_object_set_new(ran, key, json_integer(ms > 0 ? ms : 1)) < 0)
                        return nb_error_set(err, ENOMEM, "durations of \"%s\"", r->target);
        }
        if ((k = forget_gone(tests, ran, r, a)) < 0)
                return nb_error_set(err, -k, "durations of \"%s\"", r->target);
        const char *key;
        json_t *ms;
        json_object_foreach(ran, key, ms) {
                if (!json_object_get(tests, key) && json_object_size(tests) >= NB_DURATIONS_MAX_TESTS)
                        continue;
                if (json_object_set(tests, key, ms) < 0)
                        return nb_error_set(err, ENOMEM, "durations of \"%s\"", r->target);
        }
        _cleanup_free_ char *rel = NULL;
        if (learned_path(r->target, &rel) < 0)
                return nb_error_set(err, ENOMEM, "durations of \"%s\"", r->target);
        k = write_doc(c, "durations", rel + strlen("durations/"), tests, false);
        return k < 0 ? nb_error_set(err, -k, "%s/%s", c->path, rel) : 0;
}

/* Pins unused for PIN_MAX_AGE (each use touches its pin) go when a new one is made:
 * plans/ stays the size of what is in use. A pin dropped while still wanted costs one
 * re-plan (a new digest: one miss), never a wrong split. */
#define PIN_MAX_AGE (30 * 24 * 3600)

/* Once a process: a run that pins a thousand groups (--machine pins every item's)
 * would otherwise stat plans/ a thousand times over. */
static void prune_pins(struct nb_cache_dir *c) {
        DIR *d = NULL;
        if (c->pins_pruned)
                return;
        c->pins_pruned = true;
        if (nb_opendir_at(c->fd, "plans", &d) < 0)
                return;
        time_t old = time(NULL) - PIN_MAX_AGE;
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d))) {
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
                    st.st_mtime < old)
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
}

int nb_durations_pin(struct nb_cache_dir *c, const char *group, const char *target, char **ret_text,
                     json_t **ret_tests, struct nb_error *err) {
        _cleanup_free_ char *rel = NULL;
        if (asprintf(&rel, "plans/%s.json", group) < 0)
                return nb_error_set(err, ENOMEM, "shard plan");
        json_auto_t *tests = NULL;
        int k = read_doc(c, rel, &tests);
        if (k == 0)
                (void) utimensat(c->fd, rel, NULL, AT_SYMLINK_NOFOLLOW);
        /* A pin that is there but unreadable as one (torn, not a regular file, too
         * big) is damage: removed, and the group planned again, as any bad entry is
         * a miss. What the machine refuses (EIO, EMFILE) is said, and nothing removed. */
        if (k == -EINVAL || k == -ELOOP || k == -EFBIG) {
                int rm = nb_rm_rf_at(c->fd, rel);
                if (rm < 0)
                        return nb_error_set(err, -rm, "%s/%s", c->path, rel);
        }
        if (k < 0) {
                prune_pins(c);
                json_auto_t *learned = NULL;
                if ((k = nb_durations_load(c, target, &learned)) < 0)
                        return nb_error_set(err, -k, "durations of \"%s\"", target);
                k = write_doc(c, "plans", rel + strlen("plans/"), learned, true);
                if (k < 0 && k != -EEXIST)
                        return nb_error_set(err, -k, "%s/%s", c->path, rel);
                /* Ours or the one that won the race: the pin is what is on disk. */
                if ((k = read_doc(c, rel, &tests)) < 0)
                        return nb_error_set(err, -k, "%s/%s", c->path, rel);
        }
        *ret_text = NULL;
        if (json_object_size(tests) > 0 && nb_durations_text(tests, ret_text) < 0)
                return nb_error_set(err, ENOMEM, "shard plan");
        if (ret_tests)
                *ret_tests = *ret_text ? TAKE_PTR(tests) : NULL;
        return 0;
}
