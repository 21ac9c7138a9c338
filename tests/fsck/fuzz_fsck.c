/* Fuzz target for fsck.vdfs: what fsck -y repairs must be repaired for
 * good.  Built as a libFuzzer target with clang (tests/fsck/run_fuzz.sh),
 * and with any compiler into fuzz_fsck_replay, which CI runs
 * (tests/fsck/fuzz_replay.sh).
 *
 * FUZZ_FSCK_BASE names one or two base images, ':'-separated, built like
 * fuzz_mount's (tests/vmfs/fuzz_mount.c): clean.img, filled and unmounted,
 * and live.img, copied while a host held the metadata lock with
 * transactions in its journal.  Input: byte 0 is flags (bit 0: which base;
 * bit 1: raw, do not re-seal), then patches as tests/vmfs/metadata_patch.h
 * describes them.  Re-sealed patches get past the checksums, so fsck meets
 * believable wrong values: counts, sizes, pointers, names, bitmaps, lock
 * records, journal contents.
 *
 * Each input runs fsck -y on the patched image.  When that exits 0 or 1
 * (clean, or everything found was fixed):
 *   - a second fsck -n must find the image clean (exit 0), and
 *   - libvdfs must mount it read-only and list and stat the whole tree
 *     (bounded) without an I/O error: fsck must not call clean what the
 *     library then refuses.
 * A violation prints what happened and aborts.  FUZZ_FSCK_VERBOSE=1 prints
 * fsck's reports and the library's messages. */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsck.h"
#include "fuzz_fsck.h"
#include "metadata_patch.h"
#include "vdfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BASES 2
#define MAX_WALK 2000 /* objects the check after repair visits */

static struct patch_base bases[MAX_BASES];
static unsigned long first_exits[64];
static size_t nbases;
static bool verbose;

static void quiet_logger(int level, const char *msg, void *ctx)
{
    (void)ctx;
    if (verbose)
        fprintf(stderr, "vdfs[%d]: %s\n", level, msg);
}

static void init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    verbose = getenv("FUZZ_FSCK_VERBOSE") != NULL;
    vdfs_set_logger(quiet_logger, NULL);
    const char *list = getenv("FUZZ_FSCK_BASE");
    if (!list || !*list) {
        fprintf(stderr, "fuzz_fsck: set FUZZ_FSCK_BASE (see fuzz_fsck.c)\n");
        abort();
    }
    char *copy = strdup(list), *save = NULL;
    for (char *p = strtok_r(copy, ":", &save); p && nbases < MAX_BASES; p = strtok_r(NULL, ":", &save))
        patch_base_load(&bases[nbases++], p);
    free(copy);
}

static int check(const char *path, bool fix)
{
    struct fsck f;
    memset(&f, 0, sizeof(f));
    f.path = path;
    f.opt.fix = fix;
    f.opt.json = !verbose; /* quiet: the JSON report is only printed at the end */
    if (vdfs_dev_open(path, fix ? 0 : VDFS_DEV_RDONLY, &f.dev) < 0)
        abort();
    int code = fsck_run(&f);
    vdfs_dev_close(f.dev);
    f.dev = NULL;
    fsck_free(&f);
    return code;
}

struct walk {
    uint32_t inos[MAX_WALK];
    size_t n;
    int error;
};

static int collect(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next_cookie)
{
    (void)mode;
    (void)next_cookie;
    struct walk *w = ctx;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    if (w->n >= MAX_WALK)
        return 1;
    w->inos[w->n++] = ino;
    return 0;
}

/* 0, or the first error the library returned for the repaired tree. */
static int walk_repaired(const char *path, char *what, size_t whatlen)
{
    uint8_t raw[16];
    char uuid[37];
    vdfs_uuid_generate(raw);
    vdfs_uuid_format(raw, uuid);
    struct vdfs_mount_opts opts = {
        .readonly = true,
        .host_uuid = uuid,
        .host_name = "fuzz_fsck",
        .no_direct = true,
    };
    struct vdfs *fs;
    int rc = vdfs_mount(path, &opts, &fs);
    if (rc) {
        snprintf(what, whatlen, "mount");
        return rc;
    }
    static struct walk w;
    w.n = 0;
    w.inos[w.n++] = vdfs_root_ino(fs);
    for (size_t i = 0; i < w.n && rc == 0; i++) {
        struct vdfs_stat st;
        rc = vdfs_getattr(fs, w.inos[i], &st);
        if (rc) {
            snprintf(what, whatlen, "getattr of descriptor %u", w.inos[i]);
        } else if (S_ISDIR(st.mode)) {
            rc = vdfs_readdir(fs, w.inos[i], 0, collect, &w);
            if (rc < 0)
                snprintf(what, whatlen, "readdir of descriptor %u", w.inos[i]);
            else
                rc = 0;
        }
    }
    int urc = vdfs_unmount(fs);
    if (rc == 0 && urc) {
        snprintf(what, whatlen, "unmount");
        rc = urc;
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    struct patch_base *b = &bases[(flags & 1) % nbases];
    static struct patch_set set;
    patch_apply(b, data + 1, size - 1, flags & 2, &set);
    int fd = patch_write_image(b, &set, NULL);
    patch_restore(b, &set);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

    int first = check(path, true);
    first_exits[first & 63]++;
    if (first == FSCK_EXIT_OK || first == FSCK_EXIT_CORRECTED) {
        int second = check(path, false);
        if (second != FSCK_EXIT_OK) {
            fprintf(stderr, "fuzz_fsck: fsck -y exited %d, then fsck -n found problems (exit %d)\n", first,
                    second);
            abort();
        }
        char what[96];
        int rc = walk_repaired(path, what, sizeof(what));
        if (rc) {
            fprintf(stderr, "fuzz_fsck: fsck -y exited %d and fsck -n 0, but the library failed: %s: %s\n", first,
                    what, vdfs_strerror(rc));
            abort();
        }
    }
    close(fd);
    return 0;
}

void fuzz_fsck_print_stats(void)
{
    printf("fuzz_fsck: fsck -y exit codes:");
    for (int code = 0; code < 64; code++)
        if (first_exits[code])
            printf(" %d: %lu", code, first_exits[code]);
    printf("\n");
}
