/* crash-check: replays every chosen prefix of a traced workload (and
 * reorderings of the writes between two flushes), mounts the result, checks
 * what the manifest says is durable, and runs fsck.vdfs -n on it.
 *
 *   crash-check [options] BASE TRACE MANIFEST WORKDIR
 *
 * See docs/testing.md, "Crash testing". */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "device.h"
#include "manifest.h"
#include "trace.h"
#include "vdfs.h"

extern char **environ;

struct options {
    const char *fsck;
    const char *base, *trace, *manifest, *workdir;
    size_t all_below;      /* check every prefix when the trace is this short */
    size_t stride_target;  /* else about this many evenly spaced prefixes... */
    unsigned reorder_cases;
    uint64_t seed;
    unsigned max_failures;
};

struct checker {
    struct options opt;
    struct trace trace;
    struct manifest manifest;
    char scratch[4096], fsck_out[4096];
    int cur_fd, scratch_fd;
    unsigned checked, reordered, failures; /* failures: failing crash states */
    unsigned state_problems;
    unsigned log_lines;
    char log[8192];
    size_t log_len;
};

/* The library's messages for the image being checked, shown on failure. */
static void capture_log(int level, const char *msg, void *ctx)
{
    struct checker *c = ctx;
    (void)level;
    if (c->log_lines++ >= 12)
        return;
    int n = snprintf(c->log + c->log_len, sizeof(c->log) - c->log_len, "    libvdfs: %s\n", msg);
    if (n > 0 && c->log_len + (size_t)n < sizeof(c->log))
        c->log_len += (size_t)n;
}

static const char *op_name(uint32_t op)
{
    switch (op) {
    case VDFS_TRACE_WRITE: return "WRITE";
    case VDFS_TRACE_FLUSH: return "FLUSH";
    case VDFS_TRACE_ZERO: return "ZERO";
    default: return "DISCARD";
    }
}

struct failure_ctx {
    char what[256];     /* which crash state */
    char repro[1024];   /* crash-replay arguments that rebuild it */
};

/* One crash state may break in many places; its first few problems are
 * shown under one header, and only the first few failing states. */
#define PROBLEMS_SHOWN_PER_STATE 8

static bool state_shown(const struct checker *c)
{
    return c->failures <= c->opt.max_failures;
}

static void fail(struct checker *c, const struct failure_ctx *fc, const char *fmt, ...)
{
    if (c->state_problems++ == 0) {
        c->failures++;
        if (state_shown(c)) {
            fprintf(stderr, "FAIL %s\n", fc->what);
            fprintf(stderr, "  reproduce: crash-replay %s %s OUT.img %s && vdfsctl ls OUT.img && fsck.vdfs -n OUT.img\n",
                    c->opt.base, c->opt.trace, fc->repro);
        }
    }
    if (!state_shown(c) || c->state_problems > PROBLEMS_SHOWN_PER_STATE)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("  ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void end_state(struct checker *c)
{
    if (c->state_problems > PROBLEMS_SHOWN_PER_STATE && state_shown(c))
        fprintf(stderr, "  ... %u problems in this state\n", c->state_problems);
    if (c->state_problems && state_shown(c) && c->log_len)
        fputs(c->log, stderr);
    c->state_problems = 0;
    c->log_len = 0;
    c->log_lines = 0;
}

static bool sha256_matches(const uint8_t *data, size_t len, const char *hex)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char got[65];
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return false;
    for (int i = 0; i < 32; i++)
        sprintf(got + 2 * i, "%02x", md[i]);
    return strcmp(got, hex) == 0;
}

static int read_whole(struct vdfs *fs, uint32_t ino, uint64_t size, uint8_t **out)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return -ENOMEM;
    uint64_t done = 0;
    while (done < size) {
        ssize_t n = vdfs_pread(fs, ino, buf + done, size - done, done);
        if (n < 0) {
            free(buf);
            return (int)n;
        }
        if (n == 0)
            break;
        done += (uint64_t)n;
    }
    if (done != size) {
        free(buf);
        return -EIO;
    }
    *out = buf;
    return 0;
}

