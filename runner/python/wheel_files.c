/* SPDX-License-Identifier: MIT */
/* A wheel's entries, unpacked into a venv (wheel_files.h). */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/digest.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "python/wheel.h"
#include "python/wheel_files.h"
#include "python/wheel_files-internal.h"

/* Scripts, WHEEL and entry_points.txt are read whole (to rewrite or parse them); none
 * is anywhere near this big in a real wheel. */
#define SMALL_FILE_MAX (64u << 20)

/* A wheel may unpack to UNPACK_RATIO times its own size, and always to UNPACK_MIN
 * (real wheels stay under 10x; a zip bomb is thousands), never beyond UNPACK_MAX
 * (README, "nestbox venv"). Counted from the sizes the entries declare before a byte
 * is written, and from the bytes that really arrive. */
#define UNPACK_RATIO 64u
#define UNPACK_MIN (256ull << 20)
#define UNPACK_MAX (16ull << 30)

static int files_init(struct wheel_files *st) {
        st->record = open_memstream(&st->record_buf, &st->record_len);
        if (!st->record)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        return 0;
}

static void files_donep(struct wheel_files *st) {
        if (st->record)
                fclose(st->record);
        free(st->record_buf);
        free(st->distinfo);
        free(st->wheel_meta);
        free(st->entry_points);
}

/* Absolute, "..", empty and control characters are refused before anything is
 * mapped; the beneath-walker would refuse the first two anyway, but this way the
 * message names the entry instead of an errno. */
