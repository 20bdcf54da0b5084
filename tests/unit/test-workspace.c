/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "test.h"
#include "workspace/target_folder.h"
#include "workspace/workspace.h"

/* JSON is written with ' for " to stay readable here. */
static char *json(const char *s) {
        char *r = strdup(s);
        for (char *c = r; c && *c; c++)
                if (*c == '\'')
                        *c = '"';
        return r;
}

static int parse(const char *src, struct nb_workspace **ws, struct nb_error *err) {
        _cleanup_free_ char *doc = json(src);
        return nb_workspace_parse(doc, strlen(doc), "nestbox.json", "/ws", ws, err);
}

/* A document with one resolve "default" and one target "p" whose body is given. */
static char *with_target(const char *body) {
        char *r = NULL;
        if (asprintf(&r, "{'version': 1, 'resolves': {'default': {'lockfile': 'a.lock', 'wheelhouse': 'wh'}},"
                         " 'targets': {'p': %s}}", body) < 0)
                return NULL;
        return r;
}

static const char good[] =
        "{\n"
        "  'version': 1,\n"
        "  'python': '/usr/bin/python3.11',\n"
        "  'resolves': {\n"
        "    'python-default': {'lockfile': '3rdparty/python/default.lock', 'wheelhouse': '3rdparty/python/wheelhouse'}\n"
        "  },\n"
        "  'targets': {\n"
        "    'project1/tests': {\n"
        "      'sources': ['lib/src/python/**/*.py', 'project1/src/python/**/*.py'],\n"
        "      'tests': ['project1/test/python/**/*.py'],\n"
        "      'source_roots': ['lib/src/python', 'project1/src/python', 'project1/test/python'],\n"
        "      'resolve': 'python-default',\n"
        "      'timeout': 12.5,\n"
        "      'pytest_args': ['-q'],\n"
        "      'env': ['CI', 'MY_VAR'],\n"
        "      'coverage': true,\n"
        "      'memory': '512M',\n"
        "      'pids': 512\n"
        "    },\n"
        "    'lib/tests': {'tests': ['lib/test/**/test_*.py'], 'resolve': 'python-default'}\n"
        "  }\n"
        "}\n";

TEST(good_file_loads_with_defaults) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        CHECK_EQ_INT(parse(good, &ws, &err), 0);
        if (!ws) {
                fprintf(stderr, "%s\n", nb_error_message(&err));
                return;
        }
        CHECK_EQ_STR(ws->python, "/usr/bin/python3.11");
        CHECK_EQ_INT(ws->root_fd, -1);
        CHECK_EQ_INT(ws->n_resolves, 1);
        const struct nb_resolve *r = nb_workspace_resolve(ws, "python-default");
        CHECK(r != NULL);
        CHECK_EQ_STR(r->lockfile, "3rdparty/python/default.lock");
        CHECK_EQ_STR(r->lockfile_path, "/ws/3rdparty/python/default.lock");
        CHECK_EQ_STR(r->wheelhouse_path, "/ws/3rdparty/python/wheelhouse");

        CHECK_EQ_INT(ws->n_targets, 2);
        CHECK_EQ_STR(ws->targets[0].name, "lib/tests"); /* sorted by name */
        const struct nb_target *t = nb_workspace_target(ws, "project1/tests");
        CHECK(t != NULL);
        CHECK(t->resolve == r);
        CHECK_EQ_STR(t->sources[1], "project1/src/python/**/*.py");
        CHECK(t->sources[2] == NULL);
        CHECK_EQ_STR(t->tests[0], "project1/test/python/**/*.py");
        CHECK_EQ_STR(t->source_roots[2], "project1/test/python");
        CHECK_EQ_STR(t->pytest_args[0], "-q");
        CHECK_EQ_STR(t->env[1], "MY_VAR");
        CHECK_EQ_INT(t->timeout_ms, 12500);
        CHECK_EQ_INT(t->memory, 512ull << 20);
        CHECK_EQ_INT(t->pids, 512);
        CHECK(t->coverage);

        const struct nb_target *d = nb_workspace_target(ws, "lib/tests");
        CHECK(d != NULL);
        CHECK(d->sources && !d->sources[0]);
        CHECK(d->source_roots && !d->source_roots[0]);
        CHECK(d->pytest_args && !d->pytest_args[0]);
        CHECK(d->env && !d->env[0]);
        CHECK_EQ_INT(d->timeout_ms, 300000);
        CHECK_EQ_INT(d->memory, 2ull << 30);
        CHECK_EQ_INT(d->pids, 1024);
        CHECK(!d->coverage);

        CHECK(nb_workspace_target(ws, "nope") == NULL);
        CHECK(nb_workspace_resolve(ws, "nope") == NULL);
}

