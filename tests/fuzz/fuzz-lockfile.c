/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the lockfile and PEP 508 marker parser: the lockfile comes
 * from the workspace. Besides "no crash, no leak, linear time": whatever parses holds
 * requirements sorted by name, each with at least one 64-hex-digit hash; the input as
 * one marker evaluates or fails cleanly. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "python/lockfile.h"
#include "fuzz.h"

static const struct nb_marker_env env = {
        .python_version = "3.11", .python_full_version = "3.11.2", .sys_platform = "linux",
        .platform_system = "Linux", .platform_machine = "x86_64", .os_name = "posix",
        .implementation_name = "cpython", .platform_python_implementation = "CPython",
};

static void fuzz_marker(const uint8_t *data, size_t size) {
        if (size > 4096)
                return;
        _cleanup_free_ char *s = strndup((const char *) data, size);
        check(s != NULL);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        bool v = false;
        if (nb_marker_eval(s, &env, &v, &err) < 0)
                check(err.msg != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_marker(data, size);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile lock = {};
        if (nb_lockfile_parse("fuzz.lock", (const char *) data, size, &env, &lock, &err) < 0) {
                check(err.msg != NULL);
                nb_lockfile_done(&lock);
                return 0;
        }
        for (size_t i = 0; i < lock.n_reqs; i++) {
                const struct nb_requirement *r = &lock.reqs[i];
                check(r->name && *r->name && r->version && *r->version && r->hashes && r->hashes[0]);
                for (char **h = r->hashes; *h; h++) {
                        check(strlen(*h) == 64);
                        for (const char *p = *h; *p; p++)
                                check(isxdigit((unsigned char) *p) && !isupper((unsigned char) *p));
                }
                if (i)
                        check(strcmp(lock.reqs[i - 1].name, r->name) <= 0);
        }
        nb_lockfile_done(&lock);
        return 0;
}
