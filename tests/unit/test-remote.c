/* SPDX-License-Identifier: MIT */
/* The remote cache's client without a cache server: the ActionResult encoding round
 * trip and its refusals, the URL a request goes to, the credential header's checks,
 * the retry decisions and their backoff, and what goes over the wire (headers,
 * netrc, retries) against a fake HTTP server on a loopback socket in a thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cache/remote-internal.h"
#include "nestbox/cleanup.h"
#include "remote.pb-c.h"
#include "test.h"

static struct nb_remote_blob blob(const char *path, const char *data) {
        struct nb_remote_blob b = { .path = path, .data = data, .len = strlen(data) };
        nb_sha256_hex(data, b.len, b.digest);
        return b;
}

TEST(action_result_round_trip) {
        struct nb_remote_blob files[] = { blob(NB_REMOTE_ARTIFACT_PATH, "the artifact"), blob("junit.xml", "<x/>"),
                                          blob("log", "the log\n") };
        struct nb_remote_blob empty = blob(NULL, "");
        _cleanup_free_ uint8_t *ac = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_remote_ac_encode(files, 3, 1, &files[2], &empty, &ac, &len), 0);
        CHECK(len > 0);
        char digest[NB_DIGEST_HEX_LEN + 1] = "";
        uint64_t size = 0;
        CHECK_EQ_INT(nb_remote_ac_artifact(ac, len, digest, &size), 0);
        CHECK_EQ_STR(digest, files[0].digest);
        CHECK_EQ_INT(size, strlen("the artifact"));

        /* Every field as REAPI tools read it. */
        Build__Bazel__Remote__Execution__V2__ActionResult *ar =
                build__bazel__remote__execution__v2__action_result__unpack(NULL, len, ac);
        CHECK(ar != NULL);
        if (!ar)
                return;
        CHECK_EQ_INT(ar->exit_code, 1);
        CHECK_EQ_INT(ar->n_output_files, 3);
        for (size_t i = 0; i < ar->n_output_files && i < 3; i++) {
                CHECK_EQ_STR(ar->output_files[i]->path, files[i].path);
                CHECK_EQ_STR(ar->output_files[i]->digest->hash, files[i].digest);
                CHECK_EQ_INT(ar->output_files[i]->digest->size_bytes, files[i].len);
        }
        CHECK(ar->stdout_digest && strcmp(ar->stdout_digest->hash, files[2].digest) == 0);
        CHECK(ar->stderr_digest && strcmp(ar->stderr_digest->hash, empty.digest) == 0 &&
              ar->stderr_digest->size_bytes == 0);
        build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
}

static int artifact_of(const struct nb_remote_blob *files, size_t n) {
        _cleanup_free_ uint8_t *ac = NULL;
        size_t len = 0;
        if (nb_remote_ac_encode(files, n, 0, NULL, NULL, &ac, &len) < 0)
                return -ENOMEM;
        char digest[NB_DIGEST_HEX_LEN + 1];
        uint64_t size;
        return nb_remote_ac_artifact(ac, len, digest, &size);
}

