/* SPDX-License-Identifier: MIT */
/* Bundles: making one from the cache, opening one in another (bundle.h). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/bundle.h"
#include "cache/artifact.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "python/venv.h"
#include "python/wheel.h"

#define LOCKFILE_MAX (16u << 20)
#define MISSING_SHOWN 10

/* ---- making ---- */

static int add_file(struct nb_artifact *art, int dir_fd, const char *path, const char *prefix, struct nb_error *err) {
        _cleanup_free_ char *data = NULL, *name = NULL;
        size_t len = 0;
        int r = nb_read_file_beneath(dir_fd, path, NB_ARTIFACT_MAX_ENTRY, &data, &len);
        if (r < 0)
                return nb_error_set(err, -r, "%s", path);
        if (asprintf(&name, "%s%s", prefix, path) < 0 || nb_artifact_add(art, name, data, len) < 0)
                return nb_error_set(err, ENOMEM, "bundle");
        return 0;
}

/* tree/: the declared files, from the cache's copy (else the recorded root), collected
 * as the action collects them, so the digest check below is the action's own. */
static int add_tree(struct nb_artifact *art, struct nb_cache_dir *cache, const struct nb_replay *rp, json_t *files,
                    struct nb_bundle_stats *st, struct nb_error *err) {
        const struct nb_action *a = rp->action;
        _cleanup_free_ char *rel = NULL;
        if (asprintf(&rel, "trees/%s", rp->tree) < 0)
                return nb_error_set(err, ENOMEM, "bundle");
        _cleanup_close_ int fd = openat(cache->fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && a->root)
                fd = open(a->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return nb_error_input(err, ENOENT, "tree %.16s of \"%s\" is neither in the cache %s nor at its root",
                                      rp->tree, a->target, cache->path);
        _cleanup_(nb_tree_clear) struct nb_tree tree = NB_TREE_INIT;
        _cleanup_strv_free_ char **sources = NULL, **tests = NULL;
        char digest[NB_DIGEST_HEX_LEN + 1];
        int r = nb_action_collect(fd, a->sources, a->tests, a->source_roots, NULL, &tree, &sources,
                                  &tests, err); /* every file read: a check, not a lookup */
        if (r < 0)
                return r;
        if ((r = nb_tree_digest(&tree, digest)) < 0)
                return nb_error_set(err, -r, "tree digest");
        if (strcmp(digest, rp->tree) != 0)
                return nb_error_input(err, EBADMSG, "\"%s\": its files are no longer those it ran with (tree %.16s, "
                                      "recorded %.16s)", a->target, digest, rp->tree);
        for (size_t i = 0; i < tree.n_files; i++) {
                const struct nb_tree_file *f = &tree.files[i];
                if ((r = add_file(art, fd, f->path, "tree/", err)) < 0)
                        return r;
                if (json_array_append_new(files, json_pack("{s:s, s:b}", "path", f->path, "exec", f->exec)) < 0)
                        return nb_error_set(err, ENOMEM, "bundle");
                st->bytes += f->size;
        }
        st->files = tree.n_files;
        return 0;
}

/* lockfile and (with_wheels) wheels/: the resolve, checked to be the venv it ran with. */
static int add_resolve(struct nb_artifact *art, struct nb_cache_dir *cache, const struct nb_replay *rp,
                       bool with_wheels, json_t *list, struct nb_bundle_stats *st, struct nb_error *err) {
        const struct nb_action *a = rp->action;
        if (!a->lockfile)
                return nb_error_input(err, EINVAL, "\"%s\" ran with venv %.16s named directly, without a lockfile: "
                                      "a bundle needs the lockfile", a->target, rp->venv);
        _cleanup_(nb_venv_plan_freep) struct nb_venv_plan *plan = NULL;
        int r = nb_venv_resolve(cache, a->python, a->lockfile, a->wheelhouse, &plan, err);
        if (r < 0)
                return nb_error_wrap(err, r, "bundle");
        if (strcmp(nb_venv_plan_digest(plan), rp->venv) != 0)
                return nb_error_input(err, EBADMSG, "\"%s\": %s no longer gives the venv it ran with (%.16s, recorded "
                                      "%.16s)", a->target, a->lockfile, nb_venv_plan_digest(plan), rp->venv);
        _cleanup_free_ char *lock = NULL;
        size_t lock_len = 0;
        _cleanup_close_ int lfd = open(a->lockfile, O_RDONLY | O_CLOEXEC);
        if (lfd < 0 || (r = nb_read_fd(lfd, LOCKFILE_MAX, &lock, &lock_len)) < 0)
                return nb_error_set(err, lfd < 0 ? errno : -r, "%s", a->lockfile);
        if (nb_artifact_add(art, "lockfile", lock, lock_len) < 0)
                return nb_error_set(err, ENOMEM, "bundle");
        const struct nb_wheel *wheels;
        const struct nb_requirement *reqs;
        size_t n = nb_venv_plan_wheels(plan, &wheels, &reqs);
        for (size_t i = 0; i < n; i++) {
                if (json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s}", "name", reqs[i].name, "version",
                                                          reqs[i].version, "file", wheels[i].filename, "sha256",
                                                          wheels[i].sha256)) < 0)
                        return nb_error_set(err, ENOMEM, "bundle");
                if (!with_wheels)
                        continue;
                _cleanup_free_ char *data = NULL, *name = NULL;
                size_t len = 0;
                char got[NB_DIGEST_HEX_LEN + 1];
                _cleanup_close_ int wfd = nb_wheel_open(nb_venv_plan_wheelhouse(plan), wheels[i].filename);
                if (wfd < 0 || (r = nb_read_fd(wfd, NB_ARTIFACT_MAX_ENTRY, &data, &len)) < 0)
                        return nb_error_set(err, wfd < 0 ? -wfd : -r, "%s/%s", a->wheelhouse, wheels[i].filename);
                nb_sha256_hex(data, len, got);
                if (strcmp(got, wheels[i].sha256) != 0)
                        return nb_wheel_hash_mismatch(&reqs[i], wheels[i].filename, got, err);
                if (asprintf(&name, "wheels/%s", wheels[i].filename) < 0 || nb_artifact_add(art, name, data, len) < 0)
                        return nb_error_set(err, ENOMEM, "bundle");
                st->wheels++;
                st->bytes += len;
        }
        return 0;
}

