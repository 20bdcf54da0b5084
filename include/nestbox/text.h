/* SPDX-License-Identifier: MIT */
/* Small text helpers: parsing sizes, quoting untrusted text for one-line messages,
 * checking relative paths taken from untrusted input. They touch no file system. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Parses "123", "64k", "512M", "2G" (powers of 1024) into bytes. */
int nb_parse_size(const char *s, uint64_t *ret);

/* s in double quotes, with quotes, backslashes and control bytes escaped so that a hostile name
 * cannot break a one-line message. NULL when out of memory. */
char *nb_quote(const char *s);

/* Checks a path or glob taken from untrusted input: relative, no empty, "." or ".."
 * component (the whole path "." is allowed when allow_dot). Returns NULL when fine,
 * else a static description of the problem. */
const char *nb_check_relative_path(const char *p, bool allow_dot);

/* Whether path (relative or absolute) has a ".." component; "..data" is a name. */
bool nb_path_has_dotdot(const char *path);
