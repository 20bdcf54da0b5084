/* SPDX-License-Identifier: MIT */
/* The per-testcase flake table of `nestbox test` (flake_table.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "action/result.h"

struct nb_flake_row;
struct nb_flake_count;

struct nb_flake_table {
        struct nb_flake_row *rows;
        size_t n_rows, cap;
        struct nb_flake_count *counts; /* results per target */
        size_t n_counts;
        bool retried; /* some run was retried (--attempts) */
};

/* Counts one run's (folded) result. -1 when out of memory. */
int nb_flake_table_add(struct nb_flake_table *ft, const struct nb_result *res);

/* For every test that failed at least once: runs, failures, rate, failing seeds. */
void nb_flake_table_print(struct nb_flake_table *ft);

void nb_flake_table_done(struct nb_flake_table *ft);