int nb_bundle_make(struct nb_store *s, const char *digest, bool with_wheels, char **ret, size_t *ret_len,
                   struct nb_bundle_stats *stats, struct nb_error *err) {
        *stats = (struct nb_bundle_stats) {};
        __attribute__((cleanup(nb_replay_done))) struct nb_replay rp = {};
        int r = nb_replay_load(s, digest, &rp, err);
        if (r < 0)
                return r;
        _cleanup_(nb_artifact_done) struct nb_artifact art = {};
        json_auto_t *files = json_array(), *wheels = json_array();
        if (!files || !wheels)
                return nb_error_set(err, ENOMEM, "bundle");
        if ((r = add_tree(&art, s->dir, &rp, files, stats, err)) < 0 ||
            (r = add_resolve(&art, s->dir, &rp, with_wheels, wheels, stats, err)) < 0)
                return r;
        json_auto_t *doc = json_pack("{s:s, s:O, s:O, s:b}", "schema", NB_BUNDLE_SCHEMA, "files", files, "wheels",
                                     wheels, "with_wheels", with_wheels);
        _cleanup_free_ char *text = doc ? json_dumps(doc, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
        if (!text || nb_artifact_add(&art, "bundle.json", text, strlen(text)) < 0)
                return nb_error_set(err, ENOMEM, "bundle");
        /* The record and the result as the cache holds them (digest-checked there). */
        if (nb_artifact_add(&art, NB_REPLAY_ENTRY, rp.record, rp.record_len) < 0 ||
            (rp.result && nb_artifact_add(&art, "result.json", rp.result, rp.result_len) < 0))
                return nb_error_set(err, ENOMEM, "bundle");
        return nb_artifact_pack(&art, ret, ret_len, err);
}

/* ---- opening ---- */

bool nb_bundle_is_file(const char *path) {
        struct stat st;
        return (strchr(path, '.') || strchr(path, '/')) && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int set_exec_bits(int tree_fd, json_t *files, struct nb_error *err) {
        size_t i;
        json_t *f;
        json_array_foreach(files, i, f) {
                const char *path = json_string_value(json_object_get(f, "path"));
                if (!path || nb_check_relative_path(path, false))
                        return nb_error_input(err, EINVAL, "bundle.json: .files[%zu]: not a relative path", i);
                if (!json_is_true(json_object_get(f, "exec")))
                        continue;
                _cleanup_close_ int fd = nb_open_beneath(tree_fd, path, O_RDONLY, 0);
                if (fd < 0 || fchmod(fd, 0755) < 0)
                        return nb_error_input(err, fd < 0 ? -fd : errno, "bundle: tree/%s", path);
        }
        return 0;
}

/* The wheels bundle.json names that wheelhouse_fd lacks, all in one message. */
static int check_wheels(json_t *wheels, int wheelhouse_fd, const char *where, struct nb_error *err) {
        _cleanup_free_ char *list = NULL;
        size_t size = 0, missing = 0, i;
        FILE *f = open_memstream(&list, &size);
        if (!f)
                return nb_error_set(err, ENOMEM, "bundle");
        json_t *w;
        json_array_foreach(wheels, i, w) {
                const char *file = json_string_value(json_object_get(w, "file"));
                struct stat st;
                if (!file || nb_check_relative_path(file, false) || strchr(file, '/')) {
                        fclose(f);
                        return nb_error_input(err, EINVAL, "bundle.json: .wheels[%zu]: not a wheel file name", i);
                }
                if (wheelhouse_fd >= 0 && fstatat(wheelhouse_fd, file, &st, 0) == 0 && S_ISREG(st.st_mode))
                        continue;
                if (missing++ < MISSING_SHOWN)
                        fprintf(f, "%s%s", missing > 1 ? ", " : "", file);
        }
        if (missing > MISSING_SHOWN)
                fprintf(f, " and %zu more", missing - MISSING_SHOWN);
        fclose(f);
        if (!missing)
                return 0;
        return nb_error_input(err, ENOENT, "%zu wheel%s missing (%s): %s; make the bundle with --with-wheels or give "
                              "--wheelhouse DIR", missing, missing == 1 ? "" : "s", where, list ? list : "");
}

static int unpack(struct nb_cache_dir *cache, const char *path, const char *tmp, struct nb_artifact *art,
                  json_t **ret_doc, struct nb_error *err) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        int r = fd < 0 ? -errno : nb_read_fd(fd, NB_ARTIFACT_MAX_TOTAL, &data, &len);
        if (r < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_set(err, -r, "%s", path));
        if ((r = nb_artifact_unpack(data, len, NULL, art, err)) < 0)
                return nb_error_classify(err, NB_ERROR_INPUT, nb_error_wrap(err, r, "%s: not a bundle", path));
        const struct nb_artifact_entry *b = nb_artifact_find(art, "bundle.json");
        json_t *doc = b ? json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, NULL) : NULL;
        const char *schema = json_string_value(json_object_get(doc, "schema"));
        if (!schema || strcmp(schema, NB_BUNDLE_SCHEMA) != 0 || !json_is_array(json_object_get(doc, "files")) ||
            !json_is_array(json_object_get(doc, "wheels"))) {
                json_decref(doc);
                return nb_error_input(err, EBADMSG, "%s: not a %s bundle (no valid bundle.json)", path,
                                      NB_BUNDLE_SCHEMA);
        }
        *ret_doc = doc;
        _cleanup_close_ int dir = openat(cache->fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0)
                return nb_error_set(err, errno, "%s/%s", cache->path, tmp);
        if ((r = nb_artifact_extract(art, dir, err)) < 0)
                return nb_error_wrap(err, r, "%s", path);
        _cleanup_close_ int tree = nb_open_beneath(dir, "tree", O_RDONLY | O_DIRECTORY, 0);
        if (tree < 0 && mkdirat(dir, "tree", 0755) == 0)
                tree = nb_open_beneath(dir, "tree", O_RDONLY | O_DIRECTORY, 0);
        if (tree < 0)
                return nb_error_set(err, -tree, "%s: tree", path);
        return set_exec_bits(tree, json_object_get(doc, "files"), err);
}

