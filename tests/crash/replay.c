/* crash-replay: rebuilds one crash state of a traced workload.
 *
 *   crash-replay BASE TRACE OUT N [INDEX...]
 *
 * OUT becomes a copy of BASE with the first N records of TRACE applied,
 * then the records numbered INDEX (0-based), in the order given: the form
 * crash-check prints for a reordering between two flushes.  The indices of
 * the FLUSH records among the first N are printed, one per line. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "trace.h"

static int parse_index(const char *s, size_t limit, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || s[0] == '-' || v > limit) {
        fprintf(stderr, "crash-replay: bad record number '%s' (0..%zu)\n", s, limit);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: crash-replay BASE TRACE OUT N [INDEX...]\n"
               "Copies BASE to OUT and applies the first N records of TRACE, then the listed\n"
               "records in the order given.  Prints the index of every FLUSH applied.\n");
        return 0;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: crash-replay BASE TRACE OUT N [INDEX...]\n");
        return 2;
    }
    struct trace t;
    if (trace_load(argv[2], &t) != 0)
        return 1;
    size_t n;
    if (parse_index(argv[4], t.count, &n) != 0)
        return 2;
    int in = open(argv[1], O_RDONLY | O_CLOEXEC);
    int out = open(argv[3], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in < 0 || out < 0) {
        fprintf(stderr, "crash-replay: %s: %s\n", in < 0 ? argv[1] : argv[3], strerror(errno));
        return 1;
    }
    int rc = sparse_copy(in, out);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (t.records[i].op == VDFS_TRACE_FLUSH)
            printf("flush %zu\n", i);
        rc = trace_apply(out, &t.records[i]);
    }
    for (int a = 5; rc == 0 && a < argc; a++) {
        size_t idx;
        if (parse_index(argv[a], t.count - 1, &idx) != 0)
            return 2;
        rc = trace_apply(out, &t.records[idx]);
    }
    if (rc == 0 && fsync(out) != 0)
        rc = -errno;
    if (rc < 0) {
        fprintf(stderr, "crash-replay: %s: %s\n", argv[3], strerror(-rc));
        return 1;
    }
    close(in);
    close(out);
    trace_free(&t);
    return 0;
}
