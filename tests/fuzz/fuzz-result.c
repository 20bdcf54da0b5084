/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the result record and its replay (nb_result_from_entry, all of
 * nb_result_lookup but the store's reads): a record and an artifact as a damaged disk
 * or a hostile cache could hold them. The input is the record's JSON, a NUL, then the
 * artifact's bytes; "@ARTIFACT@" in the record stands for the artifact's digest, so the
 * fuzzer reaches past the CAS lookup, which serves those bytes for that digest only.
 * Nothing touches the file system. A record that replays is consistent: its status is
 * what its JUnit counts say. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "action/action.h"
#include "action/result.h"
#include "cache/digest.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "fuzz.h"

#define KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* The CAS as nb_cas_get would answer: the artifact under its digest, nothing else. */
struct blob {
        const char *data;
        size_t len;
        const char *digest;
};

static int fetch(void *userdata, const char *digest, char **ret, size_t *ret_len, struct nb_error *err) {
        const struct blob *b = userdata;
        if (strcmp(digest, b->digest) != 0)
                return -ENOENT;
        char *copy = malloc(b->len + 1);
        if (!copy)
                return nb_error_set(err, ENOMEM, "cas");
        memcpy(copy, b->data, b->len);
        copy[b->len] = 0;
        *ret = copy;
        *ret_len = b->len;
        return 0;
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
        const uint8_t *nul = memchr(data, 0, size);
        size_t rec_len = nul ? (size_t) (nul - data) : size;
        char digest[NB_DIGEST_HEX_LEN + 1];
        struct blob b = { nul ? (const char *) nul + 1 : "", nul ? size - rec_len - 1 : 0, digest };
        nb_sha256_hex(b.data, b.len, digest);
        _cleanup_free_ char *rec = substitute((const char *) data, rec_len, digest);

        struct nb_action a = { .target = (char *) "//fuzz:target" };
        memcpy(a.resolved.digest, KEY, sizeof(KEY));
        struct nb_result r;
        char artifact[NB_DIGEST_HEX_LEN + 1];
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        int k = nb_result_from_entry(rec, strlen(rec), &a, fetch, &b, &r, artifact, &err);
        if (k == 0) {
                check(r.report != NULL && r.cached && strcmp(artifact, digest) == 0);
                check(r.status != NB_TARGET_PASSED || (r.report->failures == 0 && r.report->errors == 0));
                json_t *j = nb_result_to_json(&r, NB_RESULT_JSON_ARTIFACT | NB_RESULT_JSON_CACHED);
                check(j != NULL);
                json_decref(j);
                nb_result_done(&r);
        } else
                check(k == -ENOENT || k == -ENOMEM || k == -EBADMSG);
        return 0;
}
