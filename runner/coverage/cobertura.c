/* SPDX-License-Identifier: MIT */
/* Cobertura XML regenerated from a summed LCOV report (lcov.h): what Jenkins' Cobertura
 * plugin, GitLab's coverage visualisation and Codecov read. Paths were checked when
 * the LCOV was parsed (relative, printable UTF-8); libxml2's writer escapes. The
 * document is deterministic: no timestamp, packages and classes sorted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlwriter.h>

#include "coverage/lcov.h"
#include "junit/xml_writer.h"
#include "nestbox/cleanup.h"

static void cw_attr(struct xw *c, const char *name, const char *value) {
        if (c->r == 0)
                xw_check(c, xmlTextWriterWriteAttribute(c->w, BAD_CAST name, BAD_CAST value));
}

static void cw_attr_u64(struct xw *c, const char *name, unsigned long long v) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", v);
        cw_attr(c, name, buf);
}

static void cw_rate(struct xw *c, size_t lines, size_t hit) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%.4f", lines ? (double) hit / (double) lines : 1.0);
        cw_attr(c, "line-rate", buf);
        cw_attr(c, "branch-rate", "0");
        cw_attr(c, "complexity", "0");
}

/* A file's directory, as a package name: "src/lib/x.py" is "src.lib", "x.py" is ".". */
static char *package_of(const char *path) {
        const char *slash = strrchr(path, '/');
        char *p = slash ? strndup(path, (size_t) (slash - path)) : strdup(".");
        for (char *q = p; p && slash && *q; q++)
                if (*q == '/')
                        *q = '.';
        return p;
}

struct entry {
        const struct nb_lcov_file *file;
        char *package;
};

static int cmp_entry(const void *a, const void *b) {
        const struct entry *x = a, *y = b;
        int c = strcmp(x->package, y->package);
        return c ? c : strcmp(x->file->path, y->file->path);
}

static void file_totals(const struct nb_lcov_file *f, size_t *lines, size_t *hit) {
        *lines = f->n;
        *hit = 0;
        for (size_t j = 0; j < f->n; j++)
                *hit += f->lines[j].hits > 0;
}

static void write_class(struct xw *c, const struct nb_lcov_file *f) {
        size_t lines, hit;
        file_totals(f, &lines, &hit);
        const char *base = strrchr(f->path, '/');
        xw_start(c, "class");
        cw_attr(c, "name", base ? base + 1 : f->path);
        cw_attr(c, "filename", f->path);
        cw_rate(c, lines, hit);
        xw_start(c, "methods");
        xw_end(c);
        xw_start(c, "lines");
        for (size_t j = 0; j < f->n; j++) {
                xw_start(c, "line");
                cw_attr_u64(c, "number", f->lines[j].line);
                cw_attr_u64(c, "hits", f->lines[j].hits);
                xw_end(c);
        }
        xw_end(c);
        xw_end(c);
}

static void write_packages(struct xw *c, const struct entry *e, size_t n) {
        xw_start(c, "packages");
        for (size_t i = 0, j; i < n; i = j) {
                size_t lines = 0, hit = 0;
                for (j = i; j < n && strcmp(e[j].package, e[i].package) == 0; j++) {
                        size_t fl, fh;
                        file_totals(e[j].file, &fl, &fh);
                        lines += fl;
                        hit += fh;
                }
                xw_start(c, "package");
                cw_attr(c, "name", e[i].package);
                cw_rate(c, lines, hit);
                xw_start(c, "classes");
                for (size_t k = i; k < j; k++)
                        write_class(c, e[k].file);
                xw_end(c);
                xw_end(c);
        }
        xw_end(c);
}

static void entries_free(struct entry *e, size_t n) {
        for (size_t i = 0; e && i < n; i++)
                free(e[i].package);
        free(e);
}

int nb_lcov_to_cobertura(struct nb_lcov *l, char **ret, size_t *ret_len) {
        int r = nb_lcov_normalize(l);
        if (r < 0)
                return r;
        struct entry *e = calloc(l->n ? l->n : 1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++) {
                e[i].file = &l->files[i];
                if (!(e[i].package = package_of(l->files[i].path))) {
                        entries_free(e, l->n);
                        return -ENOMEM;
                }
        }
        nb_qsort(e, l->n, sizeof(*e), cmp_entry);
        xmlBufferPtr buf = xmlBufferCreate();
        struct xw c = { buf ? xmlNewTextWriterMemory(buf, 0) : NULL, 0 };
        if (!c.w) {
                entries_free(e, l->n);
                xmlBufferFree(buf);
                return -ENOMEM;
        }
        size_t lines, hit;
        nb_lcov_totals(l, &lines, &hit);
        xw_check(&c, xmlTextWriterSetIndent(c.w, 1));
        xw_check(&c, xmlTextWriterSetIndentString(c.w, BAD_CAST "  "));
        xw_check(&c, xmlTextWriterStartDocument(c.w, NULL, "UTF-8", NULL));
        xw_start(&c, "coverage");
        cw_attr(&c, "version", "nestbox");
        cw_attr(&c, "timestamp", "0");
        cw_attr_u64(&c, "lines-valid", lines);
        cw_attr_u64(&c, "lines-covered", hit);
        cw_attr(&c, "branches-valid", "0");
        cw_attr(&c, "branches-covered", "0");
        cw_rate(&c, lines, hit);
        xw_start(&c, "sources");
        xw_start(&c, "source");
        if (c.r == 0)
                xw_check(&c, xmlTextWriterWriteString(c.w, BAD_CAST "."));
        xw_end(&c);
        xw_end(&c);
        write_packages(&c, e, l->n);
        xw_end(&c);
        if (c.r == 0)
                xw_check(&c, xmlTextWriterEndDocument(c.w));
        xmlFreeTextWriter(c.w);
        entries_free(e, l->n);
        if (c.r == 0 && !(*ret = strndup((const char *) xmlBufferContent(buf), (size_t) xmlBufferLength(buf))))
                c.r = -ENOMEM;
        if (c.r == 0)
                *ret_len = (size_t) xmlBufferLength(buf);
        xmlBufferFree(buf);
        return c.r;
}
