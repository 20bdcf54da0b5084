/* SPDX-License-Identifier: MIT */
/* A target's sandbox configuration on its way into the zygote: NUL-separated records,
 * a tag then its values, read back in one linear pass. zygote.py reads the same
 * records (argv, env, cwd) to call the driver. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "sandbox-internal.h"
#include "zygote-internal.h"

struct buf {
        char *p;
        size_t len, cap;
};

static int put(struct buf *b, const char *s) {
        size_t n = strlen(s) + 1;
        if (NB_RESERVE(b->p, b->cap, b->len, n, 4096) < 0)
                return -ENOMEM;
        memcpy(b->p + b->len, s, n);
        b->len += n;
        return 0;
}

static int put_u64(struct buf *b, const char *tag, uint64_t v) {
        char num[32];
        snprintf(num, sizeof(num), "%llu", (unsigned long long) v);
        int r = put(b, tag);
        return r < 0 ? r : put(b, num);
}

/* The zygote's path for a host bind source, or NULL. */
static char *translate(const char *src, const struct nb_zygote_view *views, size_t n) {
        for (size_t i = 0; i < n; i++) {
                size_t k = strlen(views[i].host);
                if (strncmp(src, views[i].host, k) == 0 && (src[k] == 0 || src[k] == '/')) {
                        char *s = NULL;
                        return asprintf(&s, "%s%s", views[i].inside, src + k) < 0 ? NULL : s;
                }
        }
        return NULL;
}

static int put_mount(struct buf *b, const struct nb_mount *m, const struct nb_zygote_view *views, size_t n_views) {
        _cleanup_free_ char *src = NULL;
        if (m->kind == NB_MOUNT_BIND || m->test_unlisted)
                return -ENOTSUP; /* a host directory written through: the cold path's */
        if (m->kind == NB_MOUNT_RO_BIND && !(src = translate(m->src, views, n_views)))
                return -EXDEV;
        int r;
        if ((r = put_u64(b, "mount", (uint64_t) m->kind)) < 0 || (r = put(b, src ? src : m->src ? m->src : "")) < 0 ||
            (r = put(b, m->dst)) < 0)
                return r;
        char num[32];
        snprintf(num, sizeof(num), "%llu", (unsigned long long) m->size);
        return put(b, num);
}

int nb_zygote_spec_encode(const struct nb_sandbox_config *cfg, const struct nb_zygote_extra *x,
                          const struct nb_zygote_view *views, size_t n_views, char **ret, size_t *ret_len) {
        if (cfg->controlling_tty)
                return -ENOTSUP;
        struct buf b = {};
        int r = 0;
        for (size_t i = 0; r >= 0 && i < cfg->n_mounts; i++)
                r = put_mount(&b, &cfg->mounts[i], views, n_views);
        for (char **v = cfg->argv; r >= 0 && v && *v; v++)
                r = put(&b, "argv") < 0 ? -ENOMEM : put(&b, *v);
        for (size_t i = 0; r >= 0 && i < cfg->n_env; i++)
                r = put(&b, "env") < 0 ? -ENOMEM : put(&b, cfg->env[i]);
        for (size_t i = 0; r >= 0 && i < cfg->n_allow_syscalls; i++)
                r = put(&b, "allow") < 0 ? -ENOMEM : put(&b, cfg->allow_syscalls[i]);
        if (r >= 0 && cfg->cwd)
                r = put(&b, "cwd") < 0 ? -ENOMEM : put(&b, cfg->cwd);
        if (r >= 0 && cfg->hostname)
                r = put(&b, "host") < 0 ? -ENOMEM : put(&b, cfg->hostname);
        const struct { const char *tag; uint64_t v; } nums[] = {
                { "tmp", cfg->tmp_size }, { "net", (uint64_t) cfg->network }, { "uid", cfg->uid },
                { "gid", cfg->gid }, { "landlock", (uint64_t) x->landlock_abi }, { "umask", x->umask },
                { "rlimit_as", x->rlimit_as }, { "rlimit_nproc", x->rlimit_nproc }, { "notify", (uint64_t) x->notify },
        };
        for (size_t i = 0; r >= 0 && i < NB_ELEMENTSOF(nums); i++)
                r = put_u64(&b, nums[i].tag, nums[i].v);
        if (r < 0) {
                free(b.p);
                return r;
        }
        *ret = b.p;
        *ret_len = b.len;
        return 0;
}