struct walk {
    struct checker *c;
    const struct failure_ctx *fc;
    struct vdfs *fs;
    char names[256][256];
    uint32_t inos[256];
    uint32_t modes[256];
    int count;
    bool overflow;
};

static int collect(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next_cookie)
{
    struct walk *w = ctx;
    (void)next_cookie;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    if (w->count == 256) {
        w->overflow = true;
        return 1;
    }
    snprintf(w->names[w->count], sizeof(w->names[0]), "%s", name);
    w->inos[w->count] = ino;
    w->modes[w->count] = mode;
    w->count++;
    return 0;
}

/* Every object reachable from the root must be readable whole: a crash must
 * never leave a file the library cannot read. */
static void walk_tree(struct checker *c, const struct failure_ctx *fc, struct vdfs *fs, uint32_t dir,
                      const char *path, int depth)
{
    struct walk *w = calloc(1, sizeof(*w));
    if (!w) {
        fail(c, fc, "out of memory");
        return;
    }
    int rc = vdfs_readdir(fs, dir, 0, collect, w);
    if (rc < 0)
        fail(c, fc, "readdir %s: %s", path, vdfs_strerror(rc));
    if (w->overflow)
        fail(c, fc, "readdir %s: more than 256 entries, more than the workload ever creates", path);
    for (int i = 0; i < w->count; i++) {
        char child[512];
        snprintf(child, sizeof(child), "%s/%s", strcmp(path, "/") ? path : "", w->names[i]);
        struct vdfs_stat st;
        rc = vdfs_getattr(fs, w->inos[i], &st);
        if (rc < 0) {
            fail(c, fc, "getattr %s: %s", child, vdfs_strerror(rc));
            continue;
        }
        if (S_ISDIR(st.mode) && depth < 16) {
            walk_tree(c, fc, fs, w->inos[i], child, depth + 1);
        } else if (S_ISREG(st.mode)) {
            uint8_t *data = NULL;
            rc = read_whole(fs, w->inos[i], st.size, &data);
            if (rc < 0)
                fail(c, fc, "read %s (%llu bytes): %s", child, (unsigned long long)st.size, vdfs_strerror(rc));
            free(data);
        }
    }
    free(w);
}

static void check_expectation(struct checker *c, const struct failure_ctx *fc, struct vdfs *fs,
                              const struct expectation *e, unsigned sync_no)
{
    struct vdfs_stat st;
    int rc = vdfs_resolve(fs, e->path, false, &st);
    if (e->kind == EXPECT_ABSENT) {
        if (rc != -ENOENT)
            fail(c, fc, "%s was removed before sync point %u but %s", e->path, sync_no,
                 rc == 0 ? "exists" : vdfs_strerror(rc));
        return;
    }
    if (rc < 0) {
        fail(c, fc, "%s (durable at sync point %u): %s", e->path, sync_no, vdfs_strerror(rc));
        return;
    }
    if (e->kind == EXPECT_DIR) {
        if (!S_ISDIR(st.mode))
            fail(c, fc, "%s (durable at sync point %u) is not a directory", e->path, sync_no);
        return;
    }
    if (!S_ISREG(st.mode) || st.size != e->size) {
        fail(c, fc, "%s (durable at sync point %u): mode %o size %llu, expected a file of %llu bytes", e->path,
             sync_no, st.mode, (unsigned long long)st.size, (unsigned long long)e->size);
        return;
    }
    uint8_t *data = NULL;
    rc = read_whole(fs, st.ino, st.size, &data);
    if (rc < 0) {
        fail(c, fc, "%s (durable at sync point %u): read: %s", e->path, sync_no, vdfs_strerror(rc));
        return;
    }
    if (!sha256_matches(data, st.size, e->sha256))
        fail(c, fc, "%s (durable at sync point %u): content differs from what was fsync'ed", e->path, sync_no);
    free(data);
}

