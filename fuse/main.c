/* vdfs-fuse: mounts a vdfs datastore through the libfuse3 low-level API.
 *
 * Order matters: the datastore is mounted (heartbeat slot claimed, journal
 * replayed) before anything appears at the mount point, so a datastore in
 * use elsewhere is refused with nothing mounted.  Daemon mode forks before
 * the datastore is mounted, because libvdfs runs a commit thread that a
 * fork would leave behind; the parent waits for the child's verdict so
 * that failures still give a message and a non-zero exit. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "vdfs_fuse.h"

static bool log_to_syslog;

static void log_message(int level, const char *msg, void *ctx)
{
    if (log_to_syslog) {
        syslog(level <= VDFS_LOG_ERR ? LOG_ERR : level <= VDFS_LOG_WARN ? LOG_WARNING : LOG_INFO, "%s", msg);
        return;
    }
    const char *env = getenv("VDFS_LOG");
    int threshold = env ? atoi(env) : VDFS_LOG_INFO;
    if (level <= threshold)
        fprintf(stderr, "vdfs-fuse: %s\n", msg);
}

/* The parent of a daemon waits here for one status byte from the child:
 * 0 once mounted, anything else when the mount failed.  The child gets
 * the pipe's write end back. */
static int daemon_fork(void)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        perror("vdfs-fuse: pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("vdfs-fuse: fork");
        return -1;
    }
    if (pid == 0) {
        close(pipefd[0]);
        setsid();
        return pipefd[1];
    }
    close(pipefd[1]);
    unsigned char status = 1;
    ssize_t n;
    do
        n = read(pipefd[0], &status, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) {
        /* The child died before reporting: its stderr said why. */
        int ws;
        waitpid(pid, &ws, 0);
        status = 1;
    }
    _exit(status);
}

static void daemon_report(int fd, unsigned char status)
{
    if (fd < 0)
        return;
    if (status == 0) {
        /* Detach from the terminal only once the mount is in place. */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            if (null > STDERR_FILENO)
                close(null);
        }
        if (chdir("/") != 0) {
            /* "/" always exists; nothing useful to do */
        }
        log_to_syslog = true;
    }
    ssize_t n = write(fd, &status, 1);
    (void)n;
    close(fd);
}

/* The library's commit thread must not take the termination signals,
 * or libfuse's handler would run there and the session loop would never
 * notice.  So they are blocked while the volume (and its thread) starts. */
static int mount_volume(const struct fuse_config_opts *o, struct vdfs **fs)
{
    struct vdfs_mount_opts mo = {
        .readonly = o->readonly,
        .host_uuid = o->host_uuid,
        .host_name = o->host_name,
        .no_direct = o->no_direct,
        .commit_ms = o->commit_ms,
        .hb_interval_ms = o->hb_interval_ms,
        .hb_timeout_ms = o->hb_timeout_ms,
        .multiwriter = o->multiwriter,
        /* A read-only mount joins under a UUID of its own, so that it
         * can sit beside this machine's read-write mount. */
        .own_host = o->readonly,
        .no_host = o->no_host,
    };
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = vdfs_mount(o->device, &mo, fs);
    if ((rc == -EBUSY || rc == -EUSERS) && o->readonly && !o->no_host) {
        fprintf(stderr, "vdfs-fuse: %s: cannot join as a host (%s): mounting as a reader that takes no slot "
                "and does not see what hosts change while it is mounted\n", o->device, vdfs_strerror(rc));
        mo.no_host = true;
        rc = vdfs_mount(o->device, &mo, fs);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        fprintf(stderr, "vdfs-fuse: cannot mount %s: %s\n", o->device, vdfs_strerror(rc));
        return rc;
    }
    if (vdfs_root_ino(*fs) != FUSE_ROOT_ID) {
        fprintf(stderr, "vdfs-fuse: %s: root directory is descriptor %u, expected %u\n", o->device,
                vdfs_root_ino(*fs), (unsigned)FUSE_ROOT_ID);
        vdfs_unmount(*fs);
        return -EINVAL;
    }
    return 0;
}

/* Kernel mount options we always want: the kernel checks permissions
 * (the library does not), and the mount shows as fuse.vdfs with the
 * device as its source. */
