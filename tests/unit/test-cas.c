/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cas.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "test.h"

struct fixture {
        char root[64];
        struct nb_cache_dir dir;
        struct nb_store store;
        int warnings;
        char last_warning[512];
};

static void count_warning(const char *message, void *userdata) {
        struct fixture *f = userdata;
        f->warnings++;
        snprintf(f->last_warning, sizeof(f->last_warning), "%s", message);
}

static void setup(struct fixture *f) {
        *f = (struct fixture) {};
        snprintf(f->root, sizeof(f->root), "/tmp/nb-test-cas.XXXXXX");
        CHECK(mkdtemp(f->root) != NULL);
        CHECK_EQ_INT(nb_cache_dir_open(&f->dir, f->root, NULL), 0);
        f->store = (struct nb_store) { &f->dir, count_warning, f };
}

static void teardown(struct fixture *f) {
        nb_cache_dir_close(&f->dir);
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK_EQ_INT(nb_rm_rf_at(tmp, f->root + 5), 0);
}

static void blob_rel(const char *ns, const char *digest, char *buf, size_t size) {
        snprintf(buf, size, "%.3s/%.2s/%.64s", ns, digest, digest);
}

static int count_dir(int dirfd, const char *rel) {
        _cleanup_close_ int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        _cleanup_closedir_ DIR *d = fdopendir(TAKE_FD(fd));
        int n = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
                n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        return n;
}

static void set_mtime(int dirfd, const char *rel, time_t t) {
        struct timespec ts[2] = { { t, 0 }, { t, 0 } };
        CHECK(utimensat(dirfd, rel, ts, AT_SYMLINK_NOFOLLOW) == 0);
}

TEST(cas_round_trip) {
        struct fixture f;
        setup(&f);
        char digest[NB_DIGEST_HEX_LEN + 1], again[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(nb_cas_put(&f.store, "hello", 5, digest, NULL), 0);
        CHECK_EQ_STR(digest, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        CHECK_EQ_INT(nb_cas_put(&f.store, "hello", 5, again, NULL), 0);
        CHECK_EQ_STR(again, digest);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_cas_get(&f.store, digest, &data, &len, NULL), 0);
        CHECK_EQ_INT(len, 5);
        CHECK_EQ_STR(data, "hello");

        /* The empty blob is a blob too. */
        _cleanup_free_ char *empty = NULL;
        CHECK_EQ_INT(nb_cas_put(&f.store, "", 0, digest, NULL), 0);
        CHECK_EQ_INT(nb_cas_get(&f.store, digest, &empty, &len, NULL), 0);
        CHECK_EQ_INT(len, 0);

        char *none = NULL;
        CHECK_EQ_INT(nb_cas_get(&f.store, "0000000000000000000000000000000000000000000000000000000000000000", &none,
                                &len, NULL), -ENOENT);
        CHECK_EQ_INT(nb_cas_get(&f.store, "../../etc/passwd", &none, &len, NULL), -EINVAL);
        CHECK(none == NULL);
        CHECK_EQ_INT(f.warnings, 0);
        CHECK_EQ_INT(count_dir(f.dir.fd, "tmp"), 0);
        teardown(&f);
}

/* A remote's copy is stored unsynced; a durable put of the same bytes finds it in
 * place, keeps that file (no second write) and syncs it, and both read back. */
TEST(recoverable_then_durable_put_of_one_blob) {
        struct fixture f;
        setup(&f);
        char digest[NB_DIGEST_HEX_LEN + 1], again[NB_DIGEST_HEX_LEN + 1], rel[128];
        CHECK_EQ_INT(nb_cas_put_as(&f.store, "copy", 4, NB_RECOVERABLE, digest, NULL), 0);
        blob_rel("cas", digest, rel, sizeof(rel));
        struct stat before, after;
        CHECK_EQ_INT(fstatat(f.dir.fd, rel, &before, AT_SYMLINK_NOFOLLOW), 0);
        CHECK_EQ_INT(nb_cas_put(&f.store, "copy", 4, again, NULL), 0);
        CHECK_EQ_STR(again, digest);
        CHECK_EQ_INT(fstatat(f.dir.fd, rel, &after, AT_SYMLINK_NOFOLLOW), 0);
        CHECK(before.st_ino == after.st_ino);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_cas_get(&f.store, digest, &data, &len, NULL), 0);
        CHECK_EQ_INT(len, 4);
        CHECK_EQ_INT(nb_ac_put_as(&f.store, digest, "record", 6, NB_RECOVERABLE, NULL), 0);
        _cleanup_free_ char *record = NULL;
        CHECK_EQ_INT(nb_ac_get(&f.store, digest, &record, &len, NULL), 0);
        CHECK_EQ_STR(record, "record");
        CHECK_EQ_INT(f.warnings, 0);
        CHECK_EQ_INT(count_dir(f.dir.fd, "tmp"), 0);
        teardown(&f);
}

