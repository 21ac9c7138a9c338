/* The manifest crash-workload writes (format in workload.c) and what it
 * promises about a crashed image. */
#ifndef CRASH_MANIFEST_H
#define CRASH_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum expect_kind { EXPECT_FILE, EXPECT_DIR, EXPECT_ABSENT };

struct expectation {
    enum expect_kind kind;
    char *path;
    uint64_t size;
    char sha256[65];
};

struct sync_section {
    uint64_t trace_bytes;
    size_t records;          /* trace records complete at this sync point */
    char **touched;          /* paths changed since the previous section */
    size_t ntouched;
    struct expectation *expect;
    size_t nexpect;
};

struct manifest {
    struct sync_section *sections;
    size_t count;
};

int manifest_load(const char *path, struct manifest *m);
void manifest_free(struct manifest *m);

/* The newest section whose sync point lies within the first `records`
 * records, or NULL when no sync point is durable yet. */
const struct sync_section *manifest_durable(const struct manifest *m, size_t records);

/* Whether `path` may legitimately differ from `s` because the section after
 * `s` (the window the crash fell in) touched it. */
bool manifest_in_flux(const struct manifest *m, const struct sync_section *s, const char *path);

#endif
