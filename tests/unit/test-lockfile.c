/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "python/lockfile.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "marker-env.h"
#include "test.h"

#define H1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define H2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static int parse(const char *text, struct nb_lockfile *l, struct nb_error *err) {
        return nb_lockfile_parse("default.lock", text, strlen(text), &env311, l, err);
}

/* Parses text expecting -EINVAL and a message containing want. */
static void check_bad(const char *text, const char *want, int line) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        int r = parse(text, &l, &err);
        if (r != -EINVAL || !strstr(nb_error_message(&err), want) || err.klass != NB_ERROR_INPUT) {
                fprintf(stderr, "test-lockfile.c:%d: r=%d class=%d message \"%s\", wanted -EINVAL, input and \"%s\"\n",
                        line, r, (int) err.klass, nb_error_message(&err), want);
                nb_failures++;
        }
        nb_lockfile_done(&l);
}
#define CHECK_BAD(text, want) check_bad(text, want, __LINE__)

TEST(pep503) {
        _cleanup_free_ char *a = nb_pep503_normalize("Typing_Extensions");
        _cleanup_free_ char *b = nb_pep503_normalize("zope.interface");
        _cleanup_free_ char *c = nb_pep503_normalize("A-_.-b");
        CHECK_EQ_STR(a, "typing-extensions");
        CHECK_EQ_STR(b, "zope-interface");
        CHECK_EQ_STR(c, "a-b");
}

TEST(basic) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        const char *text =
                "# generated\n"
                "\n"
                "pytest==7.2.1 \\\n"
                "    --hash=sha256:" H1 " \\\n"
                "    --hash=sha256:" H2 "\n"
                "Typing_Extensions==4.5.0 --hash sha256:" H1 "   # trailing comment\n"
                "attrs[tests]==22.2.0 --hash=sha256:" H2 "\r\n";
        CHECK_EQ_INT(parse(text, &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 3);
        CHECK_EQ_INT(l.n_skipped, 0);
        if (l.n_reqs == 3) {
                /* Sorted by name. */
                CHECK_EQ_STR(l.reqs[0].name, "attrs");
                CHECK_EQ_STR(l.reqs[0].version, "22.2.0");
                CHECK_EQ_INT(l.reqs[0].line, 7);
                CHECK_EQ_STR(l.reqs[1].name, "pytest");
                CHECK_EQ_INT(l.reqs[1].line, 3);
                CHECK_EQ_STR(l.reqs[1].hashes[0], H1);
                CHECK_EQ_STR(l.reqs[1].hashes[1], H2);
                CHECK(l.reqs[1].hashes[2] == NULL);
                CHECK_EQ_STR(l.reqs[2].name, "typing-extensions");
                CHECK_EQ_STR(l.reqs[2].version, "4.5.0");
        }
        nb_lockfile_done(&l);
}

