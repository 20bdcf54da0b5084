/* SPDX-License-Identifier: MIT */
/* A tiny TEST() registry in the spirit of systemd's src/shared/tests.h: each TEST()
 * registers itself; main() runs them all and exits non-zero if any check failed. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*nb_test_fn)(void);
struct nb_test {
        const char *name;
        nb_test_fn fn;
};

extern struct nb_test nb_tests[256];
extern int nb_n_tests, nb_failures;

#define TEST(tname)                                                              \
        static void test_##tname(void);                                          \
        __attribute__((constructor)) static void register_##tname(void) {        \
                nb_tests[nb_n_tests].name = #tname;                              \
                nb_tests[nb_n_tests++].fn = test_##tname;                        \
        }                                                                       \
        static void test_##tname(void)

#define CHECK(cond)                                                             \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,  \
                                __LINE__, #cond);                               \
                        nb_failures++;                                          \
                }                                                               \
        } while (0)

#define CHECK_EQ_INT(a, b)                                                      \
        do {                                                                    \
                long long _a = (long long) (a), _b = (long long) (b);           \
                if (_a != _b) {                                                 \
                        fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n",   \
                                __FILE__, __LINE__, #a, _a, _b);                \
                        nb_failures++;                                          \
                }                                                               \
        } while (0)

#define CHECK_EQ_STR(a, b)                                                      \
        do {                                                                    \
                const char *_a = (a), *_b = (b);                                \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                        \
                        fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", \
                                __FILE__, __LINE__, #a, _a ? _a : "(null)",     \
                                _b ? _b : "(null)");                            \
                        nb_failures++;                                          \
                }                                                               \
        } while (0)
