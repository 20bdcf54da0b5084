/* SPDX-License-Identifier: MIT */
/* nestbox run: one action file in, its result (nestbox.result/v1) out. The worker
 * answers each request with the same code (nb_run_request). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/events.h"
#include "cli/output.h"
#include "cli/run_request.h"
#include "cli/summary.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "python/venv.h"

#define ACTION_FILE_MAX (16u << 20)

static const char usage[] =
        "usage: nestbox run [options] ACTION.json|-\n"
        "       nestbox run [options] --action-json JSON\n"
        "\n"
        "Runs one action (nestbox.action/v1, as `nestbox actions` prints; schema:\n"
        "runner/action/schema/action.schema.json) read from a file, from stdin for -, or\n"
        "inline, and prints its result (nestbox.result/v1; runner/action/schema/\n"
        "result.schema.json) as one JSON object on stdout. A cached result is replayed\n"
        "without starting Python (\"cached\": true).\n"
        "\n"
        "  --cache DIR        the cache (default $XDG_CACHE_HOME/nestbox or ~/.cache/nestbox)\n"
        "  --output DIR       write DIR/<target>/junit.xml, log, result.json and coverage.*;\n"
        "                     the result's \"outputs\" gives their paths\n"
        "  --result FILE      write the result to FILE as well\n"
        "  --action-json JSON the action itself instead of a file\n"
        "  --events FILE      write JSON lines (nestbox.events/v1, as `nestbox test --events`) to\n"
        "                     FILE as things happen; with - they go to stdout, and the result is\n"
        "                     then the \"result\" of the last line (run_finished), not printed apart\n"
        "  --no-cache         neither read nor write the result cache\n"
        "  --force            run even when the result is cached (and store the new result)\n"
        "  --cache-failures   replay cached failures too (by default only passes are replayed)\n"
        NB_REMOTE_USAGE
        "  -h, --help         this text\n"
        "\n"
        "A bad action names the field and exits 2:\n"
        "  nestbox: a.json: .policy.memory: \"2X\": expected a size such as \"512M\" or \"2G\"\n"
        "Exit status as `nestbox test`: 0 passed (or FLAKY: a replayed record of a run that\n"
        "passed on a retry), 1 tests failed, 2 usage or input error, 3 sandbox or\n"
        "infrastructure error, 4 timeout.\n";

enum { OPT_CACHE = 256, OPT_OUTPUT, OPT_RESULT, OPT_ACTION_JSON, OPT_EVENTS };

static const struct option options[] = {
        { "cache", required_argument, NULL, OPT_CACHE },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "result", required_argument, NULL, OPT_RESULT },
        { "action-json", required_argument, NULL, OPT_ACTION_JSON },
        { "events", required_argument, NULL, OPT_EVENTS },
        NB_CACHE_MODE_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        {},
};

void nb_run_reply_done(struct nb_run_reply *r) {
        free(r->text);
        r->text = NULL;
}

static int usage_error(struct nb_run_reply *reply, const char *what, const char *problem) {
        if (asprintf(&reply->text, "nestbox: %s%s%s", what, *what ? ": " : "", problem) < 0)
                reply->text = NULL;
        reply->exit_code = NB_EXIT_USAGE;
        reply->failed = true;
        return 0;
}

static int error_reply(struct nb_run_reply *reply, const struct nb_error *err) {
        if (asprintf(&reply->text, "nestbox: %s", nb_error_message(err)) < 0)
                reply->text = NULL;
        reply->exit_code = nb_exit_code(err);
        reply->failed = true;
        return 0;
}

static int read_action(const char *arg, struct nb_action **ret, struct nb_error *err) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r;
        if (strcmp(arg, "-") == 0)
                r = nb_read_fd(STDIN_FILENO, ACTION_FILE_MAX, &text, &len);
        else {
                _cleanup_close_ int fd = open(arg, O_RDONLY | O_CLOEXEC);
                r = fd < 0 ? -errno : nb_read_fd(fd, ACTION_FILE_MAX, &text, &len);
        }
        const char *name = strcmp(arg, "-") == 0 ? "<stdin>" : arg;
        if (r == -EFBIG)
                return nb_error_input(err, EFBIG, "%s: larger than %u MiB, not an action", name, ACTION_FILE_MAX >> 20);
        /* No such file is the command line's; out of descriptors or an I/O error is the
         * machine's, whatever the file holds. */
        if (r < 0)
                return nb_error_classify(err, nb_error_class_of_path(r), nb_error_set(err, -r, "%s", name));
        return nb_action_from_json(text, len, name, ret, err);
}

