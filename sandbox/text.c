/* SPDX-License-Identifier: MIT */
/* Small text helpers shared by the sandbox and the runner: sizes, quoting for
 * one-line messages, and the check of a relative path taken from untrusted input. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

char *nb_quote(const char *s) {
        size_t n = 3;
        for (const unsigned char *c = (const unsigned char *) s; *c; c++)
                n += (*c < 0x20 || *c == 0x7f) ? 4 : (*c == '"' || *c == '\\') ? 2 : 1;
        char *q = malloc(n), *o = q;
        if (!q)
                return NULL;
        *o++ = '"';
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                if (*c < 0x20 || *c == 0x7f)
                        o += sprintf(o, "\\x%02x", *c);
                else {
                        if (*c == '"' || *c == '\\')
                                *o++ = '\\';
                        *o++ = (char) *c;
                }
        }
        *o++ = '"';
        *o = 0;
        return q;
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
