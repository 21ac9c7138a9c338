/* departing.c: a host of this machine whose mount is gone but which still
 * holds its slot is waited for; anything else holding a slot is not.  A
 * child process named vdfs-fuse, with the image open and a slot's liveness
 * lock held but no mount, plays the daemon of an unmounted datastore (the
 * fuse suite's lifecycle test runs the real one). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "departing.h"
#include "device.h"
#include "fixture.h"
#include "format.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct vdfs_dev *open_image(const struct fixture *f)
{
    struct vdfs_dev *dev = NULL;
    assert_int_equal(vdfs_dev_open(f->image, 0, &dev), 0);
    return dev;
}

/* Forks a child that calls itself `name`, opens the image, holds slot's
 * liveness lock, tells the parent, and exits after `hold_ms`. */
static pid_t spawn_holder(const struct fixture *f, const char *name, uint32_t slot, unsigned hold_ms)
{
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        prctl(PR_SET_NAME, name, 0, 0, 0);
        struct vdfs_dev *dev = NULL;
        if (vdfs_dev_open(f->image, 0, &dev) != 0 || vdfs_dev_try_lock(dev, vdfs_liveness_lock_offset(slot), 1, false))
            _exit(1);
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        struct timespec hold = {hold_ms / 1000, (long)(hold_ms % 1000) * 1000000L};
        nanosleep(&hold, NULL);
        _exit(0);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    return pid;
}

static void reap(pid_t pid)
{
    int status;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
}

static void test_unescape_octal(void **state)
{
    (void)state;
    char s[] = "/tmp/a\\040b\\134c\\011d\\08\\4";
    vdfs_unescape_octal(s);
    assert_string_equal(s, "/tmp/a b\\c\td\\08\\4");
}

static void test_free_slot_needs_no_wait(void **state)
{
    struct fixture *f = *state;
    struct vdfs_dev *dev = open_image(f);
    uint64_t t0 = now_ms();
    assert_int_equal(vdfs_wait_departing_host(dev, 2, (uint32_t)getpid(), 10000), 0);
    assert_true(now_ms() - t0 < 1000);
    vdfs_dev_close(dev);
}

/* Not a vdfs-fuse process (a tool, a VMM, a reused pid): not departing, and
 * the wait gives up once the kernel's grace for an exiting holder is over. */
static void test_other_holder_is_not_departing(void **state)
{
    struct fixture *f = *state;
    struct vdfs_dev *dev = open_image(f);
    pid_t holder = spawn_holder(f, "vdfs-vm", 3, 60000);
    assert_false(vdfs_host_is_departing(dev, (uint32_t)holder));
    assert_false(vdfs_host_is_departing(dev, (uint32_t)getpid()));
    uint64_t t0 = now_ms();
    assert_int_equal(vdfs_wait_departing_host(dev, 3, (uint32_t)holder, 60000), -EBUSY);
    assert_true(now_ms() - t0 < 10000);
    reap(holder);
    vdfs_dev_close(dev);
}

/* vdfs-fuse with the image open and no mount of it: waited for until it
 * lets go of the slot. */
static void test_departing_daemon_is_waited_for(void **state)
{
    struct fixture *f = *state;
    struct vdfs_dev *dev = open_image(f);
    pid_t holder = spawn_holder(f, "vdfs-fuse", 1, 700);
    uint64_t t0 = now_ms();
    assert_true(vdfs_host_is_departing(dev, (uint32_t)holder));
    assert_int_equal(vdfs_wait_departing_host(dev, 1, (uint32_t)holder, 60000), 0);
    assert_true(now_ms() - t0 >= 300);
    assert_int_equal(vdfs_dev_probe_lock(dev, vdfs_liveness_lock_offset(1), 1), 0);
    reap(holder);
    vdfs_dev_close(dev);
}

/* A slot already written FREE whose liveness lock is still held: its host
 * is letting go this moment (or claiming it); waited for, briefly. */
static void test_freed_slot_still_locked_is_waited_for(void **state)
{
    struct fixture *f = *state;
    struct vdfs_dev *dev = open_image(f);
    pid_t holder = spawn_holder(f, "vdfsctl", 2, 400);
    uint64_t t0 = now_ms();
    vdfs_wait_departing_hosts(dev, VDFS_HEARTBEAT_OFFSET, VDFS_DEFAULT_MAX_HOSTS, NULL, NULL);
    uint64_t waited = now_ms() - t0;
    assert_true(waited >= 200 && waited < 5000);
    assert_int_equal(vdfs_dev_probe_lock(dev, vdfs_liveness_lock_offset(2), 1), 0);
    reap(holder);
    vdfs_dev_close(dev);
}

static void test_departing_wait_is_bounded(void **state)
{
    struct fixture *f = *state;
    struct vdfs_dev *dev = open_image(f);
    pid_t holder = spawn_holder(f, "vdfs-fuse", 0, 60000);
    uint64_t t0 = now_ms();
    assert_int_equal(vdfs_wait_departing_host(dev, 0, (uint32_t)holder, 300), -ETIMEDOUT);
    assert_true(now_ms() - t0 < 5000);
    reap(holder);
    vdfs_dev_close(dev);
}

/* The same host mounting again while its previous process is still on its
 * way out, for longer than the lease a mount has before its slot is its
 * own: it waits, then joins (before, the wait used up that lease and the
 * claim of the slot failed with EIO). */
static void test_remount_waits_out_a_slow_departure(void **state)
{
    struct fixture *f = *state;
    const char *uuid = "7e57e57e-0000-4000-8000-00000000de01";
    /* The leaver renews with a long timeout, so that a storage stall on a
     * busy machine cannot fence it; the new mount's lease is the default
     * 2 s, which the 3.5 s departure outlasts. */
    struct vdfs_mount_opts o = {.host_uuid = uuid, .host_name = "departing", .hb_timeout_ms = 3000};
    struct vdfs_mount_opts leaver = o;
    leaver.hb_timeout_ms = 15000;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(ready[0]);
        prctl(PR_SET_NAME, "vdfs-fuse", 0, 0, 0);
        struct vdfs *fs = NULL;
        if (vdfs_mount(f->image, &leaver, &fs) != 0 || write(ready[1], "r", 1) != 1)
            _exit(1);
        struct timespec linger = {3, 500000000L};
        nanosleep(&linger, NULL);
        _exit(vdfs_unmount(fs) == 0 ? 0 : 2);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    uint64_t t0 = now_ms();
    struct vdfs *fs = NULL;
    assert_int_equal(vdfs_mount(f->image, &o, &fs), 0);
    assert_true(now_ms() - t0 >= 2000);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(vdfs_unmount(fs), 0);
    assert_int_equal(fixture_fsck(f), 0);
}

static int setup(void **state)
{
    return fixture_setup(state, "1G", NULL, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unescape_octal),
        cmocka_unit_test_setup_teardown(test_free_slot_needs_no_wait, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_other_holder_is_not_departing, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_departing_daemon_is_waited_for, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_freed_slot_still_locked_is_waited_for, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_departing_wait_is_bounded, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_remount_waits_out_a_slow_departure, setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
