/* Progress of a long copy, shown on stderr when it is a terminal and the
 * copy is 64 MiB or more (not with -q): "vdfsctl: put disk.img: 168 of
 * 300 MiB", redrawn at most four times a second. */
#ifndef VDFSCTL_PROGRESS_H
#define VDFSCTL_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "ctl.h"

struct progress {
    bool on;
    const char *verb, *name;
    uint64_t total, done;
    struct timespec last;
};

void progress_begin(struct progress *p, const struct ctl *c, const char *verb, const char *name, uint64_t total);
/* `bytes` more of the total are done (copied, or skipped as a hole). */
void progress_advance(struct progress *p, uint64_t bytes);
void progress_end(struct progress *p);

#endif