TEST(action_result_refusals) {
        /* No artifact among the outputs, or one whose digest is not a SHA-256. */
        struct nb_remote_blob only_log = blob("log", "x");
        CHECK_EQ_INT(artifact_of(&only_log, 1), -EBADMSG);
        struct nb_remote_blob bad = blob(NB_REMOTE_ARTIFACT_PATH, "x");
        strcpy(bad.digest, "not-a-digest");
        CHECK_EQ_INT(artifact_of(&bad, 1), -EBADMSG);
        struct nb_remote_blob upper = blob(NB_REMOTE_ARTIFACT_PATH, "x");
        for (char *p = upper.digest; *p; p++)
                *p = *p >= 'a' && *p <= 'f' ? (char) (*p - 'a' + 'A') : *p;
        CHECK_EQ_INT(artifact_of(&upper, 1), -EBADMSG);
        /* A size beyond any blob nestbox would fetch. */
        struct nb_remote_blob huge = blob(NB_REMOTE_ARTIFACT_PATH, "x");
        huge.len = (size_t) NB_REMOTE_BLOB_MAX + 1;
        CHECK_EQ_INT(artifact_of(&huge, 1), -EBADMSG);
        /* Not protobuf at all, truncated, oversized. */
        char digest[NB_DIGEST_HEX_LEN + 1];
        uint64_t size;
        const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        CHECK_EQ_INT(nb_remote_ac_artifact(junk, sizeof(junk), digest, &size), -EBADMSG);
        struct nb_remote_blob art = blob(NB_REMOTE_ARTIFACT_PATH, "y");
        _cleanup_free_ uint8_t *ac = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_remote_ac_encode(&art, 1, 0, NULL, NULL, &ac, &len), 0);
        CHECK_EQ_INT(nb_remote_ac_artifact(ac, len - 1, digest, &size), -EBADMSG);
        CHECK_EQ_INT(nb_remote_ac_artifact(ac, NB_REMOTE_AC_MAX + 1, digest, &size), -EBADMSG);
        /* The artifact found after another output. */
        struct nb_remote_blob two[] = { blob("junit.xml", "j"), blob(NB_REMOTE_ARTIFACT_PATH, "z") };
        CHECK_EQ_INT(artifact_of(two, 2), 0);
}

static struct nb_http *http_for(const char *url, bool send_header, struct nb_error *err) {
        struct nb_remote_options o = { .url = url, .send_header = send_header, .timeout_sec = 5 };
        struct nb_http *h = NULL;
        return nb_http_new(&o, &h, err) < 0 ? NULL : h;
}

TEST(urls) {
        const struct { const char *base, *path, *want; } cases[] = {
                { "http://127.0.0.1:8080", "ac/ab", "http://127.0.0.1:8080/ac/ab" },
                { "http://127.0.0.1:8080/", "cas/cd", "http://127.0.0.1:8080/cas/cd" },
                { "https://cache.example/team/x///", "ac/ef", "https://cache.example/team/x/ac/ef" },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(cases); i++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                struct nb_http *h = http_for(cases[i].base, false, &err);
                CHECK(h != NULL);
                if (!h)
                        continue;
                _cleanup_free_ char *url = nb_http_url(h, cases[i].path);
                CHECK_EQ_STR(url, cases[i].want);
                nb_http_free(h);
        }
        /* What nb_remote_new refuses: a usage error that never repeats a credential. */
        const char *bad[] = { "ftp://h/x", "http://user:pw@h/x", "http://h/x?token=pw", "http://h/x#pw", "h:80" };
        for (size_t i = 0; i < NB_ELEMENTSOF(bad); i++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                struct nb_remote_options o = { .url = bad[i] };
                struct nb_remote *r = NULL;
                CHECK_EQ_INT(nb_remote_new(&o, &r, &err), -EINVAL);
                CHECK(r == NULL);
                CHECK(err.klass == NB_ERROR_INPUT);
                CHECK(!strstr(nb_error_message(&err), "pw"));
        }
}

TEST(credential_header) {
        const char *good[] = { "Authorization: Bearer abc", "X-Token:abc", "A: b: c" };
        for (size_t i = 0; i < NB_ELEMENTSOF(good); i++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                CHECK_EQ_INT(nb_http_check_header(good[i], &err), 0);
        }
        const char *bad[] = { "no colon secret", ": secret", "Two words: secret", "A: secret\r\nB: x", "A: secret\n",
                              "T\xc3\xa9: secret" };
        for (size_t i = 0; i < NB_ELEMENTSOF(bad); i++) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                CHECK_EQ_INT(nb_http_check_header(bad[i], &err), -EINVAL);
                CHECK(err.klass == NB_ERROR_INPUT);
                CHECK(strstr(nb_error_message(&err), "NESTBOX_REMOTE_HEADER") != NULL);
                CHECK(!strstr(nb_error_message(&err), "secret"));
        }
        /* Read from the environment only when the URL is the invoker's. */
        setenv("NESTBOX_REMOTE_HEADER", "broken secret", 1);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_http *h = http_for("http://127.0.0.1:1", true, &err);
        CHECK(h == NULL && err.klass == NB_ERROR_INPUT && !strstr(nb_error_message(&err), "secret"));
        nb_error_clear(&err);
        h = http_for("http://127.0.0.1:1", false, &err);
        CHECK(h != NULL);
        nb_http_free(h);
        unsetenv("NESTBOX_REMOTE_HEADER");
}

