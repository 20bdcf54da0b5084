/* SPDX-License-Identifier: MIT */
/* The last run's remote counters, kept in <cache>/last-remote.json so that `nestbox
 * cache stats` can show them after the run has gone:
 *
 *   {"schema": "nestbox.remote-stats/v1", "url": ..., "finished": <unix seconds>,
 *    "readonly": bool, "hits": n, "misses": n, "uploads": n, "bytes_down": n,
 *    "bytes_up": n, "errors": n}
 *
 * The URL never holds a credential (nb_remote_new refuses one in it). The file is
 * written atomically; a damaged one reads as absent. */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/remote-internal.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

#define STATS_FILE "last-remote.json"
#define STATS_SCHEMA "nestbox.remote-stats/v1"
#define STATS_MAX 4096

static const struct {
        const char *key;
        size_t offset;
} counters[] = {
        { "hits", offsetof(struct nb_remote_stats, hits) },
        { "misses", offsetof(struct nb_remote_stats, misses) },
        { "uploads", offsetof(struct nb_remote_stats, uploads) },
        { "bytes_down", offsetof(struct nb_remote_stats, bytes_down) },
        { "bytes_up", offsetof(struct nb_remote_stats, bytes_up) },
        { "errors", offsetof(struct nb_remote_stats, errors) },
};

static uint64_t *counter(struct nb_remote_stats *st, size_t i) {
        return (uint64_t *) ((char *) st + counters[i].offset);
}

void nb_remote_add_stats(struct nb_remote *r, const struct nb_remote_stats *add) {
        struct nb_remote_stats a = *add;
        for (size_t i = 0; r && i < NB_ELEMENTSOF(counters); i++)
                *counter(&r->stats, i) += *counter(&a, i);
}

int nb_remote_save_stats(struct nb_remote *r, struct nb_cache_dir *c, struct nb_error *err) {
        struct nb_remote_stats st = r->stats;
        json_auto_t *j = json_pack("{s:s, s:s, s:I, s:b}", "schema", STATS_SCHEMA, "url", r->url, "finished",
                                   (json_int_t) time(NULL), "readonly", r->readonly);
        for (size_t i = 0; j && i < NB_ELEMENTSOF(counters); i++)
                if (json_object_set_new(j, counters[i].key, json_integer((json_int_t) *counter(&st, i))) < 0)
                        return nb_error_set(err, ENOMEM, "remote cache statistics");
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
        _cleanup_free_ char *line = NULL;
        if (!text || asprintf(&line, "%s\n", text) < 0)
                return nb_error_set(err, ENOMEM, "remote cache statistics");
        int k = nb_write_file_atomic(c->fd, STATS_FILE, line, strlen(line), 0644);
        return k < 0 ? nb_error_set(err, -k, "cache %s/%s", c->path, STATS_FILE) : 0;
}

int nb_remote_load_stats(struct nb_cache_dir *c, struct nb_remote_last *ret) {
        memset(ret, 0, sizeof(*ret));
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int k = nb_read_file_beneath(c->fd, STATS_FILE, STATS_MAX, &data, &len);
        if (k < 0)
                return k == -ENOMEM ? k : -ENOENT;
        json_auto_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
        const char *schema = json_string_value(json_object_get(j, "schema"));
        const char *url = json_string_value(json_object_get(j, "url"));
        json_t *finished = json_object_get(j, "finished");
        if (!schema || strcmp(schema, STATS_SCHEMA) != 0 || !url || !json_is_integer(finished))
                return -ENOENT;
        for (size_t i = 0; i < NB_ELEMENTSOF(counters); i++) {
                json_t *v = json_object_get(j, counters[i].key);
                if (!json_is_integer(v) || json_integer_value(v) < 0)
                        return -ENOENT;
                *counter(&ret->stats, i) = (uint64_t) json_integer_value(v);
        }
        if (!(ret->url = strdup(url)))
                return -ENOMEM;
        ret->finished = (time_t) json_integer_value(finished);
        ret->readonly = json_is_true(json_object_get(j, "readonly"));
        return 0;
}