TEST(cas_flipped_byte_is_removed_warned_once_and_a_miss) {
        struct fixture f;
        setup(&f);
        char digest[NB_DIGEST_HEX_LEN + 1], rel[128];
        CHECK_EQ_INT(nb_cas_put(&f.store, "some blob bytes", 15, digest, NULL), 0);
        blob_rel("cas", digest, rel, sizeof(rel));
        CHECK(fchmodat(f.dir.fd, rel, 0644, 0) == 0);
        _cleanup_close_ int fd = openat(f.dir.fd, rel, O_WRONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        CHECK(pwrite(fd, "S", 1, 0) == 1);

        char *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_cas_get(&f.store, digest, &data, &len, NULL), -ENOENT);
        CHECK_EQ_INT(f.warnings, 1);
        CHECK(strstr(f.last_warning, digest) != NULL);
        CHECK(strstr(f.last_warning, "does not match") != NULL);
        CHECK(strstr(f.last_warning, "removed") != NULL);
        CHECK(faccessat(f.dir.fd, rel, F_OK, AT_SYMLINK_NOFOLLOW) < 0);
        CHECK_EQ_INT(nb_cas_get(&f.store, digest, &data, &len, NULL), -ENOENT);
        CHECK_EQ_INT(f.warnings, 1);

        /* A put after the damage stores it afresh. */
        CHECK_EQ_INT(nb_cas_put(&f.store, "some blob bytes", 15, digest, NULL), 0);
        CHECK_EQ_INT(nb_cas_get(&f.store, digest, &data, &len, NULL), 0);
        free(data);
        teardown(&f);
}

TEST(ac_round_trip_overwrite_and_truncation) {
        struct fixture f;
        setup(&f);
        const char *action = "aaaabbbbccccddddaaaabbbbccccddddaaaabbbbccccddddaaaabbbbccccdddd";
        const char *r1 = "{\"status\": \"failed\"}", *r2 = "{\"status\": \"passed\", \"tests\": 12}";
        CHECK_EQ_INT(nb_ac_put(&f.store, action, r1, strlen(r1), NULL), 0);
        CHECK_EQ_INT(nb_ac_put(&f.store, action, r2, strlen(r2), NULL), 0);
        _cleanup_free_ char *rec = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_ac_get(&f.store, action, &rec, &len, NULL), 0);
        CHECK_EQ_INT(len, strlen(r2));
        CHECK_EQ_STR(rec, r2);

        char rel[128];
        blob_rel("ac", action, rel, sizeof(rel));
        struct stat st;
        CHECK(fstatat(f.dir.fd, rel, &st, 0) == 0);
        CHECK_EQ_INT(st.st_size, 78 + (off_t) strlen(r2));
        _cleanup_free_ char *raw = NULL;
        CHECK_EQ_INT(nb_read_file_beneath(f.dir.fd, rel, 4096, &raw, NULL), 0);
        CHECK(strncmp(raw, "nestbox-ac 1 ", 13) == 0);

        /* Cut the body short: the header's digest no longer matches. */
        CHECK(fchmodat(f.dir.fd, rel, 0644, 0) == 0);
        _cleanup_close_ int fd = openat(f.dir.fd, rel, O_WRONLY | O_CLOEXEC);
        CHECK(fd >= 0 && ftruncate(fd, st.st_size - 3) == 0);
        char *none = NULL;
        CHECK_EQ_INT(nb_ac_get(&f.store, action, &none, &len, NULL), -ENOENT);
        CHECK_EQ_INT(f.warnings, 1);
        CHECK(strstr(f.last_warning, "record body") != NULL);
        CHECK_EQ_INT(nb_ac_get(&f.store, action, &none, &len, NULL), -ENOENT);
        CHECK_EQ_INT(f.warnings, 1);

        /* Cut inside the header line. */
        CHECK_EQ_INT(nb_ac_put(&f.store, action, r1, strlen(r1), NULL), 0);
        CHECK(fchmodat(f.dir.fd, rel, 0644, 0) == 0);
        _cleanup_close_ int fd2 = openat(f.dir.fd, rel, O_WRONLY | O_CLOEXEC);
        CHECK(fd2 >= 0 && ftruncate(fd2, 20) == 0);
        CHECK_EQ_INT(nb_ac_get(&f.store, action, &none, &len, NULL), -ENOENT);
        CHECK_EQ_INT(f.warnings, 2);
        CHECK(strstr(f.last_warning, "header") != NULL);
        CHECK(none == NULL);
        teardown(&f);
}