/* The venv: the cache's when it has the recorded one, else the bundle's lockfile with
 * a wheelhouse that holds every wheel it needs. */
static int choose_resolve(struct nb_cache_dir *cache, const char *tmp_path, json_t *doc, const char *wheelhouse,
                          struct nb_replay *rp, struct nb_error *err) {
        struct nb_action *a = rp->action;
        _cleanup_free_ char *marker = NULL, *lockfile = NULL, *bundled = NULL;
        struct stat st;
        if (asprintf(&marker, "venvs/%s/%s", rp->venv, NB_VENV_COMPLETE_MARKER) < 0 ||
            asprintf(&lockfile, "%s/lockfile", tmp_path) < 0 || asprintf(&bundled, "%s/wheels", tmp_path) < 0)
                return nb_error_set(err, ENOMEM, "bundle");
        if (fstatat(cache->fd, marker, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return 0; /* nb_replay_prepare takes it */
        if (stat(lockfile, &st) < 0)
                return nb_error_input(err, ENOENT, "the bundle carries no lockfile and the venv %.16s is not in the "
                                      "cache %s", rp->venv, cache->path);
        /* --wheelhouse wins; else the bundle's own wheels/, when it was made with them. */
        bool has_wheels = json_is_true(json_object_get(doc, "with_wheels"));
        const char *wh = wheelhouse ? wheelhouse : bundled;
        _cleanup_close_ int wfd = wheelhouse || has_wheels ? open(wh, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        _cleanup_free_ char *where = NULL;
        int k = wheelhouse ? asprintf(&where, "not in --wheelhouse %s", wheelhouse)
                : has_wheels ? asprintf(&where, "not in the bundle")
                             : asprintf(&where, "the bundle was made without --with-wheels");
        if (k < 0)
                return nb_error_set(err, ENOMEM, "bundle");
        int r = check_wheels(json_object_get(doc, "wheels"), wfd, where, err);
        if (r < 0)
                return r;
        free(a->lockfile);
        free(a->wheelhouse);
        a->venv_given[0] = 0;
        a->lockfile = TAKE_PTR(lockfile);
        if (!(a->wheelhouse = strdup(wh)))
                return nb_error_set(err, ENOMEM, "bundle");
        return 0;
}

int nb_bundle_open(struct nb_cache_dir *cache, const char *path, const char *wheelhouse, struct nb_replay *rp,
                   char **ret_tmp, struct nb_error *err) {
        *rp = (struct nb_replay) {};
        _cleanup_free_ char *tmp = NULL, *tmp_path = NULL;
        int r = nb_cache_dir_mkdtemp(cache, "bundle", &tmp, err);
        if (r < 0)
                return r;
        *ret_tmp = strdup(tmp);
        if (!*ret_tmp || asprintf(&tmp_path, "%s/%s", cache->path, tmp) < 0)
                return nb_error_set(err, ENOMEM, "bundle");
        _cleanup_(nb_artifact_done) struct nb_artifact art = {};
        json_auto_t *doc = NULL;
        if ((r = unpack(cache, path, tmp, &art, &doc, err)) < 0)
                return r;
        const struct nb_artifact_entry *e = nb_artifact_find(&art, NB_REPLAY_ENTRY);
        if (!e)
                return nb_error_input(err, EBADMSG, "%s: no %s", path, NB_REPLAY_ENTRY);
        if ((r = nb_replay_parse(e->data, e->len, NB_REPLAY_ENTRY, rp, err)) < 0)
                return nb_error_wrap(err, r, "%s", path);
        const struct nb_artifact_entry *res = nb_artifact_find(&art, "result.json");
        json_auto_t *result = res ? json_loadb(res->data, res->len, 0, NULL) : NULL;
        const char *status = json_string_value(json_object_get(result, "status"));
        if (status && !(rp->status = strdup(status)))
                return nb_error_set(err, ENOMEM, "bundle");
        /* The tree from the bundle, wherever the action was recorded. */
        struct nb_action *a = rp->action;
        free(a->root);
        a->tree_given[0] = 0;
        if (asprintf(&a->root, "%s/tree", tmp_path) < 0) {
                a->root = NULL;
                return nb_error_set(err, ENOMEM, "bundle");
        }
        if ((r = choose_resolve(cache, tmp_path, doc, wheelhouse, rp, err)) < 0)
                return r;
        if ((r = nb_replay_prepare(rp, cache, false, err)) < 0)
                return nb_error_wrap(err, r, "%s", path);
        return 0;
}

void nb_bundle_cleanup(struct nb_cache_dir *cache, char *tmp) {
        if (tmp)
                (void) nb_rm_rf_at(cache->fd, tmp);
        free(tmp);
}