static int run_fsck(struct checker *c, int *status)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, c->fsck_out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = {(char *)c->opt.fsck, "-n", c->scratch, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, c->opt.fsck, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -rc;
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

static void show_fsck_output(struct checker *c)
{
    if (!state_shown(c))
        return;
    FILE *f = fopen(c->fsck_out, "r");
    if (!f)
        return;
    char line[512];
    int shown = 0;
    while (fgets(line, sizeof(line), f) && shown < 30) {
        if (!strncmp(line, "Pass ", 5))
            continue;
        fprintf(stderr, "    fsck: %s", line);
        shown++;
    }
    fclose(f);
}

/* The scratch image holds a crash state; `durable_records` is how much of
 * the trace is certainly on the device in it. */
static void check_scratch(struct checker *c, const struct failure_ctx *fc, size_t durable_records)
{
    c->log_len = 0;
    c->log_lines = 0;
    struct vdfs_mount_opts opts = {
        .host_uuid = "6c1f6a2e-3b7d-4e55-9a0b-c0ffee000002",
        .host_name = "crash-check",
        .no_direct = true,
        .commit_ms = 3600 * 1000,
    };
    struct vdfs *fs = NULL;
    int rc = vdfs_mount(c->scratch, &opts, &fs);
    if (rc < 0) {
        fail(c, fc, "mount (journal replay) failed: %s", vdfs_strerror(rc));
        c->checked++;
        end_state(c);
        return;
    }
    const struct sync_section *s = manifest_durable(&c->manifest, durable_records);
    if (s) {
        unsigned sync_no = (unsigned)(s - c->manifest.sections) + 1;
        for (size_t i = 0; i < s->nexpect; i++)
            if (!manifest_in_flux(&c->manifest, s, s->expect[i].path))
                check_expectation(c, fc, fs, &s->expect[i], sync_no);
    }
    walk_tree(c, fc, fs, vdfs_root_ino(fs), "/", 0);
    rc = vdfs_unmount(fs);
    if (rc < 0)
        fail(c, fc, "unmount: %s", vdfs_strerror(rc));
    int status = 0;
    rc = run_fsck(c, &status);
    if (rc < 0) {
        fail(c, fc, "cannot run %s: %s", c->opt.fsck, strerror(-rc));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail(c, fc, "fsck.vdfs -n after replay exits %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        show_fsck_output(c);
    }
    c->checked++;
    end_state(c);
}

static void check_prefix(struct checker *c, size_t n)
{
    struct failure_ctx fc;
    if (n > 0) {
        const struct trace_record *last = &c->trace.records[n - 1];
        snprintf(fc.what, sizeof(fc.what), "prefix %zu of %zu (last record %s off %llu len %llu)", n,
                 c->trace.count, op_name(last->op), (unsigned long long)last->offset,
                 (unsigned long long)last->length);
    } else {
        snprintf(fc.what, sizeof(fc.what), "prefix 0 of %zu", c->trace.count);
    }
    snprintf(fc.repro, sizeof(fc.repro), "%zu", n);
    int rc = sparse_copy(c->cur_fd, c->scratch_fd);
    if (rc < 0) {
        fail(c, &fc, "copy image: %s", strerror(-rc));
        end_state(c);
        return;
    }
    check_scratch(c, &fc, n);
}

struct reorder_case {
    size_t start, end;  /* window of records [start, end) after a FLUSH */
    uint64_t seed;
};

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* Writes between two flushes may reach the device in any order and any
 * subset: a random permutation of the window cut at a random length. */
static void check_reorder(struct checker *c, const struct reorder_case *rc_)
{
    size_t len = rc_->end - rc_->start;
    size_t *order = malloc(len * sizeof(*order));
    if (!order)
        return;
    uint64_t state = rc_->seed | 1;
    for (size_t i = 0; i < len; i++)
        order[i] = rc_->start + i;
    for (size_t i = len - 1; i > 0; i--) {
        size_t j = (size_t)(next_random(&state) % (i + 1));
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    size_t take = 1 + (size_t)(next_random(&state) % len);
    struct failure_ctx fc;
    snprintf(fc.what, sizeof(fc.what), "reordering of records %zu..%zu (%zu of %zu applied, seed %llu)", rc_->start,
             rc_->end - 1, take, len, (unsigned long long)rc_->seed);
    int pos = snprintf(fc.repro, sizeof(fc.repro), "%zu", rc_->start);
    for (size_t i = 0; i < take && pos < (int)sizeof(fc.repro) - 24; i++)
        pos += snprintf(fc.repro + pos, sizeof(fc.repro) - (size_t)pos, " %zu", order[i]);
    int rc = sparse_copy(c->cur_fd, c->scratch_fd);
    for (size_t i = 0; rc == 0 && i < take; i++)
        rc = trace_apply(c->scratch_fd, &c->trace.records[order[i]]);
    free(order);
    if (rc < 0) {
        fail(c, &fc, "build image: %s", strerror(-rc));
        end_state(c);
        return;
    }
    c->reordered++;
    check_scratch(c, &fc, rc_->start);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: crash-check [--fsck PATH] [--all-below N] [--prefixes N] [--reorder N] [--seed S]\n"
               "                   BASE TRACE MANIFEST WORKDIR\n"
               "Checks crash states of a traced workload: prefixes of TRACE applied to BASE and\n"
               "reorderings between flushes.  Each is mounted (journal replay), checked against\n"
               "MANIFEST and fsck'ed.  Exit 0 when every state passes, 1 on failures, 2 on usage.\n");
}

static size_t *choose_prefixes(const struct checker *c, size_t *count)
{
    size_t total = c->trace.count;
    bool *pick = calloc(total + 1, sizeof(*pick));
    if (!pick)
        return NULL;
    if (total + 1 <= c->opt.all_below) {
        for (size_t n = 0; n <= total; n++)
            pick[n] = true;
    } else {
        size_t stride = (total + c->opt.stride_target - 1) / c->opt.stride_target;
        for (size_t n = 0; n <= total; n += stride)
            pick[n] = true;
        pick[total] = true;
        /* Around each durability point: the FLUSH applied (the same image
         * as just before it, but with its promises due) and the first
         * write of the next window. */
        for (size_t i = 0; i < total; i++) {
            if (c->trace.records[i].op != VDFS_TRACE_FLUSH)
                continue;
            for (size_t n = i + 1; n <= i + 2 && n <= total; n++)
                pick[n] = true;
        }
        /* Every sync point of the workload and the record before it. */
        for (size_t s = 0; s < c->manifest.count; s++) {
            size_t r = c->manifest.sections[s].records;
            pick[r] = true;
            if (r > 0)
                pick[r - 1] = true;
        }
    }
    size_t *list = malloc((total + 1) * sizeof(*list));
    size_t k = 0;
    for (size_t n = 0; list && n <= total; n++)
        if (pick[n])
            list[k++] = n;
    free(pick);
    *count = k;
    return list;
}

static struct reorder_case *choose_reorders(const struct checker *c, size_t *count)
{
    size_t total = c->trace.count;
    size_t nwin = 0;
    struct reorder_case *windows = malloc((total + 1) * sizeof(*windows));
    if (!windows)
        return NULL;
    size_t start = 0;
    for (size_t i = 0; i <= total; i++) {
        if (i == total || c->trace.records[i].op == VDFS_TRACE_FLUSH) {
            if (i - start >= 2)
                windows[nwin++] = (struct reorder_case){.start = start, .end = i};
            start = i + 1;
        }
    }
    struct reorder_case *cases = calloc(c->opt.reorder_cases + 1, sizeof(*cases));
    uint64_t state = c->opt.seed * 0x9e3779b97f4a7c15ull + 7;
    size_t k = 0;
    for (unsigned i = 0; cases && nwin > 0 && i < c->opt.reorder_cases; i++) {
        cases[k] = windows[next_random(&state) % nwin];
        cases[k].seed = next_random(&state);
        k++;
    }
    free(windows);
    /* In window order, so they run when the replay reaches their start. */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && cases[j - 1].start > cases[j].start; j--) {
            struct reorder_case t = cases[j];
            cases[j] = cases[j - 1];
            cases[j - 1] = t;
        }
    *count = k;
    return cases;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"fsck", required_argument, NULL, 'f'},     {"all-below", required_argument, NULL, 'a'},
        {"prefixes", required_argument, NULL, 'p'}, {"reorder", required_argument, NULL, 'r'},
        {"seed", required_argument, NULL, 's'},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.fsck = "fsck.vdfs", .all_below = 400, .stride_target = 400, .reorder_cases = 100,
                          .seed = 1, .max_failures = 10};
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        unsigned long long v = 0;
        if (ch != 'f' && ch != 'h' && ch != '?') {
            errno = 0;
            v = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg) {
                fprintf(stderr, "crash-check: bad number '%s'\n", optarg);
                return 2;
            }
        }
        switch (ch) {
        case 'f': o->fsck = optarg; break;
        case 'a': o->all_below = (size_t)v; break;
        case 'p': o->stride_target = v ? (size_t)v : 1; break;
        case 'r': o->reorder_cases = (unsigned)v; break;
        case 's': o->seed = v; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind != 4) {
        usage(stderr);
        return 2;
    }
    o->base = argv[optind];
    o->trace = argv[optind + 1];
    o->manifest = argv[optind + 2];
    o->workdir = argv[optind + 3];
    return 0;
}

