/* SPDX-License-Identifier: MIT */
/* JUnit XML: parsing real pytest output, refusing hostile documents (XXE, billion
 * laughs, size, depth, DOCTYPE), writing reports that always re-parse, merging shards
 * and attempts. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parser.h>

#include "junit/junit.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "test.h"

/* /usr/bin/python3 -m pytest --junitxml=junit.xml on a file with a pass, a failing
 * assert on "a & b" == "<c>", a fixture error, a skip and two parametrized cases
 * (pytest 7.2.1), verbatim. */
static const char PYTEST_XML[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites><testsuite name=\"pytest\" errors=\"1\" failures=\"2\" skipped=\"1\" tests=\"6\" time=\"0.024\" timestamp=\"2026-11-25T09:20:00.014265\" hostname=\"vm\"><testcase classname=\"test_sample\" name=\"test_pass\" time=\"0.000\" /><testcase classname=\"test_sample\" name=\"test_fail\" time=\"0.000\"><failure message=\"AssertionError: strings differ&#10;assert 'a &amp; b' == '&lt;c&gt;'&#10;  - &lt;c&gt;&#10;  + a &amp; b\">def test_fail():\n"
        "        print(\"some stdout\")\n"
        "&gt;       assert \"a &amp; b\" == \"&lt;c&gt;\", \"strings differ\"\n"
        "E       AssertionError: strings differ\n"
        "E       assert 'a &amp; b' == '&lt;c&gt;'\n"
        "E         - &lt;c&gt;\n"
        "E         + a &amp; b\n"
        "\n"
        "test_sample.py:16: AssertionError</failure></testcase><testcase classname=\"test_sample\" name=\"test_error\" time=\"0.000\"><error message=\"failed on setup with &quot;RuntimeError: fixture exploded&quot;\">@pytest.fixture\n"
        "    def broken():\n"
        "&gt;       raise RuntimeError(\"fixture exploded\")\n"
        "E       RuntimeError: fixture exploded\n"
        "\n"
        "test_sample.py:7: RuntimeError</error></testcase><testcase classname=\"test_sample\" name=\"test_skip\" time=\"0.000\"><skipped type=\"pytest.skip\" message=\"not today\">/tmp/junit-sample/test_sample.py:23: not today</skipped></testcase><testcase classname=\"test_sample.TestGroup\" name=\"test_param[1]\" time=\"0.000\" /><testcase classname=\"test_sample.TestGroup\" name=\"test_param[2]\" time=\"0.000\"><failure message=\"assert 2 == 1\">self = &lt;test_sample.TestGroup object at 0x7f9bf358c590&gt;, n = 2\n"
        "\n"
        "    @pytest.mark.parametrize(\"n\", [1, 2])\n"
        "    def test_param(self, n):\n"
        "&gt;       assert n == 1\n"
        "E       assert 2 == 1\n"
        "\n"
        "test_sample.py:31: AssertionError</failure></testcase></testsuite></testsuites>";

/* The same failing test with -o junit_logging=all: <system-out>, <system-err>. */
static const char PYTEST_LOGGING_XML[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites><testsuite name=\"pytest\" errors=\"0\" failures=\"1\" skipped=\"0\" tests=\"1\" time=\"0.019\" timestamp=\"2026-11-25T09:20:02.203601\" hostname=\"vm\"><testcase classname=\"test_sample\" name=\"test_fail\" time=\"0.001\"><failure message=\"AssertionError: strings differ&#10;assert 'a &amp; b' == '&lt;c&gt;'&#10;  - &lt;c&gt;&#10;  + a &amp; b\">def test_fail():\n"
        "        print(\"some stdout\")\n"
        "&gt;       assert \"a &amp; b\" == \"&lt;c&gt;\", \"strings differ\"\n"
        "E       AssertionError: strings differ\n"
        "E       assert 'a &amp; b' == '&lt;c&gt;'\n"
        "E         - &lt;c&gt;\n"
        "E         + a &amp; b\n"
        "\n"
        "test_sample.py:16: AssertionError</failure><system-out>--------------------------------- Captured Log ---------------------------------\n"
        "\n"
        "--------------------------------- Captured Out ---------------------------------\n"
        "some stdout\n"
        "\n"
        "</system-out><system-err>--------------------------------- Captured Err ---------------------------------\n"
        "\n"
        "</system-err></testcase></testsuite></testsuites>";

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int parse_str(const char *xml, struct nb_junit_report **ret, struct nb_error *err) {
        return nb_junit_parse(xml, strlen(xml), ret, err);
}

static bool str_has(const char *s, const char *needle) {
        return s && strstr(s, needle);
}

/* Whether any string the report holds contains needle. */
static bool report_has(const struct nb_junit_report *r, const char *needle) {
        if (str_has(r->name, needle) || str_has(r->timestamp, needle))
                return true;
        for (size_t i = 0; i < r->n_testcases; i++) {
                const struct nb_junit_testcase *tc = &r->testcases[i];
                if (str_has(tc->classname, needle) || str_has(tc->name, needle))
                        return true;
                for (size_t j = 0; j <= tc->n_reruns; j++) {
                        const struct nb_junit_result *res = j == 0 ? &tc->result : &tc->reruns[j - 1];
                        if (str_has(res->type, needle) || str_has(res->message, needle) ||
                            str_has(res->text, needle) || str_has(res->system_out, needle) ||
                            str_has(res->system_err, needle))
                                return true;
                }
        }
        return false;
}

static const struct nb_junit_testcase *find_case(const struct nb_junit_report *r, const char *name) {
        for (size_t i = 0; i < r->n_testcases; i++)
                if (strcmp(r->testcases[i].name, name) == 0)
                        return &r->testcases[i];
        return NULL;
}

TEST(parse_pytest_output) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(parse_str(PYTEST_XML, &r, &err), 0);
        if (!r)
                return;
        CHECK_EQ_STR(r->name, "pytest");
        CHECK_EQ_STR(r->timestamp, "2026-11-25T09:20:00.014265");
        CHECK_EQ_INT(r->n_testcases, 6);
        CHECK_EQ_INT(r->tests, 6);
        CHECK_EQ_INT(r->failures, 2);
        CHECK_EQ_INT(r->errors, 1);
        CHECK_EQ_INT(r->skipped, 1);
        CHECK(r->time > 0.0239 && r->time < 0.0241);

        const struct nb_junit_testcase *tc = &r->testcases[0];
        CHECK_EQ_STR(tc->classname, "test_sample");
        CHECK_EQ_STR(tc->name, "test_pass");
        CHECK_EQ_INT(tc->result.outcome, NB_JUNIT_PASSED);
        CHECK(tc->result.message == NULL && tc->result.text == NULL);

        tc = find_case(r, "test_fail");
        CHECK(tc != NULL);
        if (tc) {
                CHECK_EQ_INT(tc->result.outcome, NB_JUNIT_FAILED);
                /* &amp; in an attribute arrives from SAX2 as "&#38;": decoded. */
                CHECK_EQ_STR(tc->result.message,
                             "AssertionError: strings differ\nassert 'a & b' == '<c>'\n  - <c>\n  + a & b");
                CHECK(str_has(tc->result.text, ">       assert \"a & b\" == \"<c>\", \"strings differ\"\n"));
                CHECK(str_has(tc->result.text, "test_sample.py:16: AssertionError"));
                size_t n = nb_junit_text_head_len(tc->result.text, 2);
                CHECK_EQ_INT(n, strlen("def test_fail():\n        print(\"some stdout\")"));
        }
        tc = find_case(r, "test_error");
        CHECK(tc != NULL);
        if (tc) {
                CHECK_EQ_INT(tc->result.outcome, NB_JUNIT_ERROR);
                CHECK_EQ_STR(tc->result.message, "failed on setup with \"RuntimeError: fixture exploded\"");
        }
        tc = find_case(r, "test_skip");
        CHECK(tc != NULL);
        if (tc) {
                CHECK_EQ_INT(tc->result.outcome, NB_JUNIT_SKIPPED);
                CHECK_EQ_STR(tc->result.type, "pytest.skip");
                CHECK_EQ_STR(tc->result.message, "not today");
        }
        tc = find_case(r, "test_param[2]");
        CHECK(tc != NULL);
        if (tc) {
                CHECK_EQ_STR(tc->classname, "test_sample.TestGroup");
                CHECK_EQ_INT(tc->result.outcome, NB_JUNIT_FAILED);
                CHECK_EQ_STR(tc->result.message, "assert 2 == 1");
        }
}

TEST(parse_pytest_logging) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(parse_str(PYTEST_LOGGING_XML, &r, &err), 0);
        if (!r)
                return;
        CHECK_EQ_INT(r->n_testcases, 1);
        CHECK_EQ_INT(r->failures, 1);
        CHECK(str_has(r->testcases[0].result.system_out, "-----\nsome stdout\n"));
        CHECK(str_has(r->testcases[0].result.system_err, "Captured Err"));
        CHECK(r->testcases[0].time > 0.0009 && r->testcases[0].time < 0.0011);
}

