/* SPDX-License-Identifier: MIT */
/* JUnit XML: the writer. Reports are emitted from their fields with libxml2's
 * xmlTextWriter, which does the escaping; every string is first cleaned of what XML
 * 1.0 cannot carry, so whatever a test printed, the output parses. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlIO.h>
#include <libxml/xmlwriter.h>

#include "junit/junit-internal.h"
#include "junit/junit.h"
#include "junit/xml_writer.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

const char *nb_junit_outcome_to_string(enum nb_junit_outcome o) {
        switch (o) {
        case NB_JUNIT_PASSED:
                return "passed";
        case NB_JUNIT_FAILED:
                return "failed";
        case NB_JUNIT_ERROR:
                return "error";
        case NB_JUNIT_SKIPPED:
                return "skipped";
        }
        return "unknown";
}

size_t nb_junit_text_head_len(const char *text, size_t max_lines) {
        if (!text || max_lines == 0)
                return 0;
        const char *p = text;
        for (size_t line = 1;; line++) {
                const char *nl = strchr(p, '\n');
                if (!nl)
                        return strlen(text);
                if (line == max_lines)
                        return (size_t) (nl - text);
                p = nl + 1;
        }
}

static bool xml_char_ok(uint32_t c) {
        return c == 0x9 || c == 0xa || c == 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) ||
               (c >= 0x10000 && c <= 0x10ffff);
}

/* A copy of s holding only characters XML 1.0 allows: a byte that is not valid UTF-8
 * becomes U+FFFD (so the damage stays visible), a character XML forbids (C0 controls
 * but tab, LF, CR; U+FFFE, U+FFFF) is dropped. */
static char *xml_clean(const char *s) {
        size_t n = strlen(s);
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        char *out = malloc(3 * n + 1), *o = out;
        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                uint32_t c;
                size_t k = nb_utf8_decode(p, &c);
                if (k == 0) {
                        memcpy(o, "\xef\xbf\xbd", 3);
                        o += 3;
                        p++;
                        continue;
                }
                if (xml_char_ok(c)) {
                        memcpy(o, p, k);
                        o += k;
                }
                p += k;
        }
        *o = 0;
        return out;
}

/* The output, grown by doubling as libxml2 flushes to it. */
struct out_buf {
        char *data;
        size_t len, cap;
        size_t max;    /* the most the document may be */
        bool failed;   /* a write was refused: the output is truncated */
        bool too_big;  /* ... because it passed max */
};

static int out_write(void *ctx, const char *buf, int len) {
        struct out_buf *b = ctx;
        if (len <= 0)
                return 0;
        if ((size_t) len > b->max - b->len) {
                b->failed = b->too_big = true;
                return -1;
        }
        if (NB_RESERVE(b->data, b->cap, b->len, (size_t) len + 1, 4096) < 0) {
                b->failed = true;
                return -1;
        }
        memcpy(b->data + b->len, buf, (size_t) len);
        b->len += (size_t) len;
        b->data[b->len] = 0;
        return len;
}

static void xw_attr(struct xw *x, const char *name, const char *value) {
        if (x->r < 0 || !value)
                return;
        _cleanup_free_ char *clean = xml_clean(value);
        if (!clean) {
                x->r = -ENOMEM;
                return;
        }
        xw_check(x, xmlTextWriterWriteAttribute(x->w, BAD_CAST name, BAD_CAST clean));
}

static void xw_attr_count(struct xw *x, const char *name, size_t v) {
        char buf[24];
        snprintf(buf, sizeof(buf), "%zu", v);
        xw_attr(x, name, buf);
}

static void xw_attr_time(struct xw *x, const char *name, double t) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%.3f", nb_junit_sane_time(t));
        xw_attr(x, name, buf);
}

static void xw_text(struct xw *x, const char *text) {
        if (x->r < 0 || !text || !*text)
                return;
        _cleanup_free_ char *clean = xml_clean(text);
        if (!clean) {
                x->r = -ENOMEM;
                return;
        }
        xw_check(x, xmlTextWriterWriteString(x->w, BAD_CAST clean));
}

/* <elem>text</elem>, nothing when text is NULL. */
static void xw_text_element(struct xw *x, const char *elem, const char *text) {
        if (!text)
                return;
        xw_start(x, elem);
        xw_text(x, text);
        xw_end(x);
}

