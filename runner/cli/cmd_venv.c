/* SPDX-License-Identifier: MIT */
/* nestbox venv: build (or find) the locked virtualenv for a lockfile and a wheelhouse
 * and print where it is. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache/cache_dir.h"
#include "cli/cli.h"
#include "python/venv.h"

static const char venv_usage[] =
        "usage: nestbox venv --lock FILE --wheelhouse DIR [--python PATH] [--cache DIR]\n"
        "\n"
        "Installs the wheels pinned by a lockfile into a virtualenv in the cache, once, and\n"
        "prints the venv's absolute path. nestbox installs the wheels itself (no pip): every\n"
        "wheel is checked against its pinned sha256 before it is opened, and every entry is\n"
        "unpacked beneath the venv or refused.\n"
        "\n"
        "The venv is <cache>/venvs/<digest>, where the digest covers the interpreter (its real\n"
        "path, version, ABI and binary), the requirements left after evaluating markers, and\n"
        "each wheel's sha256. It is read-only and never changes; the same inputs give the\n"
        "same path without rebuilding. Inside a sandbox it is mounted at /venv, which is\n"
        "where its scripts' shebangs point.\n"
        "\n"
        "The interpreter must lie beneath the system directories the sandbox mounts (/usr,\n"
        "/bin, /sbin, /lib*), and it runs only inside a sandbox with a test's walls: its probe\n"
        "(what it is, which wheel tags it takes) and the bytecode compilation, which sees the\n"
        "venv read-only at /venv and writes only a capped /out the host copies .pyc files\n"
        "back from. A wheel may unpack to 64 times its own size (at least 256 MiB, at most\n"
        "16 GiB); more is refused as a zip bomb before it is written.\n"
        "\n"
        "options:\n"
        "  --lock FILE        pip hash-checking requirements: name==version --hash=sha256:HEX\n"
        "                     per requirement; comments, '\\' continuations and environment\n"
        "                     markers after ';' are understood\n"
        "  --wheelhouse DIR   a folder of .whl files; for each requirement the wheel whose tags\n"
        "                     fit the interpreter best is chosen\n"
        "  --python PATH      the interpreter to build for (default: /usr/bin/python3)\n"
        "  --cache DIR        the cache (default: $XDG_CACHE_HOME/nestbox or ~/.cache/nestbox)\n"
        "  -h, --help         this text\n"
        "\n"
        "Exit codes: 0 the venv is ready; 2 usage or input error (a bad lockfile or marker,\n"
        "a missing wheel, a hash mismatch, a wheel that is not a wheel, writes outside the\n"
        "venv or over its own files, or inflates past the cap; an interpreter outside the\n"
        "system directories); 3 infrastructure error (the cache cannot be written).\n";

int cmd_venv(int argc, char **argv) {
        static const struct option options[] = {
                { "lock", required_argument, NULL, 'l' },
                { "wheelhouse", required_argument, NULL, 'w' },
                { "python", required_argument, NULL, 'p' },
                { "cache", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *lock = NULL, *wheelhouse = NULL, *python = "/usr/bin/python3", *cache_path = NULL;
        int c;
        opterr = 0;
        optind = 1;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) != -1)
                switch (c) {
                case 'l': lock = optarg; break;
                case 'w': wheelhouse = optarg; break;
                case 'p': python = optarg; break;
                case 'c': cache_path = optarg; break;
                case 'h': return nb_usage(stdout, venv_usage, 0);
                default:
                        return nb_die(NB_EXIT_USAGE, "venv: unknown or incomplete option '%s'; see 'nestbox venv --help'",
                                      argv[optind - 1]);
                }
        if (optind < argc)
                return nb_die(NB_EXIT_USAGE, "venv: unexpected argument '%s'", argv[optind]);
        if (!lock || !wheelhouse)
                return nb_die(NB_EXIT_USAGE, "venv: --lock and --wheelhouse are required; see 'nestbox venv --help'");

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_dir cache;
        int r = nb_cache_dir_open(&cache, cache_path, &err);
        if (r < 0)
                return nb_die_error(NB_EXIT_INFRA, &err);
        struct nb_venv_info info = {};
        r = nb_venv_ensure(&cache, python, lock, wheelhouse, &info, &err);
        nb_cache_dir_close(&cache);
        if (r < 0)
                return nb_fail(&err);
        printf("%s\n", info.path);
        nb_venv_info_done(&info);
        if (fflush(stdout) != 0)
                return nb_die(NB_EXIT_INFRA, "venv: writing the path to stdout failed");
        return 0;
}