TEST(text_head_len) {
        CHECK_EQ_INT(nb_junit_text_head_len(NULL, 3), 0);
        CHECK_EQ_INT(nb_junit_text_head_len("a\nbb\nccc", 0), 0);
        CHECK_EQ_INT(nb_junit_text_head_len("a\nbb\nccc", 1), 1);
        CHECK_EQ_INT(nb_junit_text_head_len("a\nbb\nccc", 2), 4);
        CHECK_EQ_INT(nb_junit_text_head_len("a\nbb\nccc", 3), 8);
        CHECK_EQ_INT(nb_junit_text_head_len("a\nbb\nccc", 10), 8);
        CHECK_EQ_INT(nb_junit_text_head_len("a\n", 1), 1);
}

/* Runs f with stderr pointed at a file and returns how many bytes it wrote there. */
static long stderr_bytes_during(void (*f)(void)) {
        char path[] = "/tmp/nb-test-junit-stderr.XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0)
                return -1;
        unlink(path);
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        dup2(fd, STDERR_FILENO);
        f();
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        long n = lseek(fd, 0, SEEK_END);
        close(fd);
        return n;
}

static const char *const HOSTILE[] = {
        /* XXE: an external entity naming a host file. */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuites [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\n"
        "<testsuites><testsuite name=\"&e;\"><testcase classname=\"c\" name=\"t\">"
        "<failure message=\"&e;\">&e;</failure></testcase></testsuite></testsuites>",
        /* XXE through a parameter entity. */
        "<!DOCTYPE testsuites [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]><testsuites/>",
        /* An external DTD naming a host file, and one over the network. */
        "<!DOCTYPE testsuites SYSTEM \"file:///etc/passwd\"><testsuites>&e;</testsuites>",
        "<!DOCTYPE testsuites PUBLIC \"-//x//y\" \"http://127.0.0.1:9/x.dtd\"><testsuites/>",
        /* An entity reference without a DOCTYPE: undeclared, fatal. */
        "<testsuites><testsuite><testcase name=\"t\"><failure>&e;</failure></testcase></testsuite></testsuites>",
        "<testsuites><testsuite name=\"&e;\"/></testsuites>",
        /* Not JUnit, not XML, not finished. */
        "<html><body/></html>",
        "this is not xml",
        "<testsuites><testsuite><testcase name=\"t\"></testsuite></testsuites>",
        "<testsuites>\x01</testsuites>",
        "<testsuites><testsuite name=\"\xff\xfe\"/></testsuites>",
        "<testsuites><testsuite name=\"&#0;\"/></testsuites>",
};

static void parse_hostile(void) {
        for (size_t i = 0; i < NB_ELEMENTSOF(HOSTILE); i++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                struct nb_junit_report *r = NULL;
                int k = parse_str(HOSTILE[i], &r, &err);
                if (k != -EBADMSG || r != NULL)
                        printf("hostile document %zu: %d\n", i, k);
                CHECK_EQ_INT(k, -EBADMSG);
                CHECK(r == NULL);
                CHECK(err.msg != NULL);
                if (getenv("NB_TEST_VERBOSE"))
                        printf("  %zu: %s\n", i, nb_error_message(&err));
                nb_junit_report_free(r);
        }
}

TEST(hostile_documents_refused_silently) {
        /* libxml2 prints nothing to stderr, whatever it is fed. */
        CHECK_EQ_INT(stderr_bytes_during(parse_hostile), 0);
}

TEST(xxe_never_reads_host_file) {
        /* What the host file holds: none of it may show up anywhere. */
        _cleanup_close_ int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        char first_line[64] = "root:x:0:0";
        if (fd >= 0) {
                FILE *f = fdopen(dup(fd), "r");
                if (f && fgets(first_line, sizeof(first_line), f))
                        first_line[strcspn(first_line, "\n")] = 0;
                if (f)
                        fclose(f);
        }

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(parse_str(HOSTILE[0], &r, &err), -EBADMSG);
        CHECK(r == NULL);
        CHECK(str_has(nb_error_message(&err), "DOCTYPE"));
        CHECK(!str_has(nb_error_message(&err), first_line));
        CHECK(!str_has(nb_error_message(&err), "root:"));

        /* The entity used without its declaration: still nothing but an error. */
        nb_error_clear(&err);
        CHECK_EQ_INT(parse_str(HOSTILE[4], &r, &err), -EBADMSG);
        CHECK(!str_has(nb_error_message(&err), "root:"));
}

TEST(billion_laughs_refused_fast) {
        static const char xml[] =
                "<?xml version=\"1.0\"?>\n"
                "<!DOCTYPE lolz [\n"
                " <!ENTITY lol \"lol\">\n"
                " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
                " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
                " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
                " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
                " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
                " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
                " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
                " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
                "]>\n"
                "<testsuites><testsuite name=\"&lol9;\"><testcase name=\"&lol9;\">"
                "<failure message=\"&lol9;\">&lol9;</failure></testcase></testsuite></testsuites>\n";
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        double t = now();
        CHECK_EQ_INT(parse_str(xml, &r, &err), -EBADMSG);
        CHECK(now() - t < 1.0);
        CHECK(r == NULL);
        CHECK(str_has(nb_error_message(&err), "DOCTYPE"));
}

TEST(doctype_refused) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(parse_str("<!DOCTYPE testsuites><testsuites/>", &r, &err), -EBADMSG);
        CHECK(r == NULL);
        CHECK_EQ_STR(nb_error_message(&err), "junit.xml: has a DOCTYPE; DTDs and entities are refused");
}

