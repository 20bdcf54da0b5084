/* SPDX-License-Identifier: MIT */
/* libxml2's writer with a sticky error, checked once at the end (like ferror()):
 * libxml2 only says "failed", which short of a bug in us means out of memory. Shared
 * by junit_write.c and coverage/cobertura.c. */
#pragma once

#include <errno.h>

#include <libxml/xmlwriter.h>

struct xw {
        xmlTextWriterPtr w;
        int r;
};

static inline void xw_check(struct xw *x, int rc) {
        if (rc < 0 && x->r == 0)
                x->r = -ENOMEM;
}

static inline void xw_start(struct xw *x, const char *elem) {
        if (x->r == 0)
                xw_check(x, xmlTextWriterStartElement(x->w, BAD_CAST elem));
}

static inline void xw_end(struct xw *x) {
        if (x->r == 0)
                xw_check(x, xmlTextWriterEndElement(x->w));
}