static int write_result_file(const char *path, const char *text, struct nb_error *err) {
        _cleanup_free_ char *line = NULL;
        if (asprintf(&line, "%s\n", text) < 0)
                return nb_error_set(err, ENOMEM, "--result");
        return nb_output_file("--result", path, line, strlen(line), err);
}

static void venv_built(const char *digest, double seconds, void *userdata) {
        const struct nb_action *a = ((void **) userdata)[0];
        nb_events_venv_built(((void **) userdata)[1], a->target, digest, seconds);
}

/* nb_action_execute, telling --events what happens (nothing without it). */
static int execute_with_events(struct nb_action *a, struct nb_store *store, const struct nb_cache_modes *modes,
                               struct nb_events *ev, struct nb_result *res, struct nb_error *err) {
        void *ctx[2] = { a, ev };
        nb_events_run_started(ev, "run", 1, 1);
        nb_events_target_started(ev, a->target, a->shard_index, a->shard_count, a->run ? a->run : 1);
        nb_venv_on_built(ev->f ? venv_built : NULL, ctx);
        int r = nb_action_execute(a, store, modes, res, err);
        nb_venv_on_built(NULL, NULL);
        if (r < 0) {
                struct nb_summary sum = { .targets = 1, .errors = 1 };
                nb_events_target_error(ev, a->target, a->shard_index, a->shard_count, a->run ? a->run : 1,
                                       nb_error_message(err));
                nb_events_run_finished(ev, &sum, nb_exit_code(err), 0, NULL, 0, NULL, NULL);
                return r;
        }
        nb_events_result(ev, res);
        return 0;
}