TEST(size_cap) {
        /* 100 MB of plausible XML: refused on its size, before any parsing. */
        size_t n = 100u * 1000u * 1000u;
        _cleanup_free_ char *big = malloc(n);
        CHECK(big != NULL);
        if (!big)
                return;
        static const char open_tag[] = "<testsuites><testsuite name=\"x\">";
        memset(big, ' ', n);
        memcpy(big, open_tag, strlen(open_tag));
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        double t = now();
        CHECK_EQ_INT(nb_junit_parse(big, n, &r, &err), -EFBIG);
        CHECK_EQ_INT(nb_junit_parse(big, NB_JUNIT_MAX_SIZE + 1, &r, &err), -EFBIG);
        CHECK(now() - t < 0.1);
        CHECK(r == NULL);
        CHECK(str_has(nb_error_message(&err), "more than"));

        /* Empty is not a report either. */
        CHECK_EQ_INT(nb_junit_parse("", 0, &r, &err), -EBADMSG);
        CHECK_EQ_INT(nb_junit_parse(NULL, 0, &r, &err), -EBADMSG);
}

/* "<testsuites><testsuite>" then depth-2 levels of <x>, all closed. */
static char *nested(size_t depth) {
        size_t n = 64 + depth * 8;
        char *s = malloc(n), *p = s;
        if (!s)
                return NULL;
        p = stpcpy(p, "<testsuites><testsuite>");
        for (size_t i = 2; i < depth; i++)
                p = stpcpy(p, "<x>");
        for (size_t i = 2; i < depth; i++)
                p = stpcpy(p, "</x>");
        stpcpy(p, "</testsuite></testsuites>");
        return s;
}

