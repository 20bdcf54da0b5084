/* SPDX-License-Identifier: MIT */
/* An artifact unpacked into --output (nb_artifact_extract): names as the test wrote
 * them, escaped so that no listing of the folder can drive a terminal, each component
 * within NAME_MAX, no link followed on the way. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/artifact-internal.h"
#include "cache/artifact.h"
#include "cache/digest.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

/* How many bytes at p are one control character: C0 and DEL, C1 (U+0080..U+009F,
 * two bytes in UTF-8), or "%" itself; 0 for anything else. */
static int control_len(const unsigned char *p) {
        if (*p < 0x20 || *p == 0x7f || *p == '%')
                return 1;
        return p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f ? 2 : 0;
}

/* Hex digits of a long component's SHA-256 kept in its shortened name. */
#define SHORT_HASH_LEN 16

/* A component longer than NAME_MAX once escaped (a test's name of many control bytes
 * grows threefold) keeps what fits of its start, cut where no %XX, escaped C1 or
 * UTF-8 character is split, then "%~" and SHORT_HASH_LEN hex digits of the SHA-256 of
 * the bytes the test wrote: no escaped name holds "%~", so it meets no other. The new
 * length. */
static size_t shorten(char *esc, size_t len, const char *orig, size_t orig_len) {
        size_t keep = NAME_MAX - 2 - SHORT_HASH_LEN;
        if (len <= NAME_MAX)
                return len;
        while (keep > 0 && ((unsigned char) esc[keep] & 0xc0) == 0x80)
                keep--;
        if (keep >= 1 && esc[keep - 1] == '%')
                keep -= 1;
        else if (keep >= 2 && esc[keep - 2] == '%')
                keep -= 2;
        /* Escaped, a C1 character is two: "%C2" only ever starts one (a lone 0xC2 is
         * kept as it is), so it is never kept without the half after it. */
        if (keep >= 3 && memcmp(esc + keep - 3, "%C2", 3) == 0)
                keep -= 3;
        char hex[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex(orig, orig_len, hex);
        esc[keep++] = '%';
        esc[keep++] = '~';
        memcpy(esc + keep, hex, SHORT_HASH_LEN);
        return keep + SHORT_HASH_LEN;
}

/* A name as it goes into --output: bytes as the test wrote them, but each byte of a
 * control character becomes %XX (and so does "%", so that no two names meet): nothing
 * a user lists can move their terminal's cursor or forge a line. Each component stays
 * within NAME_MAX (shorten). */
static char *escape_name(const char *name) {
        char *out = malloc(strlen(name) * 3 + 1), *o = out; /* nb_artifact_name_ok: short enough */
        if (!out)
                return NULL;
        for (const char *c = name;;) {
                size_t n = strcspn(c, "/");
                char *start = o;
                for (const unsigned char *p = (const unsigned char *) c; p < (const unsigned char *) c + n;) {
                        int k = control_len(p);
                        if (!k)
                                *o++ = (char) *p++;
                        for (; k > 0; k--)
                                o += sprintf(o, "%%%02X", *p++);
                }
                o = start + shorten(start, (size_t) (o - start), c, n);
                c += n;
                if (!*c)
                        break;
                *o++ = *c++;
        }
        *o = 0;
        return out;
}

int nb_artifact_extract(const struct nb_artifact *a, int dir_fd, struct nb_error *err) {
        for (size_t i = 0; i < a->n; i++) {
                const struct nb_artifact_entry *e = &a->entries[i];
                _cleanup_free_ char *name = nb_artifact_name_ok(e->name) ? escape_name(e->name) : NULL;
                if (!name)
                        return nb_artifact_name_ok(e->name) ? nb_error_set(err, ENOMEM, "artifact")
                                                : nb_error_setx(err, EINVAL, "artifact: refusing an entry name");
                const char *slash = strrchr(name, '/');
                _cleanup_close_ int dfd = -1;
                if (slash) {
                        _cleanup_free_ char *dir = strndup(name, (size_t) (slash - name));
                        if (!dir)
                                return nb_error_set(err, ENOMEM, "artifact");
                        dfd = nb_mkdir_p_beneath(dir_fd, dir, 0755);
                        if (dfd < 0)
                                return nb_error_set(err, dfd, "artifact: extracting %s", name);
                }
                int r = nb_write_file_atomic(slash ? dfd : dir_fd, slash ? slash + 1 : name, e->data, e->len, 0644);
                if (r < 0)
                        return nb_error_set(err, r, "artifact: extracting %s", name);
        }
        return 0;
}
