/* SPDX-License-Identifier: MIT */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader */
#include <zstd.h>

#include "cache/artifact.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "test.h"

static void artifact_donep(struct nb_artifact *a) {
        nb_artifact_done(a);
}
#define _cleanup_artifact_ __attribute__((cleanup(artifact_donep)))

static const char long_name[] =
        "undeclared/a/very/long/path/that/does/not/fit/into/the/hundred/bytes/of/a/ustar/name/field/report.txt";

static void fill(struct nb_artifact *a, const int *order, size_t n) {
        static const char *const names[] = { "junit.xml", "log", "result.json", "coverage.lcov", long_name };
        for (size_t i = 0; i < n; i++) {
                const char *name = names[order[i]];
                CHECK_EQ_INT(nb_artifact_add(a, name, name, strlen(name)), 0);
        }
}

TEST(pack_is_deterministic_and_round_trips) {
        _cleanup_artifact_ struct nb_artifact a = {}, b = {}, back = {};
        fill(&a, (const int[]) { 0, 1, 2, 3, 4 }, 5);
        fill(&b, (const int[]) { 4, 2, 0, 3, 1 }, 5);
        CHECK_EQ_INT(nb_artifact_add(&b, "log", "first", 5), 0);
        CHECK_EQ_INT(nb_artifact_add(&b, "log", "log", 3), 0); /* replaces, no duplicate */
        CHECK_EQ_INT(b.n, 5);
        _cleanup_free_ char *pa = NULL, *pb = NULL;
        size_t la = 0, lb = 0;
        CHECK_EQ_INT(nb_artifact_pack(&a, &pa, &la, NULL), 0);
        CHECK_EQ_INT(nb_artifact_pack(&b, &pb, &lb, NULL), 0);
        CHECK(la > 0 && la == lb && memcmp(pa, pb, la) == 0);
        CHECK(la >= 4 && memcmp(pa, "\x28\xb5\x2f\xfd", 4) == 0); /* zstd frame magic */

        /* Another process (another pid, another time) packs the same bytes. */
        int pipefd[2];
        CHECK(pipe(pipefd) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                sleep(1);
                struct nb_artifact c = {};
                fill(&c, (const int[]) { 3, 1, 4, 0, 2 }, 5);
                char *pc = NULL;
                size_t lc = 0;
                if (nb_artifact_pack(&c, &pc, &lc, NULL) < 0 || nb_write_all(pipefd[1], pc, lc) < 0)
                        _exit(1);
                _exit(0);
        }
        close(pipefd[1]);
        _cleanup_free_ char *pc = NULL;
        size_t lc = 0;
        CHECK_EQ_INT(nb_read_fd(pipefd[0], 1 << 20, &pc, &lc), 0);
        close(pipefd[0]);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(lc == la && memcmp(pc, pa, la) == 0);

        CHECK_EQ_INT(nb_artifact_unpack(pa, la, NULL, &back, NULL), 0);
        CHECK_EQ_INT(back.n, 5);
        const struct nb_artifact_entry *e = nb_artifact_find(&back, long_name);
        CHECK(e && e->len == strlen(long_name) && memcmp(e->data, long_name, e->len) == 0);
        CHECK(nb_artifact_find(&back, "nope") == NULL);
        CHECK_EQ_STR(back.entries[0].name, "coverage.lcov"); /* sorted */
        CHECK_EQ_STR(nb_artifact_find(&back, "log")->data, "log");
}

/* The frame names its size, so a reader's window is the artifact's size, not the
 * 2 MiB a frame of unknown size asks for; and a big artifact still round-trips. */
TEST(pack_names_its_size_so_unpacking_needs_a_small_window) {
        _cleanup_artifact_ struct nb_artifact a = {}, back = {};
        CHECK_EQ_INT(nb_artifact_add(&a, "junit.xml", "<testsuite/>", 12), 0);
        _cleanup_free_ char *p = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_artifact_pack(&a, &p, &len, NULL), 0);
        ZSTD_frameHeader h;
        CHECK(ZSTD_getFrameHeader(&h, p, len) == 0);
        CHECK(h.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN && h.frameContentSize < 4096);
        CHECK(h.windowSize <= 4096);
        CHECK(ZSTD_findFrameCompressedSize(p, len) == len); /* one frame, nothing after it */

        size_t big_len = 3u << 20;
        _cleanup_free_ char *big = malloc(big_len);
        CHECK(big != NULL);
        for (size_t i = 0; i < big_len; i++)
                big[i] = (char) ((i * 2654435761u) >> 13);
        CHECK_EQ_INT(nb_artifact_add(&a, "log", big, big_len), 0);
        _cleanup_free_ char *q = NULL;
        CHECK_EQ_INT(nb_artifact_pack(&a, &q, &len, NULL), 0);
        CHECK(ZSTD_getFrameHeader(&h, q, len) == 0 && h.frameContentSize > big_len);
        CHECK_EQ_INT(nb_artifact_unpack(q, len, NULL, &back, NULL), 0);
        const struct nb_artifact_entry *e = nb_artifact_find(&back, "log");
        CHECK(e && e->len == big_len && memcmp(e->data, big, big_len) == 0);
}

