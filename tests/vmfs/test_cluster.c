/* heartbeat.c + lock.c: several hosts on one image.  Two struct vdfs
 * mounts with different host UUIDs in one process are two hosts; a forked
 * child is a host that can be stopped (SIGSTOP) or killed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "fixture.h"
#include "format.h"

#define UUID_A "7e57e57e-0000-4000-8000-00000000000a"
#define UUID_B "7e57e57e-0000-4000-8000-00000000000b"
#define UUID_C "7e57e57e-0000-4000-8000-00000000000c"
#define HB_INTERVAL 50
/* A 2000 ms lease.  With 1000 ms, test_file_lock_written_back once got
 * EIO from host a's release during the full suite under ASan on two cores,
 * most likely a fence after a renewal stalled past the lease (the test
 * drops library messages, so the log does not say).  Every bound below
 * scales with the timeout. */
#define HB_TIMEOUT 3000

static int setup(void **state)
{
    const char *opts[] = {"-H", "2", NULL};
    return fixture_setup(state, "1G", opts, false);
}

static struct vdfs *mount_as(struct fixture *f, const char *uuid, const char *name, int *rc_out)
{
    struct vdfs_mount_opts o = {.host_uuid = uuid, .host_name = name, .hb_interval_ms = HB_INTERVAL,
                                .hb_timeout_ms = HB_TIMEOUT};
    struct vdfs *fs = NULL;
    int rc = vdfs_mount(f->image, &o, &fs);
    if (rc_out)
        *rc_out = rc;
    else
        assert_int_equal(rc, 0);
    return rc ? NULL : fs;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sector_io(struct fixture *f, uint64_t addr, uint8_t *sector, bool write)
{
    struct vdfs_dev *dev;
    assert_int_equal(vdfs_dev_open(f->image, 0, &dev), 0);
    uint8_t *buf = vdfs_aligned_alloc(VDFS_SECTOR_SIZE);
    if (write) {
        memcpy(buf, sector, VDFS_SECTOR_SIZE);
        assert_int_equal(vdfs_dev_write(dev, buf, VDFS_SECTOR_SIZE, addr), 0);
        assert_int_equal(vdfs_dev_flush(dev), 0);
    } else {
        assert_int_equal(vdfs_dev_read_atomic(dev, buf, VDFS_SECTOR_SIZE, addr), 0);
        memcpy(sector, buf, VDFS_SECTOR_SIZE);
    }
    vdfs_aligned_free(buf);
    vdfs_dev_close(dev);
}

static struct vdfs_super read_super_of(struct fixture *f)
{
    struct vdfs_dev *dev;
    assert_int_equal(vdfs_dev_open(f->image, VDFS_DEV_RDONLY, &dev), 0);
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    struct vdfs_super sb;
    assert_int_equal(vdfs_dev_read(dev, buf, VDFS_META_SIZE, 0), 0);
    assert_int_equal(vdfs_super_decode(buf, 0, &sb), 0);
    vdfs_aligned_free(buf);
    vdfs_dev_close(dev);
    return sb;
}

/* Descriptor ino's lock record (0: the volume metadata lock), read
 * straight from the image. */
static void read_lock(struct fixture *f, uint32_t ino, struct vdfs_lock_rec *l)
{
    struct vdfs_super sb = read_super_of(f);
    uint64_t addr = vdfs_lock_addr(&sb, vdfs_fd_lock_index(&sb, ino));
    uint8_t sector[VDFS_SECTOR_SIZE];
    sector_io(f, addr, sector, false);
    assert_int_equal(vdfs_lock_decode(sector, addr, l), 0);
}

/* Metadata changed by one host is seen by the other on its next call,
 * including content and sizes it had cached before; the lock's version
 * moves only when a holder changed something. */
static void test_two_hosts_see_each_other(void **state)
{
    struct fixture *f = *state;
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    struct vdfs *b = mount_as(f, UUID_B, "host-b", NULL);
    uint32_t root = vdfs_root_ino(a);
    struct vdfs_stat st, bst;
    assert_int_equal(vdfs_create(a, root, "shared", S_IFREG | 0644, 0, NULL, &st), 0);
    for (int round = 0; round < 5; round++) {
        char name[32], text[64], got[64];
        int n = snprintf(text, sizeof(text), "round %d: written by host a, longer each time %*s", round, round, "");
        assert_int_equal(vdfs_pwrite(a, st.ino, text, (size_t)n, 0), n);
        /* b cached the file in the previous round: it must see the new size and bytes. */
        assert_int_equal(vdfs_getattr(b, st.ino, &bst), 0);
        assert_int_equal(bst.size, (uint64_t)n);
        memset(got, 0, sizeof(got));
        assert_int_equal(vdfs_pread(b, st.ino, got, sizeof(got), 0), n);
        assert_memory_equal(got, text, (size_t)n);
        snprintf(name, sizeof(name), "dir-from-b-%d", round);
        assert_int_equal(vdfs_create(b, root, name, S_IFDIR | 0755, 0, NULL, &bst), 0);
        assert_int_equal(vdfs_lookup(a, root, name, &st), 0);
        assert_int_equal(st.ino, bst.ino);
        assert_int_equal(vdfs_lookup(a, root, "shared", &st), 0);
    }
    /* Resources both hosts allocated never collide: fsck after both unmount. */
    struct vdfs_lock_rec before, after;
    assert_int_equal(vdfs_sync(a), 0);
    read_lock(f, 0, &before);
    assert_int_equal(vdfs_getattr(b, root, &bst), 0); /* b takes the lock from a */
    assert_int_equal(vdfs_getattr(a, root, &st), 0);  /* and a takes it back: nothing changed */
    read_lock(f, 0, &after);
    assert_int_equal(after.version, before.version);
    /* A change moves it by one when the changer hands the lock over. */
    assert_int_equal(vdfs_lookup(a, root, "shared", &st), 0);
    assert_int_equal(vdfs_pwrite(a, st.ino, "x", 1, 0), 1);
    assert_int_equal(vdfs_getattr(b, root, &bst), 0);
    read_lock(f, 0, &after);
    assert_int_equal(after.version, before.version + 1);
    assert_int_equal(after.owner_slot, 1);
    assert_int_equal(vdfs_unmount(b), 0);
    assert_int_equal(vdfs_unmount(a), 0);
    read_lock(f, 0, &after);
    assert_int_equal(after.mode, VDFS_LOCK_FREE);
    assert_int_equal(fixture_fsck(f), 0);
}

/* A read-only mount is a host that writes no metadata: it takes a slot
 * and the metadata lock, so it sees what another host changes after it
 * mounted; its own changes are EROFS; its read share keeps writers out.
 * With every slot taken it cannot join (EUSERS), and `no_host` then reads
 * without a slot. */
static void test_readonly_host(void **state)
{
    struct fixture *f = *state;
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    struct vdfs_mount_opts ro = {.readonly = true, .host_uuid = UUID_B, .host_name = "reader",
                                 .hb_interval_ms = HB_INTERVAL, .hb_timeout_ms = HB_TIMEOUT};
    struct vdfs *b = NULL;
    assert_int_equal(vdfs_mount(f->image, &ro, &b), 0);
    uint32_t root = vdfs_root_ino(a);
    struct vdfs_stat st, bst;
    assert_int_equal(vdfs_create(a, root, "after", S_IFREG | 0644, 0, NULL, &st), 0);
    assert_int_equal(vdfs_pwrite(a, st.ino, "written by a", 12, 0), 12);
    assert_int_equal(vdfs_lookup(b, root, "after", &bst), 0);
    assert_int_equal(bst.ino, st.ino);
    char got[16] = {0};
    assert_int_equal(vdfs_pread(b, st.ino, got, sizeof(got), 0), 12);
    assert_memory_equal(got, "written by a", 12);
    assert_int_equal(vdfs_create(b, root, "nope", S_IFREG | 0644, 0, NULL, &bst), -EROFS);
    assert_int_equal(vdfs_unlink(b, root, "after"), -EROFS);
    assert_int_equal(vdfs_open(b, st.ino, O_WRONLY), -EROFS);
    /* b's read share: a cannot open the file for writing meanwhile. */
    assert_int_equal(vdfs_open(b, st.ino, O_RDONLY), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_WRONLY), -EBUSY);
    assert_int_equal(vdfs_release(b, st.ino, O_RDONLY), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_WRONLY), 0);
    assert_int_equal(vdfs_release(a, st.ino, O_WRONLY), 0);

    /* Both slots are taken now: a third reader cannot join, but can read
     * without a slot what the hosts have written in place. */
    assert_int_equal(vdfs_sync(a), 0);
    struct vdfs_mount_opts ro_c = ro;
    ro_c.host_uuid = UUID_C;
    struct vdfs *c = NULL;
    fixture_quiet_log();
    assert_int_equal(vdfs_mount(f->image, &ro_c, &c), -EUSERS);
    ro_c.no_host = true;
    assert_int_equal(vdfs_mount(f->image, &ro_c, &c), 0);
    assert_int_equal(vdfs_lookup(c, root, "after", &bst), 0);
    assert_int_equal(vdfs_unmount(c), 0);

    assert_int_equal(vdfs_unmount(b), 0);
    assert_int_equal(vdfs_unmount(a), 0);
    assert_int_equal(fixture_fsck(f), 0);
}

