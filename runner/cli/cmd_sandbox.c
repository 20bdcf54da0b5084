/* SPDX-License-Identifier: MIT */
/* nestbox sandbox: any command in the nestbox sandbox, like bwrap. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"
#include "nestbox/sandbox.h"

static const char usage[] =
        "usage: nestbox sandbox [options] -- CMD [ARGS...]\n"
        "\n"
        "Runs CMD as uid 1000 in new user, mount, pid, net, uts, ipc and cgroup namespaces,\n"
        "on an empty root with only what the options add, a fresh /proc, a minimal /dev,\n"
        "a generated /etc (passwd, group, hosts) and a tmpfs /tmp; all capabilities dropped,\n"
        "no_new_privs set and a seccomp deny list in force. The environment is empty but\n"
        "for --setenv.\n"
        "\n"
        "  --ro-bind SRC DST      bind host path SRC read-only at DST\n"
        "  --bind SRC DST         bind host path SRC read-write at DST\n"
        "  --tmpfs DST[:SIZE]     a fresh tmpfs at DST (SIZE like 64M; default 64M)\n"
        "  --symlink TARGET DST   a symlink DST -> TARGET\n"
        "  --dir DST              an empty directory DST\n"
        "  --setenv KEY VALUE     set KEY=VALUE in the command's environment\n"
        "  --chdir DIR            working directory inside (default /)\n"
        "  --hostname NAME        hostname inside (default nestbox)\n"
        "  --timeout SECONDS      SIGABRT after SECONDS, SIGKILL of everything 5s later\n"
        "  --kill-grace SECONDS   time between SIGABRT and SIGKILL (default 5)\n"
        "  --memory BYTES         memory limit (k, M, G suffixes)\n"
        "  --pids N               limit on processes and threads\n"
        "  --tmp-size BYTES       size of the default /tmp (default 256M)\n"
        "  --network MODE         loopback (default: lo up, nothing else) or none\n"
        "  --allow-syscall NAME   take NAME off the seccomp deny list (repeatable)\n"
        "  --uid N, --gid N       ids inside (default 1000)\n"
        "  --no-denial-report     denied syscalls answer EPERM from the filter itself and\n"
        "                         are not counted (the report's \"denied\" in --result)\n"
        "  --result FILE          write the result as JSON to FILE: exit status, limits,\n"
        "                         \"landlock_abi\" and \"denied\" ({\"mount\": 1, ...}: the\n"
        "                         denied calls the command made, counted by the supervisor)\n"
        "  --test-wrong-mount SRC DST  TEST ONLY: bind SRC read-write at DST without telling\n"
        "                         Landlock, as a mistake in the mount table would; writes\n"
        "                         there must still fail (EACCES) where the kernel has Landlock\n"
        "  -h, --help             this text\n"
        "\n"
        "Exit status: the command's own, 128+N when it died of signal N, 4 when it hit the\n"
        "timeout, 2 for a usage error or a command that cannot be executed, 3 when the\n"
        "sandbox could not be built.\n"
        "\n"
        "Where the kernel has no Landlock, the sandbox runs without that second wall and\n"
        "says so on stderr (NESTBOX_TEST_NO_LANDLOCK=1 simulates such a kernel: test only).\n";

enum {
        OPT_RO_BIND = 256, OPT_BIND, OPT_TMPFS, OPT_SYMLINK, OPT_DIR, OPT_SETENV, OPT_CHDIR,
        OPT_HOSTNAME, OPT_TIMEOUT, OPT_KILL_GRACE, OPT_MEMORY, OPT_PIDS, OPT_TMP_SIZE,
        OPT_NETWORK, OPT_ALLOW_SYSCALL, OPT_UID, OPT_GID, OPT_RESULT, OPT_NO_DENIAL_REPORT,
        OPT_TEST_WRONG_MOUNT,
};

static const struct option options[] = {
        { "ro-bind", required_argument, NULL, OPT_RO_BIND },
        { "bind", required_argument, NULL, OPT_BIND },
        { "tmpfs", required_argument, NULL, OPT_TMPFS },
        { "symlink", required_argument, NULL, OPT_SYMLINK },
        { "dir", required_argument, NULL, OPT_DIR },
        { "setenv", required_argument, NULL, OPT_SETENV },
        { "chdir", required_argument, NULL, OPT_CHDIR },
        { "hostname", required_argument, NULL, OPT_HOSTNAME },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "kill-grace", required_argument, NULL, OPT_KILL_GRACE },
        { "memory", required_argument, NULL, OPT_MEMORY },
        { "pids", required_argument, NULL, OPT_PIDS },
        { "tmp-size", required_argument, NULL, OPT_TMP_SIZE },
        { "network", required_argument, NULL, OPT_NETWORK },
        { "allow-syscall", required_argument, NULL, OPT_ALLOW_SYSCALL },
        { "uid", required_argument, NULL, OPT_UID },
        { "gid", required_argument, NULL, OPT_GID },
        { "result", required_argument, NULL, OPT_RESULT },
        { "no-denial-report", no_argument, NULL, OPT_NO_DENIAL_REPORT },
        { "test-wrong-mount", required_argument, NULL, OPT_TEST_WRONG_MOUNT },
        { "help", no_argument, NULL, 'h' },
        {},
};

static int parse_seconds(const char *opt, const char *s, double *ret) {
        char *end = NULL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !(v > 0) || v > 1e7)
                return nb_die(NB_EXIT_USAGE, "%s %s: expected a positive number of seconds", opt, s);
        *ret = v;
        return 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t *ret, bool size) {
        if (size) {
                if (nb_parse_size(s, ret) < 0 || *ret == 0)
                        return nb_die(NB_EXIT_USAGE, "%s %s: expected a size like 512M", opt, s);
                return 0;
        }
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || v == 0 || v > 0xffffffffULL)
                return nb_die(NB_EXIT_USAGE, "%s %s: expected a positive integer", opt, s);
        *ret = v;
        return 0;
}

/* The second argument of a two-argument option (getopt_long takes only one). */
static const char *second_arg(int argc, char **argv, const char *opt) {
        if (optind >= argc || strcmp(argv[optind], "--") == 0) {
                nb_die(NB_EXIT_USAGE, "--%s needs two arguments; see 'nestbox sandbox --help'", opt);
                return NULL;
        }
        return argv[optind++];
}

