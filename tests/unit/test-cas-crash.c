/* SPDX-License-Identifier: MIT */
/* kill -9 safety of the tmp + fsync + rename protocol: a child stores blobs and action
 * records as fast as it can; the parent SIGKILLs it at 30 random moments and after each
 * kill checks that `cache verify` is clean and that every entry reads back whole. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cas.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "test.h"

#define KILLS 30

static uint64_t next(uint64_t *s) {
        /* xorshift64*: reproducible from the printed seed. */
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * 2685821657736338717ull;
}

static void fill_bytes(uint64_t seed, char *buf, size_t len) {
        uint64_t s = seed | 1;
        for (size_t i = 0; i < len; i++)
                buf[i] = (char) (next(&s) >> 56);
}

static void action_digest(unsigned k, char out[NB_DIGEST_HEX_LEN + 1]) {
        char key[32];
        int n = snprintf(key, sizeof(key), "action %u", k);
        nb_sha256_hex(key, (size_t) n, out);
}

/* A record is "v<version>\n" then bytes derived from the action and version, so the
 * parent can tell a whole record of any version from a torn one. */
static char *make_record(unsigned k, uint32_t version, size_t *len) {
        char head[32];
        int h = snprintf(head, sizeof(head), "v%u\n", version);
        size_t body = version % 70000;
        char *r = malloc((size_t) h + body + 1);
        if (!r)
                return NULL;
        memcpy(r, head, (size_t) h);
        fill_bytes(((uint64_t) k << 32) | version, r + h, body);
        *len = (size_t) h + body;
        return r;
}

static _Noreturn void writer(const char *root, uint64_t seed) {
        struct nb_cache_dir dir;
        if (nb_cache_dir_open(&dir, root, NULL) < 0)
                _exit(2);
        struct nb_store s = { &dir, NULL, NULL };
        size_t cap = 256 * 1024;
        char *buf = malloc(cap);
        if (!buf)
                _exit(2);
        for (;;) {
                size_t len = next(&seed) % cap;
                fill_bytes(next(&seed), buf, len);
                char digest[NB_DIGEST_HEX_LEN + 1];
                if (nb_cas_put(&s, buf, len, digest, NULL) < 0)
                        _exit(3);
                unsigned k = (unsigned) (next(&seed) % 16);
                char action[NB_DIGEST_HEX_LEN + 1];
                action_digest(k, action);
                size_t rlen = 0;
                _cleanup_free_ char *rec = make_record(k, (uint32_t) next(&seed), &rlen);
                if (!rec || nb_ac_put(&s, action, rec, rlen, NULL) < 0)
                        _exit(3);
        }
}

static void count_warning(const char *message, void *userdata) {
        fprintf(stderr, "warning: %s\n", message);
        (*(int *) userdata)++;
}

/* Reads every entry of ns back through get and checks its content. */
static int check_namespace(struct nb_store *s, const char *ns, int *entries) {
        _cleanup_close_ int nsfd = openat(s->dir->fd, ns, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_closedir_ DIR *d = nsfd >= 0 ? fdopendir(TAKE_FD(nsfd)) : NULL;
        if (!d)
                return -1;
        int bad = 0;
        struct dirent *fan;
        while ((fan = readdir(d))) {
                if (fan->d_name[0] == '.')
                        continue;
                int fd = openat(dirfd(d), fan->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                _cleanup_closedir_ DIR *sub = fd >= 0 ? fdopendir(fd) : NULL;
                struct dirent *de;
                while (sub && (de = readdir(sub))) {
                        if (de->d_name[0] == '.')
                                continue;
                        (*entries)++;
                        _cleanup_free_ char *data = NULL;
                        size_t len = 0;
                        int r = strcmp(ns, "cas") == 0 ? nb_cas_get(s, de->d_name, &data, &len, NULL)
                                                       : nb_ac_get(s, de->d_name, &data, &len, NULL);
                        if (r < 0) {
                                fprintf(stderr, "%s/%s: get: %d\n", ns, de->d_name, r);
                                bad++;
                                continue;
                        }
                        char got[NB_DIGEST_HEX_LEN + 1];
                        nb_sha256_hex(data, len, got);
                        if (strcmp(ns, "cas") == 0) {
                                bad += strcmp(got, de->d_name) != 0;
                                continue;
                        }
                        unsigned version = 0, found = 0;
                        if (sscanf(data, "v%u\n", &version) != 1) {
                                bad++;
                                continue;
                        }
                        for (unsigned k = 0; k < 16; k++) {
                                char action[NB_DIGEST_HEX_LEN + 1];
                                action_digest(k, action);
                                if (strcmp(action, de->d_name) != 0)
                                        continue;
                                size_t want_len = 0;
                                _cleanup_free_ char *want = make_record(k, version, &want_len);
                                found = want && want_len == len && memcmp(want, data, len) == 0;
                        }
                        if (!found)
                                fprintf(stderr, "ac/%s: record does not match version %u\n", de->d_name, version);
                        bad += !found;
                }
        }
        return bad;
}

TEST(sigkill_during_stores_leaves_the_cache_consistent) {
        char root[] = "/tmp/nb-test-cas-crash.XXXXXX";
        CHECK(mkdtemp(root) != NULL);
        struct nb_cache_dir dir;
        CHECK_EQ_INT(nb_cache_dir_open(&dir, root, NULL), 0);
        int warnings = 0;
        struct nb_store s = { &dir, count_warning, &warnings };
        uint64_t seed = (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 20);
        const char *env = getenv("NB_TEST_SEED");
        if (env)
                seed = strtoull(env, NULL, 0);
        fprintf(stderr, "seed %llu (NB_TEST_SEED reproduces a run)\n", (unsigned long long) seed);
        uint64_t rng = seed | 1;

        int entries = 0;
        for (int i = 0; i < KILLS; i++) {
                uint64_t child_seed = next(&rng) | 1;
                pid_t pid = fork();
                CHECK(pid >= 0);
                if (pid == 0)
                        writer(root, child_seed);
                long ns = (long) (next(&rng) % 20000000);
                struct timespec ts = { 0, ns };
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
                CHECK(kill(pid, SIGKILL) == 0);
                int status = 0;
                CHECK(waitpid(pid, &status, 0) == pid);
                /* Killed, not dead of its own failure (a failed put exits 2 or 3). */
                CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                CHECK_EQ_INT(nb_cache_verify(&s, false, &err), 0);
                entries = 0;
                CHECK_EQ_INT(check_namespace(&s, "cas", &entries), 0);
                CHECK_EQ_INT(check_namespace(&s, "ac", &entries), 0);
                CHECK_EQ_INT(warnings, 0);
        }
        fprintf(stderr, "%d entries after %d kills\n", entries, KILLS);
        CHECK(entries > 0);

        /* What the kills left in tmp/ is no entry; gc of everything keeps young ones. */
        struct nb_cache_stats st;
        CHECK_EQ_INT(nb_cache_stats(&dir, &st, NULL), 0);
        fprintf(stderr, "%llu writes cut short left in tmp/\n", (unsigned long long) st.tmp_entries);
        uint64_t freed = 0;
        CHECK_EQ_INT(nb_cache_gc(&dir, 0, &freed, NULL), 0);
        CHECK_EQ_INT(nb_cache_stats(&dir, &st, NULL), 0);
        CHECK_EQ_INT(st.cas_entries + st.ac_entries, 0);
        nb_cache_dir_close(&dir);
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK_EQ_INT(nb_rm_rf_at(tmp, root + 5), 0);
}
