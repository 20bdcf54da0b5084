/* SPDX-License-Identifier: MIT */
/* What every fuzzer shares: libFuzzer's entry point, and check(), which aborts so that
 * libFuzzer (or the corpus replay) reports a broken property as a crash. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void check(int ok) {
        if (!ok)
                abort();
}
