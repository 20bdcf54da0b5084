/* SPDX-License-Identifier: MIT */
/* LCOV: parse (untrusted), sum, write; the combined coverage of a run (lcov.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coverage/lcov.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"

void nb_lcov_done(struct nb_lcov *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->files[i].path);
                free(l->files[i].lines);
        }
        free(l->files);
        *l = (struct nb_lcov) {};
}

/* A workspace-relative path of printable UTF-8; "/work/" (the sandbox's root) is
 * taken off. NULL when it is none. */
static const char *check_path(const char *p) {
        if (strncmp(p, "/work/", 6) == 0)
                p += 6;
        if (!*p || nb_check_relative_path(p, false))
                return NULL;
        for (const unsigned char *s = (const unsigned char *) p; *s;) {
                uint32_t c;
                size_t k = nb_utf8_decode(s, &c);
                if (k == 0 || c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0))
                        return NULL;
                s += k;
        }
        return p;
}

static bool parse_u64(const char *s, const char *end, uint64_t *ret) {
        uint64_t v = 0;
        if (s == end)
                return false;
        for (; s < end; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return true;
}

/* "DA:<line>,<hits>[,<checksum>]" */
static int parse_da(struct nb_lcov *l, struct nb_lcov_file *f, const char *s, const char *end) {
        const char *comma = memchr(s, ',', (size_t) (end - s));
        if (!comma)
                return -EBADMSG;
        const char *comma2 = memchr(comma + 1, ',', (size_t) (end - comma - 1));
        uint64_t line, hits;
        if (!parse_u64(s, comma, &line) || line > NB_LCOV_MAX_LINE ||
            !parse_u64(comma + 1, comma2 ? comma2 : end, &hits))
                return -EBADMSG;
        if (l->records >= NB_LCOV_MAX_RECORDS)
                return -EFBIG;
        if (NB_RESERVE(f->lines, f->cap, f->n, 1, 16) < 0)
                return -ENOMEM;
        f->lines[f->n++] = (struct nb_lcov_line) { (uint32_t) line, hits };
        l->records++;
        return 0;
}

static int add_file(struct nb_lcov *l, const char *path, size_t len) {
        _cleanup_free_ char *p = strndup(path, len);
        const char *rel = p && !memchr(path, 0, len) ? check_path(p) : NULL;
        if (!p)
                return -ENOMEM;
        if (!rel)
                return -EINVAL;
        if (NB_RESERVE(l->files, l->cap, l->n, 1, 16) < 0)
                return -ENOMEM;
        struct nb_lcov_file *f = &l->files[l->n];
        *f = (struct nb_lcov_file) { .path = strdup(rel) };
        if (!f->path)
                return -ENOMEM;
        l->n++;
        l->normalized = false;
        return 0;
}

static int fold_at_cap(struct nb_lcov *l);

int nb_lcov_parse(struct nb_lcov *l, const char *data, size_t len, const char *name, struct nb_error *err) {
        if (len > NB_LCOV_MAX_SIZE)
                return nb_error_setx(err, EFBIG, "%s: larger than %u bytes", name, NB_LCOV_MAX_SIZE);
        bool in_file = false;
        size_t lineno = 0;
        for (const char *p = data, *end = data + len; p < end;) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                const char *e = nl ? nl : end, *next = nl ? nl + 1 : end;
                lineno++;
                if (e > p && e[-1] == '\r')
                        e--;
                int r = 0;
                const char *why = NULL;
                size_t n = (size_t) (e - p);
                if (n == 0) {
                } else if (n >= 3 && memcmp(p, "SF:", 3) == 0) {
                        r = add_file(l, p + 3, n - 3);
                        why = "SF: expected a path relative to the workspace (no .., no control characters)";
                        in_file = r == 0;
                } else if (n >= 3 && memcmp(p, "DA:", 3) == 0) {
                        why = in_file ? "DA: expected <line>,<hits> (line up to 100000000)" : "DA: outside a file (no SF: before it)";
                        r = in_file ? parse_da(l, &l->files[l->n - 1], p + 3, e) : -EBADMSG;
                        if (r == -EFBIG && (r = fold_at_cap(l)) == 0)
                                r = parse_da(l, &l->files[l->n - 1], p + 3, e);
                } else if (n == 13 && memcmp(p, "end_of_record", 13) == 0) {
                        in_file = false;
                } else {
                        /* TN, FN, FNDA, BRDA, LF, LH, ...: uppercase tag and a colon. */
                        size_t k = 0;
                        while (k < n && p[k] >= 'A' && p[k] <= 'Z')
                                k++;
                        if (k == 0 || k == n || p[k] != ':')
                                r = -EBADMSG, why = "not an LCOV record";
                }
                if (r == -ENOMEM)
                        return nb_error_set(err, ENOMEM, "%s", name);
                if (r == -EFBIG)
                        return nb_error_setx(err, EFBIG, "%s: more than %u distinct lines in all", name,
                                             NB_LCOV_MAX_RECORDS);
                if (r < 0)
                        return nb_error_input(err, EBADMSG, "%s: line %zu: %s", name, lineno, why);
                p = next;
        }
        return 0;
}

static int cmp_file(const void *a, const void *b) {
        return strcmp(((const struct nb_lcov_file *) a)->path, ((const struct nb_lcov_file *) b)->path);
}

