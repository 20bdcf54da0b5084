/* SPDX-License-Identifier: MIT */
/* nestbox cache: look at, shrink and check the cache directory. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cache/cas.h"
#include "cache/remote.h"
#include "cli/cli.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

static const char usage[] =
        "usage: nestbox cache [--cache DIR] stats\n"
        "       nestbox cache [--cache DIR] gc --max-size SIZE\n"
        "       nestbox cache [--cache DIR] verify [--repair]\n"
        "\n"
        "The cache is DIR, or $XDG_CACHE_HOME/nestbox, or ~/.cache/nestbox: blobs (cas/),\n"
        "action results (ac/), locked virtualenvs (venvs/), materialised input trees\n"
        "(trees/) and writes in progress (tmp/).\n"
        "\n"
        "  stats     entries and bytes per namespace, the total, and the last run's\n"
        "            remote cache counters\n"
        "  gc        removes the least recently used entries until the total is at most\n"
        "            SIZE, and leftovers in tmp/ untouched for an hour; says what it kept\n"
        "  verify    checks every blob against its digest, every action record against\n"
        "            its header, every venv for its completion marker, nestbox's driver\n"
        "            against its digest and every tree for being whole; prints one line\n"
        "            per damaged entry\n"
        "\n"
        "  --cache DIR   the cache directory\n"
        "  -h, --help    this text (or the manual of one command: nestbox cache gc --help)\n"
        "\n"
        "Exit status: 0 done (verify: no damage), 1 verify found damage (even when\n"
        "--repair removed it), 2 usage error, 3 the cache could not be read or changed.\n";

static const char stats_usage[] =
        "usage: nestbox cache [--cache DIR] stats\n"
        "\n"
        "Prints, for cas, ac, venvs and trees, the number of entries and their size (the\n"
        "sum of the files' apparent sizes, human readable and in bytes), then the total\n"
        "that gc bounds, then what sits in tmp/ (writes in progress or left by a crash;\n"
        "not entries, not counted in the total), then the remote cache the last run that\n"
        "had one used (--remote-cache or remote_cache in nestbox.json): its hits, misses,\n"
        "uploads, errors and the bytes it moved each way.\n"
        "\n"
        "Exit status: 0, 2 usage error, 3 the cache could not be read.\n";

static const char gc_usage[] =
        "usage: nestbox cache [--cache DIR] gc --max-size SIZE\n"
        "\n"
        "Removes entries, least recently used first, until the total is at most SIZE (like\n"
        "500M, 2G; powers of 1024). An entry's last use is its modification time, which\n"
        "every use sets to the time that run began (not the access time: right on noatime\n"
        "mounts too); of the entries one run used, the largest goes first, so a venv goes\n"
        "before the results that used it.\n"
        "Leftovers in tmp/ that nothing has touched for an hour are removed too. Venvs and\n"
        "trees go whole: each leaves its place in one rename before it is deleted, so a\n"
        "concurrent run sees it entirely or not at all.\n"
        "\n"
        "Prints what it removed per namespace, then what it kept: the entries and bytes\n"
        "left per namespace and their total.\n"
        "\n"
        "  --max-size SIZE   the size to shrink the cache to (required)\n"
        "\n"
        "Exit status: 0, 2 usage error, 3 the cache could not be read or changed.\n";

static const char verify_usage[] =
        "usage: nestbox cache [--cache DIR] verify [--repair]\n"
        "\n"
        "Checks every entry: a blob against the SHA-256 it is named by, an action record\n"
        "against the digest in its header line, a venv for its completion marker, a tree\n"
        "for being a whole directory (trees are published by one rename), nestbox's own\n"
        "driver for being byte for byte what this nestbox carries. Prints one line\n"
        "per damaged entry. Reads already remove a damaged entry they meet; verify finds\n"
        "the ones nothing has read yet.\n"
        "\n"
        "  --repair   remove each damaged entry (the next run rebuilds it)\n"
        "\n"
        "Exit status: 0 no damage, 1 damage found (also when --repair removed it),\n"
        "2 usage error, 3 the cache could not be read or changed.\n";

static const struct option top_options[] = {
        { "cache", required_argument, NULL, 'C' },
        { "help", no_argument, NULL, 'h' },
        {},
};

/* "3.4 MiB": one decimal from KiB up. */
static void human(uint64_t bytes, char *buf, size_t size) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double) bytes;
        size_t u = 0;
        while (v >= 1024 && u + 1 < NB_ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, size, "%" PRIu64 " B", bytes);
        else
                snprintf(buf, size, "%.1f %s", v, units[u]);
}

