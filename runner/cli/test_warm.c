/* SPDX-License-Identifier: MIT */
/* `nestbox test` and the warm interpreter: test_warm.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/zygote_run.h"
#include "cli/test_warm.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"
#include "python/venv.h"
#include "workspace/workspace.h"

struct prewarming {
        struct nb_events *ev;
        struct nb_action *const *actions;
        struct nb_work_item *items;
        size_t n;
        const char *building; /* the target whose venv prewarm builds */
};

static const char *target_of(const struct prewarming *p, const struct nb_action *a) {
        for (size_t i = 0; i < p->n; i++)
                if (p->actions[i] == a)
                        return p->items[i].target->name;
        return "a target";
}

/* A venv built for a zygote is announced as an item's build is (cmd_test.c
 * item_frame). */
static void venv_built(const char *digest, double seconds, void *userdata) {
        struct prewarming *p = userdata;
        nb_events_venv_built_early(p->ev, p->building ? p->building : "", digest, seconds);
}

static void note(const struct nb_action *a, const struct nb_error *err, void *userdata) {
        struct prewarming *p = userdata;
        if (!err) {
                p->building = target_of(p, a);
                return;
        }
        _cleanup_free_ char *name = nb_escape(target_of(p, a), 0);
        fprintf(stderr, "nestbox: warning: no warm interpreter for %s (cold path): %s\n", name ? name : "a target",
                nb_error_message(err));
}

void nb_test_prewarm(struct nb_work_item *items, size_t n, struct nb_store *s, const struct nb_cache_modes *m,
                     struct nb_events *ev) {
        _cleanup_free_ struct nb_action **actions = calloc(n + 1, sizeof(*actions));
        if (!actions)
                return; /* the cold path */
        for (size_t i = 0; i < n; i++)
                actions[i] = items[i].action;
        struct prewarming p = { ev, actions, items, n, NULL };
        nb_venv_on_built(venv_built, &p);
        nb_zygote_prewarm(actions, n, s, m, note, &p);
        nb_venv_on_built(NULL, NULL);
}

static int push(const struct nb_target ***v, size_t *n, const struct nb_target *t) {
        const struct nb_target **nv = realloc(*v, (*n + 1) * sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        nv[(*n)++] = t;
        *v = nv;
        return 0;
}

int nb_warm_tally_add(struct nb_warm_tally *t, const struct nb_work_item *it, const struct nb_result *res) {
        if (res->cached || res->interrupted)
                return 0;
        int r = push(&t->ran, &t->n_ran, it->target);
        return r < 0 || !res->warm ? r : push(&t->warm, &t->n_warm, it->target);
}

static int by_name(const void *a, const void *b) {
        return strcmp((*(const struct nb_target *const *) a)->name, (*(const struct nb_target *const *) b)->name);
}

/* Sorted by name, each target once (its shards and runs are items of it). */
static size_t distinct(const struct nb_target **v, size_t n) {
        nb_qsort(v, n, sizeof(*v), by_name);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (k == 0 || v[k - 1] != v[i])
                        v[k++] = v[i];
        return k;
}

void nb_warm_tally_print(struct nb_warm_tally *t) {
        size_t ran = distinct(t->ran, t->n_ran), warm = distinct(t->warm, t->n_warm);
        if (ran == 0)
                return;
        if (!nb_zygote_enabled()) {
                printf("warm interpreter: off (--no-zygote or NESTBOX_ZYGOTE=0): %zu target%s ran cold\n", ran,
                       ran == 1 ? "" : "s");
                return;
        }
        printf("warm interpreter: %zu of %zu target%s ran warm%s", warm, ran, ran == 1 ? "" : "s", warm ? ":" : "");
        for (size_t i = 0; i < warm; i++) {
                _cleanup_free_ char *name = nb_escape(t->warm[i]->name, 0);
                printf("%s %s", i ? "," : "", name ? name : "?");
        }
        if (!warm && !nb_zygote_forced())
                printf(" (a zygote starts for two or more uncached items of one venv and seed)");
        printf("\n");
}

void nb_warm_tally_done(struct nb_warm_tally *t) {
        free(t->ran);
        free(t->warm);
        *t = (struct nb_warm_tally) {};
}