TEST(depth_cap) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        _cleanup_free_ char *deep = nested(10000);
        CHECK(deep != NULL);
        double t = now();
        CHECK_EQ_INT(parse_str(deep, &r, &err), -EBADMSG);
        CHECK(now() - t < 1.0);
        CHECK(r == NULL);
        CHECK(str_has(nb_error_message(&err), "nested deeper than 64"));

        /* At the limit: fine; one more: refused. */
        _cleanup_free_ char *ok = nested(NB_JUNIT_MAX_DEPTH);
        CHECK_EQ_INT(parse_str(ok, &r, &err), 0);
        nb_junit_report_free(TAKE_PTR(r));
        _cleanup_free_ char *over = nested(NB_JUNIT_MAX_DEPTH + 1);
        CHECK_EQ_INT(parse_str(over, &r, &err), -EBADMSG);
}

/* One testcase holding n <system-out> elements of body_len 'x' each. */
static char *many_outputs(size_t n, size_t body_len) {
        size_t each = body_len + 32, len = 128 + n * each;
        char *s = malloc(len), *p = s;
        if (!s)
                return NULL;
        p = stpcpy(p, "<testsuites><testsuite><testcase classname=\"c\" name=\"t\">");
        for (size_t i = 0; i < n; i++) {
                p = stpcpy(p, "<system-out>");
                memset(p, 'x', body_len);
                p += body_len;
                p = stpcpy(p, "</system-out>");
        }
        stpcpy(p, "</testcase></testsuite></testsuites>");
        return s;
}

