/* SPDX-License-Identifier: MIT */
/* libcurl for the remote cache: one easy handle per thread that uses it (the main
 * thread's lookups, the uploader's PUTs), each keeping its keep-alive connection
 * from request to request; one share handle per process holds DNS and TLS sessions.
 * Connections themselves are not shared: libcurl does not support sharing its
 * connection cache between concurrent threads. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/curl_dl.h"
#include "cache/remote-internal.h"
#include "nestbox/cleanup.h"

#define RETRIES 2              /* after the first try, for transient errors */
#define BACKOFF_MS 50          /* doubled each retry */
#define CONNECT_TIMEOUT_MAX 10 /* seconds; the request timeout when shorter */
#define LOW_SPEED_BYTES 1024   /* a transfer slower than this per second ... */
#define LOW_SPEED_TIME_MAX 10  /* ... for this long (or the timeout) has stalled */

struct nb_http {
        char *base; /* the URL, without a trailing "/" */
        char *ca_file;
        long timeout_ms;
        struct curl_slist *headers; /* NESTBOX_REMOTE_HEADER (if any), "Expect:" */
        CURLSH *share;
        pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
        atomic_bool aborted;
};

struct nb_http_conn {
        struct nb_http *h;
        CURL *curl;
        char errbuf[CURL_ERROR_SIZE];
};

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *userdata) {
        struct nb_http *h = userdata;
        pthread_mutex_lock(&h->locks[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *userdata) {
        struct nb_http *h = userdata;
        pthread_mutex_unlock(&h->locks[data]);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_status = CURLE_FAILED_INIT;

static void global_init(void) {
        global_status = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* "Name: value", one line: the value is a secret and appears in no message. */
int nb_http_check_header(const char *v, struct nb_error *err) {
        const char *colon = strchr(v, ':');
        if (!colon || colon == v || strpbrk(v, "\r\n"))
                return nb_error_input(err, EINVAL, "NESTBOX_REMOTE_HEADER: expected one line 'Name: value'");
        for (const char *p = v; p < colon; p++)
                if (*p <= ' ' || *p >= 127)
                        return nb_error_input(err, EINVAL, "NESTBOX_REMOTE_HEADER: expected one line 'Name: value'");
        return 0;
}

static int header_from_env(struct curl_slist **ret, struct nb_error *err) {
        const char *v = getenv("NESTBOX_REMOTE_HEADER");
        if (!v || !*v)
                return 0;
        int r = nb_http_check_header(v, err);
        if (r < 0)
                return r;
        if (!(*ret = curl_slist_append(NULL, v)))
                return nb_error_set(err, ENOMEM, "NESTBOX_REMOTE_HEADER");
        return 0;
}

void nb_http_free(struct nb_http *h) {
        if (!h)
                return;
        if (h->share)
                curl_share_cleanup(h->share);
        for (size_t i = 0; i < NB_ELEMENTSOF(h->locks); i++)
                pthread_mutex_destroy(&h->locks[i]);
        curl_slist_free_all(h->headers);
        free(h->base);
        free(h->ca_file);
        free(h);
}

int nb_http_new(const struct nb_remote_options *o, struct nb_http **ret, struct nb_error *err) {
        const char *why = NULL;
        if (nb_curl_load(&why) < 0)
                return nb_error_setx(err, ELIBACC, "remote cache: %s", why);
        pthread_once(&global_once, global_init);
        if (global_status != CURLE_OK)
                return nb_error_set(err, ENOMEM, "remote cache: libcurl: %s", curl_easy_strerror(global_status));
        struct nb_http *h = calloc(1, sizeof(*h));
        if (!h)
                return nb_error_set(err, ENOMEM, "remote cache");
        for (size_t i = 0; i < NB_ELEMENTSOF(h->locks); i++)
                pthread_mutex_init(&h->locks[i], NULL);
        size_t n = strlen(o->url);
        while (n > 0 && o->url[n - 1] == '/')
                n--;
        double t = o->timeout_sec > 0 ? o->timeout_sec : NB_REMOTE_TIMEOUT_DEFAULT;
        h->timeout_ms = (long) (t * 1000);
        int r = 0;
        if (!(h->base = strndup(o->url, n)) || (o->ca_file && !(h->ca_file = strdup(o->ca_file))) ||
            !(h->share = curl_share_init()))
                r = nb_error_set(err, ENOMEM, "remote cache");
        else if (o->send_header)
                r = header_from_env(&h->headers, err);
        /* No "Expect: 100-continue" round trip before a PUT body. */
        struct curl_slist *with = NULL;
        if (r == 0 && !(with = curl_slist_append(h->headers, "Expect:")))
                r = nb_error_set(err, ENOMEM, "remote cache");
        if (with)
                h->headers = with;
        if (r == 0) {
                curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
                curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
                curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
                curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
                curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        }
        if (r < 0) {
                nb_http_free(h);
                return r;
        }
        *ret = h;
        return 0;
}

void nb_http_abort(struct nb_http *h) {
        atomic_store(&h->aborted, true);
}

static int progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        struct nb_http *h = userdata;
        return atomic_load(&h->aborted) ? 1 : 0;
}

int nb_http_conn_new(struct nb_http *h, struct nb_http_conn **ret) {
        struct nb_http_conn *c = calloc(1, sizeof(*c));
        if (!c || !(c->curl = curl_easy_init())) {
                free(c);
                return -ENOMEM;
        }
        c->h = h;
        CURL *e = c->curl;
        long connect_ms = h->timeout_ms < CONNECT_TIMEOUT_MAX * 1000L ? h->timeout_ms : CONNECT_TIMEOUT_MAX * 1000L;
        long low_speed = h->timeout_ms / 1000 < LOW_SPEED_TIME_MAX ? h->timeout_ms / 1000 : LOW_SPEED_TIME_MAX;
        curl_easy_setopt(e, CURLOPT_SHARE, h->share);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long) LOW_SPEED_BYTES);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, low_speed > 0 ? low_speed : 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (h->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
        curl_easy_setopt(e, CURLOPT_NETRC, (long) CURL_NETRC_OPTIONAL);
        const char *netrc = getenv("NETRC");
        if (netrc && *netrc)
                curl_easy_setopt(e, CURLOPT_NETRC_FILE, netrc);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "nestbox/" NESTBOX_VERSION);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, h);
        *ret = c;
        return 0;
}

