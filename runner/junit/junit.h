/* SPDX-License-Identifier: MIT */
/* JUnit XML (HACKING.md, "JUnit XML"): parse what pytest wrote in the sandbox, add
 * properties, merge shards and attempts, and synthesize a report for a run that died
 * before pytest wrote one.
 *
 * The input is UNTRUSTED: the tests inside the sandbox can write anything to
 * /out/junit.xml. The parser (libxml2) never touches the network or the host's files,
 * never expands entities, refuses any DOCTYPE, refuses documents over
 * NB_JUNIT_MAX_SIZE bytes, nested deeper than NB_JUNIT_MAX_DEPTH or with more than
 * NB_JUNIT_MAX_CASE_ELEMENTS elements in one testcase, reads in time linear in the
 * document's size, and keeps libxml2's
 * own hard limits (no XML_PARSE_HUGE). Nothing of the input is ever copied to the
 * output verbatim: reports are re-emitted from the parsed fields with libxml2's
 * writer, so escaping is libxml2's and characters invalid in XML 1.0 are removed.
 *
 * All functions return 0 on success and -errno on failure (-EBADMSG for a document
 * that is malformed or refused, -EFBIG for one over the size cap). libxml2 prints
 * nothing: a silent error handler is installed once per thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "nestbox/error.h"

#define NB_JUNIT_MAX_SIZE (64u * 1024u * 1024u) /* bytes of XML we agree to parse */
#define NB_JUNIT_MAX_DEPTH 64                   /* element nesting we agree to follow */
#define NB_JUNIT_MAX_TESTCASES (1u << 20)       /* testcases in one document */
#define NB_JUNIT_MAX_CASE_ELEMENTS 4096u        /* elements inside one testcase */

enum nb_junit_outcome {
        NB_JUNIT_PASSED,
        NB_JUNIT_FAILED,  /* <failure>: an assertion failed */
        NB_JUNIT_ERROR,   /* <error>: setup/teardown/collection or an unexpected exception */
        NB_JUNIT_SKIPPED, /* <skipped>, including pytest's xfail */
};

/* What one run of a testcase gave. All strings are malloc'd, NULL when absent. */
struct nb_junit_result {
        enum nb_junit_outcome outcome;
        char *type;    /* type="" of <failure>/<error>/<skipped> */
        char *message; /* message="" of the same */
        char *text;    /* its full body (the traceback); see nb_junit_text_head_len() */
        char *system_out;
        char *system_err;
};

struct nb_junit_testcase {
        char *classname; /* never NULL ("" when the XML had none) */
        char *name;      /* never NULL */
        double time;     /* seconds, finite and >= 0 */
        struct nb_junit_result result;
        /* Earlier or later failed runs, in the order they happened (Maven Surefire's
         * convention): when result.outcome is PASSED (or SKIPPED) they are emitted as
         * <flakyFailure>/<flakyError>, otherwise as <rerunFailure>/<rerunError>. Their
         * outcome is always NB_JUNIT_FAILED or NB_JUNIT_ERROR. */
        struct nb_junit_result *reruns;
        size_t n_reruns;
};

struct nb_junit_report {
        char *name;      /* the suite's name ("pytest"), never NULL */
        char *timestamp; /* the first suite's timestamp="", NULL when absent */
        struct nb_junit_testcase *testcases;
        size_t n_testcases;
        /* Counted from the testcases, never taken from the XML's own attributes. */
        size_t tests, failures, errors, skipped;
        double time; /* sum of the suites' time="" (or of the testcases' when absent) */
};

/* A <property name="" value=""/> added to the emitted <testsuite>. */
struct nb_junit_property {
        const char *name;
        const char *value;
};

/* Parses len bytes of JUnit XML. The root may be <testsuites> or <testsuite>; nested
 * suites are flattened into one report. Surefire's flaky/rerun elements are read back
 * into reruns, so a report nestbox wrote parses to the same report. */
int nb_junit_parse(const char *data, size_t len, struct nb_junit_report **ret, struct nb_error *err);