TEST(failed_put_leaves_the_cache_as_it_was) {
        struct fixture f;
        setup(&f);
        /* A file size limit makes write() fail part way, like a full disk would. */
        struct rlimit old, lim = { 4096, 4096 };
        CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
        lim.rlim_max = old.rlim_max;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        _cleanup_free_ char *big = calloc(1, 100000);
        char digest[NB_DIGEST_HEX_LEN + 1];
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        int r = nb_cas_put(&f.store, big, 100000, digest, &err);
        int r2 = nb_ac_put(&f.store, "1111111111111111111111111111111111111111111111111111111111111111", big, 100000,
                           NULL);
        CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
        signal(SIGXFSZ, prev);
        CHECK_EQ_INT(r, -EFBIG);
        CHECK_EQ_INT(r2, -EFBIG);
        CHECK(strstr(nb_error_message(&err), "storing cas/") != NULL);
        CHECK(strstr(nb_error_message(&err), "nothing stored") != NULL);
        CHECK_EQ_INT(count_dir(f.dir.fd, "tmp"), 0);
        struct nb_cache_stats st;
        CHECK_EQ_INT(nb_cache_stats(&f.dir, &st, NULL), 0);
        CHECK_EQ_INT(st.cas_entries + st.ac_entries + st.tmp_entries, 0);
        teardown(&f);
}

/* A sealed directory entry as venv.c and tree.c leave one: 0555 dirs, 0444 files. */
static void make_dir_entry(int cache_fd, const char *rel, bool marker) {
        _cleanup_close_ int fd = nb_mkdir_p_beneath(cache_fd, rel, 0755);
        CHECK(fd >= 0);
        _cleanup_close_ int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(mkdirat(dfd, "lib", 0755) == 0);
        CHECK_EQ_INT(nb_write_file_beneath(dfd, "lib/mod.py", "x = 1\n", 6, 0444), 0);
        if (marker)
                CHECK_EQ_INT(nb_write_file_beneath(dfd, ".nestbox-complete", "d\n", 2, 0444), 0);
        CHECK(fchmodat(dfd, "lib", 0555, 0) == 0);
        CHECK(fchmod(dfd, 0555) == 0);
}

#define D1 "1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "3333333333333333333333333333333333333333333333333333333333333333"