TEST(empty_and_options) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        CHECK_EQ_INT(parse("", &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 0);
        nb_lockfile_done(&l);
        CHECK_EQ_INT(parse("--require-hashes\n--index-url https://x/simple\n# c\n", &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 0);
        nb_lockfile_done(&l);
        /* No trailing newline, uppercase hex is lowercased. */
        CHECK_EQ_INT(parse("a==1 --hash=sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 1);
        if (l.n_reqs == 1)
                CHECK_EQ_STR(l.reqs[0].hashes[0], H1);
        nb_lockfile_done(&l);
        /* sha512 next to sha256 is tolerated, the sha256 is what counts. */
        CHECK_EQ_INT(parse("a==1 --hash=sha512:abcd --hash=sha256:" H2 "\n", &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 1);
        nb_lockfile_done(&l);
}

TEST(markers_in_lockfile) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        const char *text =
                "tomli==2.0.1 ; python_version < \"3.11\" --hash=sha256:" H1 "\n"
                "exceptiongroup==1.1.0 ; python_version < '3.11' \\\n"
                "    --hash=sha256:" H1 "\n"
                "pywin32==305 ; sys_platform == 'win32' --hash=sha256:" H1 "\n"
                "uvloop==0.17.0 ; sys_platform != \"win32\" and platform_machine == 'x86_64' --hash=sha256:" H2 "\n";
        CHECK_EQ_INT(parse(text, &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 1);
        CHECK_EQ_INT(l.n_skipped, 3);
        if (l.n_reqs == 1)
                CHECK_EQ_STR(l.reqs[0].name, "uvloop");
        nb_lockfile_done(&l);
}

TEST(bad_input) {
        CHECK_BAD("pytest --hash=sha256:" H1 "\n", "default.lock:1: pytest is not pinned");
        CHECK_BAD("# x\npytest>=7 --hash=sha256:" H1 "\n", "default.lock:2: pytest is not pinned");
        CHECK_BAD("pytest==7.*  --hash=sha256:" H1 "\n", "is a wildcard");
        CHECK_BAD("pytest===7.2 --hash=sha256:" H1 "\n", "not pinned");
        CHECK_BAD("pytest==7.2,<8 --hash=sha256:" H1 "\n", "only one specifier");
        CHECK_BAD("pytest==7.2.1\n", "default.lock:1: pytest==7.2.1 has no --hash=sha256");
        CHECK_BAD("\n\npytest==7.2.1 --hash=sha512:abcd\n", "default.lock:3: pytest==7.2.1 has no --hash=sha256");
        CHECK_BAD("pytest==7.2.1 --hash=md5:abcd\n", "unsupported algorithm");
        CHECK_BAD("pytest==7.2.1 --hash=sha256:abcd\n", "64 hex characters");
        CHECK_BAD("pytest==7.2.1 --hash=sha256:" H1 "0\n", "64 hex characters");
        CHECK_BAD("pytest==7.2.1 --hash\n", "--hash needs a value");
        CHECK_BAD("pytest==7.2.1 --hash=" H1 "\n", "expected ALGORITHM:HEX");
        CHECK_BAD("pytest==7.2.1 --install-option=x --hash=sha256:" H1 "\n", "option '--install-option=x' is not supported");
        CHECK_BAD("-r other.txt\n", "default.lock:1: option '-r' is not supported");
        CHECK_BAD("-e ./src\n", "option '-e'");
        CHECK_BAD("pytest @ https://x/p.whl --hash=sha256:" H1 "\n", "URL requirements are not supported");
        CHECK_BAD("./local.whl --hash=sha256:" H1 "\n", "expected a package name");
        CHECK_BAD("pytest== --hash=sha256:" H1 "\n", "missing version");
        CHECK_BAD("pytest==7.2.1 extra --hash=sha256:" H1 "\n", "unexpected 'extra'");
        CHECK_BAD("pytest[cov==7.2.1 --hash=sha256:" H1 "\n", "unterminated extras");
        CHECK_BAD("a==1 --hash=sha256:" H1 "\nb==1 --hash=sha256:" H1 "\nA==2 --hash=sha256:" H2 "\n",
                  "default.lock:3: a is pinned twice (also on line 1)");
        CHECK_BAD("a==1 ; --hash=sha256:" H1 "\n", "empty marker");
        CHECK_BAD("a==1 ; extra == 'x' --hash=sha256:" H1 "\n",
                  "default.lock:1: a==1: marker 'extra == 'x'': variable 'extra' is not supported");
        CHECK_BAD("a==1 ; platform_release >= '5' --hash=sha256:" H1 "\n", "variable 'platform_release' is not supported");
        CHECK_BAD("a==1 ; os_name < 'z' --hash=sha256:" H1 "\n", "cannot order");
        CHECK_BAD("a==1 ; python_version < '3.11' or --hash=sha256:" H1 "\n", "expected a variable");
}

TEST(nul_byte) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        CHECK_EQ_INT(nb_lockfile_parse("x.lock", "a==1\0b", 6, &env311, &l, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "NUL") != NULL);
}

TEST(comments_like_pip) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        /* A '#' inside a word is not a comment; a comment line ends a continuation. */
        const char *text =
                "a==1 \\\n"
                "# comment \\\n"
                "--hash=sha256:" H1 "\n";
        CHECK_EQ_INT(parse(text, &l, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "default.lock:1: a==1 has no --hash") != NULL);
        nb_lockfile_done(&l);
        nb_error_clear(&err);
        CHECK_EQ_INT(parse("a==1+local#x --hash=sha256:" H1 "\n", &l, &err), -EINVAL);
        nb_lockfile_done(&l);
}
