/* SPDX-License-Identifier: MIT */
/* JUnit XML: the parser. The model is in junit_model.c, the writer (with the small
 * presentation helpers) in junit_write.c, merging in junit_merge.c.
 *
 * The parser is libxml2 driven through SAX2 callbacks of our own rather than a DOM:
 * the report is built while the document streams past, so memory is our structs
 * (bounded by the document size and NB_JUNIT_MAX_TESTCASES), not a libxml2 tree many
 * times the size of an untrusted document. A DOCTYPE stops the parser at its name,
 * before the internal subset is read, so no entity is ever declared, let alone
 * expanded or loaded. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

#include "junit/junit-internal.h"
#include "junit/junit.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"

/* ---- Parsing ------------------------------------------------------------------- */

/* What an open element is to us. Everything unknown is K_OTHER and its text is
 * dropped, wherever it sits. */
enum kind {
        K_OTHER,
        K_SUITES,
        K_SUITE,
        K_CASE,
        K_RESULT,      /* the testcase's first <failure>/<error>, or its <skipped> */
        K_EXTRA,       /* a further <failure>/<error> (pytest: a teardown error) */
        K_OUT,         /* <system-out> of the testcase */
        K_ERR,         /* <system-err> of the testcase */
        K_RERUN,       /* Surefire's <flakyFailure> and friends */
        K_RERUN_TRACE, /* their <stackTrace> */
        K_RERUN_OUT,
        K_RERUN_ERR,
};

struct text_buf {
        char *data;
        size_t len, cap;
};

struct sax_state {
        struct nb_junit_report *report;
        struct nb_error *err;
        int r;                 /* first failure, -errno; stops the parser */
        bool described;        /* err already says why */
        unsigned depth;        /* open elements */
        enum kind kinds[NB_JUNIT_MAX_DEPTH];
        bool saw_suite_time;
        size_t cap_testcases;
        struct text_buf text;  /* characters of the capturing element */
        char *extra_message;   /* message="" of a K_EXTRA element */
        unsigned case_depth;   /* depth of the open <testcase> plus one, 0 when none */
        size_t case_elements;  /* elements inside it so far */
        /* The fields being appended to (one per appending kind) with their length
         * and allocation, so that each append costs its own length, not the text so
         * far: 300k <system-out> in one testcase stay linear. */
        struct appender {
                char **dst;
                char *str;
                size_t len, cap;
        } app[K_RERUN_ERR + 1];
};

static void stop(xmlParserCtxtPtr ctxt, struct sax_state *st, int r) {
        if (st->r == 0)
                st->r = r < 0 ? r : -EBADMSG;
        xmlStopParser(ctxt);
}

/* Stops the parser on a document we will not read, saying why. */
__attribute__((format(printf, 3, 4))) static void refuse(xmlParserCtxtPtr ctxt, struct sax_state *st,
                                                         const char *fmt, ...) {
        if (st->r == 0) {
                _cleanup_free_ char *why = NULL;
                va_list ap;
                va_start(ap, fmt);
                if (vasprintf(&why, fmt, ap) < 0)
                        why = NULL;
                va_end(ap);
                nb_error_setx(st->err, EBADMSG, "junit.xml: %s", why ? why : "refused");
                st->described = true;
        }
        stop(ctxt, st, -EBADMSG);
}

/* The attribute values SAX2 hands over keep "&#38;" for "&" when entities are not
 * substituted (libxml2 re-parses it when it builds a tree, we do it here). A bare "&"
 * cannot occur: any other reference is an undeclared entity, a fatal error. */
static int attr_get(const xmlChar **attrs, int n, const char *name, char **ret) {
        for (int i = 0; i < n; i++) {
                const xmlChar *const *a = attrs + 5 * i;
                if (a[2] || !xmlStrEqual(a[0], BAD_CAST name))
                        continue;
                const char *v = (const char *) a[3], *end = (const char *) a[4];
                char *s = malloc((size_t) (end - v) + 1), *o = s;
                if (!s)
                        return -ENOMEM;
                while (v < end)
                        if (end - v >= 5 && memcmp(v, "&#38;", 5) == 0) {
                                *o++ = '&';
                                v += 5;
                        } else
                                *o++ = *v++;
                *o = 0;
                free(*ret);
                *ret = s;
                return 0;
        }
        return 0;
}

