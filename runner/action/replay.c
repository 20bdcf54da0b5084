/* SPDX-License-Identifier: MIT */
/* Recorded actions, found again (replay.h). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/replay.h"
#include "action/result.h"
#include "cache/remote.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

#define REPLAY_MAX (16u << 20) /* an action.json larger than this is not one nestbox wrote */
#define LAST_MAX 4096u
#define CANDIDATES_SHOWN 5

void nb_replay_done(struct nb_replay *rp) {
        nb_action_free(rp->action);
        free(rp->status);
        free(rp->record);
        free(rp->result);
        *rp = (struct nb_replay) {};
}

int nb_replay_record(const struct nb_action *a, char **ret) {
        json_t *act = NULL;
        int r = nb_action_to_json_value(a, &act);
        if (r < 0)
                return r;
        json_auto_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:o}", "schema", NB_REPLAY_SCHEMA, "digest",
                                     a->resolved.digest, "tree", a->resolved.tree_digest, "venv",
                                     a->resolved.venv_digest, "action", act);
        if (!doc)
                return -ENOMEM;
        *ret = json_dumps(doc, JSON_SORT_KEYS | JSON_INDENT(2));
        return *ret ? 0 : -ENOMEM;
}

static int get_digest(json_t *doc, const char *key, char out[NB_DIGEST_HEX_LEN + 1]) {
        const char *s = json_string_value(json_object_get(doc, key));
        if (!s || !nb_is_digest(s))
                return -EINVAL;
        memcpy(out, s, NB_DIGEST_HEX_LEN + 1);
        return 0;
}

int nb_replay_parse(const char *text, size_t len, const char *name, struct nb_replay *ret, struct nb_error *err) {
        *ret = (struct nb_replay) {};
        json_auto_t *doc = len <= REPLAY_MAX ? json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
        const char *schema = json_string_value(json_object_get(doc, "schema"));
        if (!doc || !schema || strcmp(schema, NB_REPLAY_SCHEMA) != 0 || get_digest(doc, "digest", ret->digest) < 0 ||
            get_digest(doc, "tree", ret->tree) < 0 || get_digest(doc, "venv", ret->venv) < 0 ||
            !json_is_object(json_object_get(doc, "action")))
                return nb_error_input(err, EBADMSG, "%s: not a %s record", name, NB_REPLAY_SCHEMA);
        return nb_action_from_json_value(json_object_get(doc, "action"), name, &ret->action, err);
}

/* ---- finding a digest ---- */

static bool is_hex(const char *s) {
        for (; *s; s++)
                if (!isxdigit((unsigned char) *s) || isupper((unsigned char) *s))
                        return false;
        return true;
}

/* The record of digest when it is a result record: its target (else NULL). */
static char *record_target(struct nb_store *s, const char *digest) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (nb_ac_get(s, digest, &text, &len, &err) < 0)
                return NULL;
        json_auto_t *rec = json_loadb(text, len, 0, NULL);
        const char *target = json_string_value(json_object_get(rec, "target"));
        if (!target || !json_is_string(json_object_get(rec, "artifact")))
                return NULL;
        return strdup(target);
}

struct candidate {
        char digest[NB_DIGEST_HEX_LEN + 1];
        char *target;
};

struct candidates {
        struct candidate *v;
        size_t n;
};

static void candidates_done(struct candidates *c) {
        for (size_t i = 0; i < c->n; i++)
                free(c->v[i].target);
        free(c->v);
}

static int candidates_add(struct candidates *c, const char *digest, char *target) {
        struct candidate *v = realloc(c->v, (c->n + 1) * sizeof(*v));
        if (!v) {
                free(target);
                return -ENOMEM;
        }
        c->v = v;
        memcpy(v[c->n].digest, digest, NB_DIGEST_HEX_LEN + 1);
        v[c->n++].target = target;
        return 0;
}

static int cmp_candidate(const void *x, const void *y) {
        return strcmp(((const struct candidate *) x)->digest, ((const struct candidate *) y)->digest);
}

/* The result records in ac/<prefix[0..1]>/ whose names start with prefix: one
 * directory, whatever the cache's size. */
