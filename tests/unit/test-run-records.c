/* SPDX-License-Identifier: MIT */
/* What the driver records in /out is read back as untrusted (action/run_records.c):
 * node ids split the way pytest's junitxml names them, lines that are not UTF-8 or
 * hold control characters dropped, caps honoured, links never followed. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/run.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "test.h"

TEST(node_ids_split_as_junitxml_names_them) {
        static const struct { const char *id, *classname, *name; } cases[] = {
                { "tests/test_a.py::test_b", "tests.test_a", "test_b" },
                { "tests/test_a.py::TestX::test_y[1-::]", "tests.test_a.TestX", "test_y[1-::]" },
                { "test_top.py::test_z", "test_top", "test_z" },
                { "pkg/test_py.py::test_q", "pkg.test_py", "test_q" },
                { "lonely", "", "lonely" },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *c = NULL, *n = NULL;
                CHECK_EQ_INT(nb_nodeid_split(cases[i].id, &c, &n), 0);
                CHECK_EQ_STR(c, cases[i].classname);
                CHECK_EQ_STR(n, cases[i].name);
        }
}

static int scratch(char path[static 64]) {
        strcpy(path, "/tmp/nb-records-XXXXXX");
        if (!mkdtemp(path))
                return -1;
        return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void put(int dir, const char *name, const char *data, size_t len) {
        CHECK_EQ_INT(nb_write_file_beneath(dir, name, data, len, 0644), 0);
}

TEST(ids_are_checked_and_capped) {
        char path[64];
        _cleanup_close_ int dir = scratch(path);
        CHECK(dir >= 0);
        static const char mixed[] = "a.py::ok\n\x1b[31mred\nbad\xff\xfe\n\na.py::t\xc3\xa9st\nnul\0hidden\n";
        put(dir, "ids", mixed, sizeof(mixed) - 1);
        _cleanup_strv_free_ char **v = NULL;
        CHECK_EQ_INT(nb_run_read_ids(dir, "ids", 4096, 100, &v), 0);
        CHECK(v && v[0] && v[1] && v[2] && !v[3]);
        if (v && v[0] && v[1] && v[2]) {
                CHECK_EQ_STR(v[0], "a.py::ok");
                CHECK_EQ_STR(v[1], "a.py::t\xc3\xa9st");
                CHECK_EQ_STR(v[2], "nul"); /* the text ends at a NUL */
        }

        /* Over the count or the size: not known, rather than cut. */
        _cleanup_strv_free_ char **few = NULL, **small = NULL, **none = NULL, **linked = NULL;
        CHECK_EQ_INT(nb_run_read_ids(dir, "ids", 4096, 2, &few), 0);
        CHECK(few == NULL);
        CHECK_EQ_INT(nb_run_read_ids(dir, "ids", 8, 100, &small), 0);
        CHECK(small == NULL);
        CHECK_EQ_INT(nb_run_read_ids(dir, "missing", 4096, 100, &none), 0);
        CHECK(none == NULL);

        /* A link planted by the test is refused, never followed. */
        put(dir, "secret", "host::data\n", 11);
        CHECK_EQ_INT(symlinkat("secret", dir, "link"), 0);
        CHECK_EQ_INT(nb_run_read_ids(dir, "link", 4096, 100, &linked), 0);
        CHECK(linked == NULL);
        _cleanup_free_ char *text = NULL;
        CHECK_EQ_INT(nb_run_read_text(dir, "link", 4096, &text), 0);
        CHECK(text == NULL);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, path), 0);
}