TEST(python_defaults_and_dot_source_root) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        _cleanup_free_ char *doc = with_target("{'tests': ['t.py'], 'resolve': 'default', 'source_roots': ['.'],"
                                               " 'memory': 1048576, 'timeout': 1}");
        CHECK_EQ_INT(parse(doc, &ws, &err), 0);
        if (!ws)
                return;
        CHECK_EQ_STR(ws->python, "/usr/bin/python3");
        CHECK_EQ_STR(ws->targets[0].source_roots[0], ".");
        CHECK_EQ_INT(ws->targets[0].memory, 1048576);
        CHECK_EQ_INT(ws->targets[0].timeout_ms, 1000);
}

struct bad {
        const char *target; /* a target body, or NULL when doc is the whole document */
        const char *doc;
        const char *message;
};

static const struct bad bad_targets[] = {
        { "{'tests': ['t.py'], 'resolve': 'default', 'timeout': -1}", NULL,
          "nestbox.json: targets.'p'.timeout: expected a positive number of seconds or one of 'short', 'moderate', "
          "'long', 'eternal'" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'timeout': 0}", NULL,
          "nestbox.json: targets.'p'.timeout: expected a positive number of seconds or one of 'short', 'moderate', "
          "'long', 'eternal'" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'timeout': '300'}", NULL,
          "nestbox.json: targets.'p'.timeout: '300': expected seconds or one of short, moderate, long, eternal" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'timeout': 'shorter'}", NULL,
          "nestbox.json: targets.'p'.timeout: 'shorter': expected seconds or one of short, moderate, long, eternal" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'attempts': 0}", NULL,
          "nestbox.json: targets.'p'.attempts: expected an integer from 1 to 100" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'timeout': 1e9}", NULL,
          "nestbox.json: targets.'p'.timeout: expected at most 604800 seconds (one week)" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'timout': 3}", NULL,
          "nestbox.json: targets.'p': unknown key 'timout' (did you mean 'timeout'?)" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'zzzzzzzz': 3}", NULL,
          "nestbox.json: targets.'p': unknown key 'zzzzzzzz'" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'a\\nb': 3}", NULL,
          "nestbox.json: targets.'p': unknown key 'a\\x0ab'" },
        { "{'resolve': 'default'}", NULL, "nestbox.json: targets.'p': missing required key 'tests'" },
        { "{'tests': ['t.py']}", NULL, "nestbox.json: targets.'p': missing required key 'resolve'" },
        { "{'tests': [], 'resolve': 'default'}", NULL, "nestbox.json: targets.'p'.tests: expected at least one glob" },
        { "{'tests': 't.py', 'resolve': 'default'}", NULL,
          "nestbox.json: targets.'p'.tests: expected an array of strings" },
        { "{'tests': ['t.py'], 'sources': ['a.py', 7], 'resolve': 'default'}", NULL,
          "nestbox.json: targets.'p'.sources[1]: expected a string" },
        { "{'tests': ['t.py'], 'resolve': 'defualt'}", NULL,
          "nestbox.json: targets.'p'.resolve: no resolve named 'defualt' (resolves: 'default')" },
        { "{'tests': ['t.py'], 'resolve': 3}", NULL, "nestbox.json: targets.'p'.resolve: expected a string" },
        { "{'tests': ['/etc/*.py'], 'resolve': 'default'}", NULL,
          "nestbox.json: targets.'p'.tests[0]: '/etc/*.py': absolute paths are not allowed (paths are relative "
          "to the workspace root)" },
        { "{'tests': ['t.py'], 'sources': ['a.py', 'lib/../../x/*.py'], 'resolve': 'default'}", NULL,
          "nestbox.json: targets.'p'.sources[1]: 'lib/../../x/*.py': '..' is not allowed (paths must stay inside "
          "the workspace)" },
        { "{'tests': ['..'], 'resolve': 'default'}", NULL,
          "nestbox.json: targets.'p'.tests[0]: '..': '..' is not allowed (paths must stay inside the workspace)" },
        { "{'tests': ['a//b.py'], 'resolve': 'default'}", NULL,
          "nestbox.json: targets.'p'.tests[0]: 'a//b.py': empty path component ('//' or a trailing '/')" },
        { "{'tests': ['t.py'], 'source_roots': ['src/'], 'resolve': 'default'}", NULL,
          "nestbox.json: targets.'p'.source_roots[0]: 'src/': empty path component ('//' or a trailing '/')" },
        { "{'tests': ['./t.py'], 'resolve': 'default'}", NULL,
          "nestbox.json: targets.'p'.tests[0]: './t.py': '.' components are not allowed" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'coverage': 'yes'}", NULL,
          "nestbox.json: targets.'p'.coverage: expected true or false" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'memory': '2X'}", NULL,
          "nestbox.json: targets.'p'.memory: '2X': expected a size such as '512M' or '2G'" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'memory': '0'}", NULL,
          "nestbox.json: targets.'p'.memory: '0': expected a size such as '512M' or '2G'" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'memory': true}", NULL,
          "nestbox.json: targets.'p'.memory: expected a size such as '2G' (or a positive number of bytes)" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'pids': 0}", NULL,
          "nestbox.json: targets.'p'.pids: expected a positive integer" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'pids': 1.5}", NULL,
          "nestbox.json: targets.'p'.pids: expected a positive integer" },
        { "{'tests': ['t.py'], 'resolve': 'default', 'env': ['OK', '1BAD']}", NULL,
          "nestbox.json: targets.'p'.env[1]: '1BAD': expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)" },
        { "['t.py']", NULL, "nestbox.json: targets.'p': expected an object" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'a b': {}}}",
          "nestbox.json: targets.'a b': invalid target name (use letters, digits and . _ - / : @ +)" },
        { NULL, "[]", "nestbox.json: expected a JSON object at the top level" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'/abs/t': {}}}",
          "nestbox.json: targets.'/abs/t': invalid target name: a target name has no empty component (no leading, trailing or doubled /)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'x/': {}}}",
          "nestbox.json: targets.'x/': invalid target name: a target name has no empty component (no leading, trailing or doubled /)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'a//b': {}}}",
          "nestbox.json: targets.'a//b': invalid target name: a target name has no empty component (no leading, trailing or doubled /)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'a/./b': {}}}",
          "nestbox.json: targets.'a/./b': invalid target name: a target name has no . or .. component" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'a/../b': {}}}",
          "nestbox.json: targets.'a/../b': invalid target name: a target name has no . or .. component" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'lib/undeclared': {}}}",
          "nestbox.json: targets.'lib/undeclared': invalid target name: a component of a target name is none of the names --output uses (undeclared, result.json, junit.xml, log, action.json, coverage.*, run-N, shard-K-of-N)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'lib/run-1': {}}}",
          "nestbox.json: targets.'lib/run-1': invalid target name: a component of a target name is none of the names --output uses (undeclared, result.json, junit.xml, log, action.json, coverage.*, run-N, shard-K-of-N)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'lib/shard-1-of-2': {}}}",
          "nestbox.json: targets.'lib/shard-1-of-2': invalid target name: a component of a target name is none of the names --output uses (undeclared, result.json, junit.xml, log, action.json, coverage.*, run-N, shard-K-of-N)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'log': {}}}",
          "nestbox.json: targets.'log': invalid target name: a component of a target name is none of the names --output uses (undeclared, result.json, junit.xml, log, action.json, coverage.*, run-N, shard-K-of-N)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'x/junit.xml': {}}}",
          "nestbox.json: targets.'x/junit.xml': invalid target name: a component of a target name is none of the names --output uses (undeclared, result.json, junit.xml, log, action.json, coverage.*, run-N, shard-K-of-N)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'x/coverage.lcov': {}}}",
          "nestbox.json: targets.'x/coverage.lcov': invalid target name: a component of a target name is none of the names --output uses (undeclared, result.json, junit.xml, log, action.json, coverage.*, run-N, shard-K-of-N)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'a@b': {}, 'a_b': {}}}",
          "nestbox.json: targets: targets 'a@b' and 'a_b' would share the --output folder a_b" },

        { NULL, "{'resolves': {}, 'targets': {}}", "nestbox.json: missing required key 'version'" },
        { NULL, "{'version': 1, 'targets': {}}", "nestbox.json: missing required key 'resolves'" },
        { NULL, "{'version': 1, 'resolves': {}}", "nestbox.json: missing required key 'targets'" },
        { NULL, "{'version': 2, 'resolves': {}, 'targets': {}}",
          "nestbox.json: version: unsupported version 2 (this nestbox reads version 1)" },
        { NULL, "{'version': '1', 'resolves': {}, 'targets': {}}", "nestbox.json: version: expected the integer 1" },
        { NULL, "{'version': 1, 'resolves': {}, 'target': {}}",
          "nestbox.json: unknown key 'target' (did you mean 'targets'?)" },
        { NULL, "{'version': 1, 'python': 'python3', 'resolves': {}, 'targets': {}}",
          "nestbox.json: python: expected an absolute path to the interpreter" },
        { NULL, "{'version': 1, 'resolves': [], 'targets': {}}", "nestbox.json: resolves: expected an object" },
        { NULL, "{'version': 1, 'resolves': {'r': {'lockfile': 'a.lock'}}, 'targets': {}}",
          "nestbox.json: resolves.'r': missing required key 'wheelhouse'" },
        { NULL, "{'version': 1, 'resolves': {'r': {'lockfile': '/a.lock', 'wheelhouse': 'w'}}, 'targets': {}}",
          "nestbox.json: resolves.'r'.lockfile: '/a.lock': absolute paths are not allowed (paths are relative to "
          "the workspace root)" },
        { NULL, "{'version': 1, 'resolves': {'r': {'lockfile': 'a.lock', 'wheelhouse': '../w'}}, 'targets': {}}",
          "nestbox.json: resolves.'r'.wheelhouse: '../w': '..' is not allowed (paths must stay inside the "
          "workspace)" },
        { NULL, "{'version': 1, 'resolves': {'r': {'lockfle': 'a', 'wheelhouse': 'w'}}, 'targets': {}}",
          "nestbox.json: resolves.'r': unknown key 'lockfle' (did you mean 'lockfile'?)" },
        { NULL, "{'version': 1, 'resolves': {}, 'targets': {'p': {'tests': ['t.py'], 'resolve': 'x'}}}",
          "nestbox.json: targets.'p'.resolve: no resolve named 'x' (resolves: none)" },
};