TEST(retry_decisions) {
        /* Transient: refused, reset, nothing answered, a 5xx; each retried twice at most. */
        const int transient[] = { CURLE_COULDNT_CONNECT, CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING };
        for (size_t i = 0; i < NB_ELEMENTSOF(transient); i++) {
                CHECK(nb_http_retry(transient[i], 0, 0));
                CHECK(nb_http_retry(transient[i], 0, 1));
                CHECK(!nb_http_retry(transient[i], 0, 2));
        }
        CHECK(nb_http_retry(CURLE_OK, 500, 0) && nb_http_retry(CURLE_OK, 503, 1) && !nb_http_retry(CURLE_OK, 502, 2));
        /* Answers, and faults that another try would only repeat (or wait out again). */
        const long final_status[] = { 200, 201, 204, 401, 403, 404, 412 };
        for (size_t i = 0; i < NB_ELEMENTSOF(final_status); i++)
                CHECK(!nb_http_retry(CURLE_OK, final_status[i], 0));
        const int final_code[] = { CURLE_OPERATION_TIMEDOUT, CURLE_PEER_FAILED_VERIFICATION, CURLE_COULDNT_RESOLVE_HOST,
                                   CURLE_ABORTED_BY_CALLBACK, CURLE_FILESIZE_EXCEEDED, CURLE_WRITE_ERROR };
        for (size_t i = 0; i < NB_ELEMENTSOF(final_code); i++)
                CHECK(!nb_http_retry(final_code[i], 0, 0));
        /* Exponential backoff: 50 ms, then 100 ms. */
        CHECK_EQ_INT(nb_http_backoff_ms(0), 50);
        CHECK_EQ_INT(nb_http_backoff_ms(1), 100);
}

/* ---- a fake server: answers each request with the next status of its script (404
 * when the script is done) and keeps every request's head for the test to read ---- */
struct fake {
        int listen_fd, port;
        const long *script;
        size_t n_script, served;
        char heads[8][2048];
        pthread_t thread;
};

static bool read_head(int fd, char *buf, size_t cap) {
        size_t len = 0;
        while (len + 1 < cap) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 5000) <= 0)
                        return false;
                ssize_t n = read(fd, buf + len, 1);
                if (n <= 0)
                        return false;
                buf[++len] = 0;
                if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0)
                        return true;
        }
        return false;
}

static void *fake_serve(void *userdata) {
        struct fake *f = userdata;
        while (f->served < NB_ELEMENTSOF(f->heads)) {
                struct pollfd p = { .fd = f->listen_fd, .events = POLLIN };
                if (poll(&p, 1, 5000) <= 0)
                        break;
                int c = accept(f->listen_fd, NULL, NULL);
                if (c < 0)
                        break;
                while (f->served < NB_ELEMENTSOF(f->heads) && read_head(c, f->heads[f->served], sizeof(f->heads[0]))) {
                        long status = f->served < f->n_script ? f->script[f->served] : 404;
                        f->served++;
                        char answer[128];
                        int n = snprintf(answer, sizeof(answer), "HTTP/1.1 %ld X\r\nContent-Length: 0\r\n\r\n", status);
                        if (write(c, answer, (size_t) n) != n)
                                break;
                }
                close(c);
        }
        return NULL;
}

static void fake_start(struct fake *f, const long *script, size_t n) {
        memset(f, 0, sizeof(*f));
        f->script = script;
        f->n_script = n;
        f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof(a);
        CHECK(bind(f->listen_fd, (struct sockaddr *) &a, sizeof(a)) == 0 && listen(f->listen_fd, 8) == 0 &&
              getsockname(f->listen_fd, (struct sockaddr *) &a, &alen) == 0);
        f->port = ntohs(a.sin_port);
        pthread_create(&f->thread, NULL, fake_serve, f);
}