/* nb_sandbox_add_mount, its failure reported the command's way. */
static int add_mount(struct nb_sandbox_config *cfg, enum nb_mount_kind kind, const char *opt,
                     const char *src, const char *dst, uint64_t size) {
        int r = nb_sandbox_add_mount(cfg, kind, src, dst, size);
        if (r == -ENOMEM)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        if (r < 0)
                return nb_die(NB_EXIT_USAGE, "%s %s: %s", opt, dst, strerror(-r));
        return 0;
}

static int add_bind(struct nb_sandbox_config *cfg, enum nb_mount_kind kind, const char *opt,
                    const char *src, const char *dst) {
        struct stat st;
        if (stat(src, &st) < 0)
                return nb_die(NB_EXIT_USAGE, "%s %s: %s", opt, src, strerror(errno));
        if (dst[0] != '/')
                return nb_die(NB_EXIT_USAGE, "%s %s %s: the destination must be an absolute path", opt, src, dst);
        return add_mount(cfg, kind, opt, src, dst, 0);
}

/* *field = a copy of value. */
static int set_string(char **field, const char *value) {
        char *copy = strdup(value);
        if (!copy)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        free(*field);
        *field = copy;
        return 0;
}

/* --result FILE is opened before the command runs, so a path that cannot be written
 * is a usage error up front, not a lost status afterwards. */
static int open_result(const char *path, FILE **ret) {
        *ret = fopen(path, "we");
        if (!*ret)
                return nb_die(NB_EXIT_USAGE, "--result %s: %s", path, strerror(errno));
        return 0;
}

static json_t *denied_json(const struct nb_sandbox_result *res) {
        if (!res->denials_reported)
                return json_null();
        json_t *d = json_object();
        for (size_t i = 0; d && i < res->n_denied; i++)
                if (json_object_set_new(d, res->denied[i].name, json_integer((json_int_t) res->denied[i].count)) < 0) {
                        json_decref(d);
                        return NULL;
                }
        return d;
}