/* An untrusted time="": anything that is not a plain non-negative number is 0. */
static double attr_time(const xmlChar **attrs, int n, bool *found) {
        _cleanup_free_ char *s = NULL;
        if (attr_get(attrs, n, "time", &s) < 0 || !s) {
                *found = false;
                return 0;
        }
        *found = true;
        char *end;
        double t = strtod(s, &end);
        while (*end == ' ' || *end == '\t')
                end++;
        return end == s || *end ? 0 : nb_junit_sane_time(t);
}

static struct nb_junit_testcase *current_case(struct sax_state *st) {
        return &st->report->testcases[st->report->n_testcases - 1];
}

static struct nb_junit_result *current_rerun(struct sax_state *st) {
        struct nb_junit_testcase *tc = current_case(st);
        return &tc->reruns[tc->n_reruns - 1];
}

static int start_suite(struct sax_state *st, enum kind parent, const xmlChar **attrs, int n) {
        struct nb_junit_report *rep = st->report;
        int r;
        if (!rep->name && (r = attr_get(attrs, n, "name", &rep->name)) < 0)
                return r;
        if (!rep->timestamp && (r = attr_get(attrs, n, "timestamp", &rep->timestamp)) < 0)
                return r;
        /* A nested suite's time is already in its parent's. */
        if (parent != K_SUITE) {
                bool found;
                double t = attr_time(attrs, n, &found);
                rep->time = nb_junit_sane_time(rep->time + t);
                st->saw_suite_time |= found;
        }
        return 0;
}

static int start_case(struct sax_state *st, const xmlChar **attrs, int n) {
        struct nb_junit_report *rep = st->report;
        if (rep->n_testcases >= NB_JUNIT_MAX_TESTCASES)
                return -E2BIG;
        if (NB_RESERVE(rep->testcases, st->cap_testcases, rep->n_testcases, 1, 64) < 0)
                return -ENOMEM;
        struct nb_junit_testcase *tc = &rep->testcases[rep->n_testcases++];
        *tc = (struct nb_junit_testcase) {};
        bool found;
        tc->time = attr_time(attrs, n, &found);
        int r = attr_get(attrs, n, "classname", &tc->classname);
        if (r >= 0)
                r = attr_get(attrs, n, "name", &tc->name);
        if (r >= 0 && !tc->classname)
                r = nb_junit_strdup("", &tc->classname);
        if (r >= 0 && !tc->name)
                r = nb_junit_strdup("", &tc->name);
        return r;
}

/* A <skipped> followed by a <failure> leaves the failure: the outcome and its
 * attributes are replaced, the captured output stays. */
static int start_result(struct nb_junit_result *res, enum nb_junit_outcome o, const xmlChar **attrs, int n) {
        free(res->type);
        free(res->message);
        free(res->text);
        res->type = res->message = res->text = NULL;
        res->outcome = o;
        int r = attr_get(attrs, n, "type", &res->type);
        return r < 0 ? r : attr_get(attrs, n, "message", &res->message);
}

static int start_rerun(struct sax_state *st, enum nb_junit_outcome o, const xmlChar **attrs, int n) {
        struct nb_junit_testcase *tc = current_case(st);
        /* Each rerun costs at least its "<rerunError/>" in the document, so the count
         * is bounded by its size; grow one at a time, reruns are few. */
        struct nb_junit_result *rr = reallocarray(tc->reruns, tc->n_reruns + 1, sizeof(*rr));
        if (!rr)
                return -ENOMEM;
        tc->reruns = rr;
        rr[tc->n_reruns] = (struct nb_junit_result) {};
        return start_result(&rr[tc->n_reruns++], o, attrs, n);
}

static bool is(const xmlChar *name, const char *what) {
        return xmlStrEqual(name, BAD_CAST what);
}

/* Decides what a new element is from its parent and its name. Needs the current
 * testcase's state to tell a first failure from a further one. */
