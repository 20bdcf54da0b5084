/* SPDX-License-Identifier: MIT */
/* The per-run artifact (artifact.h): a deterministic tar.zst, built and read in memory
 * with libarchive. Unpacking treats the bytes as hostile: only regular files, names
 * checked component by component, every size capped before it is allocated. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "cache/artifact-internal.h"
#include "cache/artifact.h"
#include "cache/digest.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"

/* A path a test writes beneath a tree nb_artifact_add_tree walks, and an entry's
 * name: that path and room for the folder it is stored under ("undeclared/"). */
#define MAX_TREE_PATH 4096
#define MAX_NAME (MAX_TREE_PATH + 64)
#define MAX_DEPTH 256

static void archive_writep(struct archive **a) {
        if (*a)
                archive_write_free(*a);
}

static void archive_readp(struct archive **a) {
        if (*a)
                archive_read_free(*a);
}

static void archive_entryp(struct archive_entry **e) {
        if (*e)
                archive_entry_free(*e);
}

/* Relative, "/"-separated, no empty, "." or ".." component, no leading "/". */
bool nb_artifact_name_ok(const char *name) {
        if (!name || !*name || strlen(name) > MAX_NAME || name[0] == '/')
                return false;
        for (const char *p = name; *p;) {
                size_t n = strcspn(p, "/");
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                p += n;
                if (*p == '/' && !*++p)
                        return false; /* trailing "/": a directory, not a file */
        }
        return true;
}

static struct nb_artifact_entry *find(const struct nb_artifact *a, const char *name) {
        for (size_t i = 0; i < a->n; i++)
                if (strcmp(a->entries[i].name, name) == 0)
                        return &a->entries[i];
        return NULL;
}

const struct nb_artifact_entry *nb_artifact_find(const struct nb_artifact *a, const char *name) {
        return find(a, name);
}

/* Takes ownership of name and data (also on failure). With replace, an entry of the
 * same name is replaced (a search: for the few named entries only); without, the
 * caller knows the name is new. The array grows geometrically. */
static int add_owned(struct nb_artifact *a, char *name, char *data, size_t len, bool replace) {
        _cleanup_free_ char *n = name, *d = data;
        if (!nb_artifact_name_ok(n))
                return -EINVAL;
        struct nb_artifact_entry *e = replace ? find(a, n) : NULL;
        if (e) {
                free(e->data);
                e->data = TAKE_PTR(d);
                e->len = len;
                return 0;
        }
        if (NB_RESERVE(a->entries, a->cap, a->n, 1, 16) < 0)
                return -ENOMEM;
        a->entries[a->n++] = (struct nb_artifact_entry) { TAKE_PTR(n), TAKE_PTR(d), len };
        return 0;
}

int nb_artifact_add(struct nb_artifact *a, const char *name, const void *data, size_t len) {
        if (!nb_artifact_name_ok(name))
                return -EINVAL;
        char *n = strdup(name);
        char *d = malloc(len + 1); /* NUL-terminated, so text entries can be used as strings */
        if (!n || !d) {
                free(n);
                free(d);
                return -ENOMEM;
        }
        if (len)
                memcpy(d, data, len);
        d[len] = 0;
        return add_owned(a, n, d, len, true);
}

void nb_artifact_done(struct nb_artifact *a) {
        for (size_t i = 0; i < a->n; i++) {
                free(a->entries[i].name);
                free(a->entries[i].data);
        }
        free(a->entries);
        a->entries = NULL;
        a->n = a->cap = 0;
}

struct walk {
        struct nb_artifact *a;
        size_t max_file, max_total, *total, max_files, files;
        struct nb_error *err;
        size_t root_len; /* of the prefix every name starts with */
};

/* How many bytes of s, at most max, end where no UTF-8 character is split (a byte
 * that starts none counts as one), for a message that quotes the start of a name. */
static int utf8_cut(const char *s, size_t max) {
        size_t at = 0;
        while (s[at]) {
                uint32_t cp;
                size_t k = nb_utf8_decode((const unsigned char *) s + at, &cp);
                k = k ? k : 1;
                if (at + k > max)
                        break;
                at += k;
        }
        return (int) at;
}

