/* SPDX-License-Identifier: MIT */
/* [WORKSPACE] [TARGET...] -- [PYTEST ARG...]: which workspace (named, or found by
 * walking up from the current directory as git finds .git) and which of its targets
 * (names, prefixes "dir/...", globs; each once), with a did-you-mean for a name that
 * matches nothing. */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/output.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

char **nb_split_dashdash(int *argc, char **argv) {
        for (int i = 1; i < *argc; i++)
                if (strcmp(argv[i], "--") == 0) {
                        argv[i] = NULL;
                        char **rest = argv + i + 1;
                        *argc = i;
                        return rest;
                }
        return argv + *argc; /* argv[argc] is NULL: an empty vector */
}

static bool is_dir(const char *p) {
        struct stat st;
        return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_workspace(const char *dir) {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, NB_WORKSPACE_FILE) < 0)
                return false;
        struct stat st;
        return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The nearest directory from the current one up to / that holds nestbox.json. */
static char *find_workspace(void) {
        _cleanup_free_ char *dir = getcwd(NULL, 0);
        if (!dir)
                return NULL;
        for (;;) {
                if (is_workspace(dir))
                        return TAKE_PTR(dir);
                char *slash = strrchr(dir, '/');
                if (!slash || slash == dir) {
                        if (strcmp(dir, "/") != 0) {
                                strcpy(dir, "/");
                                continue;
                        }
                        return NULL;
                }
                *slash = 0;
        }
}

static bool is_pattern(const char *s) {
        size_t n = strlen(s);
        return strpbrk(s, "*?[") || (n >= 4 && strcmp(s + n - 4, "/...") == 0) || strcmp(s, "...") == 0;
}

static bool pattern_matches(const char *pat, const char *name) {
        size_t n = strlen(pat);
        if (strcmp(pat, "...") == 0)
                return true;
        if (n >= 4 && strcmp(pat + n - 4, "/...") == 0)
                return strncmp(name, pat, n - 3) == 0 || (strncmp(name, pat, n - 4) == 0 && !name[n - 4]);
        return fnmatch(pat, name, 0) == 0;
}

static int no_target(const struct nb_workspace *ws, const char *root, const char *name) {
        const char *best = NULL;
        size_t best_d = SIZE_MAX;
        for (size_t i = 0; i < ws->n_targets; i++) {
                size_t d = nb_edit_distance(name, ws->targets[i].name);
                if (d < best_d)
                        best_d = d, best = ws->targets[i].name;
        }
        _cleanup_free_ char *q = nb_quote(name);
        if (best && best_d <= 3 && best_d < strlen(best))
                return nb_die(NB_EXIT_USAGE, "%s: no target %s (did you mean \"%s\"? 'nestbox list' prints them)", root,
                              q ? q : name, best);
        if (is_pattern(name))
                return nb_die(NB_EXIT_USAGE, "%s: no target matches %s ('nestbox list' prints them)", root, q ? q : name);
        if (strchr(name, '/') || is_dir(name))
                return nb_die(NB_EXIT_USAGE, "%s: neither a target nor a workspace (no %s in it; 'nestbox list' prints "
                              "the targets of %s)", name, NB_WORKSPACE_FILE, root);
        return nb_die(NB_EXIT_USAGE, "%s: no target %s ('nestbox list' prints them)", root, q ? q : name);
}

void nb_selection_done(struct nb_selection *s) {
        nb_workspace_free(s->ws);
        free(s->targets);
        *s = (struct nb_selection) { 0 };
}

int nb_load_targets(int argc, char **argv, struct nb_selection *ret) {
        _cleanup_free_ char *found = NULL;
        const char *root;
        if (argc > 0 && is_workspace(argv[0])) {
                root = argv[0];
                argc--, argv++;
        } else if ((found = find_workspace())) {
                root = found;
        } else if (argc > 0 && is_dir(argv[0])) {
                return nb_die(NB_EXIT_USAGE, "%s: not a workspace (no %s in it)", argv[0], NB_WORKSPACE_FILE);
        } else {
                return nb_die(NB_EXIT_USAGE, "no %s in the current directory or any parent (name the workspace: "
                              "nestbox test DIR)", NB_WORKSPACE_FILE);
        }
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        if (nb_workspace_load(root, &ws, &err) < 0)
                return nb_fail(&err);
        _cleanup_free_ bool *chosen = calloc(ws->n_targets + 1, sizeof(*chosen));
        _cleanup_free_ const struct nb_target **targets = calloc(ws->n_targets + 1, sizeof(*targets));
        if (!chosen || !targets)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        size_t n = 0;
        /* In the order named, each target once however often it is named or matched. */
        for (int a = 0; a < (argc > 0 ? argc : 1); a++) {
                bool any = false;
                for (size_t i = 0; i < ws->n_targets; i++) {
                        const char *name = ws->targets[i].name;
                        if (argc > 0 && strcmp(argv[a], name) != 0 && !(is_pattern(argv[a]) && pattern_matches(argv[a], name)))
                                continue;
                        any = true;
                        if (!chosen[i]) {
                                chosen[i] = true;
                                targets[n++] = &ws->targets[i];
                        }
                }
                if (argc > 0 && !any)
                        return no_target(ws, root, argv[a]);
        }
        *ret = (struct nb_selection) { TAKE_PTR(ws), TAKE_PTR(targets), n };
        return 0;
}
