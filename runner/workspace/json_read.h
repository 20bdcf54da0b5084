/* SPDX-License-Identifier: MIT */
/* A strict reader of JSON documents that people and tools write (nestbox.json, action
 * files): it walks the document with the path it is at, so every message names the
 * file, the field and the problem, and it suggests the key a typo meant:
 *   nestbox.json: targets."p".timeout: expected a positive number
 *   a.json: .policy.polcy: unknown key "polcy" (did you mean "policy"?)
 * Every error it reports is NB_ERROR_INPUT, but running out of memory. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "nestbox/error.h"

struct nb_json_reader {
        const char *file;  /* the name messages use */
        const char *root;  /* for relative paths made absolute; may be NULL */
        bool dotted;       /* paths written ".a.b" (action files) rather than "a.b" */
        struct nb_error *err;
};

int nb_jr_oom(const struct nb_json_reader *r);
int nb_jr_fail(const struct nb_json_reader *r, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* "<path>: \"<value>\": <problem>" */
int nb_jr_bad_value(const struct nb_json_reader *r, const char *path, const char *value, const char *problem);
/* A required key absent from the object at path. */
int nb_jr_missing(const struct nb_json_reader *r, const char *path, const char *key);
/* Every key of obj must be in known (NULL-terminated); else a did-you-mean. */
int nb_jr_check_keys(const struct nb_json_reader *r, const char *path, json_t *obj, const char *const *known);

/* "parent.key" for fixed keys, "parent.\"name\"" for user-chosen names. NULL: ENOMEM. */
char *nb_jr_join(const struct nb_json_reader *r, const char *parent, const char *key, bool user_name);

/* Names of targets and resolves end up in messages, environment variables
 * (TEST_TARGET) and file names: a plain alphabet, 1 to 255 bytes. */
bool nb_valid_name(const char *s);
bool nb_valid_env_name(const char *s);

enum nb_strv_kind { NB_STRV_ANY, NB_STRV_GLOB, NB_STRV_ROOT, NB_STRV_ENV };
/* An array of strings, each checked as kind says; *ret is NULL-terminated. */
int nb_jr_strv(const struct nb_json_reader *r, const char *path, json_t *v, enum nb_strv_kind kind, char ***ret);

/* Bazel's timeout categories: short 60 s, moderate 300 s, long 900 s, eternal 3600 s.
 * -EINVAL for another name. */
int nb_timeout_category(const char *name, uint64_t *ret_ms);
/* Seconds (a positive number, at most a week) into milliseconds, rounded up; or a
 * category's name. */
int nb_jr_timeout(const struct nb_json_reader *r, const char *path, json_t *v, uint64_t *ret);
/* "512M" or a positive number of bytes. */
int nb_jr_memory(const struct nb_json_reader *r, const char *path, json_t *v, uint64_t *ret);
/* How often a failed run is tried in all: 1 to NB_MAX_ATTEMPTS. */
#define NB_MAX_ATTEMPTS 100u
int nb_jr_attempts(const struct nb_json_reader *r, const char *path, json_t *v, uint64_t *ret);
int nb_jr_pids(const struct nb_json_reader *r, const char *path, json_t *v, uint64_t *ret);
int nb_jr_bool(const struct nb_json_reader *r, const char *path, json_t *v, bool *ret);
