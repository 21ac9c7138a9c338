/* Runs a libFuzzer target's LLVMFuzzerTestOneInput without libFuzzer, with
 * any compiler: first every file named on the command line (directories:
 * every regular file in them, in name order), then --random N inputs made
 * from a fixed --seed: mutations of those files (bit flips, byte stores,
 * inserts, deletes, copies, splices) and some purely random ones.  An
 * invariant the target checks aborts the process, so the test fails.
 *
 * Usage: fuzz_replay [--random N] [--seed S] [--verbose] PATH... */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX_BYTES (64u << 10)

struct blob {
    uint8_t *data;
    size_t len;
};

static struct blob *corpus;
static size_t ncorpus, corpus_cap;

static uint64_t rng_state;

/* splitmix64: a fixed seed gives the same inputs on every machine. */
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(size_t n)
{
    return n ? (size_t)(rng() % n) : 0;
}

static int load_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(INPUT_MAX_BYTES);
    size_t len = buf ? fread(buf, 1, INPUT_MAX_BYTES, f) : 0;
    bool failed = !buf || ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "fuzz_replay: %s: cannot read\n", path);
        free(buf);
        return -1;
    }
    if (ncorpus == corpus_cap) {
        corpus_cap = corpus_cap ? 2 * corpus_cap : 64;
        corpus = realloc(corpus, corpus_cap * sizeof(*corpus));
        if (!corpus) {
            fprintf(stderr, "fuzz_replay: out of memory\n");
            exit(2);
        }
    }
    uint8_t *exact = realloc(buf, len ? len : 1); /* reads past the end are caught */
    if (exact)
        buf = exact;
    corpus[ncorpus].data = buf;
    corpus[ncorpus].len = len;
    ncorpus++;
    return 0;
}

static int name_order(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_path(const char *path, bool verbose)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "fuzz_replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (verbose)
            fprintf(stderr, "fuzz_replay: %s\n", path);
        return load_file(path);
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "fuzz_replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof(*names));
        }
        if (!names || asprintf(&names[n], "%s/%s", path, e->d_name) < 0) {
            fprintf(stderr, "fuzz_replay: out of memory\n");
            exit(2);
        }
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), name_order);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode) && load_path(names[i], verbose) < 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

static const uint8_t interesting[] = {0, 1, 2, 3, 4, 7, 8, 15, 16, 0x1f, 0x20, 0x3f, 0x40,
                                      0x7f, 0x80, 0xfe, 0xff};

/* One mutation of buf[0, *len) in place (capacity INPUT_MAX_BYTES). */
static void mutate_once(uint8_t *buf, size_t *len)
{
    size_t n = *len;
    switch (below(7)) {
    case 0: /* flip a bit */
        if (n)
            buf[below(n)] ^= (uint8_t)(1u << below(8));
        break;
    case 1: /* store an interesting or random byte */
        if (n)
            buf[below(n)] = below(2) ? interesting[below(sizeof(interesting))] : (uint8_t)rng();
        break;
    case 2: { /* insert random bytes */
        size_t k = 1 + below(16), at = below(n + 1);
        if (n + k > INPUT_MAX_BYTES)
            break;
        memmove(buf + at + k, buf + at, n - at);
        for (size_t i = 0; i < k; i++)
            buf[at + i] = (uint8_t)rng();
        *len = n + k;
        break;
    }
    case 3: { /* delete a range */
        if (!n)
            break;
        size_t at = below(n), k = 1 + below(n - at < 16 ? n - at : 16);
        memmove(buf + at, buf + at + k, n - at - k);
        *len = n - k;
        break;
    }
    case 4: { /* copy a range over another place */
        if (n < 2)
            break;
        size_t from = below(n), to = below(n), k = 1 + below(32);
        if (k > n - from)
            k = n - from;
        if (k > n - to)
            k = n - to;
        memmove(buf + to, buf + from, k);
        break;
    }
    case 5: { /* splice: a piece of another corpus input inserted */
        if (!ncorpus)
            break;
        const struct blob *o = &corpus[below(ncorpus)];
        if (!o->len)
            break;
        size_t from = below(o->len), k = 1 + below(o->len - from), at = below(n + 1);
        if (n + k > INPUT_MAX_BYTES)
            break;
        memmove(buf + at + k, buf + at, n - at);
        memcpy(buf + at, o->data + from, k);
        *len = n + k;
        break;
    }
    case 6: /* truncate */
        if (n)
            *len = below(n);
        break;
    }
}

int main(int argc, char **argv)
{
    unsigned long random_inputs = 0;
    unsigned long long seed = 1;
    bool verbose = false;
    int first_path = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--random") == 0 && i + 1 < argc) {
            random_inputs = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: %s [--random N] [--seed S] [--verbose] PATH...\n"
                   "Runs the fuzz target on every input file in PATHs, then on N inputs\n"
                   "mutated from them with a fixed seed.  Aborts on a broken invariant.\n",
                   argv[0]);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "fuzz_replay: unknown option %s (see --help)\n", argv[i]);
            return 2;
        } else {
            first_path = i;
            break;
        }
    }
    for (int i = first_path; i < argc; i++)
        if (load_path(argv[i], verbose) < 0)
            return 2;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < ncorpus; i++)
        LLVMFuzzerTestOneInput(corpus[i].data, corpus[i].len);

    rng_state = seed;
    uint8_t *buf = malloc(INPUT_MAX_BYTES);
    if (!buf)
        return 2;
    for (unsigned long r = 0; r < random_inputs; r++) {
        size_t len;
        if (ncorpus && below(8)) {
            const struct blob *b = &corpus[below(ncorpus)];
            memcpy(buf, b->data, b->len);
            len = b->len;
            for (size_t k = 1 + below(8); k; k--)
                mutate_once(buf, &len);
        } else {
            len = below(1024);
            for (size_t k = 0; k < len; k++)
                buf[k] = (uint8_t)rng();
        }
        if (verbose)
            fprintf(stderr, "fuzz_replay: random input %lu (%zu bytes)\n", r, len);
        /* A copy of exactly `len` bytes, so reads past the input's end are
         * caught by AddressSanitizer as they would be under libFuzzer. */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact)
            return 2;
        memcpy(exact, buf, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("fuzz_replay: %zu input files and %lu generated inputs (seed %llu) passed in %.2f s\n",
           ncorpus, random_inputs, seed,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    free(buf);
    for (size_t i = 0; i < ncorpus; i++)
        free(corpus[i].data);
    free(corpus);
    return 0;
}