TEST(add_refuses_bad_names) {
        _cleanup_artifact_ struct nb_artifact a = {};
        const char *bad[] = { "", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", "a/.", ".." };
        for (size_t i = 0; i < NB_ELEMENTSOF(bad); i++)
                CHECK_EQ_INT(nb_artifact_add(&a, bad[i], "x", 1), -EINVAL);
        CHECK_EQ_INT(a.n, 0);
        CHECK_EQ_INT(nb_artifact_add(&a, "a/..b/c.d", "x", 1), 0);
}

struct raw_entry {
        const char *name;
        unsigned type;
        const char *link;
        int64_t size;
        const char *data;
};

/* A tar.zst made directly with libarchive, with whatever entries the test wants. */
static int raw_tar(const struct raw_entry *v, size_t n, char **ret, size_t *ret_len) {
        size_t cap = 1 << 20, used = 0;
        char *buf = malloc(cap);
        struct archive *ar = archive_write_new();
        archive_write_set_format_pax_restricted(ar);
        archive_write_add_filter_zstd(ar);
        archive_write_set_bytes_in_last_block(ar, 1);
        if (archive_write_open_memory(ar, buf, cap, &used) != ARCHIVE_OK)
                return -1;
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, v[i].name);
                archive_entry_set_filetype(e, v[i].type);
                archive_entry_set_perm(e, 0644);
                if (v[i].link && v[i].type == AE_IFLNK)
                        archive_entry_set_symlink(e, v[i].link);
                else if (v[i].link)
                        archive_entry_set_hardlink(e, v[i].link);
                archive_entry_set_size(e, v[i].size);
                archive_write_header(ar, e);
                if (v[i].data)
                        archive_write_data(ar, v[i].data, strlen(v[i].data));
                archive_entry_free(e);
        }
        archive_write_close(ar);
        archive_write_free(ar);
        *ret = buf;
        *ret_len = used;
        return 0;
}

static int unpack_raw(const struct raw_entry *v, size_t n, struct nb_error *err) {
        _cleanup_free_ char *tar = NULL;
        size_t len = 0;
        CHECK_EQ_INT(raw_tar(v, n, &tar, &len), 0);
        _cleanup_artifact_ struct nb_artifact a = { (struct nb_artifact_entry *) 1, 99 }; /* untouched on failure */
        int r = nb_artifact_unpack(tar, len, NULL, &a, err);
        if (r < 0) {
                CHECK(a.n == 99);
                a = (struct nb_artifact) {};
        }
        return r;
}

TEST(unpack_refuses_hostile_archives) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct raw_entry ok[] = { { "junit.xml", AE_IFREG, NULL, 2, "<a" }, { "sub/log", AE_IFREG, NULL, 0, NULL } };
        CHECK_EQ_INT(unpack_raw(ok, 2, &err), 0);

        struct raw_entry dotdot[] = { ok[0], { "../x", AE_IFREG, NULL, 1, "x" } };
        CHECK_EQ_INT(unpack_raw(dotdot, 2, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "../x") != NULL);
        struct raw_entry inner[] = { { "a/../../x", AE_IFREG, NULL, 1, "x" } };
        CHECK_EQ_INT(unpack_raw(inner, 1, &err), -EINVAL);
        struct raw_entry absolute[] = { { "/etc/cron.d/x", AE_IFREG, NULL, 1, "x" } };
        CHECK_EQ_INT(unpack_raw(absolute, 1, &err), -EINVAL);
        struct raw_entry empty[] = { { "a//b", AE_IFREG, NULL, 1, "x" } };
        CHECK_EQ_INT(unpack_raw(empty, 1, &err), -EINVAL);
        struct raw_entry symlink[] = { { "junit.xml", AE_IFLNK, "/etc/passwd", 0, NULL } };
        CHECK_EQ_INT(unpack_raw(symlink, 1, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "not a regular file") != NULL);
        struct raw_entry hardlink[] = { ok[0], { "log", AE_IFREG, "junit.xml", 0, NULL } };
        CHECK_EQ_INT(unpack_raw(hardlink, 2, &err), -EINVAL);
        struct raw_entry dir[] = { { "sub", AE_IFDIR, NULL, 0, NULL } };
        CHECK_EQ_INT(unpack_raw(dir, 1, &err), -EINVAL);
        struct raw_entry fifo[] = { { "fifo", AE_IFIFO, NULL, 0, NULL } };
        CHECK_EQ_INT(unpack_raw(fifo, 1, &err), -EINVAL);
        struct raw_entry twice[] = { ok[0], ok[0] };
        CHECK_EQ_INT(unpack_raw(twice, 2, &err), -EINVAL);

        /* Declared bigger than the cap: refused from the header, before any data is
         * read or memory allocated (libarchive pads the body with zeros). */
        struct raw_entry huge[] = { { "log", AE_IFREG, NULL, (int64_t) NB_ARTIFACT_MAX_ENTRY + 1, "x" } };
        CHECK_EQ_INT(unpack_raw(huge, 1, &err), -EFBIG);
        CHECK(strstr(nb_error_message(&err), "log") != NULL);

        /* Garbage and a cut archive are errors, not crashes. */
        _cleanup_artifact_ struct nb_artifact a = {};
        CHECK(nb_artifact_unpack("not a tar", 9, NULL, &a, &err) < 0);
        _cleanup_free_ char *tar = NULL;
        size_t len = 0;
        CHECK_EQ_INT(raw_tar(ok, 2, &tar, &len), 0);
        CHECK(nb_artifact_unpack(tar, len / 2, NULL, &a, &err) < 0);
        CHECK(a.n == 0);
}

