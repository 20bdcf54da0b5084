/* SPDX-License-Identifier: MIT */
/* Coverage reports combined across targets, shards, machines and runs (README,
 * "nestbox merge"). LCOV is the model: line hits are summed natively, file by file and
 * line by line; Cobertura XML is regenerated from the sum (cobertura.c), never merged
 * as XML. Only line records (SF, DA, end_of_record) carry over; function and branch
 * records are read past. Every path is relative to the workspace root (a leading
 * /work/, the sandbox's root, is taken off), so Codecov, GitLab and Jenkins find the
 * files in a checkout.
 *
 * The input is UNTRUSTED (a test can write any coverage.lcov): nb_lcov_parse() reads
 * in one pass, refuses a path that is absolute, climbs with "..", or holds a control
 * character or invalid UTF-8, a line number over NB_LCOV_MAX_LINE, and more than
 * NB_LCOV_MAX_RECORDS distinct lines in all (bounded memory: the records read are
 * folded, same file and line summed, each time they reach the cap, so a merge of many
 * shards that read the same lines again and again is not refused); every error is
 * one line naming the input's line. Normalising sorts (O(n log n)). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "action/result.h"
#include "nestbox/error.h"

#define NB_LCOV_MAX_SIZE (64u * 1024u * 1024u) /* bytes of one input */
#define NB_LCOV_MAX_RECORDS (8u * 1024u * 1024u) /* lines held over all inputs */
#define NB_LCOV_MAX_LINE 100000000u

struct nb_lcov_line {
        uint32_t line;
        uint64_t hits; /* sums saturate at UINT64_MAX */
};

struct nb_lcov_file {
        char *path;
        struct nb_lcov_line *lines;
        size_t n, cap;
};

struct nb_lcov {
        struct nb_lcov_file *files;
        size_t n, cap;
        size_t records;  /* lines held (folded or not), against NB_LCOV_MAX_RECORDS */
        bool folded_full; /* a fold left more than half the cap: the next one is not tried */
        bool normalized; /* files sorted by path, each once; lines sorted, each once */
};

void nb_lcov_done(struct nb_lcov *l);

/* Adds len bytes of LCOV to l (name is what errors call it). -EBADMSG with err. */
int nb_lcov_parse(struct nb_lcov *l, const char *data, size_t len, const char *name, struct nb_error *err);

/* Sorts, folds the same file and the same line together (hits summed). */
int nb_lcov_normalize(struct nb_lcov *l);

/* The normalised report as LCOV text. */
int nb_lcov_to_text(struct nb_lcov *l, char **ret, size_t *ret_len);

/* The normalised report as Cobertura XML (cobertura.c): one <package> per directory,
 * one <class> per file, filename relative to <source>.</source>. */
int nb_lcov_to_cobertura(struct nb_lcov *l, char **ret, size_t *ret_len);

/* Lines instrumented and lines hit at least once. */
void nb_lcov_totals(const struct nb_lcov *l, size_t *ret_lines, size_t *ret_hit);

/* A run's combined coverage: every result's coverage.lcov summed, written at the top
 * of --output as coverage.lcov and coverage.xml (nothing when no target measured). */
struct nb_coverage_sum {
        struct nb_lcov lcov;
        size_t inputs;
};
void nb_coverage_sum_done(struct nb_coverage_sum *s);
int nb_coverage_sum_add(struct nb_coverage_sum *s, const struct nb_result *r, struct nb_error *err);
int nb_coverage_sum_write(struct nb_coverage_sum *s, int out_dir, struct nb_error *err);
