/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "test.h"

static int make_tmpdir(char *tmpl) {
        if (!mkdtemp(tmpl))
                return -1;
        return open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

TEST(parse_size) {
        uint64_t v = 0;
        CHECK_EQ_INT(nb_parse_size("123", &v), 0);
        CHECK_EQ_INT(v, 123);
        CHECK_EQ_INT(nb_parse_size("64k", &v), 0);
        CHECK_EQ_INT(v, 65536);
        CHECK_EQ_INT(nb_parse_size("512M", &v), 0);
        CHECK_EQ_INT(v, 512ull << 20);
        CHECK_EQ_INT(nb_parse_size("2GiB", &v), 0);
        CHECK_EQ_INT(v, 2ull << 30);
        CHECK_EQ_INT(nb_parse_size("", &v), -EINVAL);
        CHECK_EQ_INT(nb_parse_size("-1", &v), -EINVAL);
        CHECK_EQ_INT(nb_parse_size("12x", &v), -EINVAL);
        CHECK_EQ_INT(nb_parse_size("99999999999999999999", &v), -EINVAL);
        CHECK_EQ_INT(nb_parse_size("99999999999T", &v), -ERANGE);
}

/* What a terminal is shown of untrusted bytes: controls, C1 and bad UTF-8 visible,
 * and a NUL (in bytes with a length) one more control, not their end. */
TEST(escape_text_and_bytes) {
        _cleanup_free_ char *e = nb_escape("a\x1b[2J\xc2\x9b\xffz\n", 0);
        CHECK_EQ_STR(e, "a\\x1b[2J\\u009b\\xffz\\x0a");
        _cleanup_free_ char *q = nb_quote("say \"hi\"");
        CHECK_EQ_STR(q, "\"say \\\"hi\\\"\"");
        static const char bytes[] = { 'B', 0, 'A', '\n', (char) 0xc3 }; /* a cut "é" at the end */
        _cleanup_free_ char *b = nb_escape_bytes(bytes, sizeof(bytes), NB_ESCAPE_KEEP_NEWLINES);
        CHECK_EQ_STR(b, "B\\x00A\n\\xc3");
        _cleanup_free_ char *empty = nb_escape_bytes("", 0, 0);
        CHECK_EQ_STR(empty, "");
}

TEST(error_wrap_keeps_context) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(nb_error_set(&err, ENOENT, "--ro-bind %s", "/nope"), -ENOENT);
        CHECK_EQ_STR(nb_error_message(&err), "--ro-bind /nope: No such file or directory");
        CHECK_EQ_INT(nb_error_wrap(&err, 0, "sandbox"), -ENOENT);
        CHECK_EQ_STR(nb_error_message(&err), "sandbox: --ro-bind /nope: No such file or directory");
        CHECK_EQ_INT(nb_error_set(NULL, EPERM, "x"), -EPERM);
}

TEST(beneath_refuses_escape_and_symlinks) {
        char tmpl[] = "/tmp/nb-test-fs.XXXXXX";
        _cleanup_close_ int dfd = make_tmpdir(tmpl);
        CHECK(dfd >= 0);
        CHECK_EQ_INT(nb_write_file_beneath(dfd, "a.txt", "hello", 5, 0644), 0);
        CHECK(symlinkat("/etc/passwd", dfd, "link") == 0);
        CHECK(mkdirat(dfd, "sub", 0755) == 0);
        CHECK(symlinkat("..", dfd, "sub/up") == 0);

        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_read_file_beneath(dfd, "a.txt", 100, &data, &len), 0);
        CHECK_EQ_INT(len, 5);
        CHECK_EQ_STR(data, "hello");

        char *bad = NULL;
        CHECK_EQ_INT(nb_read_file_beneath(dfd, "link", 100, &bad, &len), -ELOOP);
        CHECK_EQ_INT(nb_read_file_beneath(dfd, "../etc/passwd", 100, &bad, &len), -EXDEV);
        CHECK_EQ_INT(nb_read_file_beneath(dfd, "/etc/passwd", 100, &bad, &len), -EXDEV);
        CHECK_EQ_INT(nb_read_file_beneath(dfd, "sub/up/a.txt", 100, &bad, &len), -ELOOP);
        CHECK_EQ_INT(nb_read_file_beneath(dfd, "a.txt", 3, &bad, &len), -EFBIG);
        CHECK_EQ_INT(nb_write_file_beneath(dfd, "link", "x", 1, 0644), -ELOOP);
        CHECK(bad == NULL);

        _cleanup_close_ int deep = nb_mkdir_p_beneath(dfd, "x/y/z", 0755);
        CHECK(deep >= 0);
        CHECK_EQ_INT(nb_mkdir_p_beneath(dfd, "x/../../z", 0755), -EXDEV);
        CHECK_EQ_INT(nb_mkdir_p_beneath(dfd, "/tmp/nb-test-abs", 0755), -EXDEV);
        CHECK_EQ_INT(nb_mkdir_p_beneath(AT_FDCWD, "/tmp/nb-test-abs", 0755), -EXDEV);
        CHECK_EQ_INT(nb_write_file_atomic(dfd, "x/y/z/f", "new", 3, 0644), 0);
        _cleanup_free_ char *again = NULL;
        CHECK_EQ_INT(nb_read_file_beneath(dfd, "x/y/z/f", 100, &again, &len), 0);
        CHECK_EQ_STR(again, "new");

        /* The link a refused walk met, named by its own prefix. */
        CHECK_EQ_INT(nb_mkdir_p_beneath(dfd, "sub/up/x", 0755), -ELOOP);
        _cleanup_free_ char *met = nb_link_beneath(dfd, "sub/up/x");
        CHECK(met != NULL);
        CHECK_EQ_STR(met, "sub/up");
        _cleanup_free_ char *met_last = nb_link_beneath(dfd, "x//y/../link");
        CHECK(met_last == NULL); /* ".." is never walked, not even to name a link */
        _cleanup_free_ char *met_first = nb_link_beneath(dfd, "link/a/b");
        CHECK(met_first != NULL);
        CHECK_EQ_STR(met_first, "link");
        CHECK(nb_link_beneath(dfd, "x/y/z") == NULL);
        CHECK(nb_link_beneath(dfd, "x/missing/z") == NULL);

        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, tmpl), 0);
        struct stat st;
        CHECK(stat("/etc/passwd", &st) == 0);
        CHECK(stat(tmpl, &st) < 0 && errno == ENOENT);
}