static int make_tmpdir(char *tmpl) {
        if (!mkdtemp(tmpl))
                return -1;
        return open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void remove_tmpdir(const char *path) {
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK_EQ_INT(nb_rm_rf_at(tmp, path + 5), 0);
}

TEST(add_tree_skips_links_and_caps_sizes) {
        char tmpl[] = "/tmp/nb-test-artifact.XXXXXX";
        _cleanup_close_ int dfd = make_tmpdir(tmpl);
        CHECK(dfd >= 0);
        CHECK_EQ_INT(nb_write_file_beneath(dfd, "a.txt", "alpha", 5, 0644), 0);
        CHECK(mkdirat(dfd, "sub", 0755) == 0);
        CHECK_EQ_INT(nb_write_file_beneath(dfd, "sub/b.bin", "beta", 4, 0600), 0);
        CHECK(symlinkat("/etc/passwd", dfd, "passwd") == 0);
        CHECK(symlinkat("/etc", dfd, "etc") == 0);
        CHECK(mkfifoat(dfd, "fifo", 0644) == 0);

        _cleanup_artifact_ struct nb_artifact a = {};
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(nb_artifact_add_tree(&a, dfd, "undeclared", 1000, 1000, NULL, 100, &err), 0);
        CHECK_EQ_INT(a.n, 2);
        CHECK(nb_artifact_find(&a, "undeclared/a.txt") != NULL);
        CHECK_EQ_STR(nb_artifact_find(&a, "undeclared/sub/b.bin")->data, "beta");
        CHECK(nb_artifact_find(&a, "undeclared/passwd") == NULL);
        CHECK(nb_artifact_find(&a, "undeclared/etc/passwd") == NULL);

        /* One file over the per-file cap; then over the total. */
        _cleanup_artifact_ struct nb_artifact b = {}, c = {};
        CHECK_EQ_INT(nb_artifact_add_tree(&b, dfd, "out/", 4, 1000, NULL, 100, &err), -EFBIG);
        CHECK(strstr(nb_error_message(&err), "out/a.txt") != NULL);
        CHECK_EQ_INT(nb_artifact_add_tree(&c, dfd, "out/", 1000, 8, NULL, 100, &err), -EFBIG);
        CHECK(strstr(nb_error_message(&err), "beyond 8 bytes") != NULL);

        /* Extraction goes beneath the directory and refuses a planted symlink. */
        char tmpl2[] = "/tmp/nb-test-artifact-x.XXXXXX";
        _cleanup_close_ int xfd = make_tmpdir(tmpl2);
        CHECK_EQ_INT(nb_artifact_extract(&a, xfd, &err), 0);
        _cleanup_free_ char *data = NULL;
        CHECK_EQ_INT(nb_read_file_beneath(xfd, "undeclared/sub/b.bin", 100, &data, NULL), 0);
        CHECK_EQ_STR(data, "beta");
        CHECK(symlinkat("/tmp", xfd, "evil") == 0);
        _cleanup_artifact_ struct nb_artifact d = {};
        CHECK_EQ_INT(nb_artifact_add(&d, "evil/x", "x", 1), 0);
        CHECK(nb_artifact_extract(&d, xfd, &err) < 0);
        remove_tmpdir(tmpl);
        remove_tmpdir(tmpl2);
}

TEST(many_outputs_capped_and_a_summary_hit_skips_them) {
        char tmpl[] = "/tmp/nb-test-artifact-many.XXXXXX";
        _cleanup_close_ int dfd = make_tmpdir(tmpl);
        CHECK(dfd >= 0);
        char name[32];
        for (int i = 0; i < 3000; i++) {
                snprintf(name, sizeof(name), "f%05d", i);
                CHECK_EQ_INT(nb_write_file_beneath(dfd, name, "", 0, 0644), 0);
        }
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        /* One file over the count cap: refused, saying which directory. */
        _cleanup_artifact_ struct nb_artifact over = {};
        CHECK_EQ_INT(nb_artifact_add_tree(&over, dfd, "undeclared/", 1000, 1000, NULL, 2999, &err), -EMFILE);
        CHECK_EQ_STR(nb_error_message(&err), "artifact: more than 2999 files in undeclared");
        /* The byte total is shared with what was added before (coverage files). */
        size_t total = 995;
        _cleanup_artifact_ struct nb_artifact bytes = {};
        CHECK_EQ_INT(nb_write_file_beneath(dfd, "g", "123456", 6, 0644), 0);
        CHECK_EQ_INT(nb_artifact_add_tree(&bytes, dfd, "undeclared/", 1000, 1000, &total, 5000, &err), -EFBIG);
        CHECK(strstr(nb_error_message(&err), "beyond 1000 bytes in all") != NULL);

        /* At the cap: every file, each costing its own size. */
        _cleanup_artifact_ struct nb_artifact a = {};
        CHECK_EQ_INT(nb_artifact_add(&a, "junit.xml", "<x/>", 4), 0);
        CHECK_EQ_INT(nb_artifact_add_tree(&a, dfd, "undeclared/", 1000, 1000, NULL, 3001, &err), 0);
        CHECK_EQ_INT(a.n, 3002);
        _cleanup_free_ char *tar = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_artifact_pack(&a, &tar, &len, &err), 0);
        /* Unpacked for a summary: undeclared/ is read past, not kept. */
        _cleanup_artifact_ struct nb_artifact summary = {}, whole = {};
        CHECK_EQ_INT(nb_artifact_unpack(tar, len, "undeclared/", &summary, &err), 0);
        CHECK_EQ_INT(summary.n, 1);
        CHECK(nb_artifact_find(&summary, "junit.xml") != NULL);
        CHECK_EQ_INT(nb_artifact_unpack(tar, len, NULL, &whole, &err), 0);
        CHECK_EQ_INT(whole.n, 3002);
        CHECK(nb_artifact_find(&whole, "undeclared/g") != NULL);
        remove_tmpdir(tmpl);
}