static enum kind classify(struct sax_state *st, enum kind parent, const xmlChar *name) {
        switch (parent) {
        case K_SUITES:
                return is(name, "testsuite") ? K_SUITE : is(name, "testsuites") ? K_SUITES : K_OTHER;
        case K_SUITE:
                return is(name, "testsuite") ? K_SUITE : is(name, "testcase") ? K_CASE : K_OTHER;
        case K_CASE: {
                enum nb_junit_outcome o = current_case(st)->result.outcome;
                bool decided = o == NB_JUNIT_FAILED || o == NB_JUNIT_ERROR;
                if (is(name, "failure") || is(name, "error"))
                        return decided ? K_EXTRA : K_RESULT;
                if (is(name, "skipped"))
                        return o == NB_JUNIT_PASSED ? K_RESULT : K_OTHER;
                if (is(name, "system-out"))
                        return K_OUT;
                if (is(name, "system-err"))
                        return K_ERR;
                if (is(name, "flakyFailure") || is(name, "flakyError") || is(name, "rerunFailure") ||
                    is(name, "rerunError"))
                        return K_RERUN;
                return K_OTHER;
        }
        case K_RERUN:
                return is(name, "stackTrace") ? K_RERUN_TRACE
                       : is(name, "system-out") ? K_RERUN_OUT
                       : is(name, "system-err") ? K_RERUN_ERR
                                                : K_OTHER;
        default:
                return K_OTHER;
        }
}

static bool captures(enum kind k) {
        return k == K_RESULT || k == K_EXTRA || k == K_OUT || k == K_ERR || k == K_RERUN_TRACE ||
               k == K_RERUN_OUT || k == K_RERUN_ERR;
}

static enum nb_junit_outcome outcome_of(const xmlChar *name) {
        if (is(name, "skipped"))
                return NB_JUNIT_SKIPPED;
        /* failure, flakyFailure, rerunFailure */
        return xmlStrstr(name, BAD_CAST "ailure") ? NB_JUNIT_FAILED : NB_JUNIT_ERROR;
}

static void on_start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                     int n_ns, const xmlChar **ns, int n_attrs, int n_defaulted, const xmlChar **attrs) {
        xmlParserCtxtPtr ctxt = ctx;
        struct sax_state *st = ctxt->_private;
        if (st->r < 0)
                return;
        if (st->depth >= NB_JUNIT_MAX_DEPTH)
                return refuse(ctxt, st, "elements nested deeper than %d", NB_JUNIT_MAX_DEPTH);
        /* JUnit has no namespace: <x:failure> is someone else's element. */
        enum kind parent = st->depth ? st->kinds[st->depth - 1] : K_OTHER, k = K_OTHER;
        if (st->depth == 0) {
                if (!uri)
                        k = is(localname, "testsuites") ? K_SUITES : is(localname, "testsuite") ? K_SUITE : K_OTHER;
                if (k == K_OTHER)
                        return refuse(ctxt, st, "the root element is not <testsuites> or <testsuite>");
        } else if (!uri)
                k = classify(st, parent, localname);
        if (st->case_depth && ++st->case_elements > NB_JUNIT_MAX_CASE_ELEMENTS)
                return refuse(ctxt, st, "a testcase with more than %u elements", NB_JUNIT_MAX_CASE_ELEMENTS);
        st->kinds[st->depth++] = k;
        if (k == K_CASE) {
                st->case_depth = st->depth;
                st->case_elements = 0;
        }
        /* A new testcase or run: no field is being appended to any more. */
        if (k == K_CASE || k == K_RESULT || k == K_RERUN)
                memset(st->app, 0, sizeof(st->app));
        if (captures(k))
                st->text.len = 0;

        int r = 0;
        switch (k) {
        case K_SUITE:
                r = start_suite(st, parent, attrs, n_attrs);
                break;
        case K_CASE:
                r = start_case(st, attrs, n_attrs);
                break;
        case K_RESULT:
                r = start_result(&current_case(st)->result, outcome_of(localname), attrs, n_attrs);
                break;
        case K_EXTRA:
                r = attr_get(attrs, n_attrs, "message", &st->extra_message);
                break;
        case K_RERUN:
                r = start_rerun(st, outcome_of(localname), attrs, n_attrs);
                break;
        default:
                break;
        }
        if (r == -E2BIG)
                refuse(ctxt, st, "more than %u testcases", NB_JUNIT_MAX_TESTCASES);
        else if (r < 0)
                stop(ctxt, st, r);
}

/* The captured text, NULL when there was none. */
static int take_text(struct sax_state *st, char **ret) {
        *ret = NULL;
        if (st->text.len == 0)
                return 0;
        char *s = strndup(st->text.data, st->text.len);
        if (!s)
                return -ENOMEM;
        st->text.len = 0;
        *ret = s;
        return 0;
}

/* *dst = *dst + sep + add for the field st->app[k] tracks, in time linear in what
 * is added: the length and allocation are remembered while *dst is the string last
 * appended to (anything else is measured once). Takes add. */