static int scan_prefix(struct nb_store *s, const char *prefix, struct candidates *c) {
        char dir[8];
        snprintf(dir, sizeof(dir), "ac/%.2s", prefix);
        _cleanup_close_ int fd = nb_open_beneath(s->dir->fd, dir, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return fd == -ENOENT ? 0 : fd;
        DIR *d = NULL;
        int r = nb_fdopendir(TAKE_FD(fd), &d);
        if (r < 0)
                return r;
        size_t n = strlen(prefix);
        struct dirent *de;
        while (r >= 0 && (de = readdir(d)))
                if (nb_is_digest(de->d_name) && strncmp(de->d_name, prefix, n) == 0) {
                        char *target = record_target(s, de->d_name);
                        if (target)
                                r = candidates_add(c, de->d_name, target);
                }
        closedir(d);
        return r;
}

static void last_name(const char *target, char out[NB_DIGEST_HEX_LEN + 6]) {
        char hex[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex(target, strlen(target), hex);
        snprintf(out, NB_DIGEST_HEX_LEN + 6, "last/%s", hex);
}

/* A hint, so no fsync (a hit must stay cheap), and no write at all when it holds the
 * same already; tmp + rename, so a reader sees the old pointer or the new one. */
void nb_replay_note_last(struct nb_cache_dir *cache, const char *target, const char *digest) {
        static unsigned long seq; /* one tmp name per write, whatever the threads */
        char rel[NB_DIGEST_HEX_LEN + 6];
        last_name(target, rel);
        json_auto_t *j = json_pack("{s:s, s:s}", "target", target, "action", digest);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT) : NULL, *old = NULL, *tmp = NULL;
        size_t len = 0;
        if (!text || (nb_read_file_beneath(cache->fd, rel, LAST_MAX, &old, &len) == 0 && strcmp(old, text) == 0))
                return;
        if ((mkdirat(cache->fd, "last", 0755) < 0 && errno != EEXIST) ||
            asprintf(&tmp, "last/.%s.%d.%lu", rel + 5, (int) getpid(),
                     __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED)) < 0)
                return;
        _cleanup_close_ int fd = openat(cache->fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return;
        if (nb_write_all(fd, text, strlen(text)) < 0 || renameat(cache->fd, tmp, cache->fd, rel) < 0)
                (void) unlinkat(cache->fd, tmp, 0);
}

/* The pointer is a hint: the action it names is checked to be target's on load. */
static int find_last(struct nb_store *s, const char *target, char out[NB_DIGEST_HEX_LEN + 1]) {
        char rel[NB_DIGEST_HEX_LEN + 6];
        last_name(target, rel);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (nb_read_file_beneath(s->dir->fd, rel, LAST_MAX, &text, &len) < 0)
                return -ENOENT;
        json_auto_t *j = json_loadb(text, len, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "target"));
        if (!t || strcmp(t, target) != 0 || get_digest(j, "action", out) < 0)
                return -ENOENT;
        return 0;
}

static int ambiguous(const char *ref, struct candidates *c, struct nb_error *err) {
        /* Sorted: the same message whatever order the directory lists them in. */
        nb_qsort(c->v, c->n, sizeof(*c->v), cmp_candidate);
        char *list = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&list, &size);
        if (!f)
                return nb_error_set(err, ENOMEM, "repro");
        for (size_t i = 0; i < c->n && i < CANDIDATES_SHOWN; i++)
                fprintf(f, "%s%.16s (%s)", i ? ", " : "", c->v[i].digest, c->v[i].target);
        if (c->n > CANDIDATES_SHOWN)
                fprintf(f, " and %zu more", c->n - CANDIDATES_SHOWN);
        fclose(f);
        int r = nb_error_input(err, EEXIST, "%s: ambiguous digest prefix, %zu recorded actions match: %s; give more "
                               "digits", ref, c->n, list ? list : "");
        free(list);
        return r;
}

int nb_replay_find(struct nb_store *s, const char *ref, char out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err) {
        if (nb_is_digest(ref)) {
                memcpy(out, ref, NB_DIGEST_HEX_LEN + 1);
                return 0; /* nb_replay_load says when it is not recorded */
        }
        if (strlen(ref) >= NB_REPLAY_MIN_PREFIX && is_hex(ref)) {
                __attribute__((cleanup(candidates_done))) struct candidates c = {};
                int r = scan_prefix(s, ref, &c);
                if (r < 0)
                        return nb_error_set(err, -r, "%s/ac", s->dir->path);
                if (c.n > 1)
                        return ambiguous(ref, &c, err);
                if (c.n == 1) {
                        memcpy(out, c.v[0].digest, NB_DIGEST_HEX_LEN + 1);
                        return 0;
                }
        }
        if (find_last(s, ref, out) == 0)
                return 0;
        return nb_error_input(err, ENOENT, "%s: no recorded action of that digest (or prefix of %d hex digits or more) "
                              "and no target of that name has run with the cache %s", ref, NB_REPLAY_MIN_PREFIX,
                              s->dir->path);
}

/* ---- loading and preparing ---- */

