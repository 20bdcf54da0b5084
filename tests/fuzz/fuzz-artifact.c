/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the artifact unpacker: an artifact may come from a remote cache
 * or a damaged disk. Whatever unpacks holds only valid names, is packed again, and the
 * packed bytes unpack to the same entries (names as bytes, data byte for byte). An
 * input of odd length goes the way a cache hit's summary reads an artifact, passing
 * over undeclared/, instead: each unpack costs a zstd context, and one per input
 * keeps the fuzzer fast while a mutation that adds or drops a byte tries both. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/artifact.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "fuzz.h"

static void artifact_donep(struct nb_artifact *a) {
        nb_artifact_done(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        __attribute__((cleanup(artifact_donep))) struct nb_artifact a = {}, skipped = {}, back = {};
        if (size % 2) {
                if (nb_artifact_unpack((const char *) data, size, "undeclared/", &skipped, &err) < 0)
                        check(err.msg != NULL);
                for (size_t i = 0; i < skipped.n; i++)
                        check(strncmp(skipped.entries[i].name, "undeclared/", 11) != 0);
                return 0;
        }
        if (nb_artifact_unpack((const char *) data, size, NULL, &a, &err) < 0) {
                check(err.msg != NULL);
                return 0;
        }
        _cleanup_free_ char *packed = NULL;
        size_t len = 0;
        check(nb_artifact_pack(&a, &packed, &len, &err) == 0);
        check(nb_artifact_unpack(packed, len, NULL, &back, &err) == 0);
        check(back.n == a.n);
        for (size_t i = 0; i < a.n; i++) {
                const struct nb_artifact_entry *e = nb_artifact_find(&back, a.entries[i].name);
                check(e && e->len == a.entries[i].len && memcmp(e->data, a.entries[i].data, e->len) == 0);
        }
        return 0;
}
