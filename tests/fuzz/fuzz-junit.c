/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the JUnit parser and writer. Besides "no crash, no leak" it
 * checks what nestbox relies on: whatever parses, the report written from it parses
 * again and writes the same bytes (a fixed point), merging keeps it writable, and an
 * error report carrying arbitrary bytes is well-formed. The error report is fed the
 * inputs that do not start with "<" (which the parser refuses at once), so a document
 * is not also written three times over as a message: that doubled the cost of each. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "junit/junit.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "fuzz.h"

static void fuzz_error_report(const uint8_t *data, size_t size) {
        /* The input as the message and (after a NUL, if any) the details. */
        _cleanup_free_ char *s = malloc(size + 2);
        check(s != NULL);
        memcpy(s, data, size);
        s[size] = s[size + 1] = 0;
        const char *details = s + strlen(s) + 1;
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        check(nb_junit_write_error_report(s, s, s, details, &xml, &len) == 0);
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        check(nb_junit_parse(xml, len, &r, NULL) == 0);
        check(r->n_testcases == 1 && r->errors == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 64 * 1024 && (size == 0 || data[0] != '<'))
                fuzz_error_report(data, size);

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *r = NULL;
        if (nb_junit_parse((const char *) data, size, &r, &err) < 0)
                return 0;
        (void) nb_junit_text_head_len(r->n_testcases ? r->testcases[0].result.text : NULL, 3);

        static const struct nb_junit_property props[] = { { "target", "//fuzz:junit" }, { "attempt", "1" } };
        _cleanup_free_ char *x1 = NULL, *x2 = NULL, *x3 = NULL;
        size_t l1 = 0, l2 = 0, l3 = 0;
        check(nb_junit_report_to_xml(r, props, NB_ELEMENTSOF(props), &x1, &l1) == 0);

        _cleanup_(nb_junit_report_freep) struct nb_junit_report *back = NULL, *merged = NULL;
        check(nb_junit_parse(x1, l1, &back, &err) == 0);
        check(back->n_testcases == r->n_testcases);
        check(nb_junit_report_to_xml(back, props, NB_ELEMENTSOF(props), &x2, &l2) == 0);
        check(l1 == l2 && memcmp(x1, x2, l1) == 0);

        /* The report meeting itself again: every testcase becomes a two-run group. */
        const struct nb_junit_report *in[] = { r, back };
        check(nb_junit_merge(in, 2, NULL, &merged, &err) == 0);
        check(merged->n_testcases <= r->n_testcases);
        check(nb_junit_report_to_xml(merged, NULL, 0, &x3, &l3) == 0);
        _cleanup_(nb_junit_report_freep) struct nb_junit_report *merged_back = NULL;
        check(nb_junit_parse(x3, l3, &merged_back, &err) == 0);
        return 0;
}
