/* SPDX-License-Identifier: MIT */
/* Replay records (action/replay.h): action.json is read strictly, and a REF finds a
 * digest by prefix only among result records, refuses an ambiguous prefix, and a
 * target's last-run pointer only when it names that target. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "action/replay.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "test.h"

#define D_A "abcd1111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define D_B "abcd2222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define D_P "abcd3333cccccccccccccccccccccccccccccccccccccccccccccccccccccccc" /* not a result */
#define TREE "2222222222222222222222222222222222222222222222222222222222222222"
#define VENV "1111111111111111111111111111111111111111111111111111111111111111"

static const char action[] =
        "{\"schema\": \"nestbox.action/v1\", \"target\": \"lib/tests\", \"tree\": \"" TREE "\","
        " \"tests\": [\"t/test_x.py\"], \"resolve\": {\"venv\": \"" VENV "\"}, \"python\": \"/usr/bin/python3\","
        " \"seed\": 7}";

static char *record(const char *digest, const char *act) {
        char *s = NULL;
        return asprintf(&s, "{\"schema\": \"nestbox.replay/v1\", \"digest\": \"%s\", \"tree\": \"" TREE "\","
                        " \"venv\": \"" VENV "\", \"action\": %s}", digest, act) < 0 ? NULL : s;
}

TEST(parse_reads_the_record_and_refuses_what_is_not_one) {
        _cleanup_free_ char *good = record(D_A, action);
        struct nb_replay rp = {};
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(nb_replay_parse(good, strlen(good), "action.json", &rp, &err), 0);
        CHECK_EQ_STR(rp.digest, D_A);
        CHECK_EQ_STR(rp.tree, TREE);
        CHECK(rp.action && strcmp(rp.action->target, "lib/tests") == 0 && rp.action->seed == 7);
        CHECK(rp.action && strcmp(rp.action->tree_given, TREE) == 0);
        nb_replay_done(&rp);

        _cleanup_free_ char *typo = record(D_A, "{\"schema\": \"nestbox.action/v1\", \"targte\": 1}");
        _cleanup_free_ char *short_digest = record("abcd", action);
        const char *bad[] = { "not json", "{\"schema\": \"nestbox.replay/v2\"}", typo, short_digest };
        for (size_t i = 0; i < NB_ELEMENTSOF(bad); i++) {
                _cleanup_error_ struct nb_error e = NB_ERROR_INIT;
                struct nb_replay r = {};
                CHECK(nb_replay_parse(bad[i], strlen(bad[i]), "action.json", &r, &e) < 0);
                CHECK_EQ_INT(e.klass, NB_ERROR_INPUT);
                CHECK(strstr(nb_error_message(&e), "action.json") != NULL);
                nb_replay_done(&r);
        }
}

struct scratch {
        char dir[64];
        struct nb_cache_dir cache;
        struct nb_store store;
};

static void scratch_open(struct scratch *s) {
        snprintf(s->dir, sizeof(s->dir), "/tmp/nb-test-replay.XXXXXX");
        CHECK(mkdtemp(s->dir) != NULL);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(nb_cache_dir_open(&s->cache, s->dir, &err), 0);
        s->store = (struct nb_store) { .dir = &s->cache };
        const char *results[] = { D_A, D_B };
        for (size_t i = 0; i < NB_ELEMENTSOF(results); i++) {
                _cleanup_free_ char *rec = NULL;
                CHECK(asprintf(&rec, "{\"target\": \"lib/tests\", \"artifact\": \"" TREE "\"}") > 0);
                CHECK_EQ_INT(nb_ac_put(&s->store, results[i], rec, strlen(rec), &err), 0);
        }
        const char probe[] = "{\"interpreter\": \"probe\"}"; /* the cache keeps those in ac/ too */
        CHECK_EQ_INT(nb_ac_put(&s->store, D_P, probe, strlen(probe), &err), 0);
}

static void scratch_close(struct scratch *s) {
        nb_cache_dir_close(&s->cache);
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        (void) nb_rm_rf_at(tmp, s->dir + strlen("/tmp/"));
}

static int find(struct scratch *s, const char *ref, char out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err) {
        out[0] = 0;
        return nb_replay_find(&s->store, ref, out, err);
}

TEST(find_by_prefix_among_result_records) {
        struct scratch s;
        scratch_open(&s);
        char out[NB_DIGEST_HEX_LEN + 1];
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(find(&s, "abcd1", out, &err), 0);
        CHECK_EQ_STR(out, D_A);
        /* abcd3 is only an interpreter probe's record: not an action to replay. */
        CHECK_EQ_INT(find(&s, "abcd3", out, &err), -ENOENT);
        CHECK_EQ_INT(err.klass, NB_ERROR_INPUT);
        nb_error_clear(&err);
        CHECK_EQ_INT(find(&s, "abcd", out, &err), -EEXIST);
        CHECK_EQ_INT(err.klass, NB_ERROR_INPUT);
        CHECK(strstr(nb_error_message(&err), "2 recorded actions match: abcd1111aaaaaaaa (lib/tests), "
                                             "abcd2222bbbbbbbb (lib/tests)") != NULL);
        nb_error_clear(&err);
        CHECK_EQ_INT(find(&s, "abc", out, &err), -ENOENT); /* shorter than NB_REPLAY_MIN_PREFIX */
        nb_error_clear(&err);
        CHECK_EQ_INT(find(&s, "ABCD1", out, &err), -ENOENT); /* digests are lowercase */
        nb_error_clear(&err);
        /* A whole digest is taken as it is: a remote may hold it. */
        CHECK_EQ_INT(find(&s, "9999999999999999999999999999999999999999999999999999999999999999", out, &err), 0);
        scratch_close(&s);
}

TEST(find_a_target_by_its_last_run) {
        struct scratch s;
        scratch_open(&s);
        char out[NB_DIGEST_HEX_LEN + 1];
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(find(&s, "lib/tests", out, &err), -ENOENT);
        nb_error_clear(&err);
        nb_replay_note_last(&s.cache, "lib/tests", D_A);
        nb_replay_note_last(&s.cache, "lib/tests", D_B); /* the last one wins */
        CHECK_EQ_INT(find(&s, "lib/tests", out, &err), 0);
        CHECK_EQ_STR(out, D_B);
        CHECK_EQ_INT(find(&s, "lib/other", out, &err), -ENOENT);
        scratch_close(&s);
}