int nb_run_request(int argc, char **argv, const struct nb_run_context *ctx, struct nb_run_reply *reply) {
        memset(reply, 0, sizeof(*reply));
        const char *cache_arg = ctx ? ctx->cache_arg : NULL, *output_arg = NULL, *result_arg = NULL, *inline_json = NULL,
                   *events_arg = NULL;
        struct nb_cache_modes modes = { 0 };
        if (ctx && ctx->remote)
                modes.remote = *ctx->remote;
        int c;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        reply->text = strdup(usage);
                        reply->help = true;
                        return 0;
                case OPT_CACHE:
                        if (ctx && ctx->in_worker)
                                return usage_error(reply, "--cache", "the worker's cache is set when it starts");
                        cache_arg = optarg;
                        break;
                case OPT_OUTPUT:
                        output_arg = optarg;
                        break;
                case OPT_RESULT:
                        result_arg = optarg;
                        break;
                case OPT_ACTION_JSON:
                        inline_json = optarg;
                        break;
                case OPT_EVENTS:
                        events_arg = optarg;
                        break;
                default:
                        if (nb_shared_option(c, optarg, NULL, &modes) != 0)
                                return usage_error(reply, argv[optind - 1],
                                                   "unknown option or missing argument; see 'nestbox run --help'");
                }
        }
        if ((inline_json != NULL) + (argc - optind) != 1)
                return usage_error(reply, "", "expected one action: ACTION.json, - or --action-json JSON");

        if (!inline_json && ctx && ctx->in_worker && strcmp(argv[optind], "-") == 0)
                return usage_error(reply, "-", "the worker's stdin carries its requests; use --action-json JSON");
        if (events_arg && ctx && ctx->in_worker && strcmp(events_arg, "-") == 0)
                return usage_error(reply, "--events -", "the worker's stdout carries its replies; name a file");
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_action_ struct nb_action *a = NULL;
        int r = inline_json ? nb_action_from_json(inline_json, strlen(inline_json), "--action-json", &a, &err)
                            : read_action(argv[optind], &a, &err);
        if (r < 0)
                return error_reply(reply, &err);

        struct nb_cache_dir cache;
        if (nb_cache_dir_open(&cache, cache_arg, &err) < 0)
                return error_reply(reply, &err);
        struct nb_store store = { .dir = &cache, .warn = nb_warn_line };
        if (modes.remote.url && !modes.no_cache && nb_remote_new(&modes.remote, &store.remote, &err) < 0) {
                nb_cache_dir_close(&cache);
                return error_reply(reply, &err);
        }
        _cleanup_close_ int out_dir = -1;
        __attribute__((cleanup(nb_events_close))) struct nb_events events = { 0 };
        struct nb_result res;
        if ((output_arg && nb_output_open(output_arg, &out_dir, &err) < 0) ||
            (events_arg && nb_events_open(events_arg, &events, &err) < 0) ||
            execute_with_events(a, &store, &modes, &events, &res, &err) < 0) {
                nb_remote_close(store.remote, &cache, NULL);
                nb_cache_dir_close(&cache);
                return error_reply(reply, &err);
        }
        bool has_remote = store.remote != NULL;
        struct nb_remote_stats remote;
        nb_remote_close(store.remote, &cache, &remote);
        nb_cache_dir_close(&cache);
        json_auto_t *j = nb_result_to_json(&res, NB_RESULT_JSON_ARTIFACT | NB_RESULT_JSON_CACHED);
        json_t *outputs = NULL;
        r = j ? 0 : nb_error_set(&err, ENOMEM, "result");
        if (r == 0 && out_dir >= 0 &&
            (r = nb_output_clear(out_dir, res.target, res.shard_index, res.shard_count, res.run, 1, NULL, &err)) == 0 &&
            (r = nb_output_write(out_dir, output_arg, &res, 1, &outputs, &err)) == 0)
                json_object_set_new(j, "outputs", outputs);
        reply->exit_code = nb_result_exit_code(&res);
        if (r == 0 && events.f) {
                struct nb_summary sum = { .wall_sec = res.wall_sec };
                nb_summary_count(&sum, &res);
                nb_events_run_finished(&events, &sum, reply->exit_code, 0, NULL, 0, has_remote ? &remote : NULL,
                                       json_incref(j));
                reply->in_events = events.f == stdout;
                nb_exit_worst(&reply->exit_code, nb_events_check(&events, events_arg));
        }
        nb_result_done(&res);
        if (r < 0)
                return error_reply(reply, &err);
        if (!(reply->text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(6))))
                return error_reply(reply, (nb_error_set(&err, ENOMEM, "result"), &err));
        if (result_arg && write_result_file(result_arg, reply->text, &err) < 0) {
                nb_run_reply_done(reply);
                return error_reply(reply, &err);
        }
        return 0;
}

int cmd_run(int argc, char **argv) {
        __attribute__((cleanup(nb_run_reply_done))) struct nb_run_reply reply;
        nb_run_request(argc, argv, NULL, &reply);
        if (!reply.text)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        if (reply.help) {
                fputs(reply.text, stdout);
                return 0;
        }
        if (reply.failed) {
                fprintf(stderr, "%s\n", reply.text);
                return reply.exit_code;
        }
        if (reply.in_events)
                return reply.exit_code;
        printf("%s\n", reply.text);
        if (fflush(stdout) != 0)
                return nb_die(NB_EXIT_INFRA, "run: writing the result to stdout failed");
        return reply.exit_code;
}
