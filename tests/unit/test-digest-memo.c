/* SPDX-License-Identifier: MIT */
/* The digest memo (cache/digest_memo.h): remembered across processes by identity,
 * never for a file written within the timestamp granularity of its read. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cas.h"
#include "cache/digest_memo.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "test.h"

#define DIGEST_A "aa00000000000000000000000000000000000000000000000000000000000001"

struct fixture {
        char root[64];
        struct nb_cache_dir dir;
        struct nb_store store;
        int root_fd;
};

static void setup(struct fixture *f) {
        *f = (struct fixture) {};
        snprintf(f->root, sizeof(f->root), "/tmp/nb-test-memo.XXXXXX");
        CHECK(mkdtemp(f->root) != NULL);
        CHECK_EQ_INT(nb_cache_dir_open(&f->dir, f->root, NULL), 0);
        f->store = (struct nb_store) { .dir = &f->dir };
        f->root_fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(f->root_fd >= 0);
}

static void teardown(struct fixture *f) {
        nb_cache_dir_close(&f->dir);
        close(f->root_fd);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, f->root), 0);
}

/* A regular file's identity, its ctime `age_ns` before now. */
static struct stat file_of_age(uint64_t ino, int64_t age_ns) {
        struct stat st = { .st_dev = 7, .st_ino = ino, .st_size = 42, .st_mode = S_IFREG | 0644 };
        int64_t t = nb_digest_memo_now() - age_ns;
        st.st_ctim = (struct timespec) { t / 1000000000, t % 1000000000 };
        if (st.st_ctim.tv_nsec % 1000000 == 0)
                st.st_ctim.tv_nsec++; /* a fine-grained filesystem's stamp */
        st.st_mtim = st.st_ctim;
        return st;
}

static struct stat dir_of_age(uint64_t ino, int64_t age_ns) {
        struct stat st = file_of_age(ino, age_ns);
        st.st_mode = S_IFDIR | 0755;
        return st;
}

static struct nb_digest_memo *reopen(struct fixture *f, struct nb_digest_memo *m) {
        nb_digest_memo_close(m);
        struct nb_digest_memo *n = NULL;
        CHECK_EQ_INT(nb_digest_memo_open(&f->store, f->root_fd, &n), 0);
        return n;
}

TEST(remembered_across_processes_by_identity) {
        struct fixture f;
        setup(&f);
        struct nb_digest_memo *m = NULL;
        CHECK_EQ_INT(nb_digest_memo_open(&f.store, f.root_fd, &m), 0);
        CHECK(nb_digest_memo_is_for(m, f.root_fd));
        struct stat st = file_of_age(1, 60ll * 1000000000);
        char out[NB_DIGEST_HEX_LEN + 1];
        CHECK(!nb_digest_memo_find(m, &st, out));
        nb_digest_memo_add(m, &st, nb_digest_memo_now(), DIGEST_A);
        m = reopen(&f, m);
        CHECK(nb_digest_memo_find(m, &st, out));
        CHECK_EQ_STR(out, DIGEST_A);
        /* Any part of the identity moved: not the file it was. */
        struct stat other = st;
        other.st_size++;
        CHECK(!nb_digest_memo_find(m, &other, out));
        other = st;
        other.st_ctim.tv_nsec += 1;
        CHECK(!nb_digest_memo_find(m, &other, out));
        other = st;
        other.st_mtim.tv_sec -= 1;
        CHECK(!nb_digest_memo_find(m, &other, out));
        uint64_t looked_up, known;
        nb_digest_memo_stats(m, &looked_up, &known);
        CHECK(looked_up == 4 && known == 1);
        nb_digest_memo_close(m);
        teardown(&f);
}

