/* SPDX-License-Identifier: MIT */
/* libFuzzer target for replay records (action.json in artifacts and bundles: untrusted,
 * it may come from a remote cache or another machine's bundle). Besides "no crash, no
 * leak" it checks that whatever parses is an action whose JSON parses again into the
 * same JSON (a fixed point), and that what does not parse says so as an input error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "action/replay.h"
#include "nestbox/cleanup.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_replay rp = {};
        if (nb_replay_parse((const char *) data, size, "action.json", &rp, &err) < 0) {
                check(err.klass == NB_ERROR_INPUT || err.code == ENOMEM);
                nb_replay_done(&rp);
                return 0;
        }
        check(rp.action && nb_is_digest(rp.digest) && nb_is_digest(rp.tree) && nb_is_digest(rp.venv));
        _cleanup_free_ char *once = NULL, *twice = NULL;
        check(nb_action_to_json(rp.action, &once) == 0);
        _cleanup_action_ struct nb_action *again = NULL;
        _cleanup_error_ struct nb_error err2 = NB_ERROR_INIT;
        check(nb_action_from_json(once, strlen(once), "again", &again, &err2) == 0);
        check(nb_action_to_json(again, &twice) == 0);
        check(strcmp(once, twice) == 0);
        nb_replay_done(&rp);
        return 0;
}