static void test_same_uuid_refused(void **state)
{
    struct fixture *f = *state;
    fixture_quiet_log();
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    int rc;
    assert_null(mount_as(f, UUID_A, "host-a-again", &rc));
    assert_int_equal(rc, -EBUSY);
    assert_int_equal(vdfs_unmount(a), 0);
    /* Once it is gone, the same UUID mounts again. */
    a = mount_as(f, UUID_A, "host-a", NULL);
    assert_int_equal(vdfs_unmount(a), 0);
}

static void test_all_slots_taken(void **state)
{
    struct fixture *f = *state;
    fixture_quiet_log();
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    struct vdfs *b = mount_as(f, UUID_B, "host-b", NULL);
    int rc;
    assert_null(mount_as(f, UUID_C, "host-c", &rc));
    assert_int_equal(rc, -EUSERS);
    assert_int_equal(vdfs_unmount(b), 0);
    struct vdfs *c = mount_as(f, UUID_C, "host-c", NULL);
    assert_int_equal(vdfs_unmount(c), 0);
    assert_int_equal(vdfs_unmount(a), 0);
}

/* One writer per file across hosts; readers share; the holder is named. */
static void test_file_lock_modes(void **state)
{
    struct fixture *f = *state;
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    struct vdfs *b = mount_as(f, UUID_B, "host-b", NULL);
    uint32_t root = vdfs_root_ino(a);
    struct vdfs_stat st;
    assert_int_equal(vdfs_create(a, root, "disk.img", S_IFREG | 0644, 0, NULL, &st), 0);
    char host[200];
    assert_int_equal(vdfs_lock_holder(b, st.ino, host, sizeof(host)), 0);

    assert_int_equal(vdfs_open(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_RDONLY), 0); /* the same host may open it again */
    assert_int_equal(vdfs_open(b, st.ino, O_RDWR), -EBUSY);
    assert_int_equal(vdfs_open(b, st.ino, O_RDONLY), -EBUSY);
    assert_int_equal(vdfs_open(b, st.ino, O_WRONLY | VDFS_OPEN_MULTIWRITER), -EBUSY);
    assert_int_equal(vdfs_lock_holder(b, st.ino, host, sizeof(host)), 1);
    assert_non_null(strstr(host, "host-a"));
    assert_non_null(strstr(host, UUID_A));
    assert_int_equal(vdfs_lock_holder(a, st.ino, host, sizeof(host)), 0);
    /* open(O_TRUNC) on b arrives as a truncate before the open: refused too. */
    assert_int_equal(vdfs_pwrite(a, st.ino, "data", 4, 0), 4);
    struct vdfs_setattr trunc = {.valid = VDFS_SET_SIZE, .size = 0};
    assert_int_equal(vdfs_setattr(b, st.ino, &trunc, NULL), -EBUSY);
    /* Nor may b punch, zero or allocate its blocks. */
    assert_int_equal(vdfs_fallocate(b, st.ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), -EBUSY);
    assert_int_equal(vdfs_fallocate(b, st.ino, FALLOC_FL_ZERO_RANGE, 0, 4096), -EBUSY);
    assert_int_equal(vdfs_fallocate(b, st.ino, 0, 0, 1 << 20), -EBUSY);
    assert_int_equal(vdfs_fallocate(a, st.ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
    assert_int_equal(vdfs_setattr(a, st.ino, &trunc, NULL), 0);
    assert_int_equal(vdfs_release(a, st.ino, O_RDONLY), 0);
    assert_int_equal(vdfs_open(b, st.ino, O_RDWR), -EBUSY); /* a still has one open */
    assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);

    /* Read-only opens share; a writer is refused while they last. */
    assert_int_equal(vdfs_open(b, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_release(b, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_RDONLY), 0);
    assert_int_equal(vdfs_open(b, st.ino, O_RDONLY), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_RDWR), -EBUSY);
    assert_int_equal(vdfs_release(b, st.ino, O_RDONLY), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_RDWR), 0); /* sole reader upgrades */
    assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_release(a, st.ino, O_RDONLY), 0);

    /* Multi-writer shares with multi-writer only. */
    assert_int_equal(vdfs_open(a, st.ino, O_RDWR | VDFS_OPEN_MULTIWRITER), 0);
    assert_int_equal(vdfs_open(b, st.ino, O_RDWR | VDFS_OPEN_MULTIWRITER), 0);
    assert_int_equal(vdfs_pwrite(b, st.ino, "bb", 2, 2), 2);
    assert_int_equal(vdfs_pwrite(a, st.ino, "aa", 2, 0), 2);
    char got[4];
    assert_int_equal(vdfs_pread(b, st.ino, got, 4, 0), 4);
    assert_memory_equal(got, "aabb", 4);
    assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_release(b, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_lock_holder(b, st.ino, host, sizeof(host)), 0);

    /* The last name of a file another host writes is neither removed nor
     * renamed over (a running VM's disk); another name of it may go, and
     * the writer itself may remove it, as POSIX lets a process do. */
    struct vdfs_stat other, link_st;
    assert_int_equal(vdfs_create(b, root, "other", S_IFREG | 0644, 0, NULL, &other), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_unlink(b, root, "disk.img"), -EBUSY);
    assert_int_equal(vdfs_rename(b, root, "other", root, "disk.img", 0), -EBUSY);
    assert_int_equal(vdfs_link(b, st.ino, root, "disk.link", &link_st), 0);
    assert_int_equal(vdfs_unlink(b, root, "disk.img"), 0);
    assert_int_equal(vdfs_unlink(b, root, "disk.link"), -EBUSY);
    assert_int_equal(vdfs_rename(a, root, "disk.link", root, "disk.img", 0), 0);
    assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_open(b, st.ino, O_RDWR | VDFS_OPEN_MULTIWRITER), 0);
    assert_int_equal(vdfs_unlink(a, root, "disk.img"), -EBUSY);
    assert_int_equal(vdfs_release(b, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_unlink(b, root, "other"), 0);
    assert_int_equal(vdfs_getattr(a, st.ino, &st), 0);

    /* A file another host has open survives its unlink until that host closes it. */
    assert_int_equal(vdfs_open(b, st.ino, O_RDONLY), 0);
    assert_int_equal(vdfs_unlink(a, root, "disk.img"), 0);
    assert_int_equal(vdfs_pread(b, st.ino, got, 4, 0), 4);
    assert_int_equal(vdfs_release(b, st.ino, O_RDONLY), 0);
    uint32_t old_gen = st.ino_gen;
    assert_int_equal(vdfs_check_generation(b, st.ino, old_gen), -ESTALE);
    assert_int_equal(vdfs_getattr(a, st.ino, &st), -ENOENT);
    /* The number comes back for a new object: the old generation stays stale. */
    struct vdfs_stat again;
    assert_int_equal(vdfs_create(a, root, "again", S_IFREG | 0644, 0, NULL, &again), 0);
    assert_int_equal(vdfs_check_generation(b, again.ino, again.ino_gen), 0);
    if (again.ino == st.ino)
        assert_int_equal(vdfs_check_generation(b, again.ino, old_gen), -ESTALE);
    assert_int_equal(vdfs_unmount(b), 0);
    assert_int_equal(vdfs_unmount(a), 0);
    assert_int_equal(fixture_fsck(f), 0);
}

