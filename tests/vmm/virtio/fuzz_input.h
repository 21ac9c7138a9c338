/* Shared by the virtio fuzz targets: reading a fuzz input as
 * little-endian numbers (past its end every read is zero, so a short input
 * is a valid one), and aborting on a broken invariant. */
#ifndef VDFS_TESTS_FUZZ_INPUT_H
#define VDFS_TESTS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Names the target and the condition on `stream`, then aborts (libFuzzer
 * keeps the input; the replay driver prints it). */
#define FUZZ_CHECK(target, stream, cond)                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stream, "%s: invariant broken at line %d: %s\n", target, __LINE__, #cond);   \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

struct input {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t get8(struct input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t get16(struct input *in)
{
    uint16_t lo = get8(in);
    return (uint16_t)(lo | get8(in) << 8);
}

static inline uint32_t get32(struct input *in)
{
    uint32_t lo = get16(in);
    return lo | (uint32_t)get16(in) << 16;
}

/* A length byte (below `max`) and that many bytes into buf; the length. */
static inline uint8_t get_bytes(struct input *in, uint8_t *buf, uint8_t max)
{
    uint8_t len = get8(in) % max;
    for (unsigned i = 0; i < len; i++)
        buf[i] = get8(in);
    return len;
}

/* The devices log guest errors on stderr: keep them out of the fuzzer's
 * output (sanitizer reports go to fd 2 directly).  *report, NULL the first
 * time, becomes the real stderr, where broken invariants are named. */
static inline void fuzz_quiet_stderr(FILE **report)
{
    static FILE *quiet;
    if (!*report) {
        *report = stderr;
        quiet = fopen("/dev/null", "w");
        if (!quiet)
            abort();
    }
    stderr = quiet;
}

#endif