static int add_file(struct walk *w, int dirfd, const char *name, const char *full) {
        _cleanup_close_ int fd = nb_open_beneath(dirfd, name, O_RDONLY | O_NONBLOCK, 0);
        if (fd == -ELOOP || fd == -ENOENT)
                return 0; /* became a symlink, or went away, since we looked */
        if (fd < 0)
                return nb_error_set(w->err, fd, "artifact: reading %s", full);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return nb_error_set(w->err, errno, "artifact: reading %s", full);
        if (!S_ISREG(st.st_mode))
                return 0;
        if (++w->files > w->max_files)
                return nb_error_setx(w->err, EMFILE, "artifact: more than %zu files in %.*s", w->max_files,
                                     (int) strcspn(full, "/"), full);
        if ((uint64_t) st.st_size > w->max_file)
                return nb_error_setx(w->err, EFBIG, "artifact: %s is %llu bytes, more than the %zu allowed per file",
                                     full, (unsigned long long) st.st_size, w->max_file);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        /* Sized from fstat, so an empty file costs one byte, not a 4 KiB buffer. */
        int r = nb_read_fd_sized(fd, (size_t) st.st_size, w->max_file, &data, &len);
        if (r == -EFBIG)
                return nb_error_setx(w->err, EFBIG, "artifact: %s grew beyond the %zu bytes allowed per file", full,
                                     w->max_file);
        if (r < 0)
                return nb_error_set(w->err, r, "artifact: reading %s", full);
        if (len > w->max_total - *w->total)
                return nb_error_setx(w->err, EFBIG, "artifact: adding %s takes the outputs beyond %zu bytes in all",
                                     full, w->max_total);
        *w->total += len;
        size_t path_len = strlen(full) - w->root_len;
        if (path_len > MAX_TREE_PATH)
                return nb_error_setx(w->err, ENAMETOOLONG, "artifact: %.*s...: a path of %zu bytes, more than the %d a "
                                     "test may write", utf8_cut(full, 64), full, path_len, MAX_TREE_PATH);
        char *n = strdup(full);
        if (!n)
                return nb_error_set(w->err, ENOMEM, "artifact");
        r = add_owned(w->a, n, TAKE_PTR(data), len, false);
        return r < 0 ? nb_error_set(w->err, r, "artifact: adding %s", full) : 0;
}

/* dfd is an O_DIRECTORY fd (consumed); prefix is what names below it start with. */
static int walk_dir(struct walk *w, int dfd, const char *prefix, int depth) {
        if (depth > MAX_DEPTH) {
                close(dfd);
                return nb_error_setx(w->err, ELOOP, "artifact: %s: directories nest deeper than %d", prefix, MAX_DEPTH);
        }
        _cleanup_closedir_ DIR *d = NULL;
        int k = nb_fdopendir(dfd, &d);
        if (k < 0)
                return nb_error_set(w->err, -k, "artifact: listing %s", prefix);
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d))) {
                _cleanup_free_ char *full = NULL;
                if (asprintf(&full, "%s%s", prefix, de->d_name) < 0)
                        return nb_error_set(w->err, ENOMEM, "artifact");
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return nb_error_set(w->err, errno, "artifact: %s", full);
                }
                int r = 0;
                if (S_ISDIR(st.st_mode)) {
                        int sub = nb_open_beneath(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY, 0);
                        if (sub == -ELOOP || sub == -ENOENT)
                                continue; /* swapped for a symlink, or gone */
                        if (sub < 0)
                                return nb_error_set(w->err, sub, "artifact: %s", full);
                        _cleanup_free_ char *subprefix = NULL;
                        if (asprintf(&subprefix, "%s/", full) < 0) {
                                close(sub);
                                return nb_error_set(w->err, ENOMEM, "artifact");
                        }
                        r = walk_dir(w, sub, subprefix, depth + 1);
                } else if (S_ISREG(st.st_mode))
                        r = add_file(w, dirfd(d), de->d_name, full);
                /* Symlinks, devices, fifos and sockets are not outputs: skipped. */
                if (r < 0)
                        return r;
                errno = 0;
        }
        return errno ? nb_error_set(w->err, errno, "artifact: listing %s", prefix) : 0;
}

