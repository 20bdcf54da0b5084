/* SPDX-License-Identifier: MIT */
/* What `test`, `run` and the worker share: --output DIR, the options that make an
 * action from a target, and the cache modes. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "action/action_workspace.h"
#include "action/execute.h"
#include "action/result.h"
#include "workspace/workspace.h"

/* Opens (creating) --output DIR; -errno with err. */
int nb_output_open(const char *arg, int *ret_fd, struct nb_error *err);

/* Writes DIR/<target>/: the artifact's files, and junit.xml with this invocation's
 * properties. *ret_outputs (may be NULL) gets the result's "outputs" object. */
int nb_output_write(int out_dir, const char *out_arg, const struct nb_result *r, json_t **ret_outputs,
                    struct nb_error *err);

/* --seed N and --shard K/N; print the error and return the exit code, 0 when fine. */
int nb_parse_seed_option(const char *arg, struct nb_action_options *o);
int nb_parse_shard_option(const char *arg, struct nb_action_options *o);

/* The store's warn callback: one line on stderr. */
void nb_warn_line(const char *message, void *userdata);

/* True when dir holds a nestbox.json. */
bool nb_is_workspace(const char *dir);

/* The targets argv names (all of the workspace's when argc is 0), each checked; prints
 * the error and returns its exit code when one is unknown, else 0. */
int nb_select_targets(const struct nb_workspace *ws, const char *root, int argc, char **argv,
                      const struct nb_target ***ret, size_t *ret_n);
