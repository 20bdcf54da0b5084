/* SPDX-License-Identifier: MIT */
/* Small text helpers: parsing sizes, quoting untrusted text for one-line messages,
 * checking relative paths taken from untrusted input. They touch no file system. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses "123", "64k", "512M", "2G" (powers of 1024) into bytes. */
int nb_parse_size(const char *s, uint64_t *ret);

/* s with every control character escaped so that printing it cannot move the cursor,
 * recolour or rewrite a line of a terminal: C0 controls (CR, LF, ESC, ...) and DEL as
 * \xNN, C1 controls (U+0080..U+009F; U+009B is a CSI) as \u00NN, a byte that is not
 * valid UTF-8 as \xNN. With NB_ESCAPE_KEEP_NEWLINES, LF stays a line break; with
 * NB_ESCAPE_QUOTES, '"' and '\\' are escaped too. NULL when out of memory. */
enum { NB_ESCAPE_KEEP_NEWLINES = 1 << 0, NB_ESCAPE_QUOTES = 1 << 1 };
char *nb_escape(const char *s, unsigned flags);

/* nb_escape() of len bytes that may hold NULs (a log is bytes): each is "\x00", as
 * the other controls are, not the end of what is shown. */
char *nb_escape_bytes(const char *data, size_t len, unsigned flags);

/* s in double quotes, escaped as nb_escape(s, NB_ESCAPE_QUOTES) so that a hostile name
 * cannot break a one-line message. NULL when out of memory. */
char *nb_quote(const char *s);

/* Decodes one UTF-8 sequence at p (NUL-terminated, so reading stops at the end).
 * Returns its length, or 0 for a byte that starts no valid sequence (overlong forms,
 * surrogates and values above U+10FFFF included). */
size_t nb_utf8_decode(const unsigned char *p, uint32_t *cp);

/* Levenshtein distance from a (any length) to b (a name of our own, under 256 bytes;
 * SIZE_MAX when longer): only used to suggest the name a typo meant. */
size_t nb_edit_distance(const char *a, const char *b);

/* Checks a path or glob taken from untrusted input: relative, no empty, "." or ".."
 * component (the whole path "." is allowed when allow_dot). Returns NULL when fine,
 * else a static description of the problem. */
const char *nb_check_relative_path(const char *p, bool allow_dot);

/* Whether path (relative or absolute) has a ".." component; "..data" is a name. */
bool nb_path_has_dotdot(const char *path);