static void print_row(const char *what, uint64_t entries, uint64_t bytes, const char *note) {
        char h[32];
        human(bytes, h, sizeof(h));
        printf("%-7s %6" PRIu64 " %-8s %10s (%" PRIu64 " bytes)%s\n", what, entries, entries == 1 ? "entry" : "entries",
               h, bytes, note);
}

static uint64_t total_entries(const struct nb_cache_stats *st) {
        return st->cas_entries + st->ac_entries + st->venv_entries + st->tree_entries;
}

static uint64_t total_bytes(const struct nb_cache_stats *st) {
        return st->cas_bytes + st->ac_bytes + st->venv_bytes + st->tree_bytes;
}

/* The entries per namespace and their total: what stats shows, and what gc kept. */
static void print_entries(const struct nb_cache_stats *st) {
        print_row("cas", st->cas_entries, st->cas_bytes, "");
        print_row("ac", st->ac_entries, st->ac_bytes, "");
        print_row("venvs", st->venv_entries, st->venv_bytes, "");
        print_row("trees", st->tree_entries, st->tree_bytes, "");
        print_row("total", total_entries(st), total_bytes(st), "");
}

/* The counters of the last run that used a remote cache with this cache. */
static int print_remote(struct nb_cache_dir *c) {
        struct nb_remote_last last;
        int r = nb_remote_load_stats(c, &last);
        if (r == -ENOENT) {
                printf("remote  no run with a remote cache has used this cache\n");
                return 0;
        }
        if (r < 0)
                return nb_die(NB_EXIT_INFRA, "cache %s: %s", c->path, strerror(-r));
        _cleanup_free_ char *url = last.url;
        char when[64] = "?", down[32], up[32];
        struct tm tm;
        if (gmtime_r(&last.finished, &tm))
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
        human(last.stats.bytes_down, down, sizeof(down));
        human(last.stats.bytes_up, up, sizeof(up));
        printf("remote  %s%s, last run %s:\n", url, last.readonly ? " (read-only)" : "", when);
        printf("        %" PRIu64 " %s, %" PRIu64 " %s, %" PRIu64 " %s, %" PRIu64 " %s; %s down, %s up\n",
               last.stats.hits, last.stats.hits == 1 ? "hit" : "hits", last.stats.misses,
               last.stats.misses == 1 ? "miss" : "misses", last.stats.uploads,
               last.stats.uploads == 1 ? "upload" : "uploads", last.stats.errors,
               last.stats.errors == 1 ? "error" : "errors", down, up);
        return 0;
}

static int do_stats(struct nb_cache_dir *c) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_stats st;
        if (nb_cache_stats(c, &st, &err) < 0)
                return nb_die_error(NB_EXIT_INFRA, &err);
        printf("cache   %s\n", c->path);
        print_entries(&st);
        print_row("tmp", st.tmp_entries, st.tmp_bytes, "  in progress or left by a crash; not counted");
        return print_remote(c);
}

static int do_gc(struct nb_cache_dir *c, uint64_t max_size) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_stats before, after;
        uint64_t freed = 0;
        if (nb_cache_stats(c, &before, &err) < 0 || nb_cache_gc(c, max_size, &freed, &err) < 0 ||
            nb_cache_stats(c, &after, &err) < 0)
                return nb_die_error(NB_EXIT_INFRA, &err);
        /* Per namespace from the difference: concurrent writers may blur it, never by
         * much, and gc itself only needs to report what it did overall. */
        const struct {
                const char *name;
                uint64_t b_entries, b_bytes, a_entries, a_bytes;
        } rows[] = {
                { "cas", before.cas_entries, before.cas_bytes, after.cas_entries, after.cas_bytes },
                { "ac", before.ac_entries, before.ac_bytes, after.ac_entries, after.ac_bytes },
                { "venvs", before.venv_entries, before.venv_bytes, after.venv_entries, after.venv_bytes },
                { "trees", before.tree_entries, before.tree_bytes, after.tree_entries, after.tree_bytes },
                { "tmp", before.tmp_entries, before.tmp_bytes, after.tmp_entries, after.tmp_bytes },
        };
        char h[32];
        for (size_t i = 0; i < NB_ELEMENTSOF(rows); i++) {
                if (rows[i].a_entries >= rows[i].b_entries)
                        continue;
                uint64_t bytes = rows[i].b_bytes > rows[i].a_bytes ? rows[i].b_bytes - rows[i].a_bytes : 0;
                human(bytes, h, sizeof(h));
                printf("removed %" PRIu64 " %s %s, %s (%" PRIu64 " bytes)\n", rows[i].b_entries - rows[i].a_entries,
                       rows[i].name, rows[i].b_entries - rows[i].a_entries == 1 ? "entry" : "entries", h, bytes);
        }
        human(freed, h, sizeof(h));
        printf("freed %s (%" PRIu64 " bytes); kept:\n", h, freed);
        print_entries(&after);
        return 0;
}