static int write_result(FILE *f, const char *path, const struct nb_sandbox_result *res) {
        _cleanup_(json_decrefp) json_t *j = json_pack(
                "{s:i, s:i, s:b, s:b, s:b, s:f, s:f, s:f, s:I, s:{s:s, s:s}, s:i, s:o}",
                "exit_code", res->exit_code, "signal", res->signal, "timed_out", res->timed_out,
                "oom_killed", res->oom_killed, "pids_limited", res->pids_limited,
                "wall_sec", res->wall_sec, "user_sec", res->user_sec, "sys_sec", res->sys_sec,
                "peak_rss_bytes", (json_int_t) res->peak_rss_bytes,
                "limits", "memory", nb_limit_backend_name(res->memory_backend),
                "pids", nb_limit_backend_name(res->pids_backend),
                "landlock_abi", res->landlock_abi, "denied", denied_json(res));
        if (!j || json_dumpf(j, f, JSON_SORT_KEYS | JSON_INDENT(2)) < 0 || fputc('\n', f) == EOF || fflush(f) != 0)
                return nb_die(NB_EXIT_INFRA, "--result %s: %s", path, strerror(errno ? errno : ENOMEM));
        return 0;
}

static void config_donep(struct nb_sandbox_config *c) {
        nb_sandbox_config_done(c);
}