/* The next record field, or NULL past the end (the buffer ends in NUL by contract;
 * a field running off the end is refused, never read past). */
static const char *next(const char *buf, size_t len, size_t *at) {
        if (*at >= len)
                return NULL;
        const char *s = buf + *at;
        const char *nul = memchr(s, 0, len - *at);
        if (!nul)
                return NULL;
        *at = (size_t) (nul - buf) + 1;
        return s;
}

static int add_env(struct nb_sandbox_config *cfg, const char *kv) {
        const char *eq = strchr(kv, '=');
        if (!eq)
                return -EINVAL;
        _cleanup_free_ char *k = strndup(kv, (size_t) (eq - kv));
        return k ? nb_sandbox_setenv(cfg, k, eq + 1) : -ENOMEM;
}

static int add_argv(char ***argv, size_t *n, const char *s) {
        char **v = realloc(*argv, (*n + 2) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        *argv = v;
        if (!(v[*n] = strdup(s)))
                return -ENOMEM;
        v[++*n] = NULL;
        return 0;
}

int nb_zygote_spec_decode(const char *buf, size_t len, struct nb_sandbox_config *cfg, struct nb_zygote_extra *x,
                          struct nb_error *err) {
        size_t at = 0, n_argv = 0;
        char **argv = NULL;
        int r = 0;
        const char *tag;
        while (r >= 0 && (tag = next(buf, len, &at))) {
                const char *v = next(buf, len, &at);
                if (!v) {
                        r = -EBADMSG;
                        break;
                }
                if (strcmp(tag, "mount") == 0) {
                        const char *src = next(buf, len, &at), *dst = src ? next(buf, len, &at) : NULL;
                        const char *size = dst ? next(buf, len, &at) : NULL;
                        r = size ? nb_sandbox_add_mount(cfg, (enum nb_mount_kind) atoi(v), *src ? src : NULL, dst,
                                                        strtoull(size, NULL, 10))
                                 : -EBADMSG;
                } else if (strcmp(tag, "argv") == 0)
                        r = add_argv(&argv, &n_argv, v);
                else if (strcmp(tag, "env") == 0)
                        r = add_env(cfg, v);
                else if (strcmp(tag, "allow") == 0)
                        r = nb_sandbox_allow_syscall(cfg, v, err) < 0 ? -EINVAL : 0;
                else if (strcmp(tag, "cwd") == 0)
                        r = (free(cfg->cwd), cfg->cwd = strdup(v)) ? 0 : -ENOMEM;
                else if (strcmp(tag, "host") == 0)
                        r = (free(cfg->hostname), cfg->hostname = strdup(v)) ? 0 : -ENOMEM;
                else if (strcmp(tag, "tmp") == 0)
                        cfg->tmp_size = strtoull(v, NULL, 10);
                else if (strcmp(tag, "net") == 0)
                        cfg->network = (enum nb_network) atoi(v);
                else if (strcmp(tag, "uid") == 0)
                        cfg->uid = (uid_t) strtoul(v, NULL, 10);
                else if (strcmp(tag, "gid") == 0)
                        cfg->gid = (gid_t) strtoul(v, NULL, 10);
                else if (strcmp(tag, "landlock") == 0)
                        x->landlock_abi = atoi(v);
                else if (strcmp(tag, "umask") == 0)
                        x->umask = (unsigned) strtoul(v, NULL, 10);
                else if (strcmp(tag, "rlimit_as") == 0)
                        x->rlimit_as = strtoull(v, NULL, 10);
                else if (strcmp(tag, "notify") == 0)
                        x->notify = atoi(v);
                else if (strcmp(tag, "rlimit_nproc") == 0)
                        x->rlimit_nproc = strtoull(v, NULL, 10);
                else
                        r = -EBADMSG;
        }
        if (r >= 0 && argv)
                r = nb_sandbox_set_argv(cfg, argv);
        nb_strv_free(argv);
        if (r < 0)
                return err->code ? r : nb_error_set(err, -r, "the zygote's request");
        return 0;
}