int nb_replay_load(struct nb_store *s, const char *digest, struct nb_replay *ret, struct nb_error *err) {
        *ret = (struct nb_replay) {};
        _cleanup_free_ char *text = NULL, *blob = NULL;
        size_t len = 0, blob_len = 0;
        int r = nb_ac_get(s, digest, &text, &len, err);
        if (r == -ENOENT && s->remote && nb_remote_fetch(s->remote, s, digest) == 0)
                r = nb_ac_get(s, digest, &text, &len, err);
        nb_remote_report(s->remote, s->warn, s->userdata);
        if (r == -ENOENT)
                return nb_error_input(err, ENOENT, "action %.16s is not recorded in the cache %s%s", digest,
                                      s->dir->path, s->remote ? " nor in the remote cache" : "");
        if (r < 0)
                return r;
        json_auto_t *rec = json_loadb(text, len, 0, NULL);
        char artifact[NB_DIGEST_HEX_LEN + 1];
        if (!rec || get_digest(rec, "artifact", artifact) < 0)
                return nb_error_input(err, EBADMSG, "action %.16s: its cache record names no artifact", digest);
        if ((r = nb_cas_get(s, artifact, &blob, &blob_len, err)) < 0)
                return r == -ENOENT ? nb_error_input(err, ENOENT, "action %.16s: its artifact %.16s is gone from the "
                                                     "cache", digest, artifact)
                                    : r;
        _cleanup_(nb_artifact_done) struct nb_artifact art = {};
        if ((r = nb_artifact_unpack(blob, blob_len, "undeclared/", &art, err)) < 0)
                return nb_error_wrap(err, r, "action %.16s: artifact", digest);
        const struct nb_artifact_entry *e = nb_artifact_find(&art, NB_REPLAY_ENTRY);
        if (!e)
                return nb_error_input(err, ENOENT, "action %.16s was recorded by a nestbox that kept no %s; run it "
                                      "again to record it", digest, NB_REPLAY_ENTRY);
        if ((r = nb_replay_parse(e->data, e->len, NB_REPLAY_ENTRY, ret, err)) < 0)
                return r;
        if (strcmp(ret->digest, digest) != 0) {
                nb_replay_done(ret);
                return nb_error_input(err, EBADMSG, "action %.16s: its artifact records another action (%.16s)", digest,
                                      ret->digest);
        }
        const char *status = json_string_value(json_object_get(rec, "status"));
        const struct nb_artifact_entry *res = nb_artifact_find(&art, "result.json");
        if ((status && !(ret->status = strdup(status))) || !(ret->record = strndup(e->data, e->len)) ||
            (res && !(ret->result = strndup(res->data, res->len)))) {
                nb_replay_done(ret);
                return nb_error_set(err, ENOMEM, "repro");
        }
        ret->record_len = e->len;
        ret->result_len = res ? res->len : 0;
        return 0;
}

static bool cache_has(struct nb_cache_dir *cache, const char *rel, bool dir) {
        struct stat st;
        return fstatat(cache->fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

int nb_replay_prepare(struct nb_replay *rp, struct nb_cache_dir *cache, bool strict, struct nb_error *err) {
        struct nb_action *a = rp->action;
        char rel[NB_DIGEST_HEX_LEN + 64];
        snprintf(rel, sizeof(rel), "trees/%s", rp->tree);
        if (!a->tree_given[0] && cache_has(cache, rel, true)) {
                free(TAKE_PTR(a->root));
                memcpy(a->tree_given, rp->tree, sizeof(rp->tree));
        }
        snprintf(rel, sizeof(rel), "venvs/%s/%s", rp->venv, NB_VENV_COMPLETE_MARKER);
        if (!a->venv_given[0] && cache_has(cache, rel, false)) {
                free(TAKE_PTR(a->lockfile));
                free(TAKE_PTR(a->wheelhouse));
                memcpy(a->venv_given, rp->venv, sizeof(rp->venv));
        }
        int r = nb_action_resolve(a, cache, err);
        if (r < 0)
                return r;
        if (strcmp(a->resolved.tree_digest, rp->tree) != 0)
                return nb_error_input(err, EBADMSG, "target \"%s\": its files under %s are not those it ran with "
                                      "(tree %.16s, recorded %.16s)", a->target, a->root ? a->root : "the cache",
                                      a->resolved.tree_digest, rp->tree);
        if (strict && strcmp(a->resolved.venv_digest, rp->venv) != 0)
                return nb_error_input(err, EBADMSG, "target \"%s\": its venv is not the one it ran with (venv %.16s, "
                                      "recorded %.16s): the lockfile or wheels changed", a->target,
                                      a->resolved.venv_digest, rp->venv);
        if (strict && strcmp(a->resolved.digest, rp->digest) != 0)
                return nb_error_input(err, EBADMSG, "target \"%s\": the action digests to %.16s here, not %.16s as "
                                      "recorded (another interpreter or nestbox version)", a->target,
                                      a->resolved.digest, rp->digest);
        return 0;
}