TEST(stats_verify_gc) {
        struct fixture f;
        setup(&f);
        make_dir_entry(f.dir.fd, "venvs/" D1, true);
        make_dir_entry(f.dir.fd, "venvs/" D2, false); /* incomplete */
        make_dir_entry(f.dir.fd, "trees/" D3, false);
        char digests[5][NB_DIGEST_HEX_LEN + 1];
        for (int i = 0; i < 5; i++) {
                char blob[1000];
                memset(blob, 'a' + i, sizeof(blob));
                CHECK_EQ_INT(nb_cas_put(&f.store, blob, sizeof(blob), digests[i], NULL), 0);
                char rel[128];
                blob_rel("cas", digests[i], rel, sizeof(rel));
                set_mtime(f.dir.fd, rel, 1000000 + i * 1000);
        }
        CHECK_EQ_INT(nb_ac_put(&f.store, D1, "{}", 2, NULL), 0);
        CHECK_EQ_INT(nb_write_file_beneath(f.dir.fd, "tmp/old-leftover", "xyz", 3, 0644), 0);
        set_mtime(f.dir.fd, "tmp/old-leftover", 1000);
        CHECK_EQ_INT(nb_write_file_beneath(f.dir.fd, "tmp/in-progress", "xy", 2, 0644), 0);

        struct nb_cache_stats st;
        CHECK_EQ_INT(nb_cache_stats(&f.dir, &st, NULL), 0);
        CHECK_EQ_INT(st.cas_entries, 5);
        CHECK_EQ_INT(st.cas_bytes, 5000);
        CHECK_EQ_INT(st.ac_entries, 1);
        CHECK_EQ_INT(st.ac_bytes, 78 + 2);
        CHECK_EQ_INT(st.venv_entries, 2);
        CHECK_EQ_INT(st.venv_bytes, 6 + 2 + 6);
        CHECK_EQ_INT(st.tree_entries, 1);
        CHECK_EQ_INT(st.tree_bytes, 6);
        CHECK_EQ_INT(st.tmp_entries, 2);
        CHECK_EQ_INT(st.tmp_bytes, 5);

        /* Only the venv without its marker is damaged; a stray file in cas/ too. */
        CHECK_EQ_INT(nb_write_file_beneath(f.dir.fd, "cas/junk", "j", 1, 0644), 0);
        CHECK_EQ_INT(nb_cache_verify(&f.store, false, NULL), 2);
        CHECK_EQ_INT(f.warnings, 2);
        CHECK(faccessat(f.dir.fd, "venvs/" D2, F_OK, AT_SYMLINK_NOFOLLOW) == 0);
        CHECK_EQ_INT(nb_cache_verify(&f.store, true, NULL), 2);
        CHECK(faccessat(f.dir.fd, "venvs/" D2, F_OK, AT_SYMLINK_NOFOLLOW) < 0);
        CHECK(strstr(f.last_warning, "removed") != NULL);
        CHECK_EQ_INT(nb_cache_verify(&f.store, false, NULL), 0);

        /* Touch marks use: the blob put first becomes the newest. */
        nb_store_touch(&f.store, "cas", digests[0]);
        nb_store_touch(&f.store, "trees", D3);
        set_mtime(f.dir.fd, "venvs/" D1, 1);
        set_mtime(f.dir.fd, "ac/11/" D1, 2);

        /* 5000 + 80 + 8 + 6 bytes: down to 2500 removes the venv, the ac record and the
         * three oldest blobs (1, 2, 3), keeping blob 4 and the touched blob 0. */
        uint64_t freed = 0;
        CHECK_EQ_INT(nb_cache_gc(&f.dir, 2500, &freed, NULL), 0);
        CHECK_EQ_INT(freed, 8 + 80 + 3000 + 3);
        CHECK_EQ_INT(nb_cache_stats(&f.dir, &st, NULL), 0);
        CHECK_EQ_INT(st.cas_entries, 2);
        CHECK_EQ_INT(st.venv_entries, 0);
        CHECK_EQ_INT(st.ac_entries, 0);
        CHECK_EQ_INT(st.tree_entries, 1);
        CHECK_EQ_INT(st.tmp_entries, 1); /* the young one stays */
        _cleanup_free_ char *data = NULL;
        size_t len;
        CHECK_EQ_INT(nb_cas_get(&f.store, digests[0], &data, &len, NULL), 0);
        CHECK_EQ_INT(nb_cas_get(&f.store, digests[1], &data, &len, NULL), -ENOENT);

        /* Down to nothing: the read-only tree goes too, and nothing is left in tmp/
         * but the write in progress. */
        CHECK_EQ_INT(nb_cache_gc(&f.dir, 0, &freed, NULL), 0);
        CHECK_EQ_INT(nb_cache_stats(&f.dir, &st, NULL), 0);
        CHECK_EQ_INT(st.cas_entries + st.ac_entries + st.venv_entries + st.tree_entries, 0);
        CHECK_EQ_INT(count_dir(f.dir.fd, "tmp"), 1);
        CHECK_EQ_INT(f.warnings, 4);
        teardown(&f);
}

TEST(verify_finds_damaged_blobs_and_records) {
        struct fixture f;
        setup(&f);
        char digest[NB_DIGEST_HEX_LEN + 1], rel[128];
        CHECK_EQ_INT(nb_cas_put(&f.store, "blob", 4, digest, NULL), 0);
        CHECK_EQ_INT(nb_ac_put(&f.store, D2, "record", 6, NULL), 0);
        CHECK_EQ_INT(nb_cache_verify(&f.store, false, NULL), 0);
        blob_rel("cas", digest, rel, sizeof(rel));
        CHECK(fchmodat(f.dir.fd, rel, 0644, 0) == 0);
        CHECK_EQ_INT(nb_write_file_beneath(f.dir.fd, rel, "blub", 4, 0644), 0);
        CHECK(fchmodat(f.dir.fd, "ac/22/" D2, 0644, 0) == 0);
        _cleanup_close_ int fd = openat(f.dir.fd, "ac/22/" D2, O_WRONLY | O_CLOEXEC);
        CHECK(fd >= 0 && ftruncate(fd, 80) == 0);
        /* A blob in the wrong fan-out directory is no entry. */
        CHECK(mkdirat(f.dir.fd, "cas/00", 0755) == 0);
        char wrong[128];
        snprintf(wrong, sizeof(wrong), "cas/00/%s", digest);
        CHECK_EQ_INT(nb_write_file_beneath(f.dir.fd, wrong, "blob", 4, 0644), 0);
        CHECK_EQ_INT(nb_cache_verify(&f.store, false, NULL), 3);
        CHECK_EQ_INT(nb_cache_verify(&f.store, true, NULL), 3);
        CHECK_EQ_INT(nb_cache_verify(&f.store, false, NULL), 0);
        CHECK_EQ_INT(f.warnings, 6);
        teardown(&f);
}
