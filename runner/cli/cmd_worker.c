/* SPDX-License-Identifier: MIT */
/* nestbox worker: Bazel's JSON persistent worker protocol. One WorkRequest object a
 * line on stdin, one WorkResponse a line on stdout. Each request runs in a child
 * process forked from this one (the place where warm state lives), so a request that
 * crashes costs only its own answer, no request sees another's state, and the
 * sandbox's signal handling (a signalfd per run) never meets a second run in the
 * same process. Multiplexed requests (requestId != 0) run concurrently up to -j;
 * singleplex ones (requestId 0) one at a time, in order. The warm interpreters live
 * here too (action/zygote_run.h): a request process asks for its venv's, and the
 * requests forked after that have it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "action/timings.h"
#include "action/zygote_run.h"
#include "cache/digest_watch.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "cli/run_request.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

#define REQUEST_MAX (16u << 20) /* bytes of one request line */
#define ARGS_MAX 4096
#define RESPONSE_MAX (64u << 20)

static const char usage[] =
        "usage: nestbox worker [--cache DIR] [-j N] [--no-zygote] [--remote-cache URL ...] [--persistent_worker]\n"
        "\n"
        "Serves actions over Bazel's JSON worker protocol: one WorkRequest per line on\n"
        "stdin ({\"arguments\": [...], \"requestId\": N, \"inputs\": [...]}), one WorkResponse\n"
        "per line on stdout ({\"exitCode\": N, \"output\": \"...\", \"requestId\": N}). A request's\n"
        "arguments are those of `nestbox run` but --cache: an action file, or --action-json\n"
        "JSON; the output is the result JSON, or the one-line error. A malformed request\n"
        "gets exitCode 2 and an output naming what is wrong; the worker goes on. Requests\n"
        "with requestId != 0 run concurrently, up to -j at once; requestId 0 ones in order.\n"
        "With a remote cache, a request is answered once its own uploads are done (each\n"
        "request waits at most --remote-timeout for them), so the next build step, on\n"
        "any machine, finds its result on the server.\n"
        "Between requests the worker watches (inotify) every directory an action's\n"
        "digest read: a request whose inputs saw no event since is digested without a\n"
        "stat (README \"Watched inputs\"). With NESTBOX_TIMINGS=1 it prints, per request,\n"
        "`nestbox: timings: request N: digest X ms; input trees: W watched, S stat'ed`.\n"
        "At the end of stdin the worker finishes what is running and exits 0.\n"
        "The worker keeps a warm interpreter (README \"Warm interpreter\") per venv and\n"
        "seed, up to four, for as long as it runs: the first action of a venv runs cold\n"
        "and starts it, the ones after are forked from it (\"warm\": true in the result);\n"
        "one that fails is dropped, its action runs cold, and it is started again once.\n"
        "\n"
        "  --cache DIR          the cache every request uses\n"
        "  -j, --jobs N         requests run at once (default: the CPUs nestbox may use)\n"
        "  --no-zygote          every action starts its own interpreter (NESTBOX_ZYGOTE=0)\n"
        "  --persistent_worker  accepted and ignored (Bazel passes it)\n"
        NB_REMOTE_USAGE
        "  -h, --help           this text\n";

enum { OPT_CACHE = 256, OPT_PERSISTENT, OPT_NO_ZYGOTE };

static const struct option options[] = {
        { "cache", required_argument, NULL, OPT_CACHE },
        { "jobs", required_argument, NULL, 'j' },
        { "persistent_worker", no_argument, NULL, OPT_PERSISTENT },
        { "no-zygote", no_argument, NULL, OPT_NO_ZYGOTE },
        NB_REMOTE_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        {},
};

struct child {
        pid_t pid;
        int fd;
        json_int_t request_id;
        int report;         /* its digests' report (cache/digest_watch.h), or -1 */
        uint64_t digest_ns; /* the digest phase's total when it started */
        char *buf;
        size_t len;
};

struct worker {
        struct nb_run_context ctx;
        unsigned jobs;
        struct child *running; /* jobs of them */
        struct pollfd *fds;    /* the same */
        size_t n_running;
        struct nb_digest_watch *watch; /* inputs watched across requests, or NULL */
        int zygotes; /* the request processes' asks for a zygote (zygote_run.h); -1: off */
        int status;  /* 0, or NB_EXIT_INFRA once stdout cannot be written */
};

