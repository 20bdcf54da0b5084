/* SPDX-License-Identifier: MIT */
/* Choosing a wheel (runner/python/wheel.c) and installing its files (wheel_files.c),
 * with small wheels built here and an interpreter described by hand, so the test is
 * the same on any host. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cas.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "python/wheel.h"
#include "python/wheel_files.h"
#include "test.h"
#include "wheel-maker.h"

#define BOGUS "0000000000000000000000000000000000000000000000000000000000000000"

static const struct nb_python py311 = {
        .path = (char *) "/usr/bin/python3.11", .version = (char *) "3.11.2", .version_short = (char *) "3.11",
        .major = 3, .minor = 11, .implementation = (char *) "cpython", .abiflags = (char *) "",
        .interp_tag = (char *) "cp311", .abi_tag = (char *) "cp311", .plat_tag = (char *) "linux_x86_64",
        .glibc_major = 2, .glibc_minor = 36,
};

struct house {
        char path[40];
        int fd;
};

static void house_open(struct house *h) {
        strcpy(h->path, "/tmp/nb-test-wheel.XXXXXX");
        CHECK(mkdtemp(h->path) != NULL);
        h->fd = open(h->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(h->fd >= 0);
}

static void house_close(struct house *h) {
        close(h->fd);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, h->path), 0);
}

/* Selects name==version allowing the hashes given (NULL-terminated). */
static int select_wheel(struct house *h, struct nb_store *store, const char *name, const char *version,
                        char **hashes, struct nb_wheel *w, struct nb_error *err) {
        struct nb_requirement req = { .name = (char *) name, .version = (char *) version, .hashes = hashes };
        return nb_wheel_select(store, &py311, h->fd, h->path, &req, w, err);
}

TEST(select_by_tags) {
        struct house h;
        house_open(&h);
        char any[NB_DIGEST_HEX_LEN + 1] = "", both[NB_DIGEST_HEX_LEN + 1] = "", cp311[NB_DIGEST_HEX_LEN + 1] = "",
             cp312[NB_DIGEST_HEX_LEN + 1] = "", other[NB_DIGEST_HEX_LEN + 1] = "", v2[NB_DIGEST_HEX_LEN + 1] = "";
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-py3-none-any.whl", "demo", "1.0", any), 0);
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "demo", "1.0", cp311), 0);
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", "demo", "1.0", cp312), 0);
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-2.0-cp311-cp311-linux_x86_64.whl", "demo", "2.0", v2), 0);
        CHECK_EQ_INT(test_write_wheel(h.fd, "demox-1.0-cp311-cp311-linux_x86_64.whl", "demox", "1.0", other), 0);
        CHECK_EQ_INT(test_write_text(h.fd, "demo-1.0.tar.gz", "not a wheel"), 0);
        char *all[] = { any, both, cp311, cp312, other, v2, NULL };

        /* The most specific wheel this interpreter accepts; not the other version, not
         * the other distribution whose name starts the same, not cp312. */
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_wheel w = {};
        CHECK_EQ_INT(select_wheel(&h, NULL, "demo", "1.0", all, &w, &err), 0);
        CHECK_EQ_STR(w.filename, "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl");
        CHECK_EQ_STR(w.sha256, cp311);
        nb_wheel_done(&w);

        /* Without it, the pure wheel; two equal ones tie to the smaller name whatever
         * readdir says. */
        CHECK(unlinkat(h.fd, "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", 0) == 0);
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-py2.py3-none-any.whl", "demo", "1.0", both), 0);
        CHECK_EQ_INT(select_wheel(&h, NULL, "demo", "1.0", all, &w, &err), 0);
        CHECK_EQ_STR(w.filename, "demo-1.0-py2.py3-none-any.whl");
        CHECK_EQ_STR(w.sha256, both);
        nb_wheel_done(&w);

        /* Filenames escape the name's "-" as "_" and may differ in case. */
        char te[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(test_write_wheel(h.fd, "Typing_Extensions-4.5.0-py3-none-any.whl", "typing-extensions", "4.5.0", te), 0);
        char *te_hashes[] = { te, NULL };
        CHECK_EQ_INT(select_wheel(&h, NULL, "typing-extensions", "4.5.0", te_hashes, &w, &err), 0);
        CHECK_EQ_STR(w.filename, "Typing_Extensions-4.5.0-py3-none-any.whl");
        nb_wheel_done(&w);
        house_close(&h);
}

