/* SPDX-License-Identifier: MIT */
/* What the pool's callbacks do for `nestbox test` (test_run.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "action/attempts.h"
#include "cache/durations.h"
#include "cli/cli.h"
#include "cli/test_run.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

void nb_test_run_done(struct nb_test_run *tr) {
        nb_item_reports_done(&tr->combined);
        nb_coverage_sum_done(&tr->coverage);
        nb_flake_table_done(&tr->flakes);
        nb_warm_tally_done(&tr->warm);
        for (size_t i = 0; i < tr->n; i++) {
                nb_action_free(tr->items[i].action);
                nb_item_outcome_done(&tr->outcomes[i]);
        }
        free(tr->items);
        free(tr->outcomes);
        free(tr->not_run);
        free(tr->cleared);
        nb_progress_free(tr->progress);
        nb_events_close(&tr->events);
}

/* An item that gave no result: counted, told to --events, said in one line. */
static void item_error(struct nb_test_run *tr, const struct nb_work_item *it, struct nb_error *err) {
        tr->summary.targets++;
        tr->summary.errors++;
        nb_events_target_error(&tr->events, it->target->name, it->shard_index, it->shard_count, it->run,
                               nb_error_message(err));
        nb_exit_worst(&tr->status, nb_fail(err));
}

static int clear_output(struct nb_test_run *tr, const struct nb_work_item *it, struct nb_error *err) {
        tr->cleared[it - tr->items] = true;
        return nb_output_clear(tr->out_dir, it->target->name, it->shard_index, it->shard_count, it->run,
                               tr->summary.runs_per_test, tr->ws, err);
}

void nb_test_run_clear_never_started(struct nb_test_run *tr) {
        for (size_t i = 0; tr->out_dir >= 0 && i < tr->n; i++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                if (!tr->cleared[i] && clear_output(tr, &tr->items[i], &err) < 0)
                        nb_exit_worst(&tr->status, nb_fail(&err));
        }
}

static int item_starting(struct nb_work_item *it, void *userdata) {
        struct nb_test_run *tr = userdata;
        if (tr->options->until_failure && tr->failed_run)
                return -ECANCELED; /* --until-failure: a run failed, the rest are not wanted */
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if (tr->out_dir >= 0 && clear_output(tr, it, &err) < 0) {
                /* Not run: its folder could hold an earlier run's files as if this one's. */
                nb_progress_hide(tr->progress);
                item_error(tr, it, &err);
                nb_progress_show(tr->progress);
                return -EIO;
        }
        nb_events_target_started(&tr->events, it->target->name, it->shard_index, it->shard_count, it->run);
        nb_progress_started(tr->progress, it);
        return 0;
}

static int item_run(struct nb_work_item *it, int fd, void *userdata) {
        struct nb_test_run *tr = userdata;
        if (tr->remote_off)
                tr->store.remote = NULL; /* this process's copy; the parent closes its own */
        return nb_item_run(it, &tr->store, tr->modes, fd);
}

static void item_frame(struct nb_work_item *it, const struct nb_frame *f, void *userdata) {
        struct nb_test_run *tr = userdata;
        if (f->type == NB_FRAME_VENV_BUILT) {
                char digest[NB_DIGEST_HEX_LEN + 1] = "";
                double sec = 0;
                _cleanup_free_ char *line = strndup(f->data, f->len);
                if (line && sscanf(line, "%64s %lf", digest, &sec) == 2)
                        nb_events_venv_built(&tr->events, it->target->name, digest, sec);
        } else if (f->type == NB_FRAME_WARNING || f->type == NB_FRAME_REMOTE_OFF) {
                /* The remote's fault once per run; items started later do not ask it. */
                if (f->type == NB_FRAME_REMOTE_OFF && tr->remote_off) {
                        /* Items in flight when the remote went off fault too; a serial
                         * run would have stopped asking at the first, so it counts once. */
                        tr->outcomes[it - tr->items].repeated_fault = true;
                        return;
                }
                tr->remote_off = tr->remote_off || f->type == NB_FRAME_REMOTE_OFF;
                _cleanup_free_ char *line = strndup(f->data, f->len);
                nb_progress_hide(tr->progress);
                nb_warn_line(line ? line : "out of memory", NULL);
                nb_progress_show(tr->progress);
        } else
                nb_item_outcome_frame(&tr->outcomes[it - tr->items], f);
}

/* What a serial run did with a finished target: its lines, --output, the combined
 * report; an interrupted one is shown but nothing of it is written. */