TEST(elements_per_testcase_capped_and_appends_linear) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        /* At the cap, each element 4 KiB (16 MiB of output): every byte is kept, in
         * order. Appending by copying the text so far (the old way) moved 32 GB here. */
        _cleanup_free_ char *ok = many_outputs(NB_JUNIT_MAX_CASE_ELEMENTS, 4096);
        CHECK(ok != NULL);
        CHECK_EQ_INT(parse_str(ok, &r, &err), 0);
        CHECK(r && r->n_testcases == 1);
        if (r && r->n_testcases == 1) {
                const char *out = r->testcases[0].result.system_out;
                CHECK(out && strlen(out) == (size_t) NB_JUNIT_MAX_CASE_ELEMENTS * 4096);
                CHECK(out && strspn(out, "x") == strlen(out));
        }
        nb_junit_report_free(TAKE_PTR(r));
        /* One more element: refused, saying why. */
        _cleanup_free_ char *over = many_outputs(NB_JUNIT_MAX_CASE_ELEMENTS + 1, 1);
        CHECK_EQ_INT(parse_str(over, &r, &err), -EBADMSG);
        CHECK(r == NULL);
        CHECK_EQ_STR(nb_error_message(&err), "junit.xml: a testcase with more than 4096 elements");
        /* The count is per testcase: two of 3000 each are fine. */
        _cleanup_free_ char *one = many_outputs(3000, 1);
        CHECK(one != NULL);
        const char *body = one + strlen("<testsuites><testsuite>");
        size_t body_len = strlen(body) - strlen("</testsuite></testsuites>");
        _cleanup_free_ char *two = NULL;
        CHECK(asprintf(&two, "<testsuites><testsuite>%.*s%s", (int) body_len, body, body) > 0);
        CHECK_EQ_INT(parse_str(two, &r, &err), 0);
        CHECK(r && r->n_testcases == 2);
}

TEST(error_report_round_trip) {
        static const char details[] = "Fatal Python error: Segmentation fault\n\n"
                                      "Current thread 0x00007f (most recent call first):\n"
                                      "  File \"<stdin>\", line 1 in <module>\t]]> & \"'";
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_junit_write_error_report("//pkg:test", "pytest", "pytest died: signal 11 (SIGSEGV)\nno XML",
                                                 details, &xml, &len),
                     0);
        CHECK(xml && len == strlen(xml));
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(nb_junit_parse(xml, len, &r, &err), 0);
        if (!r)
                return;
        CHECK_EQ_STR(r->name, "//pkg:test");
        CHECK_EQ_INT(r->n_testcases, 1);
        CHECK_EQ_INT(r->errors, 1);
        CHECK_EQ_INT(r->tests, 1);
        CHECK_EQ_STR(r->testcases[0].classname, "//pkg:test");
        CHECK_EQ_STR(r->testcases[0].name, "pytest");
        CHECK_EQ_INT(r->testcases[0].result.outcome, NB_JUNIT_ERROR);
        CHECK_EQ_STR(r->testcases[0].result.message, "pytest died: signal 11 (SIGSEGV)\nno XML");
        CHECK_EQ_STR(r->testcases[0].result.text, details);
}

TEST(control_characters_and_bad_utf8_stay_well_formed) {
        /* \x1b (an ANSI colour), C0 controls, bytes that are not UTF-8, a surrogate
         * and an overlong form in UTF-8, U+FFFF: all must go, the rest survive. */
        static const char message[] = "boom\x01\x02\x08\x1b[31m red\xff\xfe end \xed\xa0\x80 \xc0\xaf \xef\xbf\xbf.";
        static const char cleaned[] = "boom[31m red\xef\xbf\xbd\xef\xbf\xbd end \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                                      "\xef\xbf\xbd\xef\xbf\xbd .";
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_junit_write_error_report("suite\x01", "case\x0b", message, "tail\x7f\x0c\xe2\x82\xac", &xml,
                                                 &len),
                     0);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(nb_junit_parse(xml, len, &r, &err), 0);
        if (!r) {
                printf("%s\n%s\n", nb_error_message(&err), xml);
                return;
        }
        CHECK_EQ_STR(r->name, "suite");
        CHECK_EQ_STR(r->testcases[0].name, "case");
        CHECK_EQ_STR(r->testcases[0].result.message, cleaned);
        /* DEL is a valid XML 1.0 character; form feed is not; the euro sign stays. */
        CHECK_EQ_STR(r->testcases[0].result.text, "tail\x7f\xe2\x82\xac");
}

static const char SHARD1[] =
        "<testsuites><testsuite name=\"pytest\" time=\"1.5\" timestamp=\"2026-01-01T00:00:00\">"
        "<testcase classname=\"a\" name=\"t1\" time=\"0.5\"/>"
        "<testcase classname=\"a\" name=\"t2\" time=\"1.0\"><failure message=\"boom\">trace 1</failure></testcase>"
        "</testsuite></testsuites>";