/* A file lock lives in memory while its host holds the metadata lock: an
 * open and close in quick succession write nothing, a lock kept open
 * reaches the device within moments (for `vdfsctl locks`), and a host
 * that asks for the metadata lock finds every lock of the last holder on
 * the device. */
static void test_file_lock_written_back(void **state)
{
    struct fixture *f = *state;
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    uint32_t root = vdfs_root_ino(a);
    struct vdfs_stat st;
    assert_int_equal(vdfs_create(a, root, "vm.img", S_IFREG | 0644, 0, NULL, &st), 0);
    struct vdfs_lock_rec before, l;
    read_lock(f, st.ino, &before);
    const int pairs = 20;
    for (int i = 0; i < pairs; i++) {
        assert_int_equal(vdfs_open(a, st.ino, O_RDWR), 0);
        assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);
    }
    usleep(100 * 1000);
    read_lock(f, st.ino, &l);
    assert_int_equal(l.mode, VDFS_LOCK_FREE);
    /* Each pair cost two compare-and-writes before; a pair that took less
     * than the publishing delay now costs none. */
    assert_true(l.hdr.gen - before.hdr.gen < 2 * (uint64_t)pairs);

    assert_int_equal(vdfs_open(a, st.ino, O_RDWR), 0);
    uint64_t t0 = now_ms();
    do {
        usleep(5 * 1000);
        read_lock(f, st.ino, &l);
    } while (l.mode != VDFS_LOCK_EXCLUSIVE && now_ms() - t0 < 2000);
    assert_int_equal(l.mode, VDFS_LOCK_EXCLUSIVE);
    uint32_t a_slot = l.owner_slot;
    assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);
    do {
        usleep(5 * 1000);
        read_lock(f, st.ino, &l);
    } while (l.mode != VDFS_LOCK_FREE && now_ms() - t0 < 4000);
    assert_int_equal(l.mode, VDFS_LOCK_FREE);

    /* Opened and handed over at once: b finds the lock on the device. */
    struct vdfs *b = mount_as(f, UUID_B, "host-b", NULL);
    assert_int_equal(vdfs_open(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_open(b, st.ino, O_RDWR), -EBUSY);
    read_lock(f, st.ino, &l);
    assert_int_equal(l.mode, VDFS_LOCK_EXCLUSIVE);
    assert_int_equal(l.owner_slot, a_slot);
    /* ...and a's close, made while b held the metadata lock, reaches b. */
    assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_open(b, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_release(b, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_unmount(a), 0);
    assert_int_equal(vdfs_unmount(b), 0);
    read_lock(f, st.ino, &l);
    assert_int_equal(l.mode, VDFS_LOCK_FREE);
    assert_int_equal(fixture_fsck(f), 0);
}

static void send_byte(int fd, char c)
{
    assert_int_equal(write(fd, &c, 1), 1);
}

static char recv_byte(int fd)
{
    char c = 0;
    return read(fd, &c, 1) == 1 ? c : 0;
}

/* The child host: mounts, creates a file when told, then after being
 * stopped past its lease and continued must fail every call with EIO and
 * write nothing (unmount included). */
static int stopped_host(const char *image, int cmd, int reply)
{
    struct vdfs_mount_opts o = {.host_uuid = UUID_C, .host_name = "host-c", .hb_interval_ms = HB_INTERVAL,
                                .hb_timeout_ms = HB_TIMEOUT};
    struct vdfs *c;
    if (vdfs_mount(image, &o, &c) != 0)
        return 10;
    char r = 'r';
    if (write(reply, &r, 1) != 1 || recv_byte(cmd) != 'w')
        return 11;
    struct vdfs_stat st;
    if (vdfs_create(c, vdfs_root_ino(c), "before-stop", S_IFREG | 0644, 0, NULL, &st) != 0 ||
        vdfs_pwrite(c, st.ino, "kept", 4, 0) != 4 || vdfs_fsync(c, st.ino, false) != 0 ||
        vdfs_open(c, st.ino, O_RDWR) != 0)
        return 12;
    /* Dirty, uncommitted metadata while stopped: it must never land. */
    if (vdfs_pwrite(c, st.ino, "lost", 4, 4) != 4)
        return 13;
    r = 'd';
    if (write(reply, &r, 1) != 1 || recv_byte(cmd) != 'c')
        return 14;
    if (vdfs_create(c, vdfs_root_ino(c), "after-stop", S_IFREG | 0644, 0, NULL, &st) != -EIO)
        return 15;
    if (vdfs_pwrite(c, st.ino, "x", 1, 0) != -EIO)
        return 16;
    if (vdfs_unmount(c) != -EIO)
        return 17;
    return 0;
}

static void test_stopped_host_is_fenced_and_recovered(void **state)
{
    struct fixture *f = *state;
    fixture_quiet_log();
    int to_child[2], from_child[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(from_child), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(stopped_host(f->image, to_child[0], from_child[1]));
    assert_int_equal(recv_byte(from_child[0]), 'r');
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    send_byte(to_child[1], 'w');
    assert_int_equal(recv_byte(from_child[0]), 'd');
    assert_int_equal(kill(pid, SIGSTOP), 0);
    uint64_t t0 = now_ms();
    struct vdfs_stat st;
    /* a needs the metadata lock the stopped host holds: it waits for the
     * timeout, replays that host's journal and breaks the lock. */
    assert_int_equal(vdfs_lookup(a, vdfs_root_ino(a), "before-stop", &st), 0);
    uint64_t waited = now_ms() - t0;
    assert_true(waited >= HB_TIMEOUT / 2);
    assert_true(waited < 10000);
    assert_int_equal(st.size, 4); /* fsync'ed: kept; the later write was never committed */
    char got[4];
    assert_int_equal(vdfs_pread(a, st.ino, got, 4, 0), 4);
    assert_memory_equal(got, "kept", 4);
    /* Its file lock was cleared when its slot was recovered. */
    char host[200];
    assert_int_equal(vdfs_lock_holder(a, st.ino, host, sizeof(host)), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);
    assert_int_equal(kill(pid, SIGCONT), 0);
    send_byte(to_child[1], 'c');
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(vdfs_lookup(a, vdfs_root_ino(a), "after-stop", &st), -ENOENT);
    assert_int_equal(vdfs_getattr(a, vdfs_root_ino(a), &st), 0);
    /* The fenced host's UUID rejoins by a new mount. */
    struct vdfs *c = mount_as(f, UUID_C, "host-c", NULL);
    assert_int_equal(vdfs_lookup(c, vdfs_root_ino(c), "before-stop", &st), 0);
    assert_int_equal(vdfs_unmount(c), 0);
    assert_int_equal(vdfs_unmount(a), 0);
    close(to_child[0]);
    close(to_child[1]);
    close(from_child[0]);
    close(from_child[1]);
    assert_int_equal(fixture_fsck(f), 0);
}

/* kill -9 while holding the metadata lock: the next mount replays its
 * journal at once (its process is gone from this machine). */
static void test_killed_host_recovered_at_mount(void **state)
{
    struct fixture *f = *state;
    fixture_quiet_log();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct vdfs_mount_opts o = {.host_uuid = UUID_C, .hb_interval_ms = HB_INTERVAL, .hb_timeout_ms = HB_TIMEOUT};
        struct vdfs *c;
        struct vdfs_stat st;
        if (vdfs_mount(f->image, &o, &c) != 0 ||
            vdfs_create(c, vdfs_root_ino(c), "synced", S_IFREG | 0644, 0, NULL, &st) != 0 ||
            vdfs_open(c, st.ino, O_RDWR) != 0 || vdfs_fsync(c, st.ino, false) != 0)
            _exit(1);
        kill(getpid(), SIGKILL);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    uint64_t t0 = now_ms();
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    assert_true(now_ms() - t0 < HB_TIMEOUT * 3);
    struct vdfs_stat st;
    assert_int_equal(vdfs_lookup(a, vdfs_root_ino(a), "synced", &st), 0);
    /* Recovery cleared the dead host's file lock on disk, not just its slot. */
    struct vdfs_lock_rec l;
    read_lock(f, st.ino, &l);
    assert_int_equal(l.mode, VDFS_LOCK_FREE);
    char host[200];
    assert_int_equal(vdfs_lock_holder(a, st.ino, host, sizeof(host)), 0);
    assert_int_equal(vdfs_open(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_release(a, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_unmount(a), 0);
    assert_int_equal(fixture_fsck(f), 0);
}

/* A host stopped at a random instant, perhaps inside a compare-and-write
 * holding the OFD lock of a record others need, never stalls the others
 * beyond a few timeouts. */
static void busy_host(const char *image, int reply)
{
    struct vdfs_mount_opts o = {.host_uuid = UUID_C, .hb_interval_ms = 20, .hb_timeout_ms = 1500};
    struct vdfs *c;
    if (vdfs_mount(image, &o, &c) != 0)
        _exit(10);
    char r = 'r';
    if (write(reply, &r, 1) != 1)
        _exit(11);
    struct vdfs_stat st;
    for (unsigned i = 0;; i++) {
        char name[32];
        snprintf(name, sizeof(name), "busy-%u", i % 8);
        vdfs_create(c, vdfs_root_ino(c), name, S_IFREG | 0644, 0, NULL, &st);
        vdfs_unlink(c, vdfs_root_ino(c), name);
    }
}

static void test_host_stopped_anywhere_does_not_stall_others(void **state)
{
    struct fixture *f = *state;
    fixture_quiet_log();
    for (int round = 0; round < 4; round++) {
        int from_child[2];
        assert_int_equal(pipe(from_child), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            busy_host(f->image, from_child[1]);
        assert_int_equal(recv_byte(from_child[0]), 'r');
        struct vdfs_mount_opts o = {.host_uuid = UUID_A, .hb_interval_ms = 20, .hb_timeout_ms = 1500};
        struct vdfs *a;
        assert_int_equal(vdfs_mount(f->image, &o, &a), 0);
        struct vdfs_stat st;
        for (int i = 0; i < 10; i++)
            assert_int_equal(vdfs_getattr(a, vdfs_root_ino(a), &st), 0);
        usleep((useconds_t)(round * 7919 % 20000));
        assert_int_equal(kill(pid, SIGSTOP), 0);
        uint64_t t0 = now_ms();
        char name[32];
        snprintf(name, sizeof(name), "after-%d", round);
        assert_int_equal(vdfs_create(a, vdfs_root_ino(a), name, S_IFREG | 0644, 0, NULL, &st), 0);
        assert_int_equal(vdfs_getattr(a, vdfs_root_ino(a), &st), 0);
        assert_true(now_ms() - t0 < 8000);
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(vdfs_unmount(a), 0);
        close(from_child[0]);
        close(from_child[1]);
    }
    /* The killed host's slot is recovered by the next mount, if no one
     * needed one of its locks before. */
    struct vdfs *a = mount_as(f, UUID_A, "host-a", NULL);
    assert_int_equal(vdfs_unmount(a), 0);
    assert_int_equal(fixture_fsck(f), 0);
}

/* Bad timing options are refused with a message, not a crash. */
static int setup_four_slots(void **state)
{
    const char *opts[] = {"-H", "4", NULL};
    return fixture_setup(state, "1G", opts, false);
}

/* The first LIVE heartbeat slot, and its generation. */
static uint32_t live_slot(struct fixture *f, const struct vdfs_super *sb, uint64_t *gen)
{
    uint8_t sector[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    for (uint32_t slot = 0; slot < sb->max_hosts; slot++) {
        uint64_t addr = vdfs_heartbeat_addr(sb, slot);
        sector_io(f, addr, sector, false);
        assert_int_equal(vdfs_heartbeat_decode(sector, addr, &hb), 0);
        if (hb.state == VDFS_HB_LIVE) {
            *gen = hb.hb_gen;
            return slot;
        }
    }
    fail_msg("no LIVE slot");
    return VDFS_NO_SLOT;
}

/* Slot `x` (generation `x_gen`): a host that died, being replayed by the
 * replayer slot at its generation, owning ino's lock EXCLUSIVE. */
static void plant_replaying(struct fixture *f, const struct vdfs_super *sb, uint32_t x, uint64_t x_gen,
                            uint32_t replayer, uint64_t replayer_gen, uint32_t ino)
{
    uint8_t sector[VDFS_SECTOR_SIZE];
    uint64_t x_addr = vdfs_heartbeat_addr(sb, x);
    struct vdfs_heartbeat hb;
    sector_io(f, x_addr, sector, false);
    assert_int_equal(vdfs_heartbeat_decode(sector, x_addr, &hb), 0);
    hb.state = VDFS_HB_REPLAYING;
    hb.slot = x;
    memset(hb.host_uuid, 0x5a, sizeof(hb.host_uuid));
    hb.hb_gen = x_gen;
    hb.counter = 7;
    hb.interval_ms = HB_INTERVAL;
    hb.timeout_ms = HB_TIMEOUT;
    hb.replayer_slot = replayer;
    hb.replayer_hb_gen = replayer_gen;
    vdfs_heartbeat_encode(&hb, sector);
    sector_io(f, x_addr, sector, true);
    uint64_t lock_addr = vdfs_lock_addr(sb, vdfs_fd_lock_index(sb, ino));
    struct vdfs_lock_rec l;
    sector_io(f, lock_addr, sector, false);
    assert_int_equal(vdfs_lock_decode(sector, lock_addr, &l), 0);
    l.mode = VDFS_LOCK_EXCLUSIVE;
    l.owner_slot = x;
    l.owner_hb_gen = x_gen;
    vdfs_lock_encode(&l, sector);
    sector_io(f, lock_addr, sector, true);
}

/* A slot another host is replaying, silent for longer than the timeout
 * (a long journal), while that replayer is alive: nobody takes it over,
 * since a second replay beside the first could write old images over what
 * a later holder wrote.  Once the replayer is gone, it is taken over.  A
 * replay the host itself left unfinished is taken up again at once. */
static void test_live_replayer_not_taken_over(void **state)
{
    struct fixture *f = *state;
    struct vdfs *a = mount_as(f, UUID_A, "replayer", NULL);
    struct vdfs_stat st, st2;
    assert_int_equal(vdfs_create(a, vdfs_root_ino(a), "held", S_IFREG | 0644, 0, NULL, &st), 0);
    assert_int_equal(vdfs_create(a, vdfs_root_ino(a), "held2", S_IFREG | 0644, 0, NULL, &st2), 0);
    assert_int_equal(vdfs_sync(a), 0);
    struct vdfs_super sb = read_super_of(f);
    uint64_t a_gen;
    uint32_t a_slot = live_slot(f, &sb, &a_gen);
    plant_replaying(f, &sb, 3, 5, a_slot, a_gen, st.ino);

    struct vdfs *b = mount_as(f, UUID_B, "waiter", NULL);
    uint64_t until = now_ms() + 2 * HB_TIMEOUT + 500;
    while (now_ms() < until) {
        assert_int_equal(vdfs_open(b, st.ino, O_RDWR), -EBUSY);
        usleep(100 * 1000);
    }
    assert_int_equal(vdfs_unmount(a), 0);
    assert_int_equal(vdfs_open(b, st.ino, O_RDWR), 0);
    assert_int_equal(vdfs_release(b, st.ino, O_RDWR), 0);

    uint64_t b_gen;
    uint32_t b_slot = live_slot(f, &sb, &b_gen);
    plant_replaying(f, &sb, 3, 9, b_slot, b_gen, st2.ino);
    uint64_t t0 = now_ms();
    assert_int_equal(vdfs_open(b, st2.ino, O_RDWR), 0);
    assert_true(now_ms() - t0 < HB_TIMEOUT);
    assert_int_equal(vdfs_release(b, st2.ino, O_RDWR), 0);
    assert_int_equal(vdfs_unmount(b), 0);
}

static void test_bad_timing_refused(void **state)
{
    struct fixture *f = *state;
    fixture_quiet_log();
    struct vdfs_mount_opts o = {.host_uuid = UUID_A, .hb_interval_ms = 2000, .hb_timeout_ms = 1000};
    struct vdfs *fs = NULL;
    assert_int_equal(vdfs_mount(f->image, &o, &fs), -EINVAL);
    assert_null(fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_hosts_see_each_other, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_readonly_host, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_same_uuid_refused, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_all_slots_taken, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_file_lock_modes, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_file_lock_written_back, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stopped_host_is_fenced_and_recovered, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_killed_host_recovered_at_mount, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_host_stopped_anywhere_does_not_stall_others, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bad_timing_refused, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_live_replayer_not_taken_over, setup_four_slots, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
