/* SPDX-License-Identifier: MIT */
#include "test.h"

struct nb_test nb_tests[256];
int nb_n_tests, nb_failures;

int main(int argc, char **argv) {
        int ran = 0;
        for (int i = 0; i < nb_n_tests; i++) {
                if (argc > 1 && strcmp(argv[1], nb_tests[i].name) != 0)
                        continue;
                int before = nb_failures;
                nb_tests[i].fn();
                ran++;
                printf("%s %s\n", nb_failures == before ? "ok  " : "FAIL", nb_tests[i].name);
        }
        /* A binary that checked nothing (no TEST() linked in, or a name that matches
         * none) must not pass for one that checked everything. */
        if (ran == 0) {
                if (argc > 1)
                        fprintf(stderr, "%s: no test named %s\n", argv[0], argv[1]);
                else
                        fprintf(stderr, "%s: no tests registered\n", argv[0]);
                return 1;
        }
        return nb_failures ? 1 : 0;
}
