/* SPDX-License-Identifier: MIT */
/* JUnit XML: the model (freeing, recounting, sane times) and the quiet libxml2 set-up
 * every user of libxml2 here calls first. The parser is junit.c, the writer
 * junit_write.c, merging junit_merge.c. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

#include "junit/junit-internal.h"
#include "junit/junit.h"
#include "nestbox/cleanup.h"

void nb_junit_silent_structured(void *ctx, NB_XML_ERROR *e) {
}

static void silent_generic(void *ctx, const char *fmt, ...) {
}

static pthread_once_t libxml_once = PTHREAD_ONCE_INIT;
static _Thread_local bool libxml_quiet;

static void libxml_init_once(void) {
        xmlInitParser();
}

void nb_junit_libxml_setup(void) {
        pthread_once(&libxml_once, libxml_init_once);
        /* libxml2 keeps its error handlers per thread: install ours once in each. */
        if (!libxml_quiet) {
                xmlSetStructuredErrorFunc(NULL, nb_junit_silent_structured);
                xmlSetGenericErrorFunc(NULL, silent_generic);
                libxml_quiet = true;
        }
}

double nb_junit_sane_time(double t) {
        if (!isfinite(t) || t < 0)
                return 0;
        return t > NB_JUNIT_MAX_TIME ? NB_JUNIT_MAX_TIME : t;
}

void nb_junit_result_done(struct nb_junit_result *res) {
        free(res->type);
        free(res->message);
        free(res->text);
        free(res->system_out);
        free(res->system_err);
        *res = (struct nb_junit_result) { .outcome = NB_JUNIT_PASSED };
}

void nb_junit_testcase_done(struct nb_junit_testcase *tc) {
        free(tc->classname);
        free(tc->name);
        nb_junit_result_done(&tc->result);
        for (size_t i = 0; i < tc->n_reruns; i++)
                nb_junit_result_done(&tc->reruns[i]);
        free(tc->reruns);
        *tc = (struct nb_junit_testcase) {};
}

void nb_junit_report_free(struct nb_junit_report *r) {
        if (!r)
                return;
        free(r->name);
        free(r->timestamp);
        for (size_t i = 0; i < r->n_testcases; i++)
                nb_junit_testcase_done(&r->testcases[i]);
        free(r->testcases);
        free(r);
}

void nb_junit_report_recount(struct nb_junit_report *r) {
        r->tests = r->n_testcases;
        r->failures = r->errors = r->skipped = 0;
        for (size_t i = 0; i < r->n_testcases; i++)
                switch (r->testcases[i].result.outcome) {
                case NB_JUNIT_FAILED:
                        r->failures++;
                        break;
                case NB_JUNIT_ERROR:
                        r->errors++;
                        break;
                case NB_JUNIT_SKIPPED:
                        r->skipped++;
                        break;
                case NB_JUNIT_PASSED:
                        break;
                }
}

int nb_junit_strdup(const char *s, char **ret) {
        char *c = NULL;
        if (s && !(c = strdup(s)))
                return -ENOMEM;
        free(*ret);
        *ret = c;
        return 0;
}

