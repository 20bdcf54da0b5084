/* SPDX-License-Identifier: MIT */
/* The limit backends: which one is chosen given what is available, the rlimit backend
 * limiting a real child, and the cgroup backend this machine offers creating, joining
 * and removing its cgroups. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/sandbox.h"
#include "limits-internal.h"
#include "test.h"

/* ---- the choice, with fake backends ---------------------------------------------- */

static bool fake_v2_has, fake_v1_has[NB_RES__MAX];
static int fake_calls;

static bool fake_v2_available(enum nb_limit_res res) {
        (void) res;
        fake_calls++;
        return fake_v2_has;
}

static bool fake_v1_available(enum nb_limit_res res) {
        fake_calls++;
        return fake_v1_has[res];
}

static const struct nb_limits_ops fake_v2 = { .backend = NB_LIMIT_CGROUP2, .available = fake_v2_available };
static const struct nb_limits_ops fake_v1 = { .backend = NB_LIMIT_CGROUP1, .available = fake_v1_available };
static const struct nb_limits_ops *const fakes[] = { &fake_v2, &fake_v1, &nb_limits_rlimit_ops };

static void choose(bool v2, bool v1_mem, bool v1_pids, uint64_t mem, uint64_t pids,
                   const struct nb_limits_ops *ret[NB_RES__MAX]) {
        fake_v2_has = v2;
        fake_v1_has[NB_RES_MEMORY] = v1_mem;
        fake_v1_has[NB_RES_PIDS] = v1_pids;
        fake_calls = 0;
        const uint64_t value[NB_RES__MAX] = { [NB_RES_MEMORY] = mem, [NB_RES_PIDS] = pids };
        nb_limits_choose_from(fakes, NB_ELEMENTSOF(fakes), value, ret);
}

TEST(choice_prefers_cgroup2_then_cgroup1_then_rlimit) {
        const struct nb_limits_ops *got[NB_RES__MAX];
        choose(true, true, true, 1 << 20, 10, got);
        CHECK(got[NB_RES_MEMORY] == &fake_v2 && got[NB_RES_PIDS] == &fake_v2);
        choose(false, true, true, 1 << 20, 10, got);
        CHECK(got[NB_RES_MEMORY] == &fake_v1 && got[NB_RES_PIDS] == &fake_v1);
        choose(false, false, false, 1 << 20, 10, got);
        CHECK(got[NB_RES_MEMORY] == &nb_limits_rlimit_ops && got[NB_RES_PIDS] == &nb_limits_rlimit_ops);
}

TEST(choice_is_made_per_resource) {
        /* A hybrid host where only the memory hierarchy is writable, and the reverse. */
        const struct nb_limits_ops *got[NB_RES__MAX];
        choose(false, true, false, 1 << 20, 10, got);
        CHECK(got[NB_RES_MEMORY] == &fake_v1);
        CHECK(got[NB_RES_PIDS] == &nb_limits_rlimit_ops);
        choose(false, false, true, 1 << 20, 10, got);
        CHECK(got[NB_RES_MEMORY] == &nb_limits_rlimit_ops);
        CHECK(got[NB_RES_PIDS] == &fake_v1);
}

TEST(no_limit_no_backend_and_no_look_at_cgroups) {
        const struct nb_limits_ops *got[NB_RES__MAX];
        choose(true, true, true, 0, 0, got);
        CHECK(got[NB_RES_MEMORY] == NULL && got[NB_RES_PIDS] == NULL);
        CHECK_EQ_INT(fake_calls, 0);
        choose(true, true, true, 0, 10, got);
        CHECK(got[NB_RES_MEMORY] == NULL && got[NB_RES_PIDS] == &fake_v2);

        enum nb_limit_backend mem, pids;
        nb_limits_choose(0, 0, &mem, &pids);
        CHECK_EQ_INT(mem, NB_LIMIT_NONE);
        CHECK_EQ_INT(pids, NB_LIMIT_NONE);
        nb_limits_choose(1 << 20, 10, &mem, &pids);
        CHECK(mem != NB_LIMIT_NONE && pids != NB_LIMIT_NONE);
}

/* ---- the rlimit backend, in a forked child --------------------------------------- */

