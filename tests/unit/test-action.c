/* SPDX-License-Identifier: MIT */
/* The action: both builders give the same value and digest, the JSON round trip keeps
 * it, every field that decides a result moves the digest and the workspace's location
 * does not. The venv is named by digest (a fake, complete entry in a scratch cache) so
 * no interpreter has to run. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/action_workspace.h"
#include "cache/cache_dir.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "test.h"

#define FAKE_VENV "1111111111111111111111111111111111111111111111111111111111111111"

struct scratch {
        char dir[64];
        char *ws, *ws2, *cache_path;
        struct nb_cache_dir cache;
};

static void put(const char *root, const char *rel, const char *text) {
        _cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int d = -1;
        const char *slash = strrchr(rel, '/');
        _cleanup_free_ char *parent = slash ? strndup(rel, (size_t) (slash - rel)) : NULL;
        d = parent ? nb_mkdir_p_beneath(fd, parent, 0755) : dup(fd);
        CHECK(d >= 0);
        CHECK(nb_write_file_beneath(d, slash ? slash + 1 : rel, text, strlen(text), 0644) >= 0);
}

static void make_workspace(const char *root) {
        CHECK(mkdir(root, 0755) == 0);
        put(root, "lib/src/python/m/__init__.py", "");
        put(root, "lib/src/python/m/money.py", "def add(a, b):\n    return a + b\n");
        put(root, "lib/test/python/m/test_money.py", "from m.money import add\ndef test_add():\n    assert add(1, 2) == 3\n");
        put(root, "lib/test/python/m/conftest.py", "");
        put(root, "3rdparty/default.lock", "");
        _cleanup_free_ char *wheelhouse = NULL;
        CHECK(asprintf(&wheelhouse, "%s/3rdparty/wheelhouse", root) > 0 && mkdir(wheelhouse, 0755) == 0);
        put(root, "nestbox.json",
            "{\"version\": 1, \"resolves\": {\"r\": {\"lockfile\": \"3rdparty/default.lock\","
            " \"wheelhouse\": \"3rdparty/wheelhouse\"}}, \"targets\": {\"lib/tests\": {"
            " \"sources\": [\"lib/src/python/**/*.py\"], \"tests\": [\"lib/test/python/**/*.py\"],"
            " \"source_roots\": [\"lib/src/python\", \"lib/test/python\"], \"resolve\": \"r\","
            " \"timeout\": 60, \"env\": [\"NB_TEST_ACTION_VAR\"]}}}");
}

static void scratch_open(struct scratch *s) {
        snprintf(s->dir, sizeof(s->dir), "/tmp/nb-test-action.XXXXXX");
        CHECK(mkdtemp(s->dir) != NULL);
        CHECK(asprintf(&s->ws, "%s/ws", s->dir) > 0 && asprintf(&s->ws2, "%s/elsewhere", s->dir) > 0 &&
              asprintf(&s->cache_path, "%s/cache", s->dir) > 0);
        make_workspace(s->ws);
        make_workspace(s->ws2);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(nb_cache_dir_open(&s->cache, s->cache_path, &err), 0);
        _cleanup_free_ char *venv = NULL;
        CHECK(asprintf(&venv, "%s/venvs/%s", s->cache_path, FAKE_VENV) > 0);
        CHECK(mkdir(venv, 0755) == 0);
        put(venv, ".nestbox-complete", FAKE_VENV "\n");
}

static void scratch_close(struct scratch *s) {
        nb_cache_dir_close(&s->cache);
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        (void) nb_rm_rf_at(tmp, s->dir + strlen("/tmp/"));
        free(s->ws);
        free(s->ws2);
        free(s->cache_path);
}

/* The workspace's target as an action, its resolve replaced by the fake venv. */
static struct nb_action *from_workspace(const char *root, const struct nb_action_options *o) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        struct nb_action *a = NULL;
        CHECK_EQ_INT(nb_workspace_load(root, &ws, &err), 0);
        if (!ws)
                return NULL;
        CHECK_EQ_INT(nb_action_from_target(ws, &ws->targets[0], o, &a, &err), 0);
        if (a) {
                free(a->lockfile);
                free(a->wheelhouse);
                a->lockfile = a->wheelhouse = NULL;
                memcpy(a->venv_given, FAKE_VENV, sizeof(FAKE_VENV));
        }
        return a;
}

static void digest_of(struct nb_action *a, struct scratch *s, char out[NB_DIGEST_HEX_LEN + 1]) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        out[0] = 0;
        if (!a)
                return;
        int r = nb_action_resolve(a, &s->cache, &err);
        CHECK_EQ_INT(r, 0);
        if (r < 0)
                fprintf(stderr, "  %s\n", nb_error_message(&err));
        memcpy(out, a->resolved.digest, NB_DIGEST_HEX_LEN + 1);
}

