/* SPDX-License-Identifier: MIT */
/* Small text helpers shared by the sandbox and the runner: sizes, quoting for
 * one-line messages, and the check of a relative path taken from untrusted input. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nestbox/cleanup.h"
#include "nestbox/text.h"

int nb_parse_size(const char *s, uint64_t *ret) {
        if (!s || !*s)
                return -EINVAL;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *s == '-')
                return -EINVAL;
        unsigned shift = 0;
        switch (*end) {
        case 0: break;
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        case 't': case 'T': shift = 40; end++; break;
        default: return -EINVAL;
        }
        if (*end == 'i' || *end == 'B')
                end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
        if (*end)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = (uint64_t) v << shift;
        return 0;
}

size_t nb_utf8_decode(const unsigned char *p, uint32_t *cp) {
        unsigned char c = p[0];
        if (c < 0x80) {
                *cp = c;
                return 1;
        }
        size_t n = c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
        if (n == 0)
                return 0;
        uint32_t v = c & (0x7f >> n);
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                v = (v << 6) | (p[i] & 0x3f);
        }
        if ((n == 3 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) || (n == 4 && (v < 0x10000 || v > 0x10ffff)))
                return 0;
        *cp = v;
        return n;
}

/* Writes the escaped form of the len bytes at s to o (when o is not NULL); returns its
 * length. s[len] is a NUL: nb_utf8_decode stops there, and at any NUL before it. */
static size_t escape_into(const char *s, size_t len_s, unsigned flags, char *o) {
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *) s, *end = p + len_s; p < end;) {
                uint32_t c = 0;
                size_t k = nb_utf8_decode(p, &c);
                char buf[8];
                const char *put = buf;
                size_t len;
                if (k == 0) { /* not UTF-8: the byte, visibly */
                        len = (size_t) snprintf(buf, sizeof(buf), "\\x%02x", *p);
                        k = 1;
                } else if (c == '\n' && (flags & NB_ESCAPE_KEEP_NEWLINES)) {
                        put = "\n", len = 1;
                } else if (c < 0x20 || c == 0x7f) {
                        len = (size_t) snprintf(buf, sizeof(buf), "\\x%02x", c);
                } else if (c >= 0x80 && c <= 0x9f) { /* C1 controls: U+009B is a CSI */
                        len = (size_t) snprintf(buf, sizeof(buf), "\\u%04x", c);
                } else if ((flags & NB_ESCAPE_QUOTES) && (c == '"' || c == '\\')) {
                        buf[0] = '\\', buf[1] = (char) c, len = 2;
                } else {
                        put = (const char *) p, len = k;
                }
                if (o)
                        memcpy(o + n, put, len);
                n += len;
                p += k;
        }
        return n;
}

static char *escape_len(const char *s, size_t len, unsigned flags) {
        size_t n = escape_into(s, len, flags, NULL);
        char *e = malloc(n + 1);
        if (!e)
                return NULL;
        escape_into(s, len, flags, e);
        e[n] = 0;
        return e;
}

char *nb_escape(const char *s, unsigned flags) {
        return escape_len(s, strlen(s), flags);
}

char *nb_escape_bytes(const char *data, size_t len, unsigned flags) {
        _cleanup_free_ char *copy = malloc(len + 1); /* the NUL escape_into stops at */
        if (!copy)
                return NULL;
        if (len)
                memcpy(copy, data, len);
        copy[len] = 0;
        return escape_len(copy, len, flags);
}

char *nb_quote(const char *s) {
        size_t len = strlen(s), n = escape_into(s, len, NB_ESCAPE_QUOTES, NULL);
        char *q = malloc(n + 3);
        if (!q)
                return NULL;
        q[0] = '"';
        escape_into(s, len, NB_ESCAPE_QUOTES, q + 1);
        q[n + 1] = '"';
        q[n + 2] = 0;
        return q;
}

size_t nb_edit_distance(const char *a, const char *b) {
        size_t lb = strlen(b);
        size_t prev[256], cur[256]; /* indexed by b's length, never a's */
        if (lb >= NB_ELEMENTSOF(prev))
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                prev[j] = j;
        for (size_t i = 1; a[i - 1]; i++) {
                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
                        size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
                        cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
                }
                memcpy(prev, cur, (lb + 1) * sizeof(size_t));
        }
        return prev[lb];
}

const char *nb_check_relative_path(const char *s, bool allow_dot) {
        if (!*s)
                return "expected a non-empty path";
        if (*s == '/')
                return "absolute paths are not allowed (paths are relative to the workspace root)";
        if (allow_dot && strcmp(s, ".") == 0)
                return NULL;
        for (const char *c = s;;) {
                size_t n = strcspn(c, "/");
                if (n == 0)
                        return "empty path component (\"//\" or a trailing \"/\")";
                if (n == 2 && c[0] == '.' && c[1] == '.')
                        return "\"..\" is not allowed (paths must stay inside the workspace)";
                if (n == 1 && c[0] == '.')
                        return "\".\" components are not allowed";
                if (!c[n])
                        return NULL;
                c += n + 1;
        }
}

bool nb_path_has_dotdot(const char *path) {
        for (const char *c = path; (c = strstr(c, "..")); c += 2)
                if ((c == path || c[-1] == '/') && (c[2] == 0 || c[2] == '/'))
                        return true;
        return false;
}