static int check_name(struct wheel_files *st, const char *name) {
        if (!*name)
                return BAD(st, "%s: entry with an empty name", st->wheel);
        for (const char *p = name; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return BAD(st, "%s: entry with a control character in its name", st->wheel);
        if (name[0] == '/')
                return BAD(st, "%s: entry %s escapes the venv", st->wheel, name);
        if (strlen(name) > PATH_MAX - 256)
                return BAD(st, "%s: entry name of %zu bytes, longer than any path a venv can hold", st->wheel,
                           strlen(name));
        for (const char *p = name; *p;) {
                size_t n = strcspn(p, "/");
                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return BAD(st, "%s: entry %s escapes the venv", st->wheel, name);
                if (n > NAME_MAX)
                        return BAD(st, "%s: entry %.64s...: a name of %zu bytes, more than the %d a file name may have",
                                   st->wheel, name, n, NAME_MAX);
                p += n;
                p += strspn(p, "/");
        }
        return 0;
}

static void b64url_nopad(const unsigned char *in, size_t n, char *out) {
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        size_t o = 0;
        for (size_t i = 0; i < n; i += 3) {
                unsigned v = (unsigned) in[i] << 16 | (i + 1 < n ? (unsigned) in[i + 1] << 8 : 0) |
                             (i + 2 < n ? in[i + 2] : 0);
                out[o++] = tbl[(v >> 18) & 63];
                out[o++] = tbl[(v >> 12) & 63];
                if (i + 1 < n)
                        out[o++] = tbl[(v >> 6) & 63];
                if (i + 2 < n)
                        out[o++] = tbl[v & 63];
        }
        out[o] = 0;
}

/* RECORD names files relative to site-packages (PEP 376); the rest of the venv is
 * reached with "../../../". Paths with a comma or a quote are CSV-quoted. */
static void record_add(struct wheel_files *st, const char *target, const char *hex, uint64_t size) {
        unsigned char raw[NB_DIGEST_HEX_LEN / 2];
        for (size_t i = 0; i < sizeof(raw); i++) {
                char pair[3] = { hex[2 * i], hex[2 * i + 1], 0 };
                raw[i] = (unsigned char) strtoul(pair, NULL, 16);
        }
        char b64[48];
        b64url_nopad(raw, sizeof(raw), b64);
        size_t sl = strlen(st->site);
        bool in_site = strncmp(target, st->site, sl) == 0 && target[sl] == '/';
        const char *path = in_site ? target + sl + 1 : target;
        const char *up = in_site ? "" : "../../../";
        if (strpbrk(path, ",\"")) {
                fprintf(st->record, "\"%s", up);
                for (const char *p = path; *p; p++)
                        fprintf(st->record, *p == '"' ? "\"\"" : "%c", *p);
                fprintf(st->record, "\",sha256=%s,%llu\n", b64, (unsigned long long) size);
        } else
                fprintf(st->record, "%s%s,sha256=%s,%llu\n", up, path, b64, (unsigned long long) size);
}

/* Errors from creating a file the wheel asked for: a clash with what is already there
 * (a file where a directory should be, a link, ...) is the wheel's fault. */
static int create_error(struct wheel_files *st, int r, const char *what, const char *target) {
        if (r == -ENOTDIR || r == -EISDIR || r == -ELOOP || r == -EXDEV || r == -EEXIST || r == -ENAMETOOLONG)
                return nb_error_input(st->err, EINVAL, "%s: %s: cannot create %s: %s", st->wheel, what, target,
                                      strerror(-r));
        return nb_error_set(st->err, r, "%s: %s: %s", st->wheel, what, target);
}

static int open_target(struct wheel_files *st, const char *what, const char *target, mode_t mode) {
        const char *slash = strrchr(target, '/');
        _cleanup_free_ char *dir = slash ? strndup(target, (size_t) (slash - target)) : strdup(".");
        if (!dir)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        _cleanup_close_ int dfd = nb_mkdir_p_beneath(st->venv_fd, dir, 0755);
        if (dfd < 0)
                return create_error(st, dfd, what, target);
        _cleanup_close_ int fd = nb_open_beneath(dfd, slash ? slash + 1 : target, O_WRONLY | O_CREAT | O_TRUNC, mode);
        if (fd < 0)
                return create_error(st, fd, what, target);
        /* Whatever the umask: the venv's modes are part of what it is. */
        if (fchmod(fd, mode) < 0)
                return nb_error_set(st->err, errno, "%s: %s", st->wheel, target);
        return TAKE_FD(fd);
}

static int too_big(struct wheel_files *st) {
        return BAD(st, "%s: unpacks to more than %llu bytes (%u times its size, at least %llu MiB): refusing what "
                   "looks like a zip bomb", st->wheel, (unsigned long long) st->cap, UNPACK_RATIO,
                   (unsigned long long) (UNPACK_MIN >> 20));
}

/* n more bytes unpacked: within the budget, or the wheel's error. */
static int spend(struct wheel_files *st, uint64_t n) {
        if (n > st->budget)
                return too_big(st);
        st->budget -= n;
        return 0;
}

int nb_wheel_files_write(struct wheel_files *st, const char *what, const char *target, mode_t mode,
                        const void *data, size_t len) {
        _cleanup_close_ int fd = open_target(st, what, target, mode);
        if (fd < 0)
                return fd;
        int r = nb_write_all(fd, data, len);
        if (r < 0)
                return nb_error_set(st->err, -r, "%s: %s", st->wheel, target);
        char hex[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex(data, len, hex);
        record_add(st, target, hex, len);
        return 0;
}

static int stream_target(struct wheel_files *st, struct archive *a, const char *name, const char *target,
                         mode_t mode) {
        _cleanup_close_ int fd = open_target(st, name, target, mode);
        if (fd < 0)
                return fd;
        _cleanup_(nb_hasher_freep) struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        uint64_t size = 0;
        for (;;) {
                const void *buf;
                size_t len;
                la_int64_t off;
                int ar = archive_read_data_block(a, &buf, &len, &off);
                if (ar == ARCHIVE_EOF)
                        break;
                if (ar != ARCHIVE_OK)
                        return nb_error_input(st->err, EBADMSG, "%s: entry %s: %s", st->wheel, name, archive_error_string(a));
                /* Zip has no holes; an offset that jumps means a reader we do not expect. */
                if (off < 0 || (uint64_t) off != size)
                        return nb_error_input(st->err, EBADMSG, "%s: entry %s: unexpected data offset", st->wheel, name);
                int r = spend(st, len);
                if (r < 0)
                        return r;
                r = nb_write_all(fd, buf, len);
                if (r < 0)
                        return nb_error_set(st->err, -r, "%s: %s", st->wheel, target);
                nb_hasher_update(h, buf, len);
                size += len;
        }
        char hex[NB_DIGEST_HEX_LEN + 1];
        nb_hasher_finish(TAKE_PTR(h), hex);
        record_add(st, target, hex, size);
        return 0;
}

static int slurp(struct wheel_files *st, struct archive *a, const char *name, char **ret, size_t *ret_len) {
        size_t cap = 4096, n = 0;
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        for (;;) {
                if (n == cap) {
                        if (cap >= SMALL_FILE_MAX)
                                return BAD(st, "%s: entry %s is too large", st->wheel, name);
                        char *nb = realloc(buf, cap * 2 + 1);
                        if (!nb)
                                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
                        buf = nb;
                        cap *= 2;
                }
                la_ssize_t r = archive_read_data(a, buf + n, cap - n);
                if (r < 0)
                        return nb_error_input(st->err, EBADMSG, "%s: entry %s: %s", st->wheel, name, archive_error_string(a));
                if (r == 0)
                        break;
                int k = spend(st, (uint64_t) r);
                if (k < 0)
                        return k;
                n += (size_t) r;
        }
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        *ret_len = n;
        return 0;
}

/* "#!python" (and "#!pythonw") is the wheel spec's placeholder for "this venv's
 * interpreter", which is /venv/bin/python inside the sandbox. */
static int install_script(struct wheel_files *st, struct archive *a, const char *name, const char *target) {
        _cleanup_free_ char *data = NULL, *out = NULL;
        size_t len = 0;
        int r = slurp(st, a, name, &data, &len);
        if (r < 0)
                return r;
        if (len >= 8 && memcmp(data, "#!python", 8) == 0) {
                size_t skip = len > 8 && data[8] == 'w' ? 9 : 8;
                size_t n = strlen(st->python);
                out = malloc(2 + n + len - skip);
                if (!out)
                        return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
                memcpy(out, "#!", 2);
                memcpy(out + 2, st->python, n);
                memcpy(out + 2 + n, data + skip, len - skip);
                len = 2 + n + len - skip;
                free(data);
                data = TAKE_PTR(out);
        }
        return nb_wheel_files_write(st, name, target, 0755, data, len);
}

/* <name>-<ver>.data/<scheme>/<path>: the schemes of a venv (pip's "venv" install
 * scheme; purelib and platlib are the same directory there). */
static int map_data(struct wheel_files *st, const char *name, const char *rest, char **target, bool *script) {
        size_t n = strcspn(rest, "/");
        const char *path = rest[n] ? rest + n + 1 : "";
        *script = false;
        if (!*path)
                return BAD(st, "%s: entry %s is not inside a .data scheme", st->wheel, name);
        int r;
        if ((n == 7 && strncmp(rest, "purelib", 7) == 0) || (n == 7 && strncmp(rest, "platlib", 7) == 0))
                r = asprintf(target, "%s/%s", st->site, path);
        else if (n == 7 && strncmp(rest, "scripts", 7) == 0) {
                *script = true;
                r = asprintf(target, "bin/%s", path);
        } else if (n == 7 && strncmp(rest, "headers", 7) == 0)
                r = asprintf(target, "include/site/python%s/%s/%s", st->py->version_short, st->req->name, path);
        else if (n == 4 && strncmp(rest, "data", 4) == 0) {
                /* The venv's own files are nestbox's, not the wheel's: "./pyvenv.cfg"
                 * and "a/../pyvenv.cfg" ("..": refused already) name them too. */
                path += strspn(path, "/");
                while (path[0] == '.' && path[1] == '/')
                        path += 2 + strspn(path + 2, "/");
                if (strcmp(path, "pyvenv.cfg") == 0 || strncmp(path, ".nestbox", 8) == 0 ||
                    strcmp(path, ".") == 0 || !*path)
                        return BAD(st, "%s: entry %s would replace the venv's %s", st->wheel, name,
                                   *path && strcmp(path, ".") ? path : "root");
                r = asprintf(target, "%s", path);
        } else
                return BAD(st, "%s: entry %s: unknown .data scheme '%.*s'", st->wheel, name, (int) n, rest);
        if (r < 0)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        return 0;
}

/* A file in the .dist-info: RECORD and INSTALLER are replaced by nestbox's own, WHEEL
 * and entry_points.txt are also kept for files_finish. Returns 1 when handled. */
static int distinfo_entry(struct wheel_files *st, struct archive *a, const char *name, const char *top,
                          size_t toplen, const char *leaf, const char *target) {
        if (!st->distinfo) {
                if (!nb_wheel_stem_matches(top, toplen - strlen(".dist-info"), st->req))
                        return BAD(st, "%s: %.*s does not belong to %s==%s", st->wheel, (int) toplen, top,
                                   st->req->name, st->req->version);
                st->distinfo = strndup(top, toplen);
                if (!st->distinfo)
                        return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        } else if (strlen(st->distinfo) != toplen || strncmp(st->distinfo, top, toplen) != 0)
                return BAD(st, "%s: more than one .dist-info directory (%s, %.*s)", st->wheel, st->distinfo,
                           (int) toplen, top);
        if (strcmp(leaf, "RECORD") == 0 || strcmp(leaf, "RECORD.jws") == 0 || strcmp(leaf, "RECORD.p7s") == 0 ||
            strcmp(leaf, "INSTALLER") == 0) {
                st->have_record |= strcmp(leaf, "RECORD") == 0;
                return 1;
        }
        st->have_metadata |= strcmp(leaf, "METADATA") == 0;
        char **keep = strcmp(leaf, "WHEEL") == 0 ? &st->wheel_meta :
                      strcmp(leaf, "entry_points.txt") == 0 ? &st->entry_points : NULL;
        if (!keep)
                return 0;
        st->have_wheel |= keep == &st->wheel_meta;
        size_t len = 0;
        free(*keep);
        *keep = NULL;
        int r = slurp(st, a, name, keep, &len);
        if (r < 0)
                return r;
        r = nb_wheel_files_write(st, name, target, 0644, *keep, len);
        return r < 0 ? r : 1;
}

static int files_entry(struct wheel_files *st, struct archive *a, struct archive_entry *e) {
        const char *name = archive_entry_pathname_utf8(e);
        if (!name)
                name = archive_entry_pathname(e);
        if (!name)
                return nb_error_input(st->err, EBADMSG, "%s: entry without a readable name", st->wheel);
        int r = check_name(st, name);
        if (r < 0)
                return r;
        if (archive_entry_hardlink(e))
                return BAD(st, "%s: entry %s is a hard link; wheels may only hold files", st->wheel, name);
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFLNK || archive_entry_symlink(e))
                return BAD(st, "%s: entry %s is a symlink; wheels may only hold files", st->wheel, name);
        /* Directories are created as the files inside them need them (pip does the same). */
        if (type == AE_IFDIR)
                return 0;
        if (type != AE_IFREG)
                return BAD(st, "%s: entry %s is a device or special file", st->wheel, name);
        /* The declared size refuses a bomb before a byte of it is written. */
        if (archive_entry_size_is_set(e) && (archive_entry_size(e) < 0 || (uint64_t) archive_entry_size(e) > st->budget))
                return too_big(st);

        size_t toplen = strcspn(name, "/");
        const char *rest = name[toplen] ? name + toplen + 1 : "";
        _cleanup_free_ char *target = NULL;
        bool script = false;
        if (toplen > 5 && strncmp(name + toplen - 5, ".data", 5) == 0 &&
            nb_wheel_stem_matches(name, toplen - 5, st->req))
                r = map_data(st, name, rest, &target, &script);
        else
                r = asprintf(&target, "%s/%s", st->site, name) < 0 ? nb_error_set(st->err, ENOMEM, "%s", st->wheel) : 0;
        if (r < 0)
                return r;
        if (toplen > 10 && strncmp(name + toplen - 10, ".dist-info", 10) == 0 && strchr(name, '/')) {
                r = distinfo_entry(st, a, name, name, toplen, rest, target);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        if (script)
                return install_script(st, a, name, target);
        mode_t perm = archive_entry_perm(e);
        return stream_target(st, a, name, target, (perm & 0111) ? 0755 : 0644);
}

static int files_finish(struct wheel_files *st) {
        if (!st->distinfo || !st->have_metadata || !st->have_wheel || !st->have_record)
                return BAD(st, "%s: not a wheel: %s-%s.dist-info/ needs METADATA, WHEEL and RECORD", st->wheel,
                           st->req->name, st->req->version);
        int r = nb_wheel_files_check_meta(st);
        if (r < 0)
                return r;
        r = nb_wheel_files_console_scripts(st);
        if (r < 0)
                return r;
        _cleanup_free_ char *installer = NULL, *record = NULL;
        if (asprintf(&installer, "%s/%s/INSTALLER", st->site, st->distinfo) < 0 ||
            asprintf(&record, "%s/%s/RECORD", st->site, st->distinfo) < 0)
                return nb_error_set(st->err, ENOMEM, "%s", st->wheel);
        r = nb_wheel_files_write(st, "INSTALLER", installer, 0644, "nestbox\n", 8);
        if (r < 0)
                return r;
        /* RECORD lists itself without a hash (PEP 376). */
        fprintf(st->record, "%s/RECORD,,\n", st->distinfo);
        FILE *f = TAKE_PTR(st->record);
        bool failed = ferror(f);
        if (fclose(f) != 0 || failed)
                return nb_error_set(st->err, ENOMEM, "%s: RECORD", st->wheel);
        _cleanup_close_ int fd = open_target(st, "RECORD", record, 0644);
        if (fd < 0)
                return fd;
        r = nb_write_all(fd, st->record_buf, st->record_len);
        if (r < 0)
                return nb_error_set(st->err, -r, "%s: %s", st->wheel, record);
        return 0;
}

/* The private copy: an unlinked file in the venv being built, hashed while written.
 * Opening the wheel is a path the user named (nb_error_class_of_path); everything
 * after it is this machine's: the venv is nestbox's own folder, so a failure there
 * (no O_TMPFILE and a stale name, a full disk, a file size limit) is never the
 * workspace's. */
static int private_copy(int wheelhouse_fd, const struct nb_requirement *req, const struct nb_wheel *w, int venv_fd,
                        char hex[NB_DIGEST_HEX_LEN + 1], struct nb_error *err) {
        _cleanup_close_ int src = nb_wheel_open(wheelhouse_fd, w->filename);
        if (src < 0)
                return nb_error_classify(err, nb_wheel_open_error_class(src),
                                         nb_error_set(err, -src, "%s==%s: %s", req->name, req->version, w->filename));
        _cleanup_close_ int dst = openat(venv_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (dst < 0) {
                /* No O_TMPFILE on this file system: a named file, unlinked at once. */
                static const char name[] = ".nestbox-wheel.tmp";
                dst = openat(venv_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (dst < 0)
                        return nb_error_set(err, errno, "%s: a private copy in the venv", w->filename);
                if (unlinkat(venv_fd, name, 0) < 0)
                        return nb_error_set(err, errno, "%s: a private copy in the venv", w->filename);
        }
        int r = nb_sha256_fd_copy(src, dst, hex, NULL);
        if (r < 0)
                return nb_error_set(err, -r, "%s: copying into the venv", w->filename);
        if (lseek(dst, 0, SEEK_SET) < 0)
                return nb_error_set(err, errno, "%s: a private copy in the venv", w->filename);
        return TAKE_FD(dst);
}

static void archive_freep(struct archive **a) {
        if (*a)
                archive_read_free(*a);
}

/* The private copy, mapped: what was hashed is what is unpacked, and no one else
 * holds the (unlinked) file to change it under the mapping. */
struct mapping {
        void *p;
        size_t len;
};

static void mappingp(struct mapping *m) {
        if (m->p)
                munmap(m->p, m->len);
}

int nb_wheel_install(const struct nb_python *py, int wheelhouse_fd, const struct nb_requirement *req,
                     const struct nb_wheel *w, const struct nb_wheel_dest *dest, struct nb_error *err) {
        char hex[NB_DIGEST_HEX_LEN + 1];
        _cleanup_close_ int fd = private_copy(wheelhouse_fd, req, w, dest->fd, hex, err);
        if (fd < 0)
                return fd;
        /* The file changed between selection and now: whatever it is, it is not what
         * the lock pinned. */
        if (strcmp(hex, w->sha256) != 0)
                return nb_wheel_hash_mismatch(req, w->filename, hex, err);
        struct stat zst;
        if (fstat(fd, &zst) < 0)
                return nb_error_set(err, errno, "%s", w->filename);
        _cleanup_(mappingp) struct mapping m = { NULL, (size_t) zst.st_size };
        if (m.len > 0) {
                void *p = mmap(NULL, m.len, PROT_READ, MAP_PRIVATE, fd, 0);
                if (p == MAP_FAILED)
                        return nb_error_set(err, errno, "%s", w->filename);
                m.p = p;
        }
        return nb_wheel_unpack(py, req, w->filename, m.p, m.len, dest, err);
}

int nb_wheel_unpack(const struct nb_python *py, const struct nb_requirement *req, const char *filename,
                    const void *zip, size_t len, const struct nb_wheel_dest *dest, struct nb_error *err) {
        _cleanup_(archive_freep) struct archive *a = archive_read_new();
        if (!a)
                return nb_error_set(err, ENOMEM, "%s", filename);
        /* The seekable reader trusts the central directory, as Python's zipfile and pip
         * do, so nestbox unpacks the same files every other installer would. */
        if (archive_read_support_format_zip_seekable(a) != ARCHIVE_OK ||
            archive_read_open_memory(a, zip, len) != ARCHIVE_OK)
                return nb_error_input(err, EBADMSG, "%s: not a zip archive: %s", filename, archive_error_string(a));

        uint64_t cap = (uint64_t) len * UNPACK_RATIO;
        cap = cap < UNPACK_MIN ? UNPACK_MIN : cap > UNPACK_MAX ? UNPACK_MAX : cap;
        _cleanup_(files_donep) struct wheel_files st = {
                .py = py, .req = req, .wheel = filename, .venv_fd = dest->fd, .site = dest->site,
                .python = dest->python, .err = err, .budget = cap, .cap = cap,
        };
        int r = files_init(&st);
        if (r < 0)
                return r;
        for (;;) {
                struct archive_entry *e;
                int ar = archive_read_next_header(a, &e);
                if (ar == ARCHIVE_EOF)
                        break;
                if (ar != ARCHIVE_OK)
                        return nb_error_input(err, EBADMSG, "%s: %s", filename, archive_error_string(a));
                r = files_entry(&st, a, e);
                if (r < 0)
                        return r;
        }
        return files_finish(&st);
}