/* The action's JSON with one edit: replace the first occurrence of from with to. */
static struct nb_action *from_edited_json(const struct nb_action *a, const char *from, const char *to,
                                          struct nb_error *err) {
        _cleanup_free_ char *text = NULL, *edited = NULL;
        CHECK_EQ_INT(nb_action_to_json(a, &text), 0);
        const char *at = text ? strstr(text, from) : NULL;
        CHECK(at != NULL);
        if (!at)
                return NULL;
        CHECK(asprintf(&edited, "%.*s%s%s", (int) (at - text), text, to, at + strlen(from)) > 0);
        struct nb_action *b = NULL;
        (void) nb_action_from_json(edited, strlen(edited), "a.json", &b, err);
        return b;
}

TEST(both_builders_and_the_json_round_trip_give_one_digest) {
        struct scratch s;
        scratch_open(&s);
        setenv("NB_TEST_ACTION_VAR", "on", 1);
        struct nb_action_options o = { 0 };
        _cleanup_action_ struct nb_action *a = from_workspace(s.ws, &o);
        char d1[NB_DIGEST_HEX_LEN + 1], d2[NB_DIGEST_HEX_LEN + 1];
        digest_of(a, &s, d1);
        CHECK(nb_is_digest(d1));
        /* Expanded: the declared files, tests apart from sources. */
        CHECK(a && a->tests[0] && strcmp(a->tests[0], "lib/test/python/m/conftest.py") == 0);
        CHECK(a && a->env[0] && strcmp(a->env[0], "NB_TEST_ACTION_VAR=on") == 0);

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_action_ struct nb_action *b = from_edited_json(a, "\"schema\"", "\"schema\"", &err);
        digest_of(b, &s, d2);
        CHECK_EQ_STR(d2, d1);

        /* The same workspace elsewhere: the same action. */
        _cleanup_action_ struct nb_action *c = from_workspace(s.ws2, &o);
        digest_of(c, &s, d2);
        CHECK_EQ_STR(d2, d1);
        unsetenv("NB_TEST_ACTION_VAR");
        scratch_close(&s);
}

TEST(every_field_that_decides_a_result_moves_the_digest) {
        struct scratch s;
        scratch_open(&s);
        struct nb_action_options o = { 0 };
        _cleanup_action_ struct nb_action *a = from_workspace(s.ws, &o);
        char base[NB_DIGEST_HEX_LEN + 1], d[NB_DIGEST_HEX_LEN + 1];
        digest_of(a, &s, base);
        static const struct { const char *from, *to; } edits[] = {
                { "\"seed\":", "\"seed\":1," "\"x_seed\":" },
                { "\"run\":1", "\"run\":2" },
                { "\"run\":1", "\"run\":1,\"attempt\":2" },
                { "\"run\":1", "\"run\":1,\"shuffle\":true" },
                { "\"run\":1", "\"run\":1,\"select\":[\"lib/test/python/m/test_money.py::test_add\"]" },
                { "\"timeout\":60.0", "\"timeout\":\"long\"" },
                { "\"shard\":{\"count\":1,\"index\":1}", "\"shard\":{\"count\":2,\"index\":2}" },
                { "\"env\":{}", "\"env\":{\"CI\":\"1\"}" },
                { "\"pytest_args\":[]", "\"pytest_args\":[\"-x\"]" },
                { "\"timeout\":60.0", "\"timeout\":61" },
                { "\"memory\":2147483648", "\"memory\":\"1G\"" },
                { "\"pids\":1024", "\"pids\":1000" },
                { "\"coverage\":false", "\"coverage\":true" },
                { "\"lib/test/python/m/conftest.py\",", "" },
                { "\"source_roots\":[\"lib/src/python\",", "\"source_roots\":[" },
                { "\"target\":\"lib/tests\"", "\"target\":\"lib/tests2\"" },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(edits); i++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                _cleanup_action_ struct nb_action *b = from_edited_json(a, edits[i].from, edits[i].to, &err);
                if (i == 0) {
                        /* "x_seed" is not a key: the reader must say so and suggest "seed". */
                        CHECK(b == NULL);
                        CHECK(strstr(nb_error_message(&err), "unknown key \"x_seed\" (did you mean \"seed\"?)") != NULL);
                        CHECK_EQ_INT(err.klass, NB_ERROR_INPUT);
                        continue;
                }
                CHECK(b != NULL);
                if (!b) {
                        fprintf(stderr, "  edit %zu: %s\n", i, nb_error_message(&err));
                        continue;
                }
                digest_of(b, &s, d);
                if (strcmp(d, base) == 0)
                        fprintf(stderr, "  edit %zu (%s) kept the digest\n", i, edits[i].to);
                CHECK(strcmp(d, base) != 0);
        }
        /* A byte of a declared file. */
        put(s.ws, "lib/src/python/m/money.py", "def add(a, b):\n    return b + a\n");
        _cleanup_action_ struct nb_action *c = from_workspace(s.ws, &o);
        digest_of(c, &s, d);
        CHECK(strcmp(d, base) != 0);
        scratch_close(&s);
}

