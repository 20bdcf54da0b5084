/* SPDX-License-Identifier: MIT */
/* Shared by junit.c, junit_write.c and junit_merge.c; not part of the contract. */
#pragma once

#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>

#include "junit/junit.h"

/* libxml2 >= 2.12 passes a const error. */
#if LIBXML_VERSION >= 21200
#define NB_XML_ERROR const xmlError
#else
#define NB_XML_ERROR xmlError
#endif

/* An error handler that says nothing: errors come back through our own returns. */
void nb_junit_silent_structured(void *ctx, NB_XML_ERROR *e);

/* Times beyond this (about 31,700 years) are clamped: they can only be a lie, and a
 * sum of them must stay finite. */
#define NB_JUNIT_MAX_TIME 1e12

/* xmlInitParser() once per process, a silent error handler once per thread. */
void nb_junit_libxml_setup(void);

/* t when finite and >= 0 (clamped to NB_JUNIT_MAX_TIME), else 0. */
double nb_junit_sane_time(double t);

/* Frees the members and leaves an empty PASSED result / an empty testcase. */
void nb_junit_result_done(struct nb_junit_result *res);
void nb_junit_testcase_done(struct nb_junit_testcase *tc);

/* Sets tests/failures/errors/skipped from the testcases. */
void nb_junit_report_recount(struct nb_junit_report *r);

/* *ret = strdup(s) (NULL for NULL), freeing the old value. */
int nb_junit_strdup(const char *s, char **ret);
