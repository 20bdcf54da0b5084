/* SPDX-License-Identifier: MIT */
/* Running a resolved action in the sandbox (run.c) and turning what came out into its
 * result (run_collect.c). */
#pragma once

#include "action/action.h"
#include "action/result.h"
#include "cache/cache_dir.h"
#include "nestbox/sandbox.h"

#include <signal.h>

/* /out is a tmpfs of NB_OUT_SIZE that the host reads through its descriptor after the
 * run (the test cannot fill the host's disk through it); /tmp is a tmpfs of
 * NB_TMP_SIZE. */
#define NB_OUT_SIZE (1ull << 30)
#define NB_TMP_SIZE (1ull << 30)

/* The log keeps the first NB_LOG_KEEP_HEAD and last NB_LOG_KEEP_TAIL bytes of what the
 * test printed (stdout and stderr are a pipe the sandbox's supervisor drains, never a
 * host file); the middle of a longer one is replaced by a line saying how much was
 * cut. */
#define NB_LOG_KEEP_HEAD (256u * 1024u)
#define NB_LOG_KEEP_TAIL (256u * 1024u)

/* What one run left behind: /out as the test left it. */
struct nb_run_dir {
        int out_fd; /* O_DIRECTORY, -1 when the sandbox handed none back */
};
void nb_run_dir_freep(struct nb_run_dir *d);

/* Runs a (resolved) action. Returns 0 with *ret filled whenever pytest could be
 * started, whatever the tests did; -errno with err (classified) when an input is bad
 * or the sandbox could not be built. */
int nb_action_run(const struct nb_action *a, struct nb_cache_dir *cache, volatile sig_atomic_t *cancel,
                  struct nb_result *ret, struct nb_error *err);

/* How a run asked for by a person differs from the recorded one (nestbox repro). All
 * of it is outside the action: the same action, the same digest. */
struct nb_run_options {
        /* Instead of pytest (nb_action_session): a shell or a Python prompt. */
        char *const *argv;
        char *const *extra_env; /* NAME, value, NAME, value, ..., NULL: TERM, PS1 for it */
        double timeout_sec;     /* of a session; 0: none */
        /* From nb_run_keep_dir(): /tmp is bound to keep_dir/tmp (a host directory, so
         * not a capped tmpfs) and /out is copied to keep_dir/out after the run. */
        const char *keep_dir;
};

int nb_action_run_with(const struct nb_action *a, struct nb_cache_dir *cache, volatile sig_atomic_t *cancel,
                       const struct nb_run_options *o, struct nb_result *ret, struct nb_error *err);

/* The environment that decides how an interpreter starts (PATH, HOME, TMPDIR, LANG,
 * TZ, PYTHONDONTWRITEBYTECODE, PYTHONFAULTHANDLER, PYTHONHASHSEED): a target's and its
 * warm interpreter's. */
int nb_run_interpreter_env(struct nb_sandbox_config *cfg, uint32_t hash_seed);

/* A fresh <cache>/kept/<digest>-<n>/ (n from 1) holding tmp/ (the sandbox user's) and
 * out/; *ret is its absolute path. */
int nb_run_keep_dir(struct nb_cache_dir *cache, const char *digest, char **ret, struct nb_error *err);

/* o->argv in the action's sandbox, interactively, on a pty of its own relayed to our
 * terminal (terminal.h) once the inputs are ready. *ret_exit: the command's exit
 * status (128 + a signal). A timeout is an NB_ERROR_TIMEOUT error. */
int nb_action_session(const struct nb_action *a, struct nb_cache_dir *cache, const struct nb_run_options *o,
                      int *ret_exit, struct nb_error *err);

/* The log (from sandbox->output), the JUnit report (or one synthesized saying why there is none), the
 * artifact and the status, from a finished sandbox. */
int nb_run_collect(const struct nb_action *a, struct nb_run_dir *run, const struct nb_sandbox_result *sandbox,
                   struct nb_result *ret, struct nb_error *err);

/* ---- run_records.c: what the driver records in /out (untrusted) ---- */

/* The driver's files in /out. */
#define NB_RECORD_ORDER ".nestbox-order"
#define NB_RECORD_CURRENT ".nestbox-current"
#define NB_RECORD_FAILED ".nestbox-failed"
#define NB_RECORD_STACK ".nestbox-stack"
#define NB_RECORD_IDS_MAX_BYTES (16u * 1024u * 1024u)
#define NB_RECORD_IDS_MAX 200000u
#define NB_RECORD_STACK_MAX (1024u * 1024u)

/* The lines of /out/name as a NULL-terminated vector (*ret NULL when the file is
 * missing, empty, over max_bytes or holds more than max_ids lines); lines that are
 * not UTF-8 or hold control characters are dropped. -ENOMEM only. */
int nb_run_read_ids(int out_fd, const char *name, size_t max_bytes, size_t max_ids, char ***ret);
/* /out/name as a string (cut at a NUL), NULL when missing or over max_bytes. */
int nb_run_read_text(int out_fd, const char *name, size_t max_bytes, char **ret);
/* A pytest node id ("tests/test_a.py::TestX::test_y[1]") as junitxml names it:
 * classname "tests.test_a.TestX", name "test_y[1]". */
int nb_nodeid_split(const char *nodeid, char **ret_classname, char **ret_name);