static int item_result(struct nb_test_run *tr, struct nb_work_item *it, struct nb_result *res) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        nb_summary_result(&tr->summary, res, tr->verbose);
        nb_events_result(&tr->events, res);
        nb_progress_finished(tr->progress, it, res);
        int code = nb_result_exit_code(res);
        if (res->status == NB_TARGET_FLAKY && tr->options->flaky_fails)
                code = NB_EXIT_FAILED;
        if (nb_result_failed(res) && !res->interrupted && !tr->failed_run) {
                memcpy(tr->failed_action, res->action, sizeof(tr->failed_action));
                tr->failed_run = res->run;
                tr->failed_seed = res->seed;
        }
        if (res->interrupted)
                return code;
        if (nb_warm_tally_add(&tr->warm, it, res) < 0)
                nb_exit_worst(&code, nb_die(NB_EXIT_INFRA, "out of memory"));
        if (tr->flakes_wanted && nb_flake_table_add(&tr->flakes, res) < 0)
                nb_exit_worst(&code, nb_die(NB_EXIT_INFRA, "out of memory"));
        if (!tr->modes->no_cache && nb_durations_learn(tr->store.dir, res, it->action, &err) < 0) {
                nb_warn_line(nb_error_message(&err), NULL);
                nb_error_clear(&err);
        }
        if (tr->out_dir >= 0) {
                if (nb_output_write(tr->out_dir, tr->out_arg, res, tr->summary.runs_per_test, NULL, &err) < 0)
                        nb_exit_worst(&code, nb_fail(&err));
                nb_error_clear(&err);
                if (nb_coverage_sum_add(&tr->coverage, res, &err) < 0)
                        nb_exit_worst(&code, nb_fail(&err));
                if (nb_item_reports_add(&tr->combined, it->order, res) < 0)
                        nb_exit_worst(&code, nb_die(NB_EXIT_INFRA, "out of memory"));
        }
        return code;
}

static void item_ended(struct nb_work_item *it, int wstatus, void *userdata) {
        struct nb_test_run *tr = userdata;
        struct nb_item_outcome *o = &tr->outcomes[it - tr->items];
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_result res;
        nb_progress_hide(tr->progress);
        /* Summed apart, and into the run's remote only at the end: an item's process
         * starts from a copy of the run's remote, whose counters must stay zero. */
        nb_item_outcome_add_remote(o, &tr->remote);
        int r = nb_item_outcome_result(o, &tr->store, &res, &err);
        if (r == 0) {
                nb_exit_worst(&tr->status, item_result(tr, it, &res));
                nb_result_done(&res);
        } else if (*tr->cancelled && (r == -ENOENT || o->failed)) {
                tr->not_run[tr->n_not_run++] = it->target; /* the summary names it */
        } else {
                if (r == -ENOENT && o->failed)
                        err = (struct nb_error) { o->err.code, TAKE_PTR(o->err.msg), o->err.klass };
                else if (r == -ENOENT)
                        nb_error_setx(&err, ECHILD, "target \"%s\": its process %s %d", it->target->name,
                                     WIFSIGNALED(wstatus) ? "was killed by signal" : "exited with",
                                     WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus));
                nb_progress_finished(tr->progress, it, NULL);
                item_error(tr, it, &err);
        }
        nb_item_outcome_done(o);
        nb_progress_show(tr->progress);
}

static void item_throttled(const struct nb_work_item *it, uint64_t running, uint64_t budget, void *userdata) {
        struct nb_test_run *tr = userdata;
        if (tr->throttle_said)
                return;
        tr->throttle_said = true;
        _cleanup_free_ char *name = nb_escape(it->target->name, 0);
        nb_progress_hide(tr->progress);
        fprintf(stderr,
                "nestbox: memory: %s (limit %.1f MiB) waits: the running targets' limits (%.1f MiB) and its own "
                "would exceed the %.1f MiB available\n",
                name ? name : "a target", (double) it->memory / 1048576.0, (double) running / 1048576.0,
                (double) budget / 1048576.0);
        nb_progress_show(tr->progress);
}

static void item_tick(void *userdata) {
        struct nb_test_run *tr = userdata;
        nb_progress_hide(tr->progress);
        nb_progress_show(tr->progress);
}

const struct nb_pool_ops nb_test_run_pool_ops = {
        .starting = item_starting,
        .run = item_run,
        .frame = item_frame,
        .ended = item_ended,
        .throttled = item_throttled,
        .tick = item_tick,
};