static int respond(struct worker *w, int exit_code, const char *output, json_int_t request_id) {
        json_auto_t *j = json_pack("{s:i, s:s, s:I}", "exitCode", exit_code, "output", output ? output : "",
                                   "requestId", request_id);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (!text || printf("%s\n", text) < 0 || fflush(stdout) != 0) {
                w->status = NB_EXIT_INFRA;
                return -EIO;
        }
        return 0;
}

/* The child: one `nestbox run`, its WorkResponse written to fd. Its stdout is its
 * stderr and its stdin /dev/null, so nothing it does can touch the protocol. */
static _Noreturn void serve_in_child(struct worker *w, int fd, char **argv, size_t argc, json_int_t request_id) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0 ||
            signal(SIGPIPE, SIG_DFL) == SIG_ERR)
                _exit(NB_EXIT_INFRA);
        close(devnull);
        struct nb_run_reply reply;
        nb_run_request((int) argc, argv, &w->ctx, &reply);
        json_auto_t *j = json_pack("{s:i, s:s, s:I}", "exitCode", reply.text ? reply.exit_code : NB_EXIT_INFRA,
                                   "output", reply.text ? reply.text : "nestbox: out of memory", "requestId", request_id);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        _exit(text && nb_write_all(fd, text, strlen(text)) >= 0 ? 0 : NB_EXIT_INFRA);
}

static int spawn(struct worker *w, char **argv, size_t argc, json_int_t request_id) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return respond(w, NB_EXIT_INFRA, "nestbox: worker: pipe failed", request_id);
        fflush(stdout);
        uint64_t digest_ns = nb_phase_total_ns(NB_PHASE_DIGEST, NULL);
        int report = nb_digest_watch_fork(w->watch);
        nb_zygote_serve_ready(); /* the zygotes asked for by the requests before this one */
        pid_t pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                if (report >= 0)
                        close(report);
                return respond(w, NB_EXIT_INFRA, "nestbox: worker: fork failed", request_id);
        }
        if (pid == 0) {
                close(p[0]);
                serve_in_child(w, p[1], argv, argc, request_id);
        }
        close(p[1]);
        w->running[w->n_running++] = (struct child) { .pid = pid, .fd = p[0], .request_id = request_id,
                                                      .report = report, .digest_ns = digest_ns };
        return 0;
}

/* What a finished request's digests taught the watch; with NESTBOX_TIMINGS=1 a line
 * per request (its digest phase is exact when requests run one at a time). */
static void learn_digests(struct worker *w, struct child *c) {
        struct nb_digest_watch_report rep;
        nb_digest_watch_done(w->watch, c->report, &rep);
        if (rep.note)
                fprintf(stderr, "nestbox: worker: %s\n", rep.note);
        const char *v = getenv("NESTBOX_TIMINGS");
        if (v && *v && strcmp(v, "0") != 0)
                fprintf(stderr, "nestbox: timings: request %lld: digest %.3f ms; input trees: %u watched, %u stat'ed\n",
                        (long long) c->request_id, (double) (nb_phase_total_ns(NB_PHASE_DIGEST, NULL) - c->digest_ns) / 1e6,
                        rep.reused, rep.kept + rep.stated);
}