void nb_http_conn_free(struct nb_http_conn *c) {
        if (!c)
                return;
        curl_easy_cleanup(c->curl);
        free(c);
}

/* A body being received: capped, so a server that lies about sizes costs nothing. */
struct sink {
        char *buf;
        size_t len, cap, max;
        bool too_big;
};

static size_t sink_write(char *data, size_t size, size_t nmemb, void *userdata) {
        struct sink *s = userdata;
        size_t n = size * nmemb;
        if (n > s->max - s->len) {
                s->too_big = true;
                return 0;
        }
        if (s->len + n > s->cap) {
                size_t cap = s->cap ? s->cap : 16384;
                while (cap < s->len + n)
                        cap *= 2;
                if (cap > s->max)
                        cap = s->max;
                char *grown = realloc(s->buf, cap);
                if (!grown)
                        return 0;
                s->buf = grown;
                s->cap = cap;
        }
        memcpy(s->buf + s->len, data, n);
        s->len += n;
        return n;
}

static size_t discard(char *data, size_t size, size_t nmemb, void *userdata) {
        return size * nmemb;
}

struct source {
        const char *data;
        size_t len, off;
};

static size_t source_read(char *buf, size_t size, size_t nmemb, void *userdata) {
        struct source *s = userdata;
        size_t n = size * nmemb;
        if (n > s->len - s->off)
                n = s->len - s->off;
        memcpy(buf, s->data + s->off, n);
        s->off += n;
        return n;
}

static int curl_errno(CURLcode code) {
        switch (code) {
        case CURLE_OPERATION_TIMEDOUT: return ETIMEDOUT;
        case CURLE_COULDNT_CONNECT: return ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST: return EHOSTUNREACH;
        case CURLE_OUT_OF_MEMORY: return ENOMEM;
        case CURLE_ABORTED_BY_CALLBACK: return ECANCELED;
        case CURLE_FILESIZE_EXCEEDED: return EFBIG;
        default: return EIO;
        }
}

bool nb_http_retry(int curl_code, long status, int attempt) {
        CURLcode code = (CURLcode) curl_code;
        bool transient = code == CURLE_COULDNT_CONNECT || code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR ||
                         code == CURLE_GOT_NOTHING || (code == CURLE_OK && status >= 500);
        return transient && attempt < RETRIES;
}