TEST(bad_inputs_name_file_path_and_problem) {
        for (size_t i = 0; i < NB_ELEMENTSOF(bad_targets); i++) {
                const struct bad *b = &bad_targets[i];
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
                _cleanup_free_ char *doc = b->target ? with_target(b->target) : strdup(b->doc);
                _cleanup_free_ char *want = json(b->message);
                CHECK_EQ_INT(parse(doc, &ws, &err), -EINVAL);
                CHECK(ws == NULL);
                CHECK_EQ_STR(nb_error_message(&err), want);
                CHECK(strchr(nb_error_message(&err), '\n') == NULL);
        }
}

/* Bazel's timeout categories and the retry count per target. */
TEST(timeout_categories_and_attempts) {
        static const struct { const char *timeout; uint64_t ms; } cases[] = {
                { "'short'", 60000 }, { "'moderate'", 300000 }, { "'long'", 900000 }, { "'eternal'", 3600000 },
                { "2.5", 2500 },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *doc = NULL;
                CHECK(asprintf(&doc, "{'version': 1, 'resolves': {'d': {'lockfile': 'l', 'wheelhouse': 'w'}}, "
                               "'targets': {'p': {'tests': ['t.py'], 'resolve': 'd', 'timeout': %s, 'attempts': 3}}}",
                               cases[i].timeout) > 0);
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
                CHECK_EQ_INT(parse(doc, &ws, &err), 0);
                if (!ws) {
                        fprintf(stderr, "%s\n", nb_error_message(&err));
                        continue;
                }
                CHECK_EQ_INT(ws->targets[0].timeout_ms, cases[i].ms);
                CHECK_EQ_INT(ws->targets[0].attempts, 3);
        }
}

