/* SPDX-License-Identifier: MIT */
/* A wheel's dist-info read after its entries (wheel_files.h): the WHEEL file's
 * version, and the console scripts entry_points.txt asks for, written as pip would. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nestbox/cleanup.h"
#include "python/wheel_files-internal.h"

static char *trim(char *s) {
        s += strspn(s, " \t\r");
        size_t n = strlen(s);
        while (n > 0 && strchr(" \t\r", s[n - 1]))
                s[--n] = 0;
        return s;
}

int nb_wheel_files_check_meta(struct wheel_files *st) {
        _cleanup_free_ char *copy = strdup(st->wheel_meta);
        if (!copy)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (strncasecmp(line, "Wheel-Version:", 14) != 0)
                        continue;
                char *v = trim(line + 14);
                /* The spec: refuse a major version we do not know, accept any minor. */
                if (strncmp(v, "1.", 2) != 0 && strcmp(v, "1") != 0)
                        return BAD(st, "%s: unsupported Wheel-Version %s", st->wheel, v);
                return 0;
        }
        return BAD(st, "%s: %s/WHEEL has no Wheel-Version", st->wheel, st->distinfo);
}

/* "pkg.sub", "main", "Cls.method": dotted Python identifiers, so nothing but an
 * import and a call can end up in the generated script. */
static bool is_dotted_ident(const char *s) {
        if (!*s)
                return false;
        for (const char *p = s; *p; p++) {
                if (*p == '.') {
                        if (p == s || p[1] == 0 || p[1] == '.')
                                return false;
                } else if (!(isalnum((unsigned char) *p) || *p == '_') ||
                           ((p == s || p[-1] == '.') && isdigit((unsigned char) *p)))
                        return false;
        }
        return true;
}

static bool is_script_name(const char *s) {
        if (!*s || s[0] == '.' || s[0] == '-')
                return false;
        for (const char *p = s; *p; p++)
                if (!(isalnum((unsigned char) *p) || strchr("._+-", *p)))
                        return false;
        return true;
}

/* "name = module:attr [extras]" -> bin/name, the launcher pip would write. */
static int console_script(struct wheel_files *st, char *name, char *value) {
        char *bracket = strchr(value, '[');
        if (bracket)
                *bracket = 0;
        value = trim(value);
        char *colon = strchr(value, ':');
        if (colon)
                *colon = 0;
        char *module = trim(value), *attr = colon ? trim(colon + 1) : NULL;
        if (!is_script_name(name))
                return BAD(st, "%s: entry_points.txt: bad script name '%s'", st->wheel, name);
        if (!is_dotted_ident(module) || !attr || !is_dotted_ident(attr))
                return BAD(st, "%s: entry_points.txt: script %s: expected module:function", st->wheel, name);
        size_t first = strcspn(attr, ".");
        _cleanup_free_ char *text = NULL, *target = NULL, *what = NULL;
        if (asprintf(&text,
                     "#!%s\n"
                     "# -*- coding: utf-8 -*-\n"
                     "import re\n"
                     "import sys\n"
                     "from %s import %.*s\n"
                     "if __name__ == \"__main__\":\n"
                     "    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n"
                     "    sys.exit(%s())\n",
                     st->python, module, (int) first, attr, attr) < 0 ||
            asprintf(&target, "bin/%s", name) < 0 || asprintf(&what, "console script %s", name) < 0)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        return nb_wheel_files_write(st, what, target, 0755, text, strlen(text));
}

int nb_wheel_files_console_scripts(struct wheel_files *st) {
        if (!st->entry_points)
                return 0;
        _cleanup_free_ char *copy = strdup(st->entry_points);
        if (!copy)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        bool active = false;
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                line = trim(line);
                if (!*line || *line == '#' || *line == ';')
                        continue;
                if (*line == '[') {
                        active = strcmp(line, "[console_scripts]") == 0 || strcmp(line, "[gui_scripts]") == 0;
                        continue;
                }
                if (!active)
                        continue;
                char *eq = strchr(line, '=');
                if (!eq)
                        return BAD(st, "%s: entry_points.txt: expected name = module:function, got '%s'", st->wheel, line);
                *eq = 0;
                int r = console_script(st, trim(line), eq + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}
