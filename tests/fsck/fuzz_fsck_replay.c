/* Runs fuzz_fsck.c's target without libFuzzer, so that CI builds it with
 * gcc and under ASan: first every input file named on the command line
 * (crashes found by fuzzing, kept as regression inputs), then pseudo-random
 * inputs from a fixed seed until ITERATIONS or SECONDS run out.
 *
 *   FUZZ_FSCK_BASE=clean.img:live.img fuzz_fsck_replay ITERATIONS SECONDS SEED [INPUT...]
 *
 * The random inputs are shaped like the useful ones: one to three short
 * patches, most of them re-sealed, landing more often on the headers and
 * counters at the start of an object, with bytes that are often 0, 0xff or
 * small numbers.  When the target aborts, the input is printed in hex first
 * (save it with xxd -r -p as a regression input). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_fsck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 4096

static uint8_t current[MAX_INPUT];
static size_t current_len;

static void print_input(int sig)
{
    static const char hex[] = "0123456789abcdef";
    static const char head[] = "\nfuzz_fsck_replay: the failing input, in hex:\n";
    char line[2 * MAX_INPUT + 1];
    size_t n = 0;
    for (size_t i = 0; i < current_len; i++) {
        line[n++] = hex[current[i] >> 4];
        line[n++] = hex[current[i] & 15];
    }
    line[n++] = '\n';
    if (write(2, head, sizeof(head) - 1) < 0 || write(2, line, n) < 0)
        _exit(134);
    signal(sig, SIG_DFL);
    raise(sig);
}

static uint64_t rng_state;

static uint32_t next_random(void)
{
    /* xorshift64*: any fixed, well-mixed sequence will do */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static uint8_t interesting_byte(void)
{
    static const uint8_t values[] = {0x00, 0xff, 0x01, 0x02, 0x7f, 0x80, 0x10, 0x40};
    uint32_t r = next_random();
    return r % 3 ? (uint8_t)(r >> 8) : values[(r >> 8) % sizeof(values)];
}

static size_t make_input(uint8_t *buf)
{
    size_t n = 0;
    uint32_t r = next_random();
    buf[n++] = (uint8_t)((r & 1) | ((r & 0x70) == 0 ? 2 : 0)); /* raw one time in eight */
    unsigned patches = 1 + (r >> 8) % 3;
    for (unsigned p = 0; p < patches; p++) {
        uint32_t block = next_random() & 0xffff;
        uint32_t q = next_random();
        uint32_t off = q % 2 ? q % 128 : q % 4096;
        uint8_t len = (uint8_t)(1 + (q >> 16) % 8);
        buf[n++] = (uint8_t)block;
        buf[n++] = (uint8_t)(block >> 8);
        buf[n++] = (uint8_t)off;
        buf[n++] = (uint8_t)(off >> 8);
        buf[n++] = len;
        for (uint8_t i = 0; i < len; i++)
            buf[n++] = interesting_byte();
    }
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char *end1, *end2, *end3;
    if (argc < 4) {
        fprintf(stderr, "usage: FUZZ_FSCK_BASE=IMG[:IMG] %s ITERATIONS SECONDS SEED [INPUT...]\n", argv[0]);
        return 2;
    }
    unsigned long iterations = strtoul(argv[1], &end1, 10);
    double seconds = strtod(argv[2], &end2);
    rng_state = strtoull(argv[3], &end3, 10) | 1;
    if (*end1 || *end2 || *end3 || seconds <= 0) {
        fprintf(stderr, "%s: ITERATIONS, SECONDS and SEED must be numbers\n", argv[0]);
        return 2;
    }
    signal(SIGABRT, print_input);
    for (int i = 4; i < argc; i++) {
        FILE *fp = fopen(argv[i], "rb");
        if (!fp) {
            perror(argv[i]);
            return 1;
        }
        current_len = fread(current, 1, sizeof(current), fp);
        fclose(fp);
        LLVMFuzzerTestOneInput(current, current_len);
    }
    printf("fuzz_fsck_replay: %d regression inputs passed\n", argc - 4);
    double start = now_s();
    unsigned long done = 0;
    while (done < iterations && now_s() - start < seconds) {
        current_len = make_input(current);
        LLVMFuzzerTestOneInput(current, current_len);
        done++;
    }
    printf("fuzz_fsck_replay: %lu random inputs passed in %.1f s\n", done, now_s() - start);
    fuzz_fsck_print_stats();
    return 0;
}
