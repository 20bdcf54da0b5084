/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the LCOV reader (coverage/lcov.h). Besides "no crash, no leak":
 * whatever parses writes LCOV that parses again to the same text (a fixed point), and
 * Cobertura can always be written from it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coverage/lcov.h"
#include "fuzz.h"
#include "nestbox/cleanup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct nb_lcov l = {}, again = {};
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if (nb_lcov_parse(&l, (const char *) data, size, "fuzz", &err) == 0) {
                _cleanup_free_ char *text = NULL, *text2 = NULL, *xml = NULL;
                size_t len = 0, len2 = 0, xlen = 0;
                check(nb_lcov_to_text(&l, &text, &len) == 0);
                check(nb_lcov_to_cobertura(&l, &xml, &xlen) == 0);
                check(nb_lcov_parse(&again, text, len, "again", &err) == 0);
                check(nb_lcov_to_text(&again, &text2, &len2) == 0);
                check(len == len2 && memcmp(text, text2, len) == 0);
        }
        nb_lcov_done(&l);
        nb_lcov_done(&again);
        return 0;
}