/* Runs fn in a child; its exit code is its verdict (0 = as expected). */
static int in_child(int (*fn)(void)) {
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                _exit(fn());
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int apply_rlimits(uint64_t mem, uint64_t pids) {
        struct nb_limits l = { .value = { [NB_RES_MEMORY] = mem, [NB_RES_PIDS] = pids } };
        unsigned mask = (mem ? NB_RES_BIT(NB_RES_MEMORY) : 0) | (pids ? NB_RES_BIT(NB_RES_PIDS) : 0);
        struct nb_error err = NB_ERROR_INIT;
        int r = nb_limits_rlimit_ops.apply(&l, mask, &err);
        nb_error_clear(&err);
        return r;
}

/* ASan reserves terabytes of address space up front: there RLIMIT_AS is untestable. */
#if !defined(__SANITIZE_ADDRESS__)
static int child_address_space_is_capped(void) {
        if (apply_rlimits(64ull << 20, 0) < 0)
                return 10;
        struct rlimit rl;
        if (getrlimit(RLIMIT_AS, &rl) < 0 || rl.rlim_cur != (64ull << 20))
                return 11;
        void *p = mmap(NULL, 256ull << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED)
                return 12; /* the limit did not bind */
        return errno == ENOMEM ? 0 : 13;
}
#endif

/* A nestbox killed within the last minute, whose pid is ours now, left its cgroup
 * (too young to be swept): the next name is taken, not an EEXIST failure. */
TEST(cgroup_name_left_by_a_killed_namesake_is_skipped) {
        char parent[] = "/tmp/nestbox-test-cg.XXXXXX";
        CHECK(mkdtemp(parent) != NULL);
        _cleanup_free_ char *taken = NULL, *got = NULL, *next = NULL;
        /* The names this process would use next: nestbox-<pid>-<n>, n from a counter
         * that starts at 0; occupy the next two. */
        CHECK(nb_cgroup_create_child(parent, &taken) == 0);
        CHECK(rmdir(taken) == 0);
        unsigned n;
        const char *base = strrchr(taken, '/') + 1;
        CHECK(sscanf(base, "nestbox-%*d-%u", &n) == 1);
        for (unsigned k = n + 1; k <= n + 2; k++) {
                _cleanup_free_ char *d = NULL;
                CHECK(asprintf(&d, "%s/nestbox-%d-%u", parent, (int) getpid(), k) >= 0);
                CHECK(mkdir(d, 0755) == 0);
        }
        CHECK(nb_cgroup_create_child(parent, &got) == 0);
        CHECK(asprintf(&next, "%s/nestbox-%d-%u", parent, (int) getpid(), n + 3) >= 0);
        CHECK_EQ_STR(got, next);
        for (unsigned k = n + 1; k <= n + 3; k++) {
                _cleanup_free_ char *d = NULL;
                CHECK(asprintf(&d, "%s/nestbox-%d-%u", parent, (int) getpid(), k) >= 0);
                CHECK(rmdir(d) == 0);
        }
        CHECK(rmdir(parent) == 0);
}

TEST(rlimit_backend_caps_the_address_space) {
#if defined(__SANITIZE_ADDRESS__)
        printf("skip: RLIMIT_AS under ASan\n");
#else
        CHECK_EQ_INT(in_child(child_address_space_is_capped), 0);
#endif
}

static int child_cannot_fork_past_nproc(void) {
        /* Root is exempt from RLIMIT_NPROC: count as nobody, as the sandbox's user
         * would be. Either way this process already counts, so 1 allows no fork. */
        if (geteuid() == 0 && (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0))
                return 20;
        if (apply_rlimits(0, 1) < 0)
                return 21;
        pid_t pid = fork();
        if (pid == 0)
                _exit(0);
        if (pid > 0) {
                (void) waitpid(pid, NULL, 0);
                return 22; /* the limit did not bind */
        }
        return errno == EAGAIN ? 0 : 23;
}

TEST(rlimit_backend_limits_processes) {
        CHECK_EQ_INT(in_child(child_cannot_fork_past_nproc), 0);
}

/* ---- the cgroup backends, as this machine has them -------------------------------- */

static bool is_dir(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static uint64_t read_number(const char *dir, const char *file) {
        _cleanup_free_ char *path = NULL, *data = NULL;
        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return 0;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || nb_read_fd(fd, 4096, &data, NULL) < 0)
                return 0;
        return strtoull(data, NULL, 10);
}

/* Whether /proc/pid/cgroup names the cgroup whose directory is dir. */
static bool in_cgroup(pid_t pid, const char *dir) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int) pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *data = NULL;
        if (fd < 0 || nb_read_fd(fd, 1 << 16, &data, NULL) < 0)
                return false;
        const char *name = strrchr(dir, '/');
        return name && strstr(data, name);
}

