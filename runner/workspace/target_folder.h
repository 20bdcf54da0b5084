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

/* NULL when name can be a target's, else why not (a static string). */
const char *nb_target_name_problem(const char *name);

/* The maximum number of components of a target name. */
#define NB_TARGET_MAX_DEPTH 32