TEST(racily_clean_files_are_not_remembered) {
        struct fixture f;
        setup(&f);
        struct nb_digest_memo *m = NULL;
        CHECK_EQ_INT(nb_digest_memo_open(&f.store, f.root_fd, &m), 0);
        char out[NB_DIGEST_HEX_LEN + 1];
        /* Written the moment before it was read: a write in the same tick would not show. */
        struct stat fresh = file_of_age(2, 0);
        nb_digest_memo_add(m, &fresh, nb_digest_memo_now(), DIGEST_A);
        CHECK(!nb_digest_memo_find(m, &fresh, out));
        /* Whole-second stamps (FAT, some network filesystems): two seconds are not enough. */
        struct stat coarse = file_of_age(3, 0);
        coarse.st_ctim.tv_sec -= 1;
        coarse.st_ctim.tv_nsec = 0;
        nb_digest_memo_add(m, &coarse, nb_digest_memo_now(), DIGEST_A);
        CHECK(!nb_digest_memo_find(m, &coarse, out));
        coarse.st_ctim.tv_sec -= 2;
        nb_digest_memo_add(m, &coarse, nb_digest_memo_now(), DIGEST_A);
        CHECK(nb_digest_memo_find(m, &coarse, out));
        nb_digest_memo_close(m);
        teardown(&f);
}

TEST(a_memo_of_another_shape_is_empty) {
        struct fixture f;
        setup(&f);
        struct nb_digest_memo *m = NULL;
        CHECK_EQ_INT(nb_digest_memo_open(&f.store, f.root_fd, &m), 0);
        struct stat st = file_of_age(4, 60ll * 1000000000);
        nb_digest_memo_add(m, &st, nb_digest_memo_now(), DIGEST_A);
        nb_digest_memo_close(m);
        /* Overwrite the record with a valid header over a body of the wrong length. */
        struct nb_hasher *h = nb_hasher_new();
        CHECK(h != NULL);
        nb_hasher_update_str(h, "nestbox-digest-memo-2");
        struct stat root;
        CHECK(fstat(f.root_fd, &root) == 0);
        nb_hasher_update_u64(h, (uint64_t) root.st_dev);
        nb_hasher_update_u64(h, (uint64_t) root.st_ino);
        char key[NB_DIGEST_HEX_LEN + 1];
        nb_hasher_finish(h, key);
        const char bad[] = "nestbox-digest-memo 2\nshort";
        CHECK_EQ_INT(nb_ac_put(&f.store, key, bad, sizeof(bad) - 1, NULL), 0);
        CHECK_EQ_INT(nb_digest_memo_open(&f.store, f.root_fd, &m), 0);
        char out[NB_DIGEST_HEX_LEN + 1];
        CHECK(!nb_digest_memo_find(m, &st, out));
        nb_digest_memo_close(m);
        teardown(&f);
}

TEST(directory_listings_remembered_by_identity) {
        struct fixture f;
        setup(&f);
        struct nb_digest_memo *m = NULL;
        CHECK_EQ_INT(nb_digest_memo_open(&f.store, f.root_fd, &m), 0);
        struct stat dir = dir_of_age(10, 60ll * 1000000000);
        const char listing[] = "\x08" "a.py\0" "\x04" "sub";
        size_t len;
        CHECK(nb_digest_memo_find_listing(m, &dir, &len) == NULL);
        nb_digest_memo_add_listing(m, &dir, nb_digest_memo_now(), listing, sizeof(listing));
        /* A directory changed the moment before it was listed is not remembered. */
        struct stat fresh = dir_of_age(11, 0);
        nb_digest_memo_add_listing(m, &fresh, nb_digest_memo_now(), listing, sizeof(listing));
        m = reopen(&f, m);
        const char *got = nb_digest_memo_find_listing(m, &dir, &len);
        CHECK(got != NULL && len == sizeof(listing) && memcmp(got, listing, len) == 0);
        CHECK(nb_digest_memo_find_listing(m, &fresh, &len) == NULL);
        /* An entry made, removed or renamed moves mtime and ctime: not the listing it was. */
        struct stat moved = dir;
        moved.st_ctim.tv_nsec += 1;
        CHECK(nb_digest_memo_find_listing(m, &moved, &len) == NULL);
        /* A directory's entry is never a file's digest, nor the other way round. */
        char out[NB_DIGEST_HEX_LEN + 1];
        CHECK(!nb_digest_memo_find(m, &dir, out));
        struct stat file = file_of_age(12, 60ll * 1000000000);
        nb_digest_memo_add(m, &file, nb_digest_memo_now(), DIGEST_A);
        CHECK(nb_digest_memo_find_listing(m, &file, &len) == NULL);
        /* Files and listings side by side survive the record's round trip. */
        m = reopen(&f, m);
        CHECK(nb_digest_memo_find(m, &file, out));
        CHECK_EQ_STR(out, DIGEST_A);
        got = nb_digest_memo_find_listing(m, &dir, &len);
        CHECK(got != NULL && len == sizeof(listing) && memcmp(got, listing, len) == 0);
        nb_digest_memo_close(m);
        teardown(&f);
}

