/* SPDX-License-Identifier: MIT */
#include "test.h"

struct nb_test nb_tests[256];
int nb_n_tests, nb_failures;

int main(int argc, char **argv) {
        for (int i = 0; i < nb_n_tests; i++) {
                if (argc > 1 && strcmp(argv[1], nb_tests[i].name) != 0)
                        continue;
                int before = nb_failures;
                nb_tests[i].fn();
                printf("%s %s\n", nb_failures == before ? "ok  " : "FAIL", nb_tests[i].name);
        }
        return nb_failures ? 1 : 0;
}