static int cmp_line(const void *a, const void *b) {
        uint32_t x = ((const struct nb_lcov_line *) a)->line, y = ((const struct nb_lcov_line *) b)->line;
        return (x > y) - (x < y);
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void fold_lines(struct nb_lcov_file *f) {
        nb_qsort(f->lines, f->n, sizeof(*f->lines), cmp_line);
        size_t k = 0;
        for (size_t i = 0; i < f->n; i++) {
                if (k && f->lines[k - 1].line == f->lines[i].line)
                        f->lines[k - 1].hits = sat_add(f->lines[k - 1].hits, f->lines[i].hits);
                else
                        f->lines[k++] = f->lines[i];
        }
        f->n = k;
}

int nb_lcov_normalize(struct nb_lcov *l) {
        if (l->normalized)
                return 0;
        /* qsort is not stable, but files of one path are folded whatever their order. */
        nb_qsort(l->files, l->n, sizeof(*l->files), cmp_file);
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++) {
                struct nb_lcov_file *f = &l->files[i];
                if (k && strcmp(l->files[k - 1].path, f->path) == 0) {
                        struct nb_lcov_file *into = &l->files[k - 1];
                        if (NB_RESERVE(into->lines, into->cap, into->n, f->n, 16) < 0)
                                return -ENOMEM;
                        if (f->n) /* a file of no lines has no array at all */
                                memcpy(into->lines + into->n, f->lines, f->n * sizeof(*f->lines));
                        into->n += f->n;
                        free(f->path);
                        free(f->lines);
                } else
                        l->files[k++] = *f;
        }
        l->n = k;
        for (size_t i = 0; i < l->n; i++)
                fold_lines(&l->files[i]);
        l->normalized = true;
        return 0;
}

/* The records read reached the cap: folded, so that only distinct lines count, and
 * the file being read goes on in a new entry of its path (folded with the rest later).
 * -EFBIG when the last fold already left more than half the cap, or this one leaves
 * the cap itself: each fold then follows at least half a cap of new records, so
 * every record is sorted O(log n) times at most. */
static int fold_at_cap(struct nb_lcov *l) {
        if (l->folded_full || l->n == 0)
                return -EFBIG;
        _cleanup_free_ char *current = strdup(l->files[l->n - 1].path);
        if (!current)
                return -ENOMEM;
        int r = nb_lcov_normalize(l);
        if (r < 0)
                return r;
        size_t held = 0;
        for (size_t i = 0; i < l->n; i++)
                held += l->files[i].n;
        l->records = held;
        l->folded_full = held > NB_LCOV_MAX_RECORDS / 2;
        if (held >= NB_LCOV_MAX_RECORDS)
                return -EFBIG;
        return add_file(l, current, strlen(current));
}

void nb_lcov_totals(const struct nb_lcov *l, size_t *ret_lines, size_t *ret_hit) {
        size_t lines = 0, hit = 0;
        for (size_t i = 0; i < l->n; i++)
                for (size_t j = 0; j < l->files[i].n; j++) {
                        lines++;
                        hit += l->files[i].lines[j].hits > 0;
                }
        *ret_lines = lines;
        *ret_hit = hit;
}

int nb_lcov_to_text(struct nb_lcov *l, char **ret, size_t *ret_len) {
        int r = nb_lcov_normalize(l);
        if (r < 0)
                return r;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        fputs("TN:\n", f);
        for (size_t i = 0; i < l->n; i++) {
                const struct nb_lcov_file *file = &l->files[i];
                size_t hit = 0;
                fprintf(f, "SF:%s\n", file->path);
                for (size_t j = 0; j < file->n; j++) {
                        fprintf(f, "DA:%u,%llu\n", file->lines[j].line, (unsigned long long) file->lines[j].hits);
                        hit += file->lines[j].hits > 0;
                }
                fprintf(f, "LF:%zu\nLH:%zu\nend_of_record\n", file->n, hit);
        }
        if (fclose(f) != 0 || !buf)
                return -ENOMEM;
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* ---- the combined coverage of a run ---- */

void nb_coverage_sum_done(struct nb_coverage_sum *s) {
        nb_lcov_done(&s->lcov);
        s->inputs = 0;
}

int nb_coverage_sum_add(struct nb_coverage_sum *s, const struct nb_result *r, struct nb_error *err) {
        const struct nb_artifact_entry *e = nb_artifact_find(&r->artifact, "coverage.lcov");
        if (!e)
                return 0;
        _cleanup_free_ char *name = NULL;
        if (asprintf(&name, "%s: coverage.lcov", r->target) < 0)
                return nb_error_set(err, ENOMEM, "coverage");
        int k = nb_lcov_parse(&s->lcov, e->data, e->len, name, err);
        if (k < 0)
                return k;
        s->inputs++;
        return 0;
}

int nb_coverage_sum_write(struct nb_coverage_sum *s, int out_dir, struct nb_error *err) {
        if (s->inputs == 0) {
                /* Nothing measured this time: an earlier run's sums must not pass for
                 * this one's (a CI job uploads whatever is there). */
                static const char *const stale[] = { "coverage.lcov", "coverage.xml" };
                for (size_t i = 0; i < 2; i++)
                        if (unlinkat(out_dir, stale[i], 0) < 0 && errno != ENOENT)
                                return nb_error_set(err, errno, "--output: %s", stale[i]);
                return 0;
        }
        _cleanup_free_ char *lcov = NULL, *xml = NULL;
        size_t lcov_len = 0, xml_len = 0;
        int k = nb_lcov_to_text(&s->lcov, &lcov, &lcov_len);
        if (k < 0 || (k = nb_lcov_to_cobertura(&s->lcov, &xml, &xml_len)) < 0)
                return nb_error_set(err, -k, "--output: coverage");
        if ((k = nb_write_file_atomic(out_dir, "coverage.lcov", lcov, lcov_len, 0644)) < 0)
                return nb_error_set(err, -k, "--output: coverage.lcov");
        if ((k = nb_write_file_atomic(out_dir, "coverage.xml", xml, xml_len, 0644)) < 0)
                return nb_error_set(err, -k, "--output: coverage.xml");
        return 0;
}