static const char *result_element(enum nb_junit_outcome o) {
        return o == NB_JUNIT_FAILED ? "failure" : o == NB_JUNIT_ERROR ? "error" : "skipped";
}

/* Maven Surefire: runs before a final pass are flaky, runs after a first failure
 * are reruns; failures and errors keep their kind. */
static const char *rerun_element(enum nb_junit_outcome final, enum nb_junit_outcome o) {
        bool flaky = final == NB_JUNIT_PASSED || final == NB_JUNIT_SKIPPED;
        if (o == NB_JUNIT_FAILED)
                return flaky ? "flakyFailure" : "rerunFailure";
        return flaky ? "flakyError" : "rerunError";
}

/* Surefire's XSD requires type on the flaky and rerun elements; pytest's xunit2 gives
 * none. Its message starts with the exception's name ("AssertionError: ..."): that,
 * when it is one, else the element's kind. */
static char *rerun_type(const struct nb_junit_result *rr) {
        const char *m = rr->message ? rr->message : "";
        size_t n = strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.");
        if (n > 0 && n < 256 && m[n] == ':' && !(m[0] >= '0' && m[0] <= '9'))
                return strndup(m, n);
        return strdup(rr->outcome == NB_JUNIT_FAILED ? "failure" : "error");
}

static void write_testcase(struct xw *x, const struct nb_junit_testcase *tc) {
        const struct nb_junit_result *res = &tc->result;
        xw_start(x, "testcase");
        xw_attr(x, "classname", tc->classname ? tc->classname : "");
        xw_attr(x, "name", tc->name ? tc->name : "");
        xw_attr_time(x, "time", tc->time);
        if (res->outcome != NB_JUNIT_PASSED) {
                xw_start(x, result_element(res->outcome));
                xw_attr(x, "message", res->message);
                xw_attr(x, "type", res->type);
                xw_text(x, res->text);
                xw_end(x);
        }
        for (size_t i = 0; i < tc->n_reruns; i++) {
                const struct nb_junit_result *rr = &tc->reruns[i];
                _cleanup_free_ char *type = NULL;
                xw_start(x, rerun_element(res->outcome, rr->outcome));
                xw_attr(x, "message", rr->message);
                if (!rr->type && !(type = rerun_type(rr))) {
                        x->r = -ENOMEM;
                        break;
                }
                xw_attr(x, "type", rr->type ? rr->type : type);
                xw_text_element(x, "stackTrace", rr->text);
                xw_text_element(x, "system-out", rr->system_out);
                xw_text_element(x, "system-err", rr->system_err);
                xw_end(x);
        }
        xw_text_element(x, "system-out", res->system_out);
        xw_text_element(x, "system-err", res->system_err);
        xw_end(x);
}

static void write_totals(struct xw *x, const struct nb_junit_report *r) {
        xw_attr_count(x, "tests", r->tests);
        xw_attr_count(x, "failures", r->failures);
        xw_attr_count(x, "errors", r->errors);
        xw_attr_count(x, "skipped", r->skipped);
        xw_attr_time(x, "time", r->time);
}

static void write_suite(struct xw *x, const struct nb_junit_suite *s) {
        const struct nb_junit_report *r = s->report;
        xw_start(x, "testsuite");
        xw_attr(x, "name", r->name ? r->name : "");
        write_totals(x, r);
        xw_attr(x, "timestamp", r->timestamp);
        if (s->n_props > 0) {
                xw_start(x, "properties");
                for (size_t i = 0; i < s->n_props; i++) {
                        xw_start(x, "property");
                        xw_attr(x, "name", s->props[i].name ? s->props[i].name : "");
                        xw_attr(x, "value", s->props[i].value ? s->props[i].value : "");
                        xw_end(x);
                }
                xw_end(x);
        }
        for (size_t i = 0; i < r->n_testcases; i++)
                write_testcase(x, &r->testcases[i]);
        xw_end(x);
}

static void write_document(struct xw *x, const struct nb_junit_suite *suites, size_t n,
                           const struct nb_junit_report *totals) {
        xw_check(x, xmlTextWriterSetIndent(x->w, 1));
        xw_check(x, xmlTextWriterSetIndentString(x->w, BAD_CAST "  "));
        xw_check(x, xmlTextWriterStartDocument(x->w, NULL, "UTF-8", NULL));
        xw_start(x, "testsuites");
        write_totals(x, totals);
        for (size_t i = 0; i < n; i++)
                write_suite(x, &suites[i]);
        if (x->r == 0)
                xw_check(x, xmlTextWriterEndDocument(x->w));
}