static int append(struct sax_state *st, enum kind k, char **dst, const char *sep, char *add) {
        _cleanup_free_ char *owned = add;
        if (!add)
                return 0;
        struct appender *a = &st->app[k];
        if (!*dst) {
                *a = (struct appender) { .dst = dst, .str = TAKE_PTR(owned), .len = strlen(add) };
                a->cap = a->len + 1;
                *dst = a->str;
                return 0;
        }
        if (a->dst != dst || a->str != *dst) {
                *a = (struct appender) { .dst = dst, .str = *dst, .len = strlen(*dst) };
                a->cap = a->len + 1;
        }
        /* Lengths are bounded by the document (NB_JUNIT_MAX_SIZE): no overflow. */
        size_t n_sep = strlen(sep), n_add = strlen(add);
        if (NB_RESERVE(a->str, a->cap, a->len, n_sep + n_add + 1, 64) < 0)
                return -ENOMEM;
        *dst = a->str;
        memcpy(a->str + a->len, sep, n_sep);
        memcpy(a->str + a->len + n_sep, add, n_add + 1);
        a->len += n_sep + n_add;
        return 0;
}

static int end_extra(struct sax_state *st, const xmlChar *name, char *text) {
        struct nb_junit_result *res = &current_case(st)->result;
        _cleanup_free_ char *message = TAKE_PTR(st->extra_message);
        char *s = NULL;
        if (asprintf(&s, "%s: %s\n%s", (const char *) name, message ? message : "", text ? text : "") < 0)
                return -ENOMEM;
        free(text);
        return append(st, K_EXTRA, &res->text, "\n\n", s);
}

static void on_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri) {
        xmlParserCtxtPtr ctxt = ctx;
        struct sax_state *st = ctxt->_private;
        if (st->r < 0 || st->depth == 0)
                return;
        enum kind k = st->kinds[--st->depth];
        if (st->depth < st->case_depth)
                st->case_depth = 0;
        if (!captures(k))
                return;
        char *text;
        int r = take_text(st, &text);
        if (r < 0)
                return stop(ctxt, st, r);
        switch (k) {
        case K_RESULT:
                free(current_case(st)->result.text);
                current_case(st)->result.text = text;
                break;
        case K_EXTRA:
                r = end_extra(st, localname, text);
                break;
        case K_OUT:
                r = append(st, K_OUT, &current_case(st)->result.system_out, "", text);
                break;
        case K_ERR:
                r = append(st, K_ERR, &current_case(st)->result.system_err, "", text);
                break;
        case K_RERUN_TRACE:
                r = append(st, K_RERUN_TRACE, &current_rerun(st)->text, "\n", text);
                break;
        case K_RERUN_OUT:
                r = append(st, K_RERUN_OUT, &current_rerun(st)->system_out, "", text);
                break;
        case K_RERUN_ERR:
                r = append(st, K_RERUN_ERR, &current_rerun(st)->system_err, "", text);
                break;
        default:
                free(text);
                break;
        }
        if (r < 0)
                stop(ctxt, st, r);
}

static void on_characters(void *ctx, const xmlChar *ch, int len) {
        xmlParserCtxtPtr ctxt = ctx;
        struct sax_state *st = ctxt->_private;
        if (st->r < 0 || st->depth == 0 || !captures(st->kinds[st->depth - 1]) || len <= 0)
                return;
        struct text_buf *b = &st->text;
        if (NB_RESERVE(b->data, b->cap, b->len, (size_t) len, 256) < 0)
                return stop(ctxt, st, -ENOMEM);
        memcpy(b->data + b->len, ch, (size_t) len);
        b->len += (size_t) len;
}

/* Called with the DOCTYPE's name, before its internal subset is parsed: stopping
 * here means no entity (XXE, billion laughs) is ever declared. pytest never writes a
 * DOCTYPE. */
static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id) {
        refuse(ctx, ((xmlParserCtxtPtr) ctx)->_private, "has a DOCTYPE; DTDs and entities are refused");
}

/* Unreachable after on_doctype; here so that nothing is ever declared or resolved
 * should a libxml2 version call them some other way. */
static void on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content) {
        on_doctype(ctx, name, public_id, system_id);
}

static xmlParserInputPtr on_resolve_entity(void *ctx, const xmlChar *public_id, const xmlChar *system_id) {
        on_doctype(ctx, NULL, public_id, system_id);
        return NULL;
}

