/* SPDX-License-Identifier: MIT */
/* libFuzzer target for nestbox.json: the workspace is not trusted. Whatever parses
 * has its targets and resolves sorted, every target naming an existing resolve, its
 * env list within NB_ENV_NAMES_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "workspace/workspace.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        if (nb_workspace_parse((const char *) data, size, "nestbox.json", "/ws", &ws, &err) < 0) {
                check(err.msg != NULL && err.klass == NB_ERROR_INPUT);
                return 0;
        }
        for (size_t i = 0; i < ws->n_targets; i++) {
                const struct nb_target *t = &ws->targets[i];
                check(t->resolve != NULL && nb_workspace_target(ws, t->name) == t);
                size_t n = 0;
                while (t->env[n])
                        n++;
                check(n <= NB_ENV_NAMES_MAX);
                if (i)
                        check(strcmp(ws->targets[i - 1].name, t->name) < 0);
        }
        for (size_t i = 1; i < ws->n_resolves; i++)
                check(strcmp(ws->resolves[i - 1].name, ws->resolves[i].name) < 0);
        return 0;
}
