/* Runs the vdfs-switch fuzz harness without libFuzzer, with any compiler:
 * every file in the given directories or files (the regression inputs), then
 * COUNT pseudo-random inputs from a fixed seed.  The harness decodes bytes
 * into structured operations (frames with real Ethernet headers, tags of the
 * switch's VLANs, the ports' MACs; hellos; commands), so random bytes get
 * past the first checks.  An invariant violation aborts, failing the test.
 *
 * Usage: fuzz_switch_replay [--random COUNT] [--seed N] [DIR|FILE]... */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_switch.h"

#define INPUT_LIMIT (1 << 20)

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_switch_replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    static uint8_t buf[INPUT_LIMIT];
    size_t n = fread(buf, 1, sizeof(buf), f);
    bool error = ferror(f);
    fclose(f);
    if (error) {
        fprintf(stderr, "fuzz_switch_replay: cannot read %s\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

/* Replays a file, or every regular file in a directory in name order. */
static int replay_path(const char *path, unsigned *count)
{
    struct stat st;
    if (stat(path, &st)) {
        fprintf(stderr, "fuzz_switch_replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return replay_file(path);
    }
    DIR *dir = opendir(path);
    if (!dir) {
        fprintf(stderr, "fuzz_switch_replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof(*names));
            if (!grown) {
                fprintf(stderr, "fuzz_switch_replay: out of memory\n");
                exit(1);
            }
            names = grown;
        }
        if (asprintf(&names[n], "%s/%s", path, e->d_name) < 0) {
            fprintf(stderr, "fuzz_switch_replay: out of memory\n");
            exit(1);
        }
        n++;
    }
    closedir(dir);
    if (n)
        qsort(names, n, sizeof(*names), compare_names);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            (*count)++;
            if (replay_file(names[i]))
                rc = -1;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static bool parse_count(const char *text, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (*text == '\0' || *text == '-' || *end != '\0' || errno)
        return false;
    *out = v;
    return true;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: fuzz_switch_replay [--random COUNT] [--seed N] [DIR|FILE]...\n"
                "Feeds each file (each file of each DIR) and then COUNT random inputs (default 0)\n"
                "from seed N (default 1) to the vdfs-switch fuzz harness; aborts on a violation.\n");
}

int main(int argc, char **argv)
{
    unsigned long random_count = 0, seed = 1;
    unsigned files = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--random") || !strcmp(argv[i], "--seed")) {
            unsigned long *slot = argv[i][2] == 'r' ? &random_count : &seed;
            if (i + 1 == argc || !parse_count(argv[i + 1], slot)) {
                usage(stderr);
                return 2;
            }
            i++;
            continue;
        }
        if (argv[i][0] == '-') {
            usage(stderr);
            return 2;
        }
        if (replay_path(argv[i], &files))
            rc = 1;
    }
    uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
    static uint8_t buf[4096];
    for (unsigned long n = 0; n < random_count; n++) {
        size_t len = 16 + next_random(&state) % (sizeof(buf) - 16);
        for (size_t i = 0; i < len; i += 8) {
            uint64_t r = next_random(&state);
            memcpy(buf + i, &r, len - i < 8 ? len - i : 8);
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_switch_replay: %u regression inputs and %lu random inputs (seed %lu) passed\n", files, random_count,
           seed);
    return rc;
}