long nb_http_backoff_ms(int attempt) {
        return (long) BACKOFF_MS << attempt;
}

static void backoff(int attempt) {
        long ms = nb_http_backoff_ms(attempt);
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

char *nb_http_url(const struct nb_http *h, const char *path) {
        char *url = NULL;
        return asprintf(&url, "%s/%s", h->base, path) < 0 ? NULL : url;
}

/* One request with bounded retries; *status gets the HTTP status of the last try. */
static int request(struct nb_http_conn *c, const char *method, const char *path, struct sink *sink,
                   const struct source *src, long *status, struct nb_error *err) {
        struct nb_http *h = c->h;
        CURL *e = c->curl;
        _cleanup_free_ char *url = nb_http_url(h, path);
        if (!url)
                return nb_error_set(err, ENOMEM, "remote cache");
        CURLcode code = CURLE_OK;
        for (int attempt = 0;; attempt++) {
                if (atomic_load(&h->aborted))
                        return nb_error_set(err, ECANCELED, "%s /%s", method, path);
                struct source body = src ? *src : (struct source) { 0 };
                if (sink) {
                        free(sink->buf);
                        *sink = (struct sink) { .max = sink->max };
                }
                curl_easy_setopt(e, CURLOPT_URL, url);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
                curl_easy_setopt(e, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
                curl_easy_setopt(e, CURLOPT_UPLOAD, src ? 1L : 0L);
                if (src) {
                        curl_easy_setopt(e, CURLOPT_READFUNCTION, source_read);
                        curl_easy_setopt(e, CURLOPT_READDATA, &body);
                        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t) src->len);
                } else {
                        curl_easy_setopt(e, CURLOPT_HTTPGET, strcmp(method, "HEAD") == 0 ? 0L : 1L);
                        if (strcmp(method, "HEAD") == 0)
                                curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
                }
                curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink ? sink_write : discard);
                curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
                curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) (sink ? sink->max : 0));
                c->errbuf[0] = 0;
                *status = 0;
                code = curl_easy_perform(e);
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
                if (code == CURLE_OK && *status < 500)
                        return 0;
                if (!nb_http_retry(code, *status, attempt))
                        break;
                backoff(attempt);
        }
        if (code == CURLE_OK)
                return nb_error_set(err, EIO, "%s /%s: HTTP %ld", method, path, *status);
        if (sink && sink->too_big)
                return nb_error_set(err, EFBIG, "%s /%s: more than %zu bytes", method, path, sink->max);
        return nb_error_set(err, curl_errno(code), "%s /%s: %s", method, path,
                            c->errbuf[0] ? c->errbuf : curl_easy_strerror(code));
}

int nb_http_get(struct nb_http_conn *c, const char *path, size_t max, char **ret, size_t *ret_len,
                struct nb_error *err) {
        struct sink sink = { .max = max };
        long status = 0;
        int r = request(c, "GET", path, &sink, NULL, &status, err);
        if (r == 0 && status == 404)
                r = -ENOENT;
        else if (r == 0 && status != 200)
                r = nb_error_set(err, EIO, "GET /%s: HTTP %ld", path, status);
        if (r < 0) {
                free(sink.buf);
                return r;
        }
        *ret = sink.buf ? sink.buf : malloc(1);
        *ret_len = sink.len;
        return *ret ? 0 : -ENOMEM;
}

int nb_http_head(struct nb_http_conn *c, const char *path, struct nb_error *err) {
        long status = 0;
        int r = request(c, "HEAD", path, NULL, NULL, &status, err);
        if (r < 0)
                return r;
        if (status == 404)
                return -ENOENT;
        return status == 200 ? 0 : nb_error_set(err, EIO, "HEAD /%s: HTTP %ld", path, status);
}

int nb_http_put(struct nb_http_conn *c, const char *path, const void *data, size_t len, struct nb_error *err) {
        struct source src = { .data = data, .len = len };
        long status = 0;
        int r = request(c, "PUT", path, NULL, &src, &status, err);
        if (r < 0)
                return r;
        return status == 200 || status == 201 || status == 204 ? 0
               : nb_error_set(err, EIO, "PUT /%s: HTTP %ld", path, status);
}
