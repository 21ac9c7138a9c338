/* metaops: the metadata half of the FUSE benchmark.  Creates N empty
 * files (open O_CREAT|O_EXCL + close), stats each, then unlinks each, in
 * DIRS subdirectories of DIR, with THREADS threads each owning a share
 * of the subdirectories.  Prints one line per phase:
 *   create <ops/s>
 *   stat <ops/s>
 *   unlink <ops/s>
 * Between phases it can drop the kernel's dentry/inode caches (--drop,
 * root only) so that stat reaches the file system instead of the cache.
 * --drop-every N also drops them after every N files of a phase, outside
 * the timed part: libfuse's passthrough_ll keeps a descriptor open per
 * inode the kernel remembers, so without it a run of more files than the
 * process's descriptor limit fails with EMFILE.
 *
 * usage: metaops DIR FILES [DIRS] [THREADS] [--drop] [--drop-every N]
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum phase { PHASE_CREATE, PHASE_STAT, PHASE_UNLINK };

struct worker {
    const char *root;
    unsigned long first, end, dirs, threads, index; /* files [first, end) */
    enum phase phase;
    int err;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int one_op(enum phase phase, const char *path)
{
    struct stat st;
    int fd;
    switch (phase) {
    case PHASE_CREATE:
        fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0)
            return -1;
        return close(fd);
    case PHASE_STAT:
        return stat(path, &st);
    case PHASE_UNLINK:
        return unlink(path);
    }
    return -1;
}

/* File i lives in directory i % dirs; thread t owns the directories
 * d with d % threads == t, so threads never share a directory. */
static void *run_worker(void *arg)
{
    struct worker *w = arg;
    char path[4096];
    for (unsigned long i = w->first; i < w->end; i++) {
        unsigned long d = i % w->dirs;
        if (d % w->threads != w->index)
            continue;
        snprintf(path, sizeof(path), "%s/d%05lu/f%08lu", w->root, d, i);
        if (one_op(w->phase, path) != 0) {
            w->err = errno;
            fprintf(stderr, "metaops: %s: %s\n", path, strerror(errno));
            return NULL;
        }
    }
    return NULL;
}

static void drop_caches(void)
{
    sync();
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
    if (!f || fputs("2\n", f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "metaops: cannot drop caches (root needed): %s\n", strerror(errno));
        exit(1);
    }
}

/* Files [first, end) with `threads` threads; the seconds it took, or < 0. */
static double run_range(const char *root, unsigned long first, unsigned long end, unsigned long dirs,
                        unsigned long threads, enum phase phase)
{
    pthread_t tid[64];
    struct worker w[64];
    double t0 = now_s();
    for (unsigned long t = 0; t < threads; t++) {
        w[t] = (struct worker){.root = root, .first = first, .end = end, .dirs = dirs, .threads = threads,
                               .index = t, .phase = phase};
        if (pthread_create(&tid[t], NULL, run_worker, &w[t]) != 0) {
            fprintf(stderr, "metaops: cannot start a thread\n");
            exit(1);
        }
    }
    int err = 0;
    for (unsigned long t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (w[t].err)
            err = w[t].err;
    }
    return err ? -1.0 : now_s() - t0;
}

static int run_phase(const char *root, unsigned long files, unsigned long dirs, unsigned long threads,
                     unsigned long drop_every, enum phase phase, const char *name)
{
    double dt = 0;
    unsigned long step = drop_every ? drop_every : files;
    for (unsigned long first = 0; first < files; first += step) {
        unsigned long end = files - first > step ? first + step : files;
        double t = run_range(root, first, end, dirs, threads, phase);
        if (t < 0)
            return -1;
        dt += t;
        if (drop_every && end < files)
            drop_caches();
    }
    printf("%s %.0f\n", name, (double)files / dt);
    fflush(stdout);
    return 0;
}

static unsigned long parse_count(const char *s, const char *what, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v == 0 || v > max) {
        fprintf(stderr, "metaops: bad %s '%s' (1..%lu)\n", what, s, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    bool drop = false;
    unsigned long drop_every = 0;
    const char *pos[5];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--drop") == 0)
            drop = true;
        else if (strcmp(argv[i], "--drop-every") == 0 && i + 1 < argc)
            drop_every = parse_count(argv[++i], "--drop-every count", 100000000);
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: metaops DIR FILES [DIRS] [THREADS] [--drop] [--drop-every N]\n");
            return 0;
        } else if (npos < 4)
            pos[npos++] = argv[i];
        else {
            fprintf(stderr, "metaops: too many arguments (try --help)\n");
            return 2;
        }
    }
    if (npos < 2) {
        fprintf(stderr, "usage: metaops DIR FILES [DIRS] [THREADS] [--drop] [--drop-every N]\n");
        return 2;
    }
    const char *root = pos[0];
    unsigned long files = parse_count(pos[1], "file count", 100000000);
    unsigned long dirs = npos > 2 ? parse_count(pos[2], "directory count", 99999) : 1;
    unsigned long threads = npos > 3 ? parse_count(pos[3], "thread count", 64) : 1;
    char path[4096];
    for (unsigned long d = 0; d < dirs; d++) {
        snprintf(path, sizeof(path), "%s/d%05lu", root, d);
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "metaops: mkdir %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    if (run_phase(root, files, dirs, threads, drop_every, PHASE_CREATE, "create"))
        return 1;
    if (drop || drop_every)
        drop_caches();
    if (run_phase(root, files, dirs, threads, drop_every, PHASE_STAT, "stat"))
        return 1;
    if (run_phase(root, files, dirs, threads, drop_every, PHASE_UNLINK, "unlink"))
        return 1;
    for (unsigned long d = 0; d < dirs; d++) {
        snprintf(path, sizeof(path), "%s/d%05lu", root, d);
        rmdir(path);
    }
    return 0;
}