int main(int argc, char **argv)
{
    static struct checker c;
    int rc = parse_args(argc, argv, &c.opt);
    if (rc)
        return rc;
    if (trace_load(c.opt.trace, &c.trace) != 0 || manifest_load(c.opt.manifest, &c.manifest) != 0)
        return 1;
    for (size_t i = 0; i < c.manifest.count; i++)
        c.manifest.sections[i].records = trace_records_within(&c.trace, c.manifest.sections[i].trace_bytes);
    vdfs_set_logger(capture_log, &c);
    char cur_path[4096];
    snprintf(cur_path, sizeof(cur_path), "%s/current.img", c.opt.workdir);
    snprintf(c.scratch, sizeof(c.scratch), "%s/crash-state.img", c.opt.workdir);
    snprintf(c.fsck_out, sizeof(c.fsck_out), "%s/fsck.out", c.opt.workdir);
    int base_fd = open(c.opt.base, O_RDONLY | O_CLOEXEC);
    c.cur_fd = open(cur_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    c.scratch_fd = open(c.scratch, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (base_fd < 0 || c.cur_fd < 0 || c.scratch_fd < 0) {
        fprintf(stderr, "crash-check: cannot open images in %s: %s\n", c.opt.workdir, strerror(errno));
        return 1;
    }
    rc = sparse_copy(base_fd, c.cur_fd);
    close(base_fd);
    if (rc < 0) {
        fprintf(stderr, "crash-check: copy %s: %s\n", c.opt.base, strerror(-rc));
        return 1;
    }
    size_t nprefix = 0, nreorder = 0;
    size_t *prefixes = choose_prefixes(&c, &nprefix);
    struct reorder_case *reorders = choose_reorders(&c, &nreorder);
    if (!prefixes || !reorders) {
        fprintf(stderr, "crash-check: out of memory\n");
        return 1;
    }
    size_t flushes = 0;
    for (size_t i = 0; i < c.trace.count; i++)
        flushes += c.trace.records[i].op == VDFS_TRACE_FLUSH;
    printf("crash-check: %zu trace records (%zu flushes), %zu sync points; checking %zu prefixes and %zu reorderings\n",
           c.trace.count, flushes, c.manifest.count, nprefix, nreorder);
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t next_prefix = 0, next_reorder = 0;
    for (size_t n = 0; n <= c.trace.count; n++) {
        while (next_reorder < nreorder && reorders[next_reorder].start == n)
            check_reorder(&c, &reorders[next_reorder++]);
        if (next_prefix < nprefix && prefixes[next_prefix] == n) {
            check_prefix(&c, n);
            next_prefix++;
        }
        if (n < c.trace.count && (rc = trace_apply(c.cur_fd, &c.trace.records[n])) < 0) {
            fprintf(stderr, "crash-check: apply record %zu: %s\n", n, strerror(-rc));
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("crash-check: %u crash states checked (%u reorderings) in %.1f s: %u failing\n", c.checked,
           c.reordered, secs, c.failures);
    if (c.failures > c.opt.max_failures)
        printf("crash-check: only the first %u failing states are shown\n", c.opt.max_failures);
    free(prefixes);
    free(reorders);
    manifest_free(&c.manifest);
    trace_free(&c.trace);
    close(c.cur_fd);
    close(c.scratch_fd);
    unlink(cur_path);
    if (c.failures == 0)
        unlink(c.scratch);
    return c.failures ? 1 : 0;
}
