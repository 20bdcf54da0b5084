/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workspace/target_folder.h"

char *nb_target_folder(const char *name) {
        char *s = strdup(name);
        if (!s)
                return NULL;
        /* A "/" only between two components: never leading (an absolute path that
         * *at() calls would take as it is), doubled or trailing. */
        for (char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || (*p == '/' && p != s && p[-1] != '/' && p[1] != 0) ||
                      (*p == '.' && p != s && p[-1] != '/' && p[-1] != '.')))
                        *p = '_';
        return s;
}

/* Whether the len bytes at s are a number as %u prints it: digits, no leading zero;
 * *ret its value, saturated at UINT_MAX (more than any count nestbox writes). */
static bool number_at(const char *s, size_t len, unsigned *ret) {
        if (len == 0 || (s[0] == '0' && len > 1))
                return false;
        unsigned long long v = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (unsigned) (s[i] - '0');
                if (v > UINT_MAX)
                        v = UINT_MAX;
        }
        *ret = (unsigned) v;
        return true;
}

bool nb_output_run_folder(const char *c, unsigned *ret_run) {
        return strncmp(c, "run-", 4) == 0 && number_at(c + 4, strlen(c + 4), ret_run);
}

bool nb_output_shard_folder(const char *c, unsigned *ret_k, unsigned *ret_n) {
        const char *of = strstr(c, "-of-");
        return strncmp(c, "shard-", 6) == 0 && of && of >= c + 6 &&
               number_at(c + 6, (size_t) (of - c) - 6, ret_k) && number_at(of + 4, strlen(of + 4), ret_n);
}

bool nb_output_reserved(const char *c) {
        static const char *const files[] = { "undeclared", "result.json", "junit.xml", "log", "action.json" };
        for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++)
                if (strcmp(c, files[i]) == 0)
                        return true;
        unsigned a, b;
        return strncmp(c, "coverage.", 9) == 0 || nb_output_run_folder(c, &a) || nb_output_shard_folder(c, &a, &b);
}

const char *nb_target_name_problem(const char *name) {
        size_t depth = 0;
        for (const char *c = name;; depth++) {
                const char *end = strchr(c, '/');
                size_t len = end ? (size_t) (end - c) : strlen(c);
                char part[256];
                if (len == 0)
                        return "a target name has no empty component (no leading, trailing or doubled /)";
                if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                        return "a target name has no . or .. component";
                if (len < sizeof(part)) {
                        memcpy(part, c, len);
                        part[len] = 0;
                        if (nb_output_reserved(part))
                                return "a component of a target name is none of the names --output uses (undeclared, "
                                       "result.json, junit.xml, log, action.json, coverage.*, run-N, shard-K-of-N)";
                }
                if (depth + 1 > NB_TARGET_MAX_DEPTH)
                        return "a target name has at most 32 components";
                if (!end)
                        return NULL;
                c = end + 1;
        }
}