static const char SHARD2[] =
        "<testsuite name=\"pytest\" time=\"2.25\">"
        "<testcase classname=\"b\" name=\"t3\" time=\"2\"><skipped message=\"later\"/></testcase>"
        "<testcase classname=\"b\" name=\"t4\" time=\"0.25\"><error message=\"setup\">trace e</error></testcase>"
        "</testsuite>";

TEST(merge_shards) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *s1 = NULL, *s2 = NULL, *m = NULL;
        CHECK_EQ_INT(parse_str(SHARD1, &s1, &err), 0);
        CHECK_EQ_INT(parse_str(SHARD2, &s2, &err), 0);
        if (!s1 || !s2)
                return;
        const struct nb_junit_report *in[] = { s1, s2 };
        CHECK_EQ_INT(nb_junit_merge(in, 2, "//pkg:test", &m, &err), 0);
        if (!m)
                return;
        CHECK_EQ_STR(m->name, "//pkg:test");
        CHECK_EQ_STR(m->timestamp, "2026-01-01T00:00:00");
        CHECK_EQ_INT(m->n_testcases, 4);
        CHECK_EQ_INT(m->tests, 4);
        CHECK_EQ_INT(m->failures, 1);
        CHECK_EQ_INT(m->errors, 1);
        CHECK_EQ_INT(m->skipped, 1);
        CHECK(m->time > 3.749 && m->time < 3.751);
        /* Order of appearance, not of sorting. */
        CHECK_EQ_STR(m->testcases[0].name, "t1");
        CHECK_EQ_STR(m->testcases[1].name, "t2");
        CHECK_EQ_STR(m->testcases[2].name, "t3");
        CHECK_EQ_STR(m->testcases[3].name, "t4");
        CHECK_EQ_STR(m->testcases[1].result.text, "trace 1");
        CHECK_EQ_INT(m->testcases[3].n_reruns, 0);

        /* No reports: an empty one. */
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *empty = NULL;
        CHECK_EQ_INT(nb_junit_merge(NULL, 0, NULL, &empty, &err), 0);
        CHECK(empty && empty->n_testcases == 0 && empty->name && !*empty->name);
}

static const char ATTEMPT1[] =
        "<testsuites><testsuite name=\"pytest\" time=\"1\">"
        "<testcase classname=\"m\" name=\"flaky\" time=\"0.1\"><failure message=\"first\">f1</failure></testcase>"
        "<testcase classname=\"m\" name=\"broken\" time=\"0.2\"><failure message=\"b1\">tb1</failure></testcase>"
        "<testcase classname=\"m\" name=\"fine\" time=\"0.3\"/>"
        "</testsuite></testsuites>";
static const char ATTEMPT2[] =
        "<testsuites><testsuite name=\"pytest\" time=\"1\">"
        "<testcase classname=\"m\" name=\"flaky\" time=\"0.4\"><error message=\"second\">e2</error></testcase>"
        "<testcase classname=\"m\" name=\"broken\" time=\"0.5\"><failure message=\"b2\">tb2</failure></testcase>"
        "</testsuite></testsuites>";
static const char ATTEMPT3[] =
        "<testsuites><testsuite name=\"pytest\" time=\"1\">"
        "<testcase classname=\"m\" name=\"flaky\" time=\"0.6\"><system-out>ok now</system-out></testcase>"
        "<testcase classname=\"m\" name=\"broken\" time=\"0.7\"><error message=\"b3\">tb3</error></testcase>"
        "</testsuite></testsuites>";