/* --runs-per-test: run k is its own action (never a cache hit of another) with its
 * own seed, unless --seed fixes one for all; a timeout category is its seconds. */
TEST(each_run_has_its_own_digest_and_seed) {
        struct scratch s;
        scratch_open(&s);
        struct nb_action_options o1 = { 0 }, o2 = { .run = 2 }, f1 = { .seed = 7, .seed_set = true },
                                 f2 = { .run = 2, .seed = 7, .seed_set = true };
        _cleanup_action_ struct nb_action *a1 = from_workspace(s.ws, &o1), *a2 = from_workspace(s.ws, &o2),
                                          *b1 = from_workspace(s.ws, &f1), *b2 = from_workspace(s.ws, &f2);
        char d1[NB_DIGEST_HEX_LEN + 1], d2[NB_DIGEST_HEX_LEN + 1], e1[NB_DIGEST_HEX_LEN + 1],
                e2[NB_DIGEST_HEX_LEN + 1], d[NB_DIGEST_HEX_LEN + 1];
        digest_of(a1, &s, d1);
        digest_of(a2, &s, d2);
        digest_of(b1, &s, e1);
        digest_of(b2, &s, e2);
        CHECK(strcmp(d1, d2) != 0);
        CHECK(strcmp(e1, e2) != 0);
        CHECK(a1 && a2 && a1->seed != a2->seed);
        CHECK(a1 && a1->seed == nb_action_run_seed(1));
        CHECK(b1 && b2 && b1->seed == 7 && b2->seed == 7);
        CHECK(a2 && a2->run == 2 && a2->attempt == 1);

        /* "short" is 60 seconds: the workspace's timeout, so the same action. */
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_action_ struct nb_action *c = from_edited_json(a1, "\"timeout\":60.0", "\"timeout\":\"short\"", &err);
        CHECK(c && c->policy.timeout_ms == 60000);
        digest_of(c, &s, d);
        CHECK_EQ_STR(d, d1);
        scratch_close(&s);
}

TEST(bad_fields_are_named) {
        static const struct { const char *json, *message; } cases[] = {
                { "[]", "a.json: expected a JSON object (a nestbox.action/v1)" },
                { "{\"schema\": \"nestbox.action/v1\", \"target\": \"t\", \"tests\": [\"a.py\"], \"python\": \"/p\"}",
                  "a.json: .resolve: missing (required)" },
                { "{\"schema\": \"nestbox.action/v2\", \"target\": \"t\", \"tests\": [\"a.py\"], \"python\": \"/p\","
                  " \"resolve\": {\"venv\": \"" FAKE_VENV "\"}, \"root\": \"/\"}",
                  "a.json: .schema: expected \"nestbox.action/v1\"" },
                { "{\"schema\": \"nestbox.action/v1\", \"target\": \"t\", \"tests\": [\"a.py\"], \"python\": \"/p\","
                  " \"resolve\": {\"venv\": \"" FAKE_VENV "\"}, \"root\": \"/\", \"policy\": {\"memory\": \"2X\"}}",
                  "a.json: .policy.memory: \"2X\": expected a size such as \"512M\" or \"2G\"" },
                { "{\"schema\": \"nestbox.action/v1\", \"target\": \"t\", \"tests\": [\"../a.py\"], \"python\": \"/p\","
                  " \"resolve\": {\"venv\": \"" FAKE_VENV "\"}, \"root\": \"/\"}",
                  "a.json: .tests[0]: \"../a.py\": \"..\" is not allowed (paths must stay inside the workspace)" },
                { "{\"schema\": \"nestbox.action/v1\", \"target\": \"t\", \"tests\": [\"a.py\"], \"python\": \"/p\","
                  " \"resolve\": {\"venv\": \"" FAKE_VENV "\"}, \"root\": \"/\", \"shard\": {\"index\": 3, \"count\": 2}}",
                  "a.json: .shard.index: expected an integer from 1 to 2" },
                { "{\"schema\": \"nestbox.action/v1\", \"target\": \"t\", \"tests\": [\"a.py\"], \"python\": \"/p\","
                  " \"resolve\": {\"venv\": \"" FAKE_VENV "\"}}",
                  "a.json: .root: missing (required unless \"tree\" names an input tree in the cache)" },
                { "{\"schema\": 1,", "a.json: line 1: string or '}' expected near end of file" },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(cases); i++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                _cleanup_action_ struct nb_action *a = NULL;
                CHECK(nb_action_from_json(cases[i].json, strlen(cases[i].json), "a.json", &a, &err) < 0);
                CHECK_EQ_STR(nb_error_message(&err), cases[i].message);
                CHECK_EQ_INT(err.klass, NB_ERROR_INPUT);
        }
}