int cmd_sandbox(int argc, char **argv) {
        __attribute__((cleanup(config_donep))) struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        const char *result_path = NULL;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        int c, r;
        const char *second;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
                r = 0;
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0);
                case OPT_RO_BIND:
                case OPT_BIND:
                        if (!(second = second_arg(argc, argv, c == OPT_BIND ? "bind" : "ro-bind")))
                                return NB_EXIT_USAGE;
                        r = add_bind(&cfg, c == OPT_BIND ? NB_MOUNT_BIND : NB_MOUNT_RO_BIND,
                                     c == OPT_BIND ? "--bind" : "--ro-bind", optarg, second);
                        break;
                case OPT_TMPFS: {
                        _cleanup_free_ char *dst = strdup(optarg);
                        if (!dst)
                                return nb_die(NB_EXIT_INFRA, "out of memory");
                        char *colon = strchr(dst, ':');
                        uint64_t size = 0;
                        if (colon) {
                                *colon = 0;
                                if (nb_parse_size(colon + 1, &size) < 0 || size == 0)
                                        return nb_die(NB_EXIT_USAGE, "--tmpfs %s: expected DST:SIZE with a size "
                                                      "like 64M", optarg);
                        }
                        if (dst[0] != '/')
                                return nb_die(NB_EXIT_USAGE, "--tmpfs %s: expected an absolute path", optarg);
                        r = add_mount(&cfg, NB_MOUNT_TMPFS, "--tmpfs", NULL, dst, size);
                        break;
                }
                case OPT_SYMLINK:
                        if (!(second = second_arg(argc, argv, "symlink")))
                                return NB_EXIT_USAGE;
                        if (second[0] != '/')
                                return nb_die(NB_EXIT_USAGE, "--symlink %s %s: expected an absolute path", optarg, second);
                        r = add_mount(&cfg, NB_MOUNT_SYMLINK, "--symlink", optarg, second, 0);
                        break;
                case OPT_DIR:
                        if (optarg[0] != '/')
                                return nb_die(NB_EXIT_USAGE, "--dir %s: expected an absolute path", optarg);
                        r = add_mount(&cfg, NB_MOUNT_DIR, "--dir", NULL, optarg, 0);
                        break;
                case OPT_SETENV:
                        if (!(second = second_arg(argc, argv, "setenv")))
                                return NB_EXIT_USAGE;
                        r = nb_sandbox_setenv(&cfg, optarg, second);
                        if (r == -ENOMEM)
                                return nb_die(NB_EXIT_INFRA, "out of memory");
                        if (r < 0)
                                return nb_die(NB_EXIT_USAGE, "--setenv %s: not a valid variable name", optarg);
                        break;
                case OPT_CHDIR:
                        r = set_string(&cfg.cwd, optarg);
                        break;
                case OPT_HOSTNAME:
                        if (!*optarg || strlen(optarg) > 64)
                                return nb_die(NB_EXIT_USAGE, "--hostname %s: expected 1 to 64 characters", optarg);
                        r = set_string(&cfg.hostname, optarg);
                        break;
                case OPT_TIMEOUT:
                        r = parse_seconds("--timeout", optarg, &cfg.timeout_sec);
                        break;
                case OPT_KILL_GRACE:
                        r = parse_seconds("--kill-grace", optarg, &cfg.kill_grace_sec);
                        break;
                case OPT_MEMORY:
                        r = parse_u64("--memory", optarg, &cfg.memory_bytes, true);
                        break;
                case OPT_PIDS:
                        r = parse_u64("--pids", optarg, &cfg.pids_max, false);
                        break;
                case OPT_TMP_SIZE:
                        r = parse_u64("--tmp-size", optarg, &cfg.tmp_size, true);
                        break;
                case OPT_NETWORK:
                        if (strcmp(optarg, "none") == 0)
                                cfg.network = NB_NET_NONE;
                        else if (strcmp(optarg, "loopback") == 0)
                                cfg.network = NB_NET_LOOPBACK;
                        else
                                return nb_die(NB_EXIT_USAGE, "--network %s: expected none or loopback", optarg);
                        break;
                case OPT_ALLOW_SYSCALL:
                        if (nb_sandbox_allow_syscall(&cfg, optarg, &err) < 0)
                                return nb_die_error(NB_EXIT_USAGE, &err);
                        break;
                case OPT_UID:
                case OPT_GID: {
                        uint64_t id;
                        if ((r = parse_u64(c == OPT_UID ? "--uid" : "--gid", optarg, &id, false)) != 0)
                                return r;
                        if (c == OPT_UID)
                                cfg.uid = (uid_t) id;
                        else
                                cfg.gid = (gid_t) id;
                        break;
                }
                case OPT_RESULT:
                        result_path = optarg;
                        break;
                case OPT_NO_DENIAL_REPORT:
                        cfg.no_denial_report = true;
                        break;
                case OPT_TEST_WRONG_MOUNT:
                        if (!(second = second_arg(argc, argv, "test-wrong-mount")))
                                return NB_EXIT_USAGE;
                        if ((r = add_bind(&cfg, NB_MOUNT_BIND, "--test-wrong-mount", optarg, second)) == 0)
                                cfg.mounts[cfg.n_mounts - 1].test_unlisted = true;
                        break;
                case '?':
                default:
                        if (optopt && optopt < 256 && optopt != '?')
                                return nb_die(NB_EXIT_USAGE, "unknown option -%c; see 'nestbox sandbox --help'", optopt);
                        return nb_die(NB_EXIT_USAGE, "%s: unknown option or missing argument; see 'nestbox sandbox --help'",
                                      argv[optind - 1]);
                }
                if (r != 0)
                        return r;
        }
        if (optind < argc && strcmp(argv[optind], "--") == 0)
                optind++;
        if (optind >= argc)
                return nb_die(NB_EXIT_USAGE, "no command given; see 'nestbox sandbox --help'");
        if (nb_sandbox_set_argv(&cfg, argv + optind) < 0)
                return nb_die(NB_EXIT_INFRA, "out of memory");

        _cleanup_fclose_ FILE *result_file = NULL;
        if (result_path && (r = open_result(result_path, &result_file)) != 0)
                return r;
        __attribute__((cleanup(nb_sandbox_result_done))) struct nb_sandbox_result res = { .out_fd = -1 };
        r = nb_sandbox_run(&cfg, &res, &err);
        if (r < 0)
                return nb_die_error(res.exec_failed ? NB_EXIT_USAGE : NB_EXIT_INFRA, &err);
        if (res.landlock_abi == 0)
                fprintf(stderr, "nestbox: warning: no Landlock on this kernel: the sandbox ran without its "
                                "second wall (namespaces and seccomp only)\n");
        if (result_path && (r = write_result(result_file, result_path, &res)) != 0)
                return r;
        if (res.timed_out)
                return NB_EXIT_TIMEOUT;
        if (res.signal)
                return 128 + res.signal;
        return res.exit_code;
}