TEST(merge_attempts_surefire) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *a1 = NULL, *a2 = NULL, *a3 = NULL, *m = NULL;
        CHECK_EQ_INT(parse_str(ATTEMPT1, &a1, &err), 0);
        CHECK_EQ_INT(parse_str(ATTEMPT2, &a2, &err), 0);
        CHECK_EQ_INT(parse_str(ATTEMPT3, &a3, &err), 0);
        if (!a1 || !a2 || !a3)
                return;
        const struct nb_junit_report *in[] = { a1, a2, a3 };
        CHECK_EQ_INT(nb_junit_merge(in, 3, NULL, &m, &err), 0);
        if (!m)
                return;
        CHECK_EQ_STR(m->name, "pytest");
        CHECK_EQ_INT(m->n_testcases, 3);
        CHECK_EQ_INT(m->failures, 1);
        CHECK_EQ_INT(m->errors, 0);

        const struct nb_junit_testcase *flaky = &m->testcases[0], *broken = &m->testcases[1];
        CHECK_EQ_STR(flaky->name, "flaky");
        CHECK_EQ_INT(flaky->result.outcome, NB_JUNIT_PASSED);
        CHECK_EQ_STR(flaky->result.system_out, "ok now");
        CHECK(flaky->time > 0.59 && flaky->time < 0.61);
        CHECK_EQ_INT(flaky->n_reruns, 2);
        if (flaky->n_reruns == 2) {
                CHECK_EQ_INT(flaky->reruns[0].outcome, NB_JUNIT_FAILED);
                CHECK_EQ_STR(flaky->reruns[0].message, "first");
                CHECK_EQ_INT(flaky->reruns[1].outcome, NB_JUNIT_ERROR);
                CHECK_EQ_STR(flaky->reruns[1].text, "e2");
        }
        CHECK_EQ_STR(broken->name, "broken");
        CHECK_EQ_INT(broken->result.outcome, NB_JUNIT_FAILED);
        CHECK_EQ_STR(broken->result.message, "b1");
        CHECK_EQ_INT(broken->n_reruns, 2);
        if (broken->n_reruns == 2) {
                CHECK_EQ_STR(broken->reruns[0].message, "b2");
                CHECK_EQ_INT(broken->reruns[1].outcome, NB_JUNIT_ERROR);
        }
        CHECK_EQ_STR(m->testcases[2].name, "fine");

        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_junit_report_to_xml(m, NULL, 0, &xml, &len), 0);
        CHECK(str_has(xml, "<flakyFailure message=\"first\" type=\"failure\">"));
        CHECK(str_has(xml, "<flakyError message=\"second\" type=\"error\">"));
        CHECK(str_has(xml, "<stackTrace>e2</stackTrace>"));
        CHECK(str_has(xml, "<failure message=\"b1\">tb1</failure>"));
        CHECK(str_has(xml, "<rerunFailure message=\"b2\" type=\"failure\">"));
        CHECK(str_has(xml, "<rerunError message=\"b3\" type=\"error\">"));
        CHECK(!str_has(xml, "<failure message=\"b2\""));

        /* What nestbox wrote reads back the same, and merging it again (a merged
         * shard meeting `nestbox merge`) changes nothing. */
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *back = NULL, *again = NULL;
        CHECK_EQ_INT(nb_junit_parse(xml, len, &back, &err), 0);
        if (!back)
                return;
        const struct nb_junit_report *one[] = { back };
        CHECK_EQ_INT(nb_junit_merge(one, 1, NULL, &again, &err), 0);
        _cleanup_free_ char *xml2 = NULL;
        CHECK_EQ_INT(nb_junit_report_to_xml(again, NULL, 0, &xml2, NULL), 0);
        CHECK_EQ_STR(xml2, xml);
}

TEST(serialize_deterministic_with_properties) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL, *back = NULL;
        CHECK_EQ_INT(parse_str(PYTEST_XML, &r, &err), 0);
        if (!r)
                return;
        const struct nb_junit_property props[] = {
                { "target", "//pkg:test" }, { "shard", "2/4" }, { "attempt", "1" },
                { "seed", "12345" },        { "cached", "false" }, { "odd", "<&\"\x01>" },
        };
        _cleanup_free_ char *x1 = NULL, *x2 = NULL, *x3 = NULL;
        size_t l1 = 0, l2 = 0, l3 = 0;
        CHECK_EQ_INT(nb_junit_report_to_xml(r, props, NB_ELEMENTSOF(props), &x1, &l1), 0);
        CHECK_EQ_INT(nb_junit_report_to_xml(r, props, NB_ELEMENTSOF(props), &x2, &l2), 0);
        CHECK(x1 && x2 && l1 == l2 && memcmp(x1, x2, l1) == 0);
        /* Within a cap: the same bytes at exactly its size, -EFBIG one byte below. */
        _cleanup_free_ char *capped = NULL;
        size_t capped_len = 0;
        CHECK_EQ_INT(nb_junit_report_to_xml_within(r, props, NB_ELEMENTSOF(props), l1, &capped, &capped_len), 0);
        CHECK(capped && capped_len == l1 && memcmp(x1, capped, l1) == 0);
        char *none = NULL;
        CHECK_EQ_INT(nb_junit_report_to_xml_within(r, props, NB_ELEMENTSOF(props), l1 - 1, &none, NULL), -EFBIG);
        CHECK(none == NULL);
        CHECK(str_has(x1, "<property name=\"target\" value=\"//pkg:test\"/>"));
        CHECK(str_has(x1, "<property name=\"odd\" value=\"&lt;&amp;&quot;&gt;\"/>"));
        CHECK(str_has(x1, "<testsuite name=\"pytest\" tests=\"6\" failures=\"2\" errors=\"1\" skipped=\"1\" "
                          "time=\"0.024\" timestamp=\"2026-11-25T09:20:00.014265\">"));
        /* Nothing of the input is copied: pytest's hostname="" is gone. */
        CHECK(!str_has(x1, "hostname"));

        /* parse(serialize(r)) serializes to the same bytes: a fixed point. */
        CHECK_EQ_INT(nb_junit_parse(x1, l1, &back, &err), 0);
        if (!back)
                return;
        CHECK_EQ_INT(back->n_testcases, 6);
        CHECK_EQ_STR(find_case(back, "test_fail")->result.message, find_case(r, "test_fail")->result.message);
        CHECK_EQ_STR(find_case(back, "test_fail")->result.text, find_case(r, "test_fail")->result.text);
        CHECK_EQ_INT(nb_junit_report_to_xml(back, props, NB_ELEMENTSOF(props), &x3, &l3), 0);
        CHECK(x3 && l3 == l1 && memcmp(x1, x3, l1) == 0);
        CHECK(!report_has(back, "hostname"));
}

