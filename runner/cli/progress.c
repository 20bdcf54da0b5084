/* SPDX-License-Identifier: MIT */
/* The live status block of `nestbox test`, drawn on stdout when stdout is a terminal:
 * stdout is where the finished targets' lines go, so they scroll above the block and
 * the block can be erased in place (cursor up, erase line); stderr alone being a
 * terminal (stdout piped to a file) means someone keeps the log, and a log must not
 * hold escape codes. Not on a terminal the block is never drawn and the output is the
 * plain lines, one per finished item.
 *
 *   [2/5] 4.1s  passed 1, failed 0, cached 0  ETA 6s
 *     running lib/tests 3.2s, app/tests 0.8s
 *
 * At most two lines, each cut to the terminal's width (a wrapped line would break the
 * erase), target names escaped as in the summary. The ETA comes from the items'
 * expected durations, shown only when every item left has one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/progress.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

int nb_color_parse(const char *arg) {
        return strcmp(arg, "auto") == 0     ? NB_COLOR_AUTO
               : strcmp(arg, "always") == 0 ? NB_COLOR_ALWAYS
               : strcmp(arg, "never") == 0  ? NB_COLOR_NEVER
                                            : -1;
}

bool nb_color_wanted(enum nb_color_mode m) {
        const char *no = getenv("NO_COLOR");
        return m == NB_COLOR_ALWAYS || (m == NB_COLOR_AUTO && isatty(STDOUT_FILENO) && !(no && *no));
}

enum state { QUEUED, RUNNING, DONE };

struct nb_progress {
        const struct nb_work_item *items;
        size_t n, done, passed, failed, cached;
        unsigned jobs;
        enum state *state;
        struct timespec *started;
        struct timespec t0;
        bool live;
        unsigned drawn; /* lines of the block on screen */
        char **not_passed; /* escaped lines to repeat at the end */
        size_t n_not_passed;
};

static double since(const struct timespec *t) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (double) (now.tv_sec - t->tv_sec) + (double) (now.tv_nsec - t->tv_nsec) / 1e9;
}

struct nb_progress *nb_progress_new(const struct nb_work_item *items, size_t n, unsigned jobs) {
        struct nb_progress *p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        const char *term = getenv("TERM");
        *p = (struct nb_progress) { .items = items, .n = n, .jobs = jobs ? jobs : 1,
                                    .live = isatty(STDOUT_FILENO) && !(term && strcmp(term, "dumb") == 0) };
        p->state = calloc(n + 1, sizeof(*p->state));
        p->started = calloc(n + 1, sizeof(*p->started));
        p->not_passed = calloc(n + 1, sizeof(*p->not_passed));
        if (!p->state || !p->started || !p->not_passed) {
                nb_progress_free(p);
                return NULL;
        }
        clock_gettime(CLOCK_MONOTONIC, &p->t0);
        return p;
}

void nb_progress_free(struct nb_progress *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_not_passed; i++)
                free(p->not_passed[i]);
        free(p->not_passed);
        free(p->state);
        free(p->started);
        free(p);
}

bool nb_progress_live(const struct nb_progress *p) {
        return p && p->live;
}

static size_t index_of(const struct nb_progress *p, const struct nb_work_item *it) {
        return (size_t) (it - p->items);
}

void nb_progress_started(struct nb_progress *p, const struct nb_work_item *it) {
        if (!p)
                return;
        size_t i = index_of(p, it);
        p->state[i] = RUNNING;
        clock_gettime(CLOCK_MONOTONIC, &p->started[i]);
        nb_progress_hide(p);
        nb_progress_show(p);
}

void nb_progress_finished(struct nb_progress *p, const struct nb_work_item *it, const struct nb_result *res) {
        if (!p)
                return;
        p->state[index_of(p, it)] = DONE;
        p->done++;
        bool passed = res && res->status == NB_TARGET_PASSED && !res->interrupted;
        p->passed += passed;
        p->failed += !passed;
        p->cached += res && res->cached;
        if (!passed && p->live) {
                _cleanup_free_ char *name = nb_escape(it->target->name, 0);
                char *line = NULL;
                const char *status = !res ? "ERROR" : res->interrupted ? "INTERRUPTED" : nb_target_status_name(res->status);
                if (name && asprintf(&line, "  %s  %s", name, status) >= 0)
                        p->not_passed[p->n_not_passed++] = line;
        }
}

static unsigned columns(void) {
        struct winsize ws;
        return ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10 ? ws.ws_col : 80;
}

/* Seconds left when every item not done has an expectation; < 0 otherwise. */
static double eta(const struct nb_progress *p) {
        double left = 0;
        for (size_t i = 0; i < p->n; i++) {
                if (p->state[i] == DONE)
                        continue;
                if (!p->items[i].expected_ms)
                        return -1;
                double e = (double) p->items[i].expected_ms / 1000.0;
                if (p->state[i] == RUNNING)
                        e = e > since(&p->started[i]) ? e - since(&p->started[i]) : 0;
                left += e;
        }
        return left / p->jobs;
}

static void put_line(const char *s, unsigned cols) {
        size_t len = strlen(s);
        printf("%.*s\n", (int) (len < cols ? len : cols - 1), s);
}

void nb_progress_show(struct nb_progress *p) {
        if (!p || !p->live || p->drawn || p->done == p->n)
                return;
        unsigned cols = columns();
        char head[256];
        double left = eta(p);
        int k = snprintf(head, sizeof(head), "[%zu/%zu] %.1fs  passed %zu, failed %zu, cached %zu", p->done, p->n,
                         since(&p->t0), p->passed, p->failed, p->cached);
        if (left >= 0 && k > 0 && (size_t) k < sizeof(head))
                snprintf(head + k, sizeof(head) - (size_t) k, "  ETA %.0fs", left);
        put_line(head, cols);
        p->drawn = 1;
        _cleanup_free_ char *run = strdup("  running");
        for (size_t i = 0; run && i < p->n; i++) {
                if (p->state[i] != RUNNING)
                        continue;
                _cleanup_free_ char *name = nb_escape(p->items[i].target->name, 0);
                char *grown = NULL;
                if (!name || asprintf(&grown, "%s%s %s %.1fs", run, run[9] ? "," : "", name, since(&p->started[i])) < 0)
                        break;
                free(run);
                run = grown;
                if (strlen(run) >= cols)
                        break; /* cut below anyway */
        }
        if (run && run[9]) {
                put_line(run, cols);
                p->drawn++;
        }
        fflush(stdout);
}

void nb_progress_hide(struct nb_progress *p) {
        if (!p || !p->live || !p->drawn)
                return;
        for (; p->drawn; p->drawn--)
                fputs("\033[1A\033[2K", stdout);
        fputc('\r', stdout);
        fflush(stdout);
}

void nb_progress_end(struct nb_progress *p) {
        if (!p || !p->live)
                return;
        nb_progress_hide(p);
        if (p->n_not_passed)
                puts("not passed:");
        for (size_t i = 0; i < p->n_not_passed; i++)
                puts(p->not_passed[i]);
        fflush(stdout);
}