TEST(cgroup_backend_creates_joins_and_removes_its_cgroups) {
        enum nb_limit_backend mem_b, pids_b;
        nb_limits_choose(64ull << 20, 50, &mem_b, &pids_b);
        bool mem_cg = mem_b == NB_LIMIT_CGROUP1 || mem_b == NB_LIMIT_CGROUP2;
        bool pids_cg = pids_b == NB_LIMIT_CGROUP1 || pids_b == NB_LIMIT_CGROUP2;
        if (!mem_cg && !pids_cg) {
                printf("skip: no writable cgroup here (memory %s, pids %s)\n", nb_limit_backend_name(mem_b),
                       nb_limit_backend_name(pids_b));
                return;
        }
        struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        cfg.memory_bytes = 64ull << 20;
        cfg.pids_max = 50;
        struct nb_error err = NB_ERROR_INIT;
        struct nb_limits *l = NULL;
        int r = nb_limits_prepare(&cfg, &l, &err);
        CHECK_EQ_INT(r, 0);
        if (r < 0) {
                fprintf(stderr, "%s\n", nb_error_message(&err));
                nb_error_clear(&err);
                return;
        }
        _cleanup_free_ char *mem_dir = l->dir[NB_RES_MEMORY] ? strdup(l->dir[NB_RES_MEMORY]) : NULL;
        _cleanup_free_ char *pids_dir = l->dir[NB_RES_PIDS] ? strdup(l->dir[NB_RES_PIDS]) : NULL;
        CHECK(!mem_cg || (mem_dir && is_dir(mem_dir)));
        CHECK(!pids_cg || (pids_dir && is_dir(pids_dir)));
        if (mem_cg && mem_dir)
                CHECK_EQ_INT(read_number(mem_dir, mem_b == NB_LIMIT_CGROUP2 ? "memory.max" : "memory.limit_in_bytes"),
                             64ull << 20);
        if (pids_cg && pids_dir)
                CHECK_EQ_INT(read_number(pids_dir, "pids.max"), 50);

        /* A child that waits for us joins them. */
        int gate[2];
        CHECK(pipe2(gate, O_CLOEXEC) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                char c;
                close(gate[1]);
                _exit(read(gate[0], &c, 1) < 0);
        }
        close(gate[0]);
        CHECK(pid > 0);
        if (pid > 0) {
                CHECK_EQ_INT(nb_limits_attach(l, pid, &err), 0);
                CHECK(!mem_cg || in_cgroup(pid, mem_dir));
                CHECK(!pids_cg || in_cgroup(pid, pids_dir));
        }
        close(gate[1]);
        if (pid > 0)
                CHECK(waitpid(pid, NULL, 0) == pid);

        struct nb_sandbox_result res = { 0 };
        nb_limits_collect(l, &res);
        CHECK_EQ_INT(res.memory_backend, mem_b);
        CHECK_EQ_INT(res.pids_backend, pids_b);
        CHECK(!res.oom_killed && !res.pids_limited);

        nb_limits_free(l);
        CHECK(!mem_dir || !is_dir(mem_dir));
        CHECK(!pids_dir || !is_dir(pids_dir));
        nb_error_clear(&err);
        nb_sandbox_config_done(&cfg);
}

/* A cgroup whose creator this process cannot see (another pid namespace) and that was
 * just made must survive another nestbox's sweep: its creator is about to join it.
 * Only an old one is taken for the remains of a killed nestbox. */
TEST(stale_sweep_spares_a_young_cgroup_it_cannot_place) {
        _cleanup_free_ char *parent = nb_cgroup_dir("pids");
        if (!parent || access(parent, W_OK) < 0) {
                printf("skip: no writable cgroup v1 pids hierarchy here\n");
                return;
        }
        /* pid_max is at most 2^22: this pid belongs to no process we can see. */
        _cleanup_free_ char *young = NULL, *old = NULL, *mine = NULL;
        CHECK(asprintf(&young, "%s/nestbox-%d-7", parent, 4194304 + 1) > 0);
        CHECK(asprintf(&old, "%s/nestbox-%d-8", parent, 4194304 + 1) > 0);
        CHECK(mkdir(young, 0755) == 0 && mkdir(old, 0755) == 0);
        const struct timespec long_ago[2] = { { .tv_sec = 1, .tv_nsec = 0 }, { .tv_sec = 1, .tv_nsec = 0 } };
        bool can_age = utimensat(AT_FDCWD, old, long_ago, AT_SYMLINK_NOFOLLOW) == 0;
        CHECK_EQ_INT(nb_cgroup_create_child(parent, &mine), 0);
        CHECK(is_dir(young));
        if (can_age)
                CHECK(!is_dir(old));
        (void) rmdir(young);
        (void) rmdir(old);
        if (mine)
                (void) rmdir(mine);
}