TEST(listings_replaced_over_a_long_life) {
        /* nestbox worker keeps one memo for hours: a directory listed again and again
         * (its arena compacted along the way) still answers with its latest listing. */
        struct fixture f;
        setup(&f);
        struct nb_digest_memo *m = NULL;
        CHECK_EQ_INT(nb_digest_memo_open(&f.store, f.root_fd, &m), 0);
        struct stat keep = dir_of_age(20, 60ll * 1000000000);
        nb_digest_memo_add_listing(m, &keep, nb_digest_memo_now(), "\x08keep", 6);
        _cleanup_free_ char *big = malloc(64 << 10);
        CHECK(big != NULL);
        struct stat dir = dir_of_age(21, 60ll * 1000000000);
        size_t len;
        for (int round = 0; round < 100; round++) {
                memset(big, 'a' + round % 26, 64 << 10);
                big[0] = 8;
                big[(64 << 10) - 1] = 0;
                dir.st_mtim.tv_nsec = round + 1; /* another identity each time */
                nb_digest_memo_add_listing(m, &dir, nb_digest_memo_now(), big, 64 << 10);
                const char *got = nb_digest_memo_find_listing(m, &dir, &len);
                CHECK(got != NULL && len == 64u << 10 && memcmp(got, big, len) == 0);
        }
        const char *got = nb_digest_memo_find_listing(m, &keep, &len);
        CHECK(got != NULL && len == 6 && memcmp(got, "\x08keep", 6) == 0);
        m = reopen(&f, m);
        got = nb_digest_memo_find_listing(m, &dir, &len);
        CHECK(got != NULL && len == 64u << 10 && memcmp(got, big, len) == 0);
        nb_digest_memo_close(m);
        teardown(&f);
}

TEST(found_in_any_order) {
        /* Looked up in the order they were made, entries come from the cursor; in any
         * other order (another target's globs, a file moved) from the index. */
        struct fixture f;
        setup(&f);
        struct nb_digest_memo *m = NULL;
        CHECK_EQ_INT(nb_digest_memo_open(&f.store, f.root_fd, &m), 0);
        struct stat st[5];
        for (int k = 0; k < 5; k++) {
                st[k] = file_of_age(30 + (uint64_t) k, 60ll * 1000000000);
                nb_digest_memo_add(m, &st[k], nb_digest_memo_now(), DIGEST_A);
        }
        char out[NB_DIGEST_HEX_LEN + 1];
        for (int round = 0; round < 2; round++) {
                m = reopen(&f, m);
                for (int k = 0; k < 5; k++)
                        CHECK(nb_digest_memo_find(m, &st[round ? 4 - k : k], out));
                struct stat other = file_of_age(40 + (uint64_t) round, 60ll * 1000000000);
                CHECK(!nb_digest_memo_find(m, &other, out));
                nb_digest_memo_add(m, &other, nb_digest_memo_now(), DIGEST_A);
                CHECK(nb_digest_memo_find(m, &other, out));
                CHECK(nb_digest_memo_find(m, &st[2], out));
        }
        uint64_t looked_up, known;
        nb_digest_memo_stats(m, &looked_up, &known);
        CHECK(looked_up == 8 && known == 7);
        nb_digest_memo_close(m);
        teardown(&f);
}