static int add_mount_options(struct fuse_args *args, const char *device)
{
    char *opts = NULL, *fsname = NULL;
    int rc = asprintf(&fsname, "fsname=%s", device) < 0 ? -1 : 0;
    if (rc == 0)
        rc = fuse_opt_add_opt(&opts, "default_permissions") || fuse_opt_add_opt(&opts, "subtype=vdfs") ||
             fuse_opt_add_opt_escaped(&opts, fsname) || fuse_opt_add_arg(args, "-o") || fuse_opt_add_arg(args, opts);
    free(fsname);
    free(opts);
    return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct fuse_config_opts o;
    struct fuse_args args;
    if (fuse_config_parse(argc, argv, &o, &args) != 0) {
        fuse_opt_free_args(&args);
        fuse_config_free(&o);
        return 1;
    }
    if (o.show_help) {
        fuse_config_usage(argv[0]);
        fuse_opt_free_args(&args);
        fuse_config_free(&o);
        return 0;
    }
    if (o.show_version) {
        printf("vdfs-fuse 0.1.0 (libfuse %s)\n", fuse_pkgversion());
        fuse_opt_free_args(&args);
        fuse_config_free(&o);
        return 0;
    }
    /* As mount(8) mounts a write-protected device: read-only, with a word. */
    if (!o.readonly && access(o.device, W_OK) != 0 && (errno == EROFS || errno == EACCES || errno == EPERM)) {
        fprintf(stderr,
                "vdfs-fuse: %s is write-protected (%s): mounting read-only, without joining the cluster "
                "(changes that hosts make while it is mounted are not seen)\n",
                o.device, strerror(errno));
        o.readonly = true;
        o.no_host = true;
        if (fuse_opt_add_arg(&args, "-oro") != 0) {
            fuse_opt_free_args(&args);
            fuse_config_free(&o);
            return 1;
        }
    }
    if (o.no_host && !o.readonly) {
        fprintf(stderr, "vdfs-fuse: -o nohost: only with -o ro (a host that writes must join the cluster)\n");
        fuse_opt_free_args(&args);
        fuse_config_free(&o);
        return 1;
    }
    int status = 1;
    struct fuse_cmdline_opts cl;
    memset(&cl, 0, sizeof(cl));
    if (add_mount_options(&args, o.device) != 0 || fuse_parse_cmdline(&args, &cl) != 0)
        goto out_args;
    if (!cl.mountpoint) {
        fprintf(stderr, "vdfs-fuse: no mount point given (try --help)\n");
        goto out_args;
    }
    if (o.fake) {
        status = 0;
        goto out_args;
    }

    int notify_fd = -1;
    if (!cl.foreground && (notify_fd = daemon_fork()) < 0)
        goto out_args;
    vdfs_set_logger(log_message, NULL);
    openlog("vdfs-fuse", LOG_PID, LOG_DAEMON);

    struct vdfs_fuse vol;
    memset(&vol, 0, sizeof(vol));
    vol.readonly = o.readonly;
    vol.max_background = o.max_background;
    if (mount_volume(&o, &vol.fs) != 0)
        goto out_report;
    vol.block_size = vdfs_block_size(vol.fs);
    struct wcache_limits limits;
    wcache_default_limits(o.writeback_set ? o.writeback_mb : 0, &limits);
    if (o.readonly || (o.writeback_set && o.writeback_mb == 0))
        limits.limit_bytes = 0;
    if (o.writeback_expire_ms)
        limits.expire_ms = o.writeback_expire_ms;
    int wrc = wcache_create(vol.fs, &limits, &vol.wc);
    if (wrc) {
        log_message(VDFS_LOG_ERR, "cannot start the write-back cache", NULL);
        goto out_volume;
    }

    struct fuse_session *se = fuse_session_new(&args, &vdfs_fuse_ops, sizeof(vdfs_fuse_ops), &vol);
    vol.se = se;
    if (!se)
        goto out_volume;
    if (fuse_set_signal_handlers(se) != 0)
        goto out_session;
    if (fuse_session_mount(se, cl.mountpoint) != 0)
        goto out_signals;
    daemon_report(notify_fd, 0);
    notify_fd = -1;

    int loop_rc;
    if (cl.singlethread) {
        loop_rc = fuse_session_loop(se);
    } else {
        struct fuse_loop_config *cfg = fuse_loop_cfg_create();
        if (!cfg) {
            loop_rc = -ENOMEM;
        } else {
            fuse_loop_cfg_set_clone_fd(cfg, cl.clone_fd);
            /* Unset (UINT_MAX): libfuse's default (10), or with
             * max_background enough threads for every background request to
             * wait for its device I/O while a few serve lookups. */
            if (cl.max_threads > 0 && cl.max_threads <= 100000)
                fuse_loop_cfg_set_max_threads(cfg, cl.max_threads);
            else if (vol.max_background)
                fuse_loop_cfg_set_max_threads(cfg, vol.max_background + 8);
            if (cl.max_idle_threads <= 100000)
                fuse_loop_cfg_set_idle_threads(cfg, cl.max_idle_threads);
            loop_rc = fuse_session_loop_mt(se, cfg);
            fuse_loop_cfg_destroy(cfg);
        }
    }
    fuse_session_unmount(se);
    /* libfuse returns the signal number after SIGTERM/SIGINT/SIGHUP: a
     * requested, clean end.  Negative is an error. */
    status = loop_rc < 0 ? 1 : 0;
out_signals:
    fuse_remove_signal_handlers(se);
out_session:
    fuse_session_destroy(se); /* runs op_destroy, which unmounts the volume, if init happened */
out_volume:
    vdfs_fuse_unmount(&vol);
    if (vol.unmount_rc) {
        log_message(VDFS_LOG_ERR, "unmounting the datastore failed; run fsck.vdfs", NULL);
        status = 1;
    }
out_report:
    daemon_report(notify_fd, (unsigned char)status);
out_args:
    free(cl.mountpoint);
    fuse_opt_free_args(&args);
    fuse_config_free(&o);
    return status;
}