TEST(unpack_refuses_duplicates_even_when_skipped) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct raw_entry twice[] = { { "undeclared/a", AE_IFREG, NULL, 1, "x" }, { "undeclared/a", AE_IFREG, NULL, 1, "y" } };
        _cleanup_free_ char *tar = NULL;
        size_t len = 0;
        CHECK_EQ_INT(raw_tar(twice, 2, &tar, &len), 0);
        _cleanup_artifact_ struct nb_artifact a = {}, b = {};
        CHECK_EQ_INT(nb_artifact_unpack(tar, len, NULL, &a, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "appears twice") != NULL);
        CHECK_EQ_INT(nb_artifact_unpack(tar, len, "undeclared/", &b, &err), -EINVAL);
        _cleanup_artifact_ struct nb_artifact c = {};
        static const char *const none_of_them[] = { "result.json", NULL };
        CHECK_EQ_INT(nb_artifact_unpack_only(tar, len, none_of_them, &c, &err), -EINVAL);
}

/* What merge reads of an artifact: the entries it names, every other one checked and
 * counted but never held, however large (one of 32 MiB here). */
TEST(unpack_only_keeps_the_entries_named) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        size_t big_len = 32u << 20;
        _cleanup_free_ char *big = calloc(1, big_len);
        CHECK(big != NULL);
        if (!big)
                return;
        _cleanup_artifact_ struct nb_artifact a = {};
        CHECK_EQ_INT(nb_artifact_add(&a, "result.json", "{}", 2), 0);
        CHECK_EQ_INT(nb_artifact_add(&a, "log", big, big_len), 0);
        CHECK_EQ_INT(nb_artifact_add(&a, "junit.xml", "<x/>", 4), 0);
        CHECK_EQ_INT(nb_artifact_add(&a, "zz", big, big_len), 0);
        _cleanup_free_ char *tar = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_artifact_pack(&a, &tar, &len, &err), 0);
        static const char *const wanted[] = { "result.json", "junit.xml", "coverage.lcov", NULL };
        _cleanup_artifact_ struct nb_artifact some = {};
        CHECK_EQ_INT(nb_artifact_unpack_only(tar, len, wanted, &some, &err), 0);
        CHECK_EQ_INT(some.n, 2);
        CHECK(nb_artifact_find(&some, "result.json") != NULL && nb_artifact_find(&some, "junit.xml") != NULL);
        CHECK(nb_artifact_find(&some, "log") == NULL && nb_artifact_find(&some, "zz") == NULL);
}