static xmlEntityPtr on_get_entity(void *ctx, const xmlChar *name) {
        /* Only the five predefined ones exist (the parser resolves those itself). */
        return xmlGetPredefinedEntity(name);
}

static void parser_ctxt_freep(xmlParserCtxtPtr *c) {
        if (*c) {
                if ((*c)->myDoc)
                        xmlFreeDoc((*c)->myDoc);
                xmlFreeParserCtxt(*c);
        }
}

/* libxml2's last error as "junit.xml:LINE: message"; its message may quote element
 * names from the document, so control characters are blanked before a terminal sees
 * them. */
static int libxml_error(xmlParserCtxtPtr ctxt, struct nb_error *err) {
        NB_XML_ERROR *e = xmlCtxtGetLastError(ctxt);
        _cleanup_free_ char *msg = strdup(e && e->message ? e->message : "not well-formed");
        if (!msg)
                return nb_error_set(err, ENOMEM, "junit.xml");
        size_t n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                msg[--n] = 0;
        for (char *p = msg; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        return nb_error_setx(err, EBADMSG, "junit.xml:%d: %s", e ? e->line : 0, msg);
}

int nb_junit_parse(const char *data, size_t len, struct nb_junit_report **ret, struct nb_error *err) {
        if (len > NB_JUNIT_MAX_SIZE)
                return nb_error_setx(err, EFBIG, "junit.xml: %zu bytes, more than the %u allowed", len,
                                     NB_JUNIT_MAX_SIZE);
        if (!data || len == 0)
                return nb_error_setx(err, EBADMSG, "junit.xml: empty");
        nb_junit_libxml_setup();

        _cleanup_(nb_junit_report_freep) struct nb_junit_report *rep = calloc(1, sizeof(*rep));
        if (!rep)
                return nb_error_set(err, ENOMEM, "junit.xml");
        _cleanup_(parser_ctxt_freep) xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(data, (int) len);
        if (!ctxt)
                return nb_error_set(err, ENOMEM, "junit.xml");
        /* Not passed, on purpose: XML_PARSE_NOENT (substitute entities), DTDLOAD,
         * DTDATTR, DTDVALID (read DTDs), HUGE (lift libxml2's hard limits).
         * IGNORE_ENC: the document is UTF-8 or UTF-16 by its bytes, never iconv'd
         * from whatever encoding="" it claims. */
        xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_IGNORE_ENC);
        /* xmlCtxtUseOptions() already derives these from the options; said again
         * because attr_get() depends on entities not being substituted, whatever
         * libxml2's process-wide defaults (xmlSubstituteEntitiesDefault) say. */
        ctxt->replaceEntities = 0;
        ctxt->loadsubset = 0;
        ctxt->validate = 0;
        /* Our callbacks only: no tree is built, no DTD stored, no entity known. */
        memset(ctxt->sax, 0, sizeof(*ctxt->sax));
        ctxt->sax->initialized = XML_SAX2_MAGIC;
        ctxt->sax->startElementNs = on_start;
        ctxt->sax->endElementNs = on_end;
        ctxt->sax->characters = on_characters;
        ctxt->sax->cdataBlock = on_characters;
        ctxt->sax->ignorableWhitespace = on_characters;
        ctxt->sax->internalSubset = on_doctype;
        ctxt->sax->externalSubset = on_doctype;
        ctxt->sax->entityDecl = on_entity_decl;
        ctxt->sax->resolveEntity = on_resolve_entity;
        ctxt->sax->getEntity = on_get_entity;
        ctxt->sax->getParameterEntity = on_get_entity;
        ctxt->sax->serror = nb_junit_silent_structured;
        ctxt->userData = ctxt;

        struct sax_state st = { .report = rep, .err = err };
        ctxt->_private = &st;
        xmlParseDocument(ctxt);
        free(st.text.data);
        free(st.extra_message);

        if (st.r < 0)
                return st.described ? st.r : nb_error_set(err, -st.r, "junit.xml");
        if (!ctxt->wellFormed)
                return libxml_error(ctxt, err);
        if (!rep->name && nb_junit_strdup("", &rep->name) < 0)
                return nb_error_set(err, ENOMEM, "junit.xml");
        if (!st.saw_suite_time)
                for (size_t i = 0; i < rep->n_testcases; i++)
                        rep->time = nb_junit_sane_time(rep->time + rep->testcases[i].time);
        nb_junit_report_recount(rep);
        *ret = TAKE_PTR(rep);
        return 0;
}
