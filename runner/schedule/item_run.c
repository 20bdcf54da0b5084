/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/attempts.h"
#include "nestbox/cleanup.h"
#include "python/venv.h"
#include "schedule/item_run.h"

struct child {
        int fd;
        struct nb_remote *remote;
};

/* The remote cache's fault (nb_remote_fault's line, after which it is off) is told
 * apart: each item's process has its own copy of the remote, and the run as a whole
 * says it once and stops asking. */
static void send_warning(const char *message, void *userdata) {
        struct child *c = userdata;
        struct nb_remote_stats st = { 0 };
        if (c->remote)
                nb_remote_get_stats(c->remote, &st);
        bool fault = st.errors > 0 && strncmp(message, "remote cache ", 13) == 0;
        (void) nb_frame_send(c->fd, fault ? NB_FRAME_REMOTE_OFF : NB_FRAME_WARNING, message, strlen(message));
}

static void send_venv_built(const char *digest, double seconds, void *userdata) {
        char line[NB_DIGEST_HEX_LEN + 32];
        int n = snprintf(line, sizeof(line), "%s %.3f", digest, seconds);
        if (n > 0 && (size_t) n < sizeof(line))
                (void) nb_frame_send(((struct child *) userdata)->fd, NB_FRAME_VENV_BUILT, line, (size_t) n);
}

static int send_json(int fd, char type, json_t *j) {
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        return text ? nb_frame_send(fd, type, text, strlen(text)) : -ENOMEM;
}

static int send_result(int fd, const struct nb_result *res, struct nb_error *err) {
        json_auto_t *rec = nb_result_to_json(res, NB_RESULT_JSON_ARTIFACT | NB_RESULT_JSON_CACHED);
        if (!rec || json_object_set_new(rec, "interrupted", json_integer(res->interrupted)) < 0)
                return nb_error_set(err, ENOMEM, "result");
        int r = send_json(fd, NB_FRAME_RESULT, rec);
        if (r < 0)
                return r;
        /* The artifact always travels, packed (no bigger than what the cache holds):
         * the parent reading it back from the cache instead could find it gone, taken
         * by a `cache gc` running beside us once this process had stored it. */
        _cleanup_free_ char *blob = NULL;
        size_t len = 0;
        if (res->stored_blob)
                return nb_frame_send(fd, NB_FRAME_ARTIFACT, res->stored_blob, res->stored_blob_len);
        if (res->artifact_blob)
                return nb_frame_send(fd, NB_FRAME_ARTIFACT, res->artifact_blob, res->artifact_blob_len);
        if ((r = nb_artifact_pack(&res->artifact, &blob, &len, err)) < 0)
                return r;
        return nb_frame_send(fd, NB_FRAME_ARTIFACT, blob, len);
}

static void send_error(int fd, const struct nb_error *err) {
        json_auto_t *j = json_pack("{s:s, s:i, s:i}", "message", nb_error_message(err), "code", err->code, "class",
                                   (int) err->klass);
        (void) send_json(fd, NB_FRAME_ERROR, j);
}

int nb_item_run(struct nb_work_item *it, struct nb_store *s, const struct nb_cache_modes *m, int fd) {
        struct child c = { fd, s->remote };
        s->warn = send_warning;
        s->userdata = &c;
        nb_venv_on_built(send_venv_built, &c);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_result res;
        int r = nb_action_execute_attempts(it->action, it->attempts, s, m, &res, &err);
        if (r == 0) {
                r = send_result(fd, &res, &err);
                nb_result_done(&res);
        }
        if (r < 0 && r != -EPIPE)
                send_error(fd, &err);
        if (s->remote) {
                nb_remote_finish(s->remote);
                struct nb_remote_stats st;
                nb_remote_get_stats(s->remote, &st);
                (void) nb_frame_send(fd, NB_FRAME_REMOTE, &st, sizeof(st));
                nb_remote_report(s->remote, send_warning, &c);
        }
        return r == -EPIPE ? 3 : 0;
}

void nb_item_outcome_frame(struct nb_item_outcome *o, const struct nb_frame *f) {
        switch (f->type) {
        case NB_FRAME_RESULT:
                json_decref(o->record);
                o->record = json_loadb(f->data, f->len, 0, NULL);
                break;
        case NB_FRAME_ARTIFACT:
                free(o->blob);
                o->blob = malloc(f->len ? f->len : 1);
                if (o->blob)
                        memcpy(o->blob, f->data, f->len);
                o->blob_len = f->len;
                break;
        case NB_FRAME_ERROR: {
                json_auto_t *j = json_loadb(f->data, f->len, 0, NULL);
                const char *msg = json_string_value(json_object_get(j, "message"));
                nb_error_clear(&o->err);
                o->err.code = (int) json_integer_value(json_object_get(j, "code"));
                o->err.klass = (enum nb_error_class) json_integer_value(json_object_get(j, "class"));
                o->err.msg = strdup(msg ? msg : "the item's process sent no message");
                o->failed = true;
                break;
        }
        case NB_FRAME_REMOTE:
                if (f->len == sizeof(o->remote)) {
                        memcpy(&o->remote, f->data, sizeof(o->remote));
                        o->has_remote = true;
                }
                break;
        }
}

int nb_item_outcome_result(struct nb_item_outcome *o, struct nb_store *s, struct nb_result *ret, struct nb_error *err) {
        memset(ret, 0, sizeof(*ret));
        if (!o->record)
                return -ENOENT;
        const char *artifact = json_string_value(json_object_get(o->record, "artifact"));
        int r;
        if (!o->blob && artifact && (r = nb_cas_get(s, artifact, &o->blob, &o->blob_len, err)) < 0)
                return nb_error_wrap(err, r, "result of \"%s\"",
                                     json_string_value(json_object_get(o->record, "target")));
        if (!o->blob)
                return nb_error_set(err, EBADMSG, "an item's result came without its artifact");
        if ((r = nb_result_from_record(o->record, &o->blob, o->blob_len, ret, err)) < 0)
                return r == -ENOMEM ? r : nb_error_set(err, -r, "an item's result");
        ret->interrupted = (int) json_integer_value(json_object_get(o->record, "interrupted"));
        return 0;
}

void nb_item_outcome_done(struct nb_item_outcome *o) {
        json_decref(o->record);
        free(o->blob);
        nb_error_clear(&o->err);
        memset(o, 0, sizeof(*o));
}
