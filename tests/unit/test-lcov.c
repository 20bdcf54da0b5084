/* SPDX-License-Identifier: MIT */
/* LCOV (coverage/lcov.h): summing, writing, Cobertura, and hostile input. */
#include <stdlib.h>
#include <string.h>

#include "coverage/lcov.h"
#include "nestbox/cleanup.h"
#include "test.h"

static int parse(struct nb_lcov *l, const char *text) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        return nb_lcov_parse(l, text, strlen(text), "in", &err);
}

TEST(lcov_sums_files_and_lines) {
        struct nb_lcov l = {};
        CHECK_EQ_INT(parse(&l, "TN:\nSF:/work/src/b.py\nDA:2,1\nDA:1,0,abc\nFN:1,f\nLF:2\nLH:1\nend_of_record\n"
                               "SF:src/a.py\nDA:1,3\nend_of_record\n"), 0);
        CHECK_EQ_INT(parse(&l, "SF:src/b.py\r\nDA:1,2\r\nDA:3,0\r\nend_of_record\r\n"), 0);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_lcov_to_text(&l, &text, &len), 0);
        CHECK_EQ_STR(text, "TN:\nSF:src/a.py\nDA:1,3\nLF:1\nLH:1\nend_of_record\n"
                           "SF:src/b.py\nDA:1,2\nDA:2,1\nDA:3,0\nLF:3\nLH:2\nend_of_record\n");
        size_t lines, hit;
        nb_lcov_totals(&l, &lines, &hit);
        CHECK_EQ_INT(lines, 4);
        CHECK_EQ_INT(hit, 3);
        _cleanup_free_ char *xml = NULL;
        CHECK_EQ_INT(nb_lcov_to_cobertura(&l, &xml, &len), 0);
        CHECK(strstr(xml, "<source>.</source>") != NULL);
        CHECK(strstr(xml, "<package name=\"src\" line-rate=\"0.7500\"") != NULL);
        CHECK(strstr(xml, "filename=\"src/b.py\"") != NULL);
        CHECK(strstr(xml, "<line number=\"3\" hits=\"0\"/>") != NULL);
        nb_lcov_done(&l);
}

TEST(lcov_hits_saturate) {
        struct nb_lcov l = {};
        CHECK_EQ_INT(parse(&l, "SF:a.py\nDA:1,18446744073709551615\nend_of_record\nSF:a.py\nDA:1,5\n"), 0);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_lcov_to_text(&l, &text, &len), 0);
        CHECK(strstr(text, "DA:1,18446744073709551615\n") != NULL);
        nb_lcov_done(&l);
}

TEST(lcov_refuses_hostile_input) {
        static const char *const bad[] = {
                "SF:/etc/passwd\nDA:1,1\n",       /* absolute, outside the workspace */
                "SF:../x.py\n",                   /* climbs */
                "SF:a/../../x.py\n",
                "SF:a\x1b[2Jb.py\n",              /* a control character */
                "SF:a\xff.py\n",                  /* invalid UTF-8 */
                "SF:\n",
                "DA:1,1\n",                       /* outside a file */
                "SF:a.py\nDA:1\n",
                "SF:a.py\nDA:x,1\n",
                "SF:a.py\nDA:1,-1\n",
                "SF:a.py\nDA:1,18446744073709551616\n", /* over 64 bits */
                "SF:a.py\nDA:100000001,1\n",
                "garbage\n",
                "SF:a.py\nend_of_record\n:x\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct nb_lcov l = {};
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                int r = nb_lcov_parse(&l, bad[i], strlen(bad[i]), "evil.lcov", &err);
                if (r >= 0)
                        fprintf(stderr, "accepted: %s\n", bad[i]);
                CHECK(r < 0);
                CHECK(strncmp(nb_error_message(&err), "evil.lcov: line ", 16) == 0);
                CHECK(strchr(nb_error_message(&err), '\n') == NULL);
                nb_lcov_done(&l);
        }
        /* A NUL inside a path is not a shorter path. */
        struct nb_lcov l = {};
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK(nb_lcov_parse(&l, "SF:a.py\0/etc\n", 13, "nul", &err) < 0);
        nb_lcov_done(&l);
}

/* "SF:<path>" and lines from..to of it, each hit once. */
static char *lines_text(const char *path, size_t from, size_t to, size_t *len) {
        char *text = malloc(strlen(path) + 8 + (to - from + 1) * 16);
        if (!text)
                return NULL;
        *len = (size_t) sprintf(text, "SF:%s\n", path);
        for (size_t i = from; i <= to; i++)
                *len += (size_t) sprintf(text + *len, "DA:%zu,1\n", i);
        return text;
}

/* Bounded memory: distinct lines beyond the cap are an error, not an allocation;
 * records that repeat lines (a merge of many shards) are folded, not refused. */
TEST(lcov_caps_distinct_lines) {
        size_t n = NB_LCOV_MAX_RECORDS + 1, len = 0;
        char *text = malloc(8 + n * 7);
        CHECK(text != NULL);
        if (!text)
                return;
        len += (size_t) sprintf(text, "SF:a.py\n");
        for (size_t i = 0; i < n; i++) {
                memcpy(text + len, "DA:1,1\n", 7);
                len += 7;
        }
        struct nb_lcov l = {};
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(nb_lcov_parse(&l, text, len, "same line", &err), 0);
        free(text);
        CHECK_EQ_INT(nb_lcov_normalize(&l), 0);
        CHECK_EQ_INT(l.n, 1);
        CHECK(l.n == 1 && l.files[0].n == 1 && l.files[0].lines[0].hits == n);
        nb_lcov_done(&l);

        /* Half the cap of distinct lines, read three times: held once. */
        size_t half = NB_LCOV_MAX_RECORDS / 2;
        char *a = lines_text("a.py", 1, half, &len);
        CHECK(a != NULL);
        if (!a)
                return;
        struct nb_lcov m = {};
        for (int i = 0; i < 3; i++)
                CHECK_EQ_INT(nb_lcov_parse(&m, a, len, "shard", &err), 0);
        CHECK_EQ_INT(nb_lcov_normalize(&m), 0);
        CHECK(m.n == 1 && m.files[0].n == half && m.files[0].lines[half - 1].hits == 3);
        /* And another file's half and one more: more distinct lines than the cap. */
        size_t blen = 0;
        char *b = lines_text("b.py", 1, half + 1, &blen);
        CHECK(b != NULL);
        if (b) {
                CHECK(nb_lcov_parse(&m, b, blen, "big", &err) == -EFBIG);
                CHECK(strstr(nb_error_message(&err), "big: more than 8388608 distinct lines in all") != NULL);
        }
        nb_lcov_done(&m);
        free(a);
        free(b);
}
