/* SPDX-License-Identifier: MIT */
/* A target's --output folder, DIR/<folder>/, from its name, and the names that cannot
 * have one of their own. Target names come from an untrusted workspace: the folder is
 * always a plain relative path, and two targets never share one. */
#pragma once

#include <stdbool.h>

/* The folder of target name: anything but letters, digits, "-", "_", a "/" between
 * two components and a "." that does not start a component becomes "_". NULL when
 * out of memory. */
char *nb_target_folder(const char *name);

/* Whether a component is a name --output gives its own files and folders
 * (undeclared, result.json, junit.xml, log, action.json, coverage.*, run-N,
 * shard-K-of-N): a target named so would share them. */
bool nb_output_reserved(const char *component);

/* Whether component is a run's folder "run-R" / a shard's "shard-K-of-N" as --output
 * spells them (%u: digits, no leading zero); the numbers, saturated at UINT_MAX, in
 * *ret_run / *ret_k and *ret_n. */
bool nb_output_run_folder(const char *component, unsigned *ret_run);
bool nb_output_shard_folder(const char *component, unsigned *ret_k, unsigned *ret_n);

/* NULL when name can be a target's, else why not (a static string). */
const char *nb_target_name_problem(const char *name);

/* The maximum number of components of a target name. */
#define NB_TARGET_MAX_DEPTH 32