TEST(invalid_json_gives_line_and_column) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        CHECK_EQ_INT(parse("{\n  'version': 1,\n  'resolves': {]\n}", &ws, &err), -EINVAL);
        const char *m = nb_error_message(&err);
        CHECK(strncmp(m, "nestbox.json:3:16: invalid JSON: ", 33) == 0);
        if (strncmp(m, "nestbox.json:3:16: ", 19) != 0)
                fprintf(stderr, "got: %s\n", m);

        /* Duplicate keys would silently drop one of the two: refused. */
        CHECK_EQ_INT(parse("{'version': 1, 'version': 1}", &ws, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "duplicate") != NULL);
        CHECK(strncmp(nb_error_message(&err), "nestbox.json:1:", 15) == 0);
        CHECK_EQ_INT(parse("", &ws, &err), -EINVAL);
        CHECK(strncmp(nb_error_message(&err), "nestbox.json:", 13) == 0);
}

static int write_at(int dfd, const char *name, const char *data) {
        return nb_write_file_beneath(dfd, name, data, strlen(data), 0644);
}

TEST(load_from_disk) {
        char tmpl[] = "/tmp/nb-test-ws.XXXXXX";
        CHECK(mkdtemp(tmpl) != NULL);
        _cleanup_close_ int dfd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(dfd >= 0);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_workspace *ws = NULL;
        _cleanup_free_ char *want = NULL;

        /* No file yet. */
        CHECK(asprintf(&want, "%s/nestbox.json: No such file or directory", tmpl) > 0);
        CHECK_EQ_INT(nb_workspace_load(tmpl, &ws, &err), -ENOENT);
        CHECK_EQ_STR(nb_error_message(&err), want);

        _cleanup_free_ char *doc = json(good);
        CHECK_EQ_INT(write_at(dfd, "nestbox.json", doc), 0);
        CHECK_EQ_INT(nb_workspace_load(tmpl, &ws, &err), 0);
        if (ws) {
                CHECK(ws->root_fd >= 0);
                CHECK_EQ_STR(ws->root, tmpl);
                free(want);
                want = NULL;
                CHECK(asprintf(&want, "%s/3rdparty/python/default.lock", tmpl) > 0);
                CHECK_EQ_STR(ws->resolves[0].lockfile_path, want);
                nb_workspace_freep(&ws);
        }

        /* Messages name the file as it was given. */
        CHECK_EQ_INT(write_at(dfd, "nestbox.json", "{\"version\": 3}"), 0);
        free(want);
        want = NULL;
        CHECK(asprintf(&want, "%s/nestbox.json: version: unsupported version 3 (this nestbox reads version 1)",
                       tmpl) > 0);
        _cleanup_free_ char *slashed = NULL;
        CHECK(asprintf(&slashed, "%s//", tmpl) > 0);
        CHECK_EQ_INT(nb_workspace_load(slashed, &ws, &err), -EINVAL);
        CHECK_EQ_STR(nb_error_message(&err), want);

        /* A link is not read: nestbox.json must be the workspace's own file. */
        CHECK(unlinkat(dfd, "nestbox.json", 0) == 0);
        CHECK(symlinkat("/etc/passwd", dfd, "nestbox.json") == 0);
        CHECK_EQ_INT(nb_workspace_load(tmpl, &ws, &err), -ELOOP);
        CHECK(strstr(nb_error_message(&err), "is a symlink") != NULL);
        CHECK(ws == NULL);

        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, tmpl), 0);
}