static int suites_to_xml(const struct nb_junit_suite *suites, size_t n, size_t max, char **ret_xml,
                         size_t *ret_len) {
        nb_junit_libxml_setup();
        /* Totals are recounted from the testcases on a copy of each header, so a report
         * built or edited by hand cannot say one thing and hold another. */
        _cleanup_free_ struct nb_junit_suite *counted = calloc(n + 1, sizeof(*counted));
        _cleanup_free_ struct nb_junit_report *headers = calloc(n + 1, sizeof(*headers));
        if (!counted || !headers)
                return -ENOMEM;
        struct nb_junit_report totals = { 0 };
        for (size_t i = 0; i < n; i++) {
                headers[i] = *suites[i].report;
                nb_junit_report_recount(&headers[i]);
                counted[i] = suites[i];
                counted[i].report = &headers[i];
                totals.tests += headers[i].tests;
                totals.failures += headers[i].failures;
                totals.errors += headers[i].errors;
                totals.skipped += headers[i].skipped;
                totals.time += headers[i].time;
        }

        struct out_buf buf = { .max = max };
        xmlOutputBufferPtr out = xmlOutputBufferCreateIO(out_write, NULL, &buf, NULL);
        if (!out)
                return -ENOMEM;
        struct xw x = { .w = xmlNewTextWriter(out) };
        if (!x.w) {
                xmlOutputBufferClose(out);
                return -ENOMEM;
        }
        write_document(&x, counted, n, &totals);
        /* Flushes the rest into buf and closes out. */
        xmlFreeTextWriter(x.w);
        _cleanup_free_ char *data = buf.data;
        if (buf.too_big)
                return -EFBIG;
        if (x.r < 0)
                return x.r;
        if (!data || buf.failed)
                return -ENOMEM;
        if (ret_len)
                *ret_len = buf.len;
        *ret_xml = TAKE_PTR(data);
        return 0;
}

int nb_junit_suites_to_xml(const struct nb_junit_suite *suites, size_t n, char **ret_xml, size_t *ret_len) {
        return suites_to_xml(suites, n, SIZE_MAX / 4, ret_xml, ret_len);
}

int nb_junit_report_to_xml(const struct nb_junit_report *r, const struct nb_junit_property *props, size_t n_props,
                           char **ret_xml, size_t *ret_len) {
        return nb_junit_report_to_xml_within(r, props, n_props, SIZE_MAX / 4, ret_xml, ret_len);
}

int nb_junit_report_to_xml_within(const struct nb_junit_report *r, const struct nb_junit_property *props,
                                  size_t n_props, size_t max, char **ret_xml, size_t *ret_len) {
        const struct nb_junit_suite suite = { r, props, n_props };
        return suites_to_xml(&suite, 1, max, ret_xml, ret_len);
}

int nb_junit_error_report(const char *suite_name, const char *testcase_name, const char *message,
                          const char *details, struct nb_junit_report **ret) {
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        struct nb_junit_testcase *tc = r->testcases = calloc(1, sizeof(*tc));
        if (!tc)
                return -ENOMEM;
        r->n_testcases = 1;
        tc->result.outcome = NB_JUNIT_ERROR;
        int k = nb_junit_strdup(suite_name ? suite_name : "", &r->name);
        if (k >= 0)
                k = nb_junit_strdup(suite_name ? suite_name : "", &tc->classname);
        if (k >= 0)
                k = nb_junit_strdup(testcase_name ? testcase_name : "", &tc->name);
        if (k >= 0)
                k = nb_junit_strdup(message, &tc->result.message);
        if (k >= 0)
                k = nb_junit_strdup(details, &tc->result.text);
        if (k < 0)
                return k;
        nb_junit_report_recount(r);
        *ret = TAKE_PTR(r);
        return 0;
}

int nb_junit_write_error_report(const char *suite_name, const char *testcase_name, const char *message,
                                const char *details, char **ret_xml, size_t *ret_len) {
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        int k = nb_junit_error_report(suite_name, testcase_name, message, details, &r);
        if (k < 0)
                return k;
        return nb_junit_report_to_xml(r, NULL, 0, ret_xml, ret_len);
}