/* Reads what child i wrote; at its end, reaps it and answers for it. */
static int drain_child(struct worker *w, size_t i) {
        struct child *c = &w->running[i];
        char chunk[65536];
        ssize_t n = read(c->fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
                return 0;
        if (n > 0) {
                if (c->len + (size_t) n > RESPONSE_MAX)
                        n = 0; /* a runaway answer: treated as none */
                else {
                        char *grown = realloc(c->buf, c->len + (size_t) n + 1);
                        if (!grown)
                                return -ENOMEM;
                        c->buf = grown;
                        memcpy(c->buf + c->len, chunk, (size_t) n);
                        c->len += (size_t) n;
                        c->buf[c->len] = 0;
                        return 0;
                }
        }
        int wstatus = 0;
        while (waitpid(c->pid, &wstatus, 0) < 0 && errno == EINTR)
                ;
        close(c->fd);
        learn_digests(w, c);
        int r = 0;
        if (n == 0 && c->len > 0 && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
                if (printf("%s\n", c->buf) < 0 || fflush(stdout) != 0)
                        w->status = NB_EXIT_INFRA, r = -EIO;
        } else
                r = respond(w, NB_EXIT_INFRA, "nestbox: worker: the request's process died without answering",
                            c->request_id);
        free(c->buf);
        w->running[i] = w->running[--w->n_running];
        return r;
}

/* Waits until at most max children run. */
static int wait_children(struct worker *w, size_t max) {
        while (w->n_running > max) {
                struct pollfd *fds = w->fds;
                for (size_t i = 0; i < w->n_running; i++)
                        fds[i] = (struct pollfd) { .fd = w->running[i].fd, .events = POLLIN };
                if (poll(fds, w->n_running, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (size_t i = w->n_running; i-- > 0;)
                        if (fds[i].revents) {
                                int r = drain_child(w, i);
                                if (r < 0)
                                        return r;
                        }
        }
        return 0;
}

/* Checks a WorkRequest; on a problem answers it (exit 2) and returns 1. */
static int check_request(struct worker *w, json_t *req, const char *line_err, json_int_t *ret_id) {
        *ret_id = 0;
        if (!req)
                return respond(w, NB_EXIT_USAGE, line_err, 0) < 0 ? -EIO : 1;
        json_t *id = json_object_get(req, "requestId"), *args = json_object_get(req, "arguments");
        const char *problem = NULL;
        if (!json_is_object(req))
                problem = "nestbox: request: expected a JSON object (a WorkRequest)";
        else if (id && !json_is_integer(id))
                problem = "nestbox: request: .requestId: expected an integer";
        else if (!args)
                problem = "nestbox: request: .arguments: missing (required)";
        else if (!json_is_array(args) || json_array_size(args) > ARGS_MAX)
                problem = "nestbox: request: .arguments: expected an array of strings";
        else if (json_object_get(req, "inputs") && !json_is_array(json_object_get(req, "inputs")))
                problem = "nestbox: request: .inputs: expected an array";
        for (size_t i = 0; !problem && i < json_array_size(args); i++)
                if (!json_is_string(json_array_get(args, i)))
                        problem = "nestbox: request: .arguments: expected an array of strings";
        if (json_is_integer(id))
                *ret_id = json_integer_value(id);
        if (problem)
                return respond(w, NB_EXIT_USAGE, problem, *ret_id) < 0 ? -EIO : 1;
        return 0;
}

static int handle_line(struct worker *w, const char *line, size_t len) {
        json_error_t jerr;
        json_auto_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
        _cleanup_free_ char *line_err = NULL;
        if (!req && asprintf(&line_err, "nestbox: request: not JSON: %s", jerr.text) < 0)
                return -ENOMEM;
        json_int_t id;
        int r = check_request(w, req, line_err, &id);
        if (r != 0)
                return r < 0 ? r : 0;
        json_t *args = json_object_get(req, "arguments");
        size_t argc = json_array_size(args) + 1;
        _cleanup_free_ char **argv = calloc(argc + 1, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        argv[0] = (char *) "run";
        for (size_t i = 1; i < argc; i++)
                argv[i] = (char *) json_string_value(json_array_get(args, i - 1));
        /* Singleplex requests are answered in order: the one before it finishes first. */
        if ((r = wait_children(w, id == 0 ? 0 : w->jobs - 1)) < 0 || (r = spawn(w, argv, argc, id)) < 0)
                return r;
        return id == 0 ? wait_children(w, 0) : 0;
}

static unsigned default_jobs(void) {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
                return (unsigned) CPU_COUNT(&set);
        return 1;
}

/* Answers every complete line of buf; keeps the rest (a line still arriving). */
static int handle_lines(struct worker *w, char *buf, size_t *len, bool eof) {
        size_t start = 0;
        for (;;) {
                char *nl = memchr(buf + start, '\n', *len - start);
                if (!nl && !(eof && start < *len))
                        break;
                size_t end = nl ? (size_t) (nl - buf) : *len, n = end - start;
                while (n > 0 && buf[start + n - 1] == '\r')
                        n--;
                int r = n == 0 ? 0 : handle_line(w, buf + start, n);
                if (r < 0)
                        return r;
                start = nl ? end + 1 : *len;
        }
        memmove(buf, buf + start, *len - start);
        *len -= start;
        if (*len > REQUEST_MAX) { /* a line that never ends: answered, then skipped */
                *len = 0;
                return respond(w, NB_EXIT_USAGE, "nestbox: request: larger than 16 MiB", 0);
        }
        return 0;
}

/* Reads requests as they come while answering finished ones as they finish: a build
 * tool may wait for an answer before it sends the next request. */
static int serve(struct worker *w) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        bool eof = false;
        while (!eof || w->n_running > 0) {
                size_t n = 0;
                for (; n < w->n_running; n++)
                        w->fds[n] = (struct pollfd) { .fd = w->running[n].fd, .events = POLLIN };
                w->fds[n++] = (struct pollfd) { .fd = w->zygotes, .events = POLLIN };
                if (!eof)
                        w->fds[n++] = (struct pollfd) { .fd = STDIN_FILENO, .events = POLLIN };
                if (poll(w->fds, n, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                /* Before the requests this line forks: they inherit what it starts. */
                if (w->fds[w->n_running].revents)
                        nb_zygote_serve_ready();
                bool input = !eof && w->fds[n - 1].revents;
                for (size_t i = w->n_running; i-- > 0;)
                        if (w->fds[i].revents) {
                                int r = drain_child(w, i);
                                if (r < 0)
                                        return r;
                        }
                if (!input)
                        continue;
                if (cap - len < 65536) {
                        char *grown = realloc(buf, cap + 65536);
                        if (!grown)
                                return -ENOMEM;
                        buf = grown;
                        cap += 65536;
                }
                ssize_t k = read(STDIN_FILENO, buf + len, cap - len);
                if (k < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (k < 0)
                        return -errno;
                eof = k == 0;
                len += (size_t) k;
                int r = handle_lines(w, buf, &len, eof);
                if (r < 0)
                        return r;
        }
        return 0;
}

int cmd_worker(int argc, char **argv) {
        struct worker w = { .jobs = default_jobs(), .ctx.in_worker = true };
        struct nb_cache_modes modes = { 0 };
        w.ctx.remote = &modes.remote;
        int c;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+hj:", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0);
                case OPT_CACHE:
                        w.ctx.cache_arg = optarg;
                        break;
                case 'j': {
                        char *end = NULL;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (!*optarg || *end || v == 0 || v > 1024)
                                return nb_die(NB_EXIT_USAGE, "-j %s: expected a number of jobs from 1 to 1024", optarg);
                        w.jobs = (unsigned) v;
                        break;
                }
                case OPT_PERSISTENT:
                        break;
                case OPT_NO_ZYGOTE:
                        nb_zygote_set_mode(0);
                        break;
                default: {
                        int r = nb_other_option("worker", argv[optind - 1], c, optarg, NULL, &modes);
                        if (r != 0)
                                return r;
                        break;
                }
                }
        }
        if (optind < argc)
                return nb_die(NB_EXIT_USAGE, "worker: unexpected argument %s", argv[optind]);
        /* A build tool that goes away must not kill us mid-write with SIGPIPE: a
         * failed write ends the worker with a status instead. */
        signal(SIGPIPE, SIG_IGN);
        const char *note;
        if (nb_digest_watch_start(&w.watch, &note) < 0 && note)
                fprintf(stderr, "nestbox: worker: %s\n", note);
        w.running = calloc(w.jobs + 1, sizeof(*w.running));
        w.fds = calloc(w.jobs + 3, sizeof(*w.fds));
        w.zygotes = nb_zygote_serve_start(); /* < 0: off, or no socket: every action runs cold */
        int r = w.running && w.fds ? serve(&w) : -ENOMEM;
        nb_zygote_stop_all();
        free(w.running);
        free(w.fds);
        nb_digest_watch_stop(w.watch);
        if (r < 0 && w.status == 0)
                return nb_die(NB_EXIT_INFRA, "worker: %s", strerror(-r));
        return w.status;
}