static void fake_stop(struct fake *f) {
        shutdown(f->listen_fd, SHUT_RDWR);
        pthread_join(f->thread, NULL);
        close(f->listen_fd);
}

/* One GET of ac/<64 a> through a fresh client; the fake's script answers it. */
static int fake_get(struct fake *f, bool send_header, struct nb_error *err) {
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/base/", f->port);
        struct nb_http *h = http_for(url, send_header, err);
        struct nb_http_conn *c = NULL;
        if (!h || nb_http_conn_new(h, &c) < 0) {
                nb_http_free(h);
                return -ENOMEM;
        }
        char path[80] = "ac/";
        memset(path + 3, 'a', 64);
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        int r = nb_http_get(c, path, 1024, &body, &len, err);
        nb_http_conn_free(c);
        nb_http_free(h);
        return r;
}

TEST(wire_header_netrc_and_retries) {
        /* A 404 is a miss, asked once, at base/ac/<digest>; the header goes with it. */
        struct fake f;
        fake_start(&f, NULL, 0);
        setenv("NESTBOX_REMOTE_HEADER", "Authorization: Bearer tok3n", 1);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(fake_get(&f, true, &err), -ENOENT);
        fake_stop(&f);
        CHECK_EQ_INT(f.served, 1);
        CHECK(strncmp(f.heads[0], "GET /base/ac/aaaa", 17) == 0);
        CHECK(strstr(f.heads[0], "\r\nAuthorization: Bearer tok3n\r\n") != NULL);
        CHECK(strstr(f.heads[0], "User-Agent: nestbox/") != NULL);

        /* A workspace's URL: no header; a netrc entry for the host is used instead. */
        char netrc[] = "/tmp/nestbox-test-netrc.XXXXXX";
        int fd = mkstemp(netrc);
        CHECK(fd >= 0);
        const char entry[] = "machine 127.0.0.1 login alice password s3cret\n";
        CHECK(write(fd, entry, sizeof(entry) - 1) == (ssize_t) sizeof(entry) - 1);
        close(fd);
        setenv("NETRC", netrc, 1);
        fake_start(&f, NULL, 0);
        nb_error_clear(&err);
        CHECK_EQ_INT(fake_get(&f, false, &err), -ENOENT);
        fake_stop(&f);
        CHECK_EQ_INT(f.served, 1);
        CHECK(!strstr(f.heads[0], "Bearer"));
        CHECK(strstr(f.heads[0], "\r\nAuthorization: Basic YWxpY2U6czNjcmV0\r\n") != NULL); /* alice:s3cret */
        unlink(netrc);
        unsetenv("NETRC");
        unsetenv("NESTBOX_REMOTE_HEADER");

        /* 503, 503, 200: two retries, then the answer. */
        static const long flaky[] = { 503, 503, 200 };
        fake_start(&f, flaky, 3);
        nb_error_clear(&err);
        CHECK_EQ_INT(fake_get(&f, false, &err), 0);
        fake_stop(&f);
        CHECK_EQ_INT(f.served, 3);

        /* 500 every time: three tries, then a fault that names the status. */
        static const long down[] = { 500, 500, 500, 500, 500 };
        fake_start(&f, down, 5);
        nb_error_clear(&err);
        CHECK_EQ_INT(fake_get(&f, false, &err), -EIO);
        fake_stop(&f);
        CHECK_EQ_INT(f.served, 3);
        CHECK(strstr(nb_error_message(&err), "HTTP 500") != NULL);

        /* 401 is final: asked once. */
        static const long refused[] = { 401, 401 };
        fake_start(&f, refused, 2);
        nb_error_clear(&err);
        CHECK_EQ_INT(fake_get(&f, false, &err), -EIO);
        fake_stop(&f);
        CHECK_EQ_INT(f.served, 1);
}
