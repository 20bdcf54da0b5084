/* SPDX-License-Identifier: MIT */
/* nestbox bundle: one recorded action in one file, for `nestbox repro FILE` elsewhere. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "action/bundle.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

static const char usage[] =
        "usage: nestbox bundle [options] REF -o FILE.tar.zst\n"
        "\n"
        "Writes one self-contained file holding a recorded action: its input tree, its\n"
        "lockfile, the action itself (seed, shard, run, pytest arguments, environment,\n"
        "limits) and its recorded result; with --with-wheels the wheels its venv is built\n"
        "from too. `nestbox repro FILE` replays it on another machine with its own cache\n"
        "(the interpreter named in the action, /usr/bin/python3 say, must be there).\n"
        "REF is what `nestbox repro` takes: an action digest or a unique prefix of one, or\n"
        "a target name (its last run). The tree is checked to digest as recorded and the\n"
        "lockfile and wheelhouse to give the recorded venv; a bundle is written atomically.\n"
        "\n"
        "  -o FILE, --output FILE\n"
        "                     where to write it (conventionally FILE.tar.zst)\n"
        "  --with-wheels      carry the wheels too (else `repro` needs the venv in its cache,\n"
        "                     or --wheelhouse DIR, and names the wheels it is missing)\n"
        "  --cache DIR        the cache (default $XDG_CACHE_HOME/nestbox or ~/.cache/nestbox)\n"
        NB_REMOTE_USAGE
        "  -h, --help         this text\n"
        "\n"
        "Prints one line: 'wrote app.tar.zst: app/tests (action 3f2a91c0e5d4b7a1), 3 files,\n"
        "2 wheels, 1.2 MiB'.\n"
        "Exit status: 0 written, 2 usage or input error (unknown REF, files or lockfile\n"
        "changed since the run), 3 infrastructure error.\n";

enum { OPT_CACHE = 256, OPT_WITH_WHEELS };

static const struct option options[] = {
        { "output", required_argument, NULL, 'o' },
        { "with-wheels", no_argument, NULL, OPT_WITH_WHEELS },
        { "cache", required_argument, NULL, OPT_CACHE },
        NB_REMOTE_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        {},
};

int cmd_bundle(int argc, char **argv) {
        const char *cache_arg = NULL, *out = NULL;
        bool with_wheels = false;
        struct nb_cache_modes modes = { 0 };
        int c;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0);
                case 'o':
                        out = optarg;
                        break;
                case OPT_WITH_WHEELS:
                        with_wheels = true;
                        break;
                case OPT_CACHE:
                        cache_arg = optarg;
                        break;
                default: {
                        int r = nb_other_option("bundle", argv[optind - 1], c, optarg, NULL, &modes);
                        if (r != 0)
                                return r;
                }
                }
        }
        if (argc - optind != 1 || !out)
                return nb_die(NB_EXIT_USAGE, "expected REF and -o FILE; see 'nestbox bundle --help'");
        const char *ref = argv[optind];
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_dir cache;
        if (nb_cache_dir_open(&cache, cache_arg, &err) < 0)
                return nb_fail(&err);
        struct nb_store store = { .dir = &cache, .warn = nb_warn_line };
        int r = nb_remote_open(&modes, NULL, &store.remote);
        if (r != 0) {
                nb_cache_dir_close(&cache);
                return r;
        }
        char digest[NB_DIGEST_HEX_LEN + 1];
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        struct nb_bundle_stats st;
        r = nb_replay_find(&store, ref, digest, &err);
        if (r >= 0)
                r = nb_bundle_make(&store, digest, with_wheels, &data, &len, &st, &err);
        nb_remote_close(TAKE_PTR(store.remote), &cache, NULL);
        nb_cache_dir_close(&cache);
        if (r < 0 || nb_output_file("--output", out, data, len, &err) < 0)
                return nb_fail(&err);
        bool mib = len >= 1024 * 1024;
        printf("wrote %s: action %.16s, %zu files, %zu wheels, %.1f %s\n", out, digest, st.files, st.wheels,
               (double) len / (mib ? 1024.0 * 1024.0 : 1024.0), mib ? "MiB" : "KiB");
        return 0;
}