TEST(missing_wheel) {
        struct house h;
        house_open(&h);
        char hex[NB_DIGEST_HEX_LEN + 1];
        /* Only wheels this interpreter cannot use. */
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-cp312-cp312-linux_x86_64.whl", "demo", "1.0", hex), 0);
        char *hashes[] = { hex, NULL };
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_wheel w = {};
        CHECK_EQ_INT(select_wheel(&h, NULL, "demo", "1.0", hashes, &w, &err), -ENOENT);
        CHECK(strstr(nb_error_message(&err), "demo==1.0: no wheel in ") != NULL);
        CHECK(strstr(nb_error_message(&err), "wanted demo-1.0-*.whl for cp311-linux_x86_64") != NULL);
        CHECK_EQ_INT(err.klass, NB_ERROR_INPUT);
        CHECK(w.filename == NULL);
        nb_error_clear(&err);
        CHECK_EQ_INT(select_wheel(&h, NULL, "absent", "2.0", hashes, &w, &err), -ENOENT);
        CHECK(strstr(nb_error_message(&err), "absent==2.0") != NULL);
        house_close(&h);
}

TEST(hash_mismatch) {
        struct house h;
        house_open(&h);
        char hex[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-py3-none-any.whl", "demo", "1.0", hex), 0);
        char *bogus[] = { (char *) BOGUS, (char *) "1111111111111111111111111111111111111111111111111111111111111111", NULL };
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_wheel w = {};
        CHECK_EQ_INT(select_wheel(&h, NULL, "demo", "1.0", bogus, &w, &err), -EBADMSG);
        const char *m = nb_error_message(&err);
        CHECK(strstr(m, "demo==1.0: demo-1.0-py3-none-any.whl: sha256 mismatch: lock says " BOGUS " or 1111") != NULL);
        CHECK(strstr(m, hex) != NULL);
        CHECK_EQ_INT(err.klass, NB_ERROR_INPUT);
        CHECK(w.filename == NULL);
        house_close(&h);
}

/* With a store the hash is remembered by the file's identity: rewriting the file must
 * not be answered from the memo. */
TEST(hash_memo_follows_the_file) {
        struct house h;
        house_open(&h);
        /* The cache inside the wheelhouse: selection looks only at *.whl. */
        _cleanup_free_ char *cache_path = NULL;
        CHECK(asprintf(&cache_path, "%s/cache", h.path) > 0);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_dir cache;
        CHECK_EQ_INT(nb_cache_dir_open(&cache, cache_path, &err), 0);
        struct nb_store store = { .dir = &cache };
        char first[NB_DIGEST_HEX_LEN + 1], second[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-py3-none-any.whl", "demo", "1.0", first), 0);
        char *hashes[] = { first, NULL };
        struct nb_wheel w = {};
        for (int i = 0; i < 2; i++) {
                CHECK_EQ_INT(select_wheel(&h, &store, "demo", "1.0", hashes, &w, &err), 0);
                CHECK_EQ_STR(w.sha256, first);
                nb_wheel_done(&w);
        }
        /* Same name, other bytes (the module text names the file, so change it another way). */
        const struct test_zip_entry other[] = { { "demo/__init__.py", "X = 2\n", 0 }, { NULL, NULL, 0 } };
        CHECK_EQ_INT(test_write_zip(h.fd, "demo-1.0-py3-none-any.whl", other, second), 0);
        CHECK(strcmp(first, second) != 0);
        CHECK_EQ_INT(select_wheel(&h, &store, "demo", "1.0", hashes, &w, &err), -EBADMSG);
        CHECK(strstr(nb_error_message(&err), second) != NULL);
        nb_cache_dir_close(&cache);
        house_close(&h);
}

static char *read_beneath(int dfd, const char *path) {
        char *data = NULL;
        return nb_read_file_beneath(dfd, path, 1 << 20, &data, NULL) < 0 ? NULL : data;
}

static int install(struct house *h, int venv_fd, const char *hex, struct nb_error *err) {
        char *hashes[] = { (char *) hex, NULL };
        struct nb_requirement req = { .name = (char *) "demo", .version = (char *) "1.0", .hashes = hashes };
        struct nb_wheel w = {};
        int r = nb_wheel_select(NULL, &py311, h->fd, h->path, &req, &w, err);
        if (r < 0)
                return r;
        const struct nb_wheel_dest dest = { .fd = venv_fd, .site = "lib/python3.11/site-packages",
                                            .python = "/venv/bin/python" };
        r = nb_wheel_install(&py311, h->fd, &req, &w, &dest, err);
        nb_wheel_done(&w);
        return r;
}

TEST(install_files) {
        struct house h;
        house_open(&h);
        char hex[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-py3-none-any.whl", "demo", "1.0", hex), 0);
        _cleanup_close_ int venv = nb_mkdir_p_beneath(h.fd, "venv", 0755);
        CHECK(venv >= 0);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(install(&h, venv, hex, &err), 0);
        _cleanup_free_ char *init = read_beneath(venv, "lib/python3.11/site-packages/demo/__init__.py");
        _cleanup_free_ char *script = read_beneath(venv, "bin/demo");
        _cleanup_free_ char *installer = read_beneath(venv, "lib/python3.11/site-packages/demo-1.0.dist-info/INSTALLER");
        _cleanup_free_ char *record = read_beneath(venv, "lib/python3.11/site-packages/demo-1.0.dist-info/RECORD");
        CHECK(init && strstr(init, "WHEEL = 'demo-1.0-py3-none-any.whl'"));
        CHECK(script && strncmp(script, "#!/venv/bin/python\n", 19) == 0 && strstr(script, "from demo import main"));
        CHECK_EQ_STR(installer, "nestbox\n");
        CHECK(record && strstr(record, "demo/__init__.py,sha256=") && strstr(record, "../../../bin/demo,sha256=") &&
              strstr(record, "demo-1.0.dist-info/RECORD,,\n"));
        struct stat st;
        CHECK(fstatat(venv, "bin/demo", &st, 0) == 0 && (st.st_mode & 07777) == 0755);
        house_close(&h);
}

TEST(install_refuses) {
        struct house h;
        house_open(&h);
        _cleanup_close_ int venv = nb_mkdir_p_beneath(h.fd, "venv", 0755);
        CHECK(venv >= 0);
        char hex[NB_DIGEST_HEX_LEN + 1];
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;

        /* An entry that climbs out of the venv: nothing is written outside it. */
        const struct test_zip_entry escape[] = {
                { "demo-1.0.dist-info/METADATA", "Name: demo\n", 0 }, { "../../escaped", "x", 0 }, { NULL, NULL, 0 },
        };
        CHECK_EQ_INT(test_write_zip(h.fd, "demo-1.0-py3-none-any.whl", escape, hex), 0);
        CHECK_EQ_INT(install(&h, venv, hex, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "entry ../../escaped escapes the venv") != NULL);
        CHECK(faccessat(AT_FDCWD, "/tmp/escaped", F_OK, 0) < 0);

        /* Not a zip at all, though the lock pins exactly these bytes. */
        nb_error_clear(&err);
        CHECK_EQ_INT(test_write_text(h.fd, "demo-1.0-py3-none-any.whl", "not a zip"), 0);
        _cleanup_close_ int fd = openat(h.fd, "demo-1.0-py3-none-any.whl", O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0 && nb_sha256_fd(fd, hex) == 0);
        CHECK_EQ_INT(install(&h, venv, hex, &err), -EBADMSG);
        CHECK(strstr(nb_error_message(&err), "demo-1.0-py3-none-any.whl: not a zip archive") != NULL);

        /* A zip without the dist-info a wheel needs. */
        nb_error_clear(&err);
        const struct test_zip_entry bare[] = { { "demo/__init__.py", "", 0 }, { NULL, NULL, 0 } };
        CHECK_EQ_INT(test_write_zip(h.fd, "demo-1.0-py3-none-any.whl", bare, hex), 0);
        CHECK_EQ_INT(install(&h, venv, hex, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "needs METADATA, WHEEL and RECORD") != NULL);
        house_close(&h);
}

/* The file changed between selection and installation: the private copy is hashed
 * again, and what it unpacks is what it hashed. */
TEST(install_rechecks_the_hash) {
        struct house h;
        house_open(&h);
        _cleanup_close_ int venv = nb_mkdir_p_beneath(h.fd, "venv", 0755);
        char hex[NB_DIGEST_HEX_LEN + 1], later[NB_DIGEST_HEX_LEN + 1];
        CHECK_EQ_INT(test_write_wheel(h.fd, "demo-1.0-py3-none-any.whl", "demo", "1.0", hex), 0);
        char *hashes[] = { hex, NULL };
        struct nb_requirement req = { .name = (char *) "demo", .version = (char *) "1.0", .hashes = hashes };
        struct nb_wheel w = {};
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        CHECK_EQ_INT(nb_wheel_select(NULL, &py311, h.fd, h.path, &req, &w, &err), 0);
        const struct test_zip_entry other[] = { { "demo/__init__.py", "X = 2\n", 0 }, { NULL, NULL, 0 } };
        CHECK_EQ_INT(test_write_zip(h.fd, "demo-1.0-py3-none-any.whl", other, later), 0);
        const struct nb_wheel_dest dest = { .fd = venv, .site = "lib/python3.11/site-packages", .python = "/venv/bin/python" };
        CHECK_EQ_INT(nb_wheel_install(&py311, h.fd, &req, &w, &dest, &err), -EBADMSG);
        CHECK(strstr(nb_error_message(&err), "demo==1.0") != NULL);
        CHECK(strstr(nb_error_message(&err), later) != NULL);
        struct stat st;
        CHECK(fstatat(venv, "lib/python3.11/site-packages/demo", &st, 0) < 0 && errno == ENOENT);
        nb_wheel_done(&w);
        house_close(&h);
}
