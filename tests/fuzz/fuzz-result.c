/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the result record and its replay (nb_result_lookup): a record
 * and an artifact as a damaged disk or a hostile cache could hold them. The input is
 * the record's JSON, a NUL, then the artifact's bytes; "@ARTIFACT@" in the record
 * stands for the artifact's digest, so the fuzzer reaches past the CAS lookup. A record
 * that replays is consistent: its status is what its JUnit counts say. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "action/action.h"
#include "action/result.h"
#include "cache/cache_dir.h"
#include "cache/cas.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "fuzz.h"

#define KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct nb_cache_dir cache;
static bool opened;
static char root[] = "/tmp/nb-fuzz-result.XXXXXX";

static void cleanup(void) {
        nb_cache_dir_close(&cache);
        (void) nb_rm_rf_at(AT_FDCWD, root);
}

static void setup(void) {
        if (opened)
                return;
        check(mkdtemp(root) != NULL);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        check(nb_cache_dir_open(&cache, root, &err) == 0);
        opened = true;
        atexit(cleanup);
}

/* record with every "@ARTIFACT@" replaced by digest. */
static char *substitute(const char *rec, size_t len, const char *digest) {
        static const char mark[] = "@ARTIFACT@";
        size_t n = 0;
        for (const char *p = rec; (p = memmem(p, len - (size_t) (p - rec), mark, 10)); p += 10)
                n++;
        char *out = malloc(len + n * NB_DIGEST_HEX_LEN + 1), *o = out;
        check(out != NULL);
        for (size_t i = 0; i < len;) {
                if (len - i >= 10 && memcmp(rec + i, mark, 10) == 0) {
                        memcpy(o, digest, NB_DIGEST_HEX_LEN);
                        o += NB_DIGEST_HEX_LEN;
                        i += 10;
                } else
                        *o++ = rec[i++];
        }
        *o = 0;
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        setup();
        const uint8_t *nul = memchr(data, 0, size);
        size_t rec_len = nul ? (size_t) (nul - data) : size;
        const char *blob = nul ? (const char *) nul + 1 : "";
        size_t blob_len = nul ? size - rec_len - 1 : 0;
        struct nb_store store = { .dir = &cache };
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        char digest[NB_DIGEST_HEX_LEN + 1];
        check(nb_cas_put(&store, blob, blob_len, digest, &err) == 0);
        _cleanup_free_ char *rec = substitute((const char *) data, rec_len, digest);
        check(nb_ac_put(&store, KEY, rec, strlen(rec), &err) == 0);

        struct nb_action a = { .target = (char *) "//fuzz:target" };
        memcpy(a.resolved.digest, KEY, sizeof(KEY));
        struct nb_result r;
        int k = nb_result_lookup(&store, &a, &r, &err);
        if (k == 0) {
                check(r.report != NULL && r.cached);
                check(r.status != NB_TARGET_PASSED || (r.report->failures == 0 && r.report->errors == 0));
                json_t *j = nb_result_to_json(&r, NB_RESULT_JSON_ARTIFACT | NB_RESULT_JSON_CACHED);
                check(j != NULL);
                json_decref(j);
                nb_result_done(&r);
        } else
                check(k == -ENOENT || k == -ENOMEM || k == -EBADMSG);
        return 0;
}