static void print_damage(const char *message, void *userdata) {
        int *n = userdata;
        (*n)++;
        printf("%s\n", message);
        fflush(stdout);
}

static int do_verify(struct nb_cache_dir *c, bool repair) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        int printed = 0;
        struct nb_store s = { c, print_damage, &printed };
        int damaged = nb_cache_verify(&s, repair, &err);
        if (damaged < 0)
                return nb_die_error(NB_EXIT_INFRA, &err);
        if (damaged == 0) {
                printf("cache %s: no damage found\n", c->path);
                return 0;
        }
        if (repair)
                printf("%d damaged %s found; repaired (removed, the next run rebuilds %s)\n", damaged,
                       damaged == 1 ? "entry" : "entries", damaged == 1 ? "it" : "them");
        else
                printf("%d damaged %s found; 'nestbox cache verify --repair' removes %s\n", damaged,
                       damaged == 1 ? "entry" : "entries", damaged == 1 ? "it" : "them");
        return NB_EXIT_FAILED;
}

static void cache_dir_closep(struct nb_cache_dir *c) {
        nb_cache_dir_close(c);
}

int cmd_cache(int argc, char **argv) {
        const char *cache = NULL;
        int c;
        optind = 1;
        opterr = 0;
        /* "+": stop at the verb; its options are parsed below. */
        while ((c = getopt_long(argc, argv, "+h", top_options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0);
                case 'C':
                        cache = optarg;
                        break;
                default:
                        return nb_die(NB_EXIT_USAGE, "%s: unknown option; see 'nestbox cache --help'", argv[optind - 1]);
                }
        }
        if (optind >= argc)
                return nb_usage(stderr, usage, NB_EXIT_USAGE);
        const char *verb = argv[optind];
        const char *manual;
        if (strcmp(verb, "stats") == 0)
                manual = stats_usage;
        else if (strcmp(verb, "gc") == 0)
                manual = gc_usage;
        else if (strcmp(verb, "verify") == 0)
                manual = verify_usage;
        else
                return nb_die(NB_EXIT_USAGE, "'%s' is not a cache command (stats, gc, verify); see 'nestbox cache --help'",
                              verb);

        static const struct option verb_options[] = {
                { "cache", required_argument, NULL, 'C' },
                { "max-size", required_argument, NULL, 'm' },
                { "repair", no_argument, NULL, 'r' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        argc -= optind;
        argv += optind;
        optind = 1;
        bool repair = false, have_max = false;
        uint64_t max_size = 0;
        while ((c = getopt_long(argc, argv, "h", verb_options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return nb_usage(stdout, manual, 0);
                case 'C':
                        cache = optarg;
                        break;
                case 'm':
                        if (manual != gc_usage)
                                return nb_die(NB_EXIT_USAGE, "--max-size is an option of 'nestbox cache gc'");
                        if (nb_parse_size(optarg, &max_size) < 0)
                                return nb_die(NB_EXIT_USAGE, "--max-size %s: expected a size like 500M or 2G", optarg);
                        have_max = true;
                        break;
                case 'r':
                        if (manual != verify_usage)
                                return nb_die(NB_EXIT_USAGE, "--repair is an option of 'nestbox cache verify'");
                        repair = true;
                        break;
                default:
                        return nb_die(NB_EXIT_USAGE, "%s: unknown option or missing argument; see 'nestbox cache %s --help'",
                                      argv[optind - 1], verb);
                }
        }
        if (optind < argc)
                return nb_die(NB_EXIT_USAGE, "%s: unexpected argument; see 'nestbox cache %s --help'", argv[optind], verb);
        if (manual == gc_usage && !have_max)
                return nb_die(NB_EXIT_USAGE, "gc needs --max-size SIZE; see 'nestbox cache gc --help'");

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        __attribute__((cleanup(cache_dir_closep))) struct nb_cache_dir dir = { .path = NULL, .fd = -1 };
        if (nb_cache_dir_open(&dir, cache, &err) < 0)
                return nb_die_error(NB_EXIT_INFRA, &err);
        if (manual == stats_usage)
                return do_stats(&dir);
        if (manual == gc_usage)
                return do_gc(&dir, max_size);
        return do_verify(&dir, repair);
}