int nb_artifact_add_tree(struct nb_artifact *a, int dir_fd, const char *prefix, size_t max_file, size_t max_total,
                         size_t *total, size_t max_files, struct nb_error *err) {
        _cleanup_free_ char *p = NULL;
        size_t plen = prefix ? strlen(prefix) : 0;
        if (asprintf(&p, "%s%s", plen ? prefix : "", plen && prefix[plen - 1] != '/' ? "/" : "") < 0)
                return nb_error_set(err, ENOMEM, "artifact");
        int fd = nb_open_beneath(dir_fd, ".", O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return nb_error_set(err, fd, "artifact: %s", plen ? prefix : ".");
        size_t zero = 0;
        struct walk w = { a, max_file, max_total, total ? total : &zero, max_files, 0, err, strlen(p) };
        return walk_dir(&w, fd, p, 0);
}

/* The packed bytes grow in one buffer. */
struct membuf {
        char *data;
        size_t len, cap;
};

/* Room for n more bytes; -ENOMEM. */
static int membuf_reserve(struct membuf *m, size_t n) {
        return NB_RESERVE(m->data, m->cap, m->len, n, 65536);
}

/* The tar is written twice: first only counted, then through a zstd stream told that
 * count. libarchive's zstd filter cannot pledge a size, so its frames ask every reader
 * for a 2 MiB window whatever the artifact holds; a frame that names its content size
 * asks for no more than that, so a small artifact unpacks in a few KiB. */
struct pack_sink {
        ZSTD_CCtx *z; /* NULL while counting */
        uint64_t tar_len;
        struct membuf out;
};

/* Feeds in to the stream (ZSTD_e_continue) or ends the frame (ZSTD_e_end, until
 * zstd says it is flushed); 0 or -errno. */
static int sink_compress(struct pack_sink *s, const void *buf, size_t n, ZSTD_EndDirective how) {
        ZSTD_inBuffer in = { buf, n, 0 };
        for (;;) {
                if (membuf_reserve(&s->out, ZSTD_CStreamOutSize()) < 0)
                        return -ENOMEM;
                ZSTD_outBuffer o = { s->out.data + s->out.len, s->out.cap - s->out.len, 0 };
                size_t left = ZSTD_compressStream2(s->z, &o, &in, how);
                if (ZSTD_isError(left))
                        return -EIO;
                s->out.len += o.pos;
                if (how == ZSTD_e_continue ? in.pos == in.size : left == 0)
                        return 0;
        }
}

static la_ssize_t sink_write(struct archive *a, void *userdata, const void *buf, size_t n) {
        struct pack_sink *s = userdata;
        if (!s->z)
                s->tar_len += n;
        else {
                int r = sink_compress(s, buf, n, ZSTD_e_continue);
                if (r < 0) {
                        archive_set_error(a, -r, "compressing: %s", strerror(-r));
                        return -1;
                }
        }
        return (la_ssize_t) n;
}

static int by_name(const void *x, const void *y) {
        const struct nb_artifact_entry *const *a = x, *const *b = y;
        return strcmp((*a)->name, (*b)->name);
}

static int archive_failed(struct nb_error *err, struct archive *ar, const char *what) {
        int e = archive_errno(ar) > 0 ? archive_errno(ar) : EIO;
        const char *msg = archive_error_string(ar);
        return nb_error_setx(err, e, "artifact: %s: %s", what, msg ? msg : strerror(e));
}

static int write_entry(struct archive *ar, const struct nb_artifact_entry *e, struct nb_error *err) {
        _cleanup_(archive_entryp) struct archive_entry *ae = archive_entry_new();
        if (!ae)
                return nb_error_set(err, ENOMEM, "artifact");
        /* Everything that could differ between two runs is fixed: owner, mode, time. */
        archive_entry_copy_pathname(ae, e->name);
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_perm(ae, 0644);
        archive_entry_set_uid(ae, 0);
        archive_entry_set_gid(ae, 0);
        archive_entry_set_mtime(ae, 0, 0);
        archive_entry_set_size(ae, (la_int64_t) e->len);
        if (archive_write_header(ar, ae) != ARCHIVE_OK)
                return archive_failed(err, ar, e->name);
        for (size_t off = 0; off < e->len;) {
                la_ssize_t w = archive_write_data(ar, e->data + off, e->len - off);
                if (w <= 0)
                        return archive_failed(err, ar, e->name);
                off += (size_t) w;
        }
        return 0;
}

static bool any_non_ascii(const struct nb_artifact *a) {
        for (size_t i = 0; i < a->n; i++)
                for (const unsigned char *p = (const unsigned char *) a->entries[i].name; *p; p++)
                        if (*p >= 0x80)
                                return true;
        return false;
}

/* The sorted entries as tar bytes into sink. */
static int write_tar(const struct nb_artifact_entry **sorted, size_t n, bool binary_names, struct pack_sink *sink,
                     struct nb_error *err) {
        _cleanup_(archive_writep) struct archive *ar = archive_write_new();
        if (!ar)
                return nb_error_set(err, ENOMEM, "artifact");
        /* pax_restricted: plain ustar headers, and a pax header (path only, no times)
         * just for names ustar cannot hold. No padding to 10 KiB blocks.
         * hdrcharset=BINARY where a name is not ASCII: names are bytes (a test may
         * write any but "/" and NUL), stored and read back untranslated whatever the
         * locale; it costs a pax header per entry, so plain names go without. */
        if (archive_write_set_format_pax_restricted(ar) != ARCHIVE_OK ||
            (binary_names && archive_write_set_format_option(ar, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK) ||
            archive_write_set_bytes_in_last_block(ar, 1) != ARCHIVE_OK)
                return archive_failed(err, ar, "setting up tar");
        if (archive_write_open(ar, sink, NULL, sink_write, NULL) != ARCHIVE_OK)
                return archive_failed(err, ar, "packing");
        for (size_t i = 0; i < n; i++) {
                int r = write_entry(ar, sorted[i], err);
                if (r < 0)
                        return r;
        }
        if (archive_write_close(ar) != ARCHIVE_OK)
                return archive_failed(err, ar, "packing");
        return 0;
}

static void pack_sink_done(struct pack_sink *s) {
        ZSTD_freeCCtx(s->z);
        free(s->out.data);
}

int nb_artifact_pack(const struct nb_artifact *a, char **ret, size_t *ret_len, struct nb_error *err) {
        _cleanup_free_ const struct nb_artifact_entry **sorted = calloc(a->n + 1, sizeof(*sorted));
        if (!sorted)
                return nb_error_set(err, ENOMEM, "artifact");
        for (size_t i = 0; i < a->n; i++)
                sorted[i] = &a->entries[i];
        nb_qsort(sorted, a->n, sizeof(*sorted), by_name);

        bool binary = any_non_ascii(a);
        _cleanup_(pack_sink_done) struct pack_sink sink = {};
        int r = write_tar(sorted, a->n, binary, &sink, err);
        if (r < 0)
                return r;
        if (!(sink.z = ZSTD_createCCtx()))
                return nb_error_set(err, ENOMEM, "artifact");
        if (ZSTD_isError(ZSTD_CCtx_setParameter(sink.z, ZSTD_c_compressionLevel, ZSTD_CLEVEL_DEFAULT)) ||
            ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(sink.z, sink.tar_len)))
                return nb_error_setx(err, EIO, "artifact: setting up zstd");
        if ((r = write_tar(sorted, a->n, binary, &sink, err)) < 0)
                return r;
        if ((r = sink_compress(&sink, NULL, 0, ZSTD_e_end)) < 0)
                return nb_error_set(err, -r, "artifact: compressing");
        *ret = TAKE_PTR(sink.out.data);
        *ret_len = sink.out.len;
        return 0;
}

/* Reads one entry's data; the declared size is untrusted, so memory grows with what
 * actually arrives and never beyond the caps. */
static int read_entry_data(struct archive *ar, const char *name, la_int64_t declared, size_t *total, char **ret,
                           size_t *ret_len, struct nb_error *err) {
        if (declared < 0 || (uint64_t) declared > NB_ARTIFACT_MAX_ENTRY)
                return nb_error_setx(err, EFBIG, "artifact: entry %s is larger than %u bytes", name,
                                     NB_ARTIFACT_MAX_ENTRY);
        if ((uint64_t) declared > NB_ARTIFACT_MAX_TOTAL - *total)
                return nb_error_setx(err, EFBIG, "artifact: entries add up to more than %u bytes",
                                     NB_ARTIFACT_MAX_TOTAL);
        size_t want = (size_t) declared, cap = want < 65536 ? want : 65536, len = 0;
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return nb_error_set(err, ENOMEM, "artifact");
        for (;;) {
                if (len == cap && cap < want) {
                        size_t ncap = cap * 2 < want ? cap * 2 : want;
                        char *nb = realloc(buf, ncap + 1);
                        if (!nb)
                                return nb_error_set(err, ENOMEM, "artifact");
                        buf = nb;
                        cap = ncap;
                }
                if (len == cap) {
                        /* libarchive stops at the declared size; one byte more is an error. */
                        char probe;
                        la_ssize_t r = archive_read_data(ar, &probe, 1);
                        if (r != 0)
                                return r < 0 ? archive_failed(err, ar, name)
                                             : nb_error_setx(err, EINVAL, "artifact: entry %s: more data than declared", name);
                        break;
                }
                la_ssize_t r = archive_read_data(ar, buf + len, cap - len);
                if (r < 0)
                        return archive_failed(err, ar, name);
                if (r == 0)
                        return nb_error_setx(err, EINVAL, "artifact: entry %s is truncated", name);
                len += (size_t) r;
        }
        buf[len] = 0;
        *total += len;
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static int by_name_entry(const void *x, const void *y) {
        return strcmp(((const struct nb_artifact_entry *) x)->name, ((const struct nb_artifact_entry *) y)->name);
}

/* Sorted by name, a duplicate is next to its twin; the names seen are kept only
 * for this check when their data was skipped. */
static int refuse_duplicates(struct nb_artifact_entry *e, size_t n, struct nb_error *err) {
        if (n < 2)
                return 0; /* and qsort is never handed the NULL of an empty array */
        nb_qsort(e, n, sizeof(*e), by_name_entry);
        for (size_t i = 1; i < n; i++)
                if (strcmp(e[i - 1].name, e[i].name) == 0)
                        return nb_error_setx(err, EINVAL, "artifact: entry %s appears twice", e[i].name);
        return 0;
}

/* Whether an entry is kept (its bytes read), or only checked and counted. */
typedef bool (*wanted_fn)(const char *name, const void *ctx);

static bool not_prefixed(const char *name, const void *prefix) {
        return !prefix || strncmp(name, prefix, strlen(prefix)) != 0;
}

static bool listed(const char *name, const void *names) {
        for (const char *const *n = names; *n; n++)
                if (strcmp(name, *n) == 0)
                        return true;
        return false;
}

static int unpack(const char *data, size_t len, wanted_fn wanted, const void *ctx, struct nb_artifact *ret,
                  struct nb_error *err) {
        _cleanup_(archive_readp) struct archive *ar = archive_read_new();
        if (!ar)
                return nb_error_set(err, ENOMEM, "artifact");
        if (archive_read_support_filter_zstd(ar) != ARCHIVE_OK || archive_read_support_format_tar(ar) != ARCHIVE_OK)
                return archive_failed(err, ar, "setting up tar.zst");
        if (archive_read_open_memory(ar, data, len) != ARCHIVE_OK)
                return archive_failed(err, ar, "not a tar.zst");
        _cleanup_(nb_artifact_done) struct nb_artifact a = {}, skipped = {};
        size_t total = 0, n_entries = 0;
        int r = 0;
        for (;;) {
                struct archive_entry *ae;
                int h = archive_read_next_header(ar, &ae);
                if (h == ARCHIVE_EOF)
                        break;
                if (h != ARCHIVE_OK)
                        return archive_failed(err, ar, "reading");
                if (++n_entries > NB_ARTIFACT_MAX_ENTRIES)
                        return nb_error_setx(err, EMFILE, "artifact: more than %u entries", NB_ARTIFACT_MAX_ENTRIES);
                const char *name = archive_entry_pathname(ae);
                if (!nb_artifact_name_ok(name)) {
                        _cleanup_free_ char *q = name ? nb_quote(name) : NULL;
                        return nb_error_setx(err, EINVAL, "artifact: refusing entry name %s", q ? q : "(none)");
                }
                if (archive_entry_filetype(ae) != AE_IFREG || archive_entry_hardlink(ae))
                        return nb_error_setx(err, EINVAL, "artifact: entry %s is not a regular file", name);
                char *copy = strdup(name);
                if (!copy)
                        return nb_error_set(err, ENOMEM, "artifact");
                if (!wanted(name, ctx)) {
                        la_int64_t size = archive_entry_size(ae);
                        if (size < 0 || (uint64_t) size > NB_ARTIFACT_MAX_ENTRY) {
                                free(copy);
                                return nb_error_setx(err, EFBIG, "artifact: entry %s is larger than %u bytes", name,
                                                     NB_ARTIFACT_MAX_ENTRY);
                        }
                        if ((r = add_owned(&skipped, copy, NULL, 0, false)) < 0)
                                return nb_error_set(err, -r, "artifact");
                        if (archive_read_data_skip(ar) != ARCHIVE_OK)
                                return archive_failed(err, ar, "skipping an entry");
                        continue;
                }
                char *buf = NULL;
                size_t n = 0;
                r = read_entry_data(ar, name, archive_entry_size(ae), &total, &buf, &n, err);
                if (r < 0) {
                        free(copy);
                        return r;
                }
                if ((r = add_owned(&a, copy, buf, n, false)) < 0)
                        return nb_error_set(err, -r, "artifact");
        }
        if ((r = refuse_duplicates(a.entries, a.n, err)) < 0 || (r = refuse_duplicates(skipped.entries, skipped.n, err)) < 0)
                return r;
        *ret = a;
        a = (struct nb_artifact) {};
        return 0;
}

int nb_artifact_unpack(const char *data, size_t len, const char *skip_prefix, struct nb_artifact *ret,
                       struct nb_error *err) {
        return unpack(data, len, not_prefixed, skip_prefix, ret, err);
}

int nb_artifact_unpack_only(const char *data, size_t len, const char *const *keep, struct nb_artifact *ret,
                            struct nb_error *err) {
        return unpack(data, len, listed, keep, ret, err);
}
