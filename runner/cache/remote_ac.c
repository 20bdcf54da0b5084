/* SPDX-License-Identifier: MIT */
/* The AC entry: an REAPI ActionResult (remote.proto) through libprotobuf-c. Decoding
 * reads untrusted bytes: protobuf-c checks the wire format, the size is capped by the
 * caller, and the artifact's digest and size are checked here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/remote-internal.h"
#include "nestbox/cleanup.h"
#include "remote.pb-c.h"

typedef Build__Bazel__Remote__Execution__V2__Digest Digest;
typedef Build__Bazel__Remote__Execution__V2__OutputFile OutputFile;
typedef Build__Bazel__Remote__Execution__V2__ActionResult ActionResult;

static void digest_of(Digest *d, const struct nb_remote_blob *b) {
        build__bazel__remote__execution__v2__digest__init(d);
        d->hash = (char *) b->digest;
        d->size_bytes = (int64_t) b->len;
}

int nb_remote_ac_encode(const struct nb_remote_blob *files, size_t n, int exit_code,
                        const struct nb_remote_blob *out, const struct nb_remote_blob *errb, uint8_t **ret,
                        size_t *ret_len) {
        _cleanup_free_ OutputFile *of = calloc(n + 1, sizeof(*of));
        _cleanup_free_ OutputFile **ofp = calloc(n + 1, sizeof(*ofp));
        _cleanup_free_ Digest *digests = calloc(n + 2, sizeof(*digests));
        if (!of || !ofp || !digests)
                return -ENOMEM;
        ActionResult ar;
        build__bazel__remote__execution__v2__action_result__init(&ar);
        for (size_t i = 0; i < n; i++) {
                build__bazel__remote__execution__v2__output_file__init(&of[i]);
                of[i].path = (char *) files[i].path;
                digest_of(&digests[i], &files[i]);
                of[i].digest = &digests[i];
                ofp[i] = &of[i];
        }
        ar.n_output_files = n;
        ar.output_files = ofp;
        ar.exit_code = exit_code;
        if (out) {
                digest_of(&digests[n], out);
                ar.stdout_digest = &digests[n];
        }
        if (errb) {
                digest_of(&digests[n + 1], errb);
                ar.stderr_digest = &digests[n + 1];
        }
        size_t len = build__bazel__remote__execution__v2__action_result__get_packed_size(&ar);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        *ret_len = build__bazel__remote__execution__v2__action_result__pack(&ar, buf);
        *ret = buf;
        return 0;
}

int nb_remote_ac_artifact(const uint8_t *data, size_t len, char digest[NB_DIGEST_HEX_LEN + 1], uint64_t *size) {
        if (len > NB_REMOTE_AC_MAX)
                return -EBADMSG;
        ActionResult *ar = build__bazel__remote__execution__v2__action_result__unpack(NULL, len, data);
        if (!ar)
                return -EBADMSG;
        int r = -EBADMSG;
        for (size_t i = 0; i < ar->n_output_files; i++) {
                const OutputFile *f = ar->output_files[i];
                if (!f->path || strcmp(f->path, NB_REMOTE_ARTIFACT_PATH) != 0 || !f->digest || !f->digest->hash ||
                    !nb_is_digest(f->digest->hash) || f->digest->size_bytes < 0 ||
                    (uint64_t) f->digest->size_bytes > NB_REMOTE_BLOB_MAX)
                        continue;
                memcpy(digest, f->digest->hash, NB_DIGEST_HEX_LEN + 1);
                *size = (uint64_t) f->digest->size_bytes;
                r = 0;
                break;
        }
        build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
        return r;
}
