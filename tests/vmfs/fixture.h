/* Shared set-up for the libvdfs tests: a fresh image made by the real
 * mkfs.vdfs in a private temporary directory, mounted through the public
 * API, and checked by the real fsck.vdfs.  The tool paths come from the
 * environment (VDFS_MKFS, VDFS_FSCK), set by meson. */
#ifndef VDFS_TEST_FIXTURE_H
#define VDFS_TEST_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "vdfs.h"

#define TEST_HOST_UUID "7e57e57e-0000-4000-8000-000000000001"

struct fixture {
    char dir[256];
    char image[300];
    struct vdfs *fs;
};

/* Creates the directory and an image of `size` (mkfs syntax, e.g. "4G");
 * `extra` is NULL or a NULL-terminated list of extra mkfs options. */
void fixture_make(struct fixture *f, const char *size, const char *const *extra);
void fixture_mount(struct fixture *f);
void fixture_unmount(struct fixture *f);
/* Exit status of `fsck.vdfs -n IMAGE` (its output goes to stderr). */
int fixture_fsck(const struct fixture *f);
/* Unmounts if mounted and removes the directory. */
void fixture_destroy(struct fixture *f);

/* A cmocka per-test setup: a new fixture with an image of `size` made
 * with `extra` options, mounted when `mount`; stored in *state.
 * fixture_teardown is the matching teardown. */
int fixture_setup(void **state, const char *size, const char *const *extra, bool mount);
int fixture_teardown(void **state);

/* Convenience wrappers that assert success. */
uint32_t fixture_create(struct fixture *f, uint32_t dir, const char *name, uint32_t mode);
void fixture_write(struct fixture *f, uint32_t ino, const void *buf, size_t len, uint64_t off);
void fixture_expect(struct fixture *f, uint32_t ino, const void *buf, size_t len, uint64_t off);
void fixture_expect_zeros(struct fixture *f, uint32_t ino, size_t len, uint64_t off);
/* A deterministic pattern so that misplaced bytes are detected. */
void fixture_pattern(void *buf, size_t len, uint64_t seed);
/* Silences library messages that a test provokes on purpose. */
void fixture_quiet_log(void);

#endif