/* The names --output writes: a target may not take them, and clearing keeps a
 * sibling only in the spelling nestbox writes (no sign, space or leading zero). */
TEST(output_folder_names) {
        unsigned a = 0, b = 0;
        CHECK(nb_output_run_folder("run-3", &a) && a == 3);
        CHECK(nb_output_shard_folder("shard-2-of-5", &a, &b) && a == 2 && b == 5);
        CHECK(nb_output_run_folder("run-99999999999999999999", &a) && a == UINT_MAX);
        static const char *const not_ours[] = { "run-", "run-02", "run-+2", "run- 2", "run-2x", "shard-1-of-",
                                                "shard--of-2", "shard-01-of-2", "shard-1-of-02", "shard-1-of-2-of-3",
                                                "Run-1", "shard-1of-2" };
        for (size_t i = 0; i < sizeof(not_ours) / sizeof(*not_ours); i++) {
                CHECK(!nb_output_run_folder(not_ours[i], &a));
                CHECK(!nb_output_shard_folder(not_ours[i], &a, &b));
                CHECK(!nb_output_reserved(not_ours[i]));
        }
        static const char *const reserved[] = { "undeclared", "result.json", "junit.xml", "log", "action.json",
                                                "coverage.lcov", "coverage.anything", "run-1", "shard-3-of-4" };
        for (size_t i = 0; i < sizeof(reserved) / sizeof(*reserved); i++)
                CHECK(nb_output_reserved(reserved[i]));
        CHECK(!nb_output_reserved("results.json"));
        CHECK(nb_target_name_problem("lib/run-1") != NULL);
        CHECK(nb_target_name_problem("lib/run-01") == NULL);
}