/* Writes r as <testsuites><testsuite name=...><properties>...</properties><testcase>...
 * with props in the order given (n_props may be 0). Same report and properties give
 * the same bytes. *ret_xml is NUL-terminated; ret_len may be NULL. */
int nb_junit_report_to_xml(const struct nb_junit_report *r,
                           const struct nb_junit_property *props, size_t n_props,
                           char **ret_xml, size_t *ret_len);

/* One <testsuite> of a document with several: a report and its properties. */
struct nb_junit_suite {
        const struct nb_junit_report *report;
        const struct nb_junit_property *props;
        size_t n_props;
};

/* Writes <testsuites> holding one <testsuite> per element, totals summed: the combined
 * report of a run (one suite per target). nb_junit_report_to_xml() is this with one. */
int nb_junit_suites_to_xml(const struct nb_junit_suite *suites, size_t n, char **ret_xml, size_t *ret_len);

/* nb_junit_report_to_xml(), stopped with -EFBIG as soon as the document passes max
 * bytes: escaping can make a report that was within NB_JUNIT_MAX_SIZE five times
 * larger ("&" is "&amp;"), and what nestbox stores it must read back. */
int nb_junit_report_to_xml_within(const struct nb_junit_report *r, const struct nb_junit_property *props,
                                  size_t n_props, size_t max, char **ret_xml, size_t *ret_len);

/* Combines reports (shards and attempts, in attempt order) into one. Testcases are
 * identified by (classname, name) and kept in the order they first appear. Runs of
 * the same testcase: if any passed, it is PASSED with every failed run as a flaky
 * rerun; if none passed but some failed, the first failure is the result and the
 * later ones are reruns; otherwise the first run stands. name NULL keeps the first
 * report's name. Totals are recounted; times are summed. */
int nb_junit_merge(const struct nb_junit_report *const *reports, size_t n, const char *name,
                   struct nb_junit_report **ret, struct nb_error *err);

/* The reports grouped by name (a target's shards, machines and runs): one report per
 * name, in the order the names first appear, each the nb_junit_merge() of its group (in the order given)
 * with its testcases sorted by (classname, name), so the same testcases give the same
 * report however they were split. Free *ret with nb_junit_reports_free(). */
int nb_junit_fold_by_name(const struct nb_junit_report *const *reports, size_t n, struct nb_junit_report ***ret,
                          size_t *ret_n, struct nb_error *err);
void nb_junit_reports_free(struct nb_junit_report **v, size_t n);
/* nb_junit_fold_by_name() written as one document, one <testsuite> per name: the
 * combined junit.xml of `test --output` and of `merge`. */
int nb_junit_folded_xml(const struct nb_junit_report *const *reports, size_t n, char **ret_xml, size_t *ret_len,
                        struct nb_error *err);

/* A report with one testcase (classname suite_name, name testcase_name) whose result
 * is an <error message=message> with details as its body: what a run that died
 * before pytest wrote its XML (crash, os._exit, timeout, OOM) reports. Any argument
 * but suite_name and testcase_name may be NULL; strings may hold anything (invalid
 * UTF-8 and control characters are cleaned when written). */
int nb_junit_error_report(const char *suite_name, const char *testcase_name, const char *message,
                          const char *details, struct nb_junit_report **ret);

/* nb_junit_error_report() written straight to XML, without properties. */
int nb_junit_write_error_report(const char *suite_name, const char *testcase_name, const char *message,
                                const char *details, char **ret_xml, size_t *ret_len);

/* The length of text's first max_lines lines (without the last newline), for
 * printf("%.*s", (int) n, text) in a summary. text may be NULL (gives 0). */
size_t nb_junit_text_head_len(const char *text, size_t max_lines);

const char *nb_junit_outcome_to_string(enum nb_junit_outcome o);

void nb_junit_report_free(struct nb_junit_report *r);
static inline void nb_junit_report_freep(struct nb_junit_report **r) {
        nb_junit_report_free(*r);
}
#define _cleanup_junit_report_ __attribute__((cleanup(nb_junit_report_freep)))
