/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the action JSON (`nestbox run ACTION.json`). Whatever parses
 * is written back by nb_action_to_json, and that text parses again and writes the same
 * bytes: one canonical form, so a digest cannot depend on how the input was spelled. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "action/action.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "fuzz.h"

static void action_freep(struct nb_action **a) {
        nb_action_free(*a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        __attribute__((cleanup(action_freep))) struct nb_action *a = NULL, *b = NULL;
        if (nb_action_from_json((const char *) data, size, "action.json", &a, &err) < 0) {
                check(err.msg != NULL);
                return 0;
        }
        _cleanup_free_ char *j1 = NULL, *j2 = NULL;
        check(nb_action_to_json(a, &j1) == 0);
        check(nb_action_from_json(j1, strlen(j1), "again.json", &b, &err) == 0);
        check(nb_action_to_json(b, &j2) == 0);
        check(strcmp(j1, j2) == 0);
        return 0;
}
