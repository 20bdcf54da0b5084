/* SPDX-License-Identifier: MIT */
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

/* Whether the len bytes at s are a number as %u prints it: digits, no leading zero. */
static bool number_at(const char *s, size_t len) {
        if (len == 0 || (s[0] == '0' && len > 1))
                return false;
        for (size_t i = 0; i < len; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

bool nb_output_reserved(const char *c) {
        static const char *const files[] = { "undeclared", "result.json", "junit.xml", "log", "action.json" };
        size_t n = strlen(c);
        for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++)
                if (strcmp(c, files[i]) == 0)
                        return true;
        if (strncmp(c, "coverage.", 9) == 0)
                return true;
        if (strncmp(c, "run-", 4) == 0 && number_at(c + 4, n - 4))
                return true;
        const char *of = strstr(c, "-of-");
        return strncmp(c, "shard-", 6) == 0 && of && of >= c + 6 && number_at(c + 6, (size_t) (of - c) - 6) &&
               number_at(of + 4, strlen(of + 4));
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