TEST(second_failure_kept_in_text) {
        /* pytest: a test that fails, then errors in teardown, gets both elements. */
        static const char xml[] =
                "<testsuite><testcase classname=\"c\" name=\"t\"><failure message=\"assert\">a</failure>"
                "<error message=\"teardown\">b</error></testcase></testsuite>";
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(parse_str(xml, &r, &err), 0);
        if (!r)
                return;
        CHECK_EQ_INT(r->testcases[0].result.outcome, NB_JUNIT_FAILED);
        CHECK_EQ_STR(r->testcases[0].result.message, "assert");
        CHECK_EQ_STR(r->testcases[0].result.text, "a\n\nerror: teardown\nb");
        CHECK_EQ_INT(r->failures, 1);
        CHECK_EQ_INT(r->errors, 0);
}

TEST(untrusted_times_and_totals) {
        /* The document's totals lie and its times are nonsense: recounted, zeroed. */
        static const char xml[] =
                "<testsuites><testsuite name=\"s\" tests=\"999\" failures=\"-1\" time=\"nan\">"
                "<testcase name=\"a\" time=\"-5\"/><testcase name=\"b\" time=\"1e999\"/>"
                "<testcase name=\"c\" time=\"2x\"/><testcase name=\"d\" time=\" 1.5 \"/>"
                "</testsuite></testsuites>";
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(parse_str(xml, &r, &err), 0);
        if (!r)
                return;
        CHECK_EQ_INT(r->tests, 4);
        CHECK_EQ_INT(r->failures, 0);
        CHECK(r->time == 0);
        CHECK(r->testcases[0].time == 0);
        CHECK(r->testcases[1].time == 0);
        CHECK(r->testcases[2].time == 0);
        CHECK(r->testcases[3].time == 1.5);
        CHECK_EQ_STR(r->testcases[0].classname, "");
}

TEST(failure_after_skip_keeps_output_and_namespaces_ignored) {
        static const char xml[] =
                "<testsuite xmlns:x=\"urn:x\"><testcase name=\"t\"><system-out>out</system-out>"
                "<skipped message=\"s\">st</skipped><failure message=\"f\">ft</failure>"
                "<x:error message=\"not junit\"/></testcase></testsuite>";
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(parse_str(xml, &r, &err), 0);
        if (!r)
                return;
        const struct nb_junit_result *res = &r->testcases[0].result;
        CHECK_EQ_INT(res->outcome, NB_JUNIT_FAILED);
        CHECK_EQ_STR(res->message, "f");
        CHECK_EQ_STR(res->text, "ft");
        CHECK_EQ_STR(res->system_out, "out");
        CHECK_EQ_INT(r->skipped, 0);
}

TEST(process_wide_libxml2_defaults_do_not_matter) {
        /* Someone else in the process turns entity substitution and DTD loading on:
         * the parser still substitutes nothing and "&amp;#38;" stays "&#38;". */
        static const char xml[] = "<testsuite><testcase name=\"a &amp;#38; b &amp; c\"/></testsuite>";
        int old_subst = xmlSubstituteEntitiesDefault(1);
        int old_load = xmlLoadExtDtdDefaultValue;
        xmlLoadExtDtdDefaultValue = XML_DETECT_IDS | XML_COMPLETE_ATTRS;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        CHECK_EQ_INT(parse_str(xml, &r, &err), 0);
        if (r)
                CHECK_EQ_STR(r->testcases[0].name, "a &#38; b & c");
        CHECK_EQ_INT(parse_str(HOSTILE[0], &r, &err), -EBADMSG);
        xmlSubstituteEntitiesDefault(old_subst);
        xmlLoadExtDtdDefaultValue = old_load;
}
