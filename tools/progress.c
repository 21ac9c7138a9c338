#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#define PROGRESS_MIN_BYTES (64ull << 20)

void progress_begin(struct progress *p, const struct ctl *c, const char *verb, const char *name, uint64_t total)
{
    *p = (struct progress){.on = !c->quiet && total >= PROGRESS_MIN_BYTES && isatty(STDERR_FILENO),
                           .verb = verb, .name = name, .total = total};
    clock_gettime(CLOCK_MONOTONIC, &p->last);
}

static void draw(struct progress *p, const char *end)
{
    fprintf(stderr, "\rvdfsctl: %s %s: %llu of %llu MiB%s", p->verb, p->name, (unsigned long long)(p->done >> 20),
            (unsigned long long)(p->total >> 20), end);
}

void progress_advance(struct progress *p, uint64_t bytes)
{
    p->done += bytes;
    if (!p->on)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - p->last.tv_sec) * 1000000000L + (now.tv_nsec - p->last.tv_nsec) < 250000000L)
        return;
    p->last = now;
    draw(p, "");
}

void progress_end(struct progress *p)
{
    if (p->on)
        draw(p, "\n");
}
