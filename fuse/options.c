/* vdfs-fuse command line: our -o options, the device argument, and the
 * mount(8) helper calling convention of mount.fuse.vdfs. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdfs_fuse.h"

enum { KEY_RO, KEY_HELP, KEY_VERSION, KEY_NUMBER };

#define OPT(t, p) {t, offsetof(struct fuse_config_opts, p), 1}
static const struct fuse_opt config_spec[] = {
    OPT("host_uuid=%s", host_uuid),
    OPT("host_name=%s", host_name),
    FUSE_OPT_KEY("commit_ms=", KEY_NUMBER),
    OPT("no_direct", no_direct),
    FUSE_OPT_KEY("hb_interval_ms=", KEY_NUMBER),
    FUSE_OPT_KEY("hb_timeout_ms=", KEY_NUMBER),
    FUSE_OPT_KEY("max_background=", KEY_NUMBER),
    FUSE_OPT_KEY("writeback_mb=", KEY_NUMBER),
    FUSE_OPT_KEY("writeback_expire_ms=", KEY_NUMBER),
    OPT("multiwriter", multiwriter),
    OPT("nohost", no_host),
    FUSE_OPT_KEY("ro", KEY_RO),
    FUSE_OPT_KEY("-r", KEY_RO),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_END,
};

void fuse_config_usage(const char *prog)
{
    printf("usage: %s IMAGE|DEVICE MOUNTPOINT [-f] [-d] [-s] [-o opt,...]\n"
           "\n"
           "Mounts a vdfs datastore; this mount is one cluster host.  Several hosts\n"
           "(each with its own host_uuid) may mount one datastore at once.\n"
           "\n"
           "  -f                 stay in the foreground\n"
           "  -d                 debug output (implies -f)\n"
           "  -s                 single-threaded\n"
           "  -o ro              read-only: joins as a host (a heartbeat slot, the metadata\n"
           "                     lock to read) but writes no metadata and no data\n"
           "  -o ro,nohost       read-only without joining: writes nothing at all, and\n"
           "                     does not see what hosts change while it is mounted\n"
           "  -o host_uuid=UUID  this host's UUID (default: the persistent host UUID)\n"
           "  -o host_name=NAME  the name shown in `vdfsctl hosts` (default: hostname)\n"
           "  -o commit_ms=N     journal commit interval in ms (default 5000)\n"
           "  -o no_direct       do not open the device with O_DIRECT\n"
           "  -o hb_interval_ms=N   heartbeat renewal interval (default: the datastore's)\n"
           "  -o hb_timeout_ms=N    silence after which a host counts as dead (default: the\n"
           "                        datastore's); use the same value on every host\n"
           "  -o multiwriter     opens for write share files with other multiwriter hosts\n"
           "                     instead of locking them exclusively (EBUSY elsewhere)\n"
           "  -o allow_other     let other users use the mount (root, or user_allow_other)\n"
           "  -o max_background=N    asynchronous requests in flight to the daemon, the\n"
           "                         queue depth of direct I/O (default: the kernel's, 12)\n"
           "  -o max_threads=N   worker threads (default 10, or max_background + 8)\n"
           "  -o writeback_mb=N  hold up to N MiB of overwrites in the daemon and write them\n"
           "                     back later, at the latest at fsync, close or unmount\n"
           "                     (default: the kernel's dirty_background limit; 0: write\n"
           "                     every write through before replying)\n"
           "  -o writeback_expire_ms=N  write held data back once it is N ms old (default:\n"
           "                     the kernel's dirty_expire_centisecs, 30 s)\n"
           "  -o max_idle_threads=N  idle worker threads kept (default 10)\n"
           "  -h, --help         this help\n"
           "  -V, --version      the version\n"
           "\n"
           "Permissions are always checked by the kernel (default_permissions).\n"
           "Also works as mount.fuse.vdfs for `mount -t fuse.vdfs IMAGE MOUNTPOINT`.\n",
           prog);
}

/* Numeric options are parsed here rather than by fuse_opt's %u, which
 * wraps negative and oversized values instead of refusing them. */
static const struct number_option {
    const char *name;
    size_t offset;
    unsigned long min, max;
    size_t set_offset; /* a bool set when given, or 0 */
} number_options[] = {
    {"commit_ms", offsetof(struct fuse_config_opts, commit_ms), 1, 3600000, 0},
    {"hb_interval_ms", offsetof(struct fuse_config_opts, hb_interval_ms), 10, 60000, 0},
    {"hb_timeout_ms", offsetof(struct fuse_config_opts, hb_timeout_ms), 100, VDFS_HB_TIMEOUT_MAX_MS, 0},
    {"max_background", offsetof(struct fuse_config_opts, max_background), 1, 65535, 0},
    {"writeback_mb", offsetof(struct fuse_config_opts, writeback_mb), 0, 1048576,
     offsetof(struct fuse_config_opts, writeback_set)},
    {"writeback_expire_ms", offsetof(struct fuse_config_opts, writeback_expire_ms), 10, 3600000, 0},
};

static int parse_number_option(struct fuse_config_opts *opts, const char *arg)
{
    const char *eq = strchr(arg, '=');
    for (size_t i = 0; eq && i < sizeof(number_options) / sizeof(number_options[0]); i++) {
        const struct number_option *n = &number_options[i];
        if (strlen(n->name) != (size_t)(eq - arg) || strncmp(arg, n->name, (size_t)(eq - arg)) != 0)
            continue;
        const char *text = eq + 1;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (!*text || *end || errno || text[0] == '-' || v < n->min || v > n->max) {
            fprintf(stderr, "vdfs-fuse: -o %s: expected a whole number from %lu to %lu\n", arg, n->min, n->max);
            return -1;
        }
        *(unsigned *)((char *)opts + n->offset) = (unsigned)v;
        if (n->set_offset)
            *(bool *)((char *)opts + n->set_offset) = true;
        return 0;
    }
    fprintf(stderr, "vdfs-fuse: -o %s: unknown option\n", arg);
    return -1;
}

static int config_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    struct fuse_config_opts *opts = data;
    switch (key) {
    case KEY_NUMBER:
        return parse_number_option(opts, arg);
    case KEY_RO:
        opts->readonly = true;
        return 1; /* the kernel mount is read-only too */
    case KEY_HELP:
        opts->show_help = true;
        return 0;
    case KEY_VERSION:
        opts->show_version = true;
        return 0;
    case FUSE_OPT_KEY_NONOPT:
        if (!opts->device) {
            char resolved[PATH_MAX];
            if (!realpath(arg, resolved)) {
                fprintf(stderr, "vdfs-fuse: %s: %s\n", arg, strerror(errno));
                return -1;
            }
            opts->device = strdup(resolved);
            return opts->device ? 0 : -1;
        }
        return 1; /* the mount point, for fuse_parse_cmdline */
    default:
        return 1;
    }
}

/* fstab/mount(8) options that mean nothing to the kernel's fuse mount. */
static bool is_fstab_only(const char *opt)
{
    static const char *const names[] = {"defaults", "auto", "noauto", "user", "nouser", "users",
                                        "_netdev", "nofail", "owner", "group", "loop"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(opt, names[i]) == 0)
            return true;
    return strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0;
}

/* mount(8) runs /sbin/mount.fuse.vdfs SOURCE TARGET [-sfnv] [-N ns] [-o opts] [-t type].
 * Rewrites that to our own command line: SOURCE TARGET -o opts. */
static int helper_args(int argc, char **argv, struct fuse_args *out, struct fuse_config_opts *opts)
{
    if (argc < 3) {
        fprintf(stderr, "mount.fuse.vdfs: usage: mount.fuse.vdfs IMAGE MOUNTPOINT [-o opts]\n");
        return -1;
    }
    if (fuse_opt_add_arg(out, argv[0]) || fuse_opt_add_arg(out, argv[1]) || fuse_opt_add_arg(out, argv[2]))
        return -1;
    char *kept = NULL;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-o") == 0 && i + 1 < argc) {
            char *list = strdup(argv[++i]);
            if (!list)
                return -1;
            char *save = NULL;
            for (char *o = strtok_r(list, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
                if (is_fstab_only(o))
                    continue;
                if (fuse_opt_add_opt(&kept, o)) {
                    free(list);
                    return -1;
                }
            }
            free(list);
        } else if ((strcmp(a, "-t") == 0 || strcmp(a, "-N") == 0) && i + 1 < argc) {
            i++; /* the type is ours by definition; namespaces are not supported */
        } else if (a[0] == '-' && a[1] && strspn(a + 1, "sfnv") == strlen(a + 1)) {
            if (strchr(a, 'f'))
                opts->fake = true;
        } else {
            fprintf(stderr, "mount.fuse.vdfs: unexpected argument '%s'\n", a);
            free(kept);
            return -1;
        }
    }
    int rc = 0;
    if (kept)
        rc = fuse_opt_add_arg(out, "-o") || fuse_opt_add_arg(out, kept);
    free(kept);
    return rc ? -1 : 0;
}

int fuse_config_parse(int argc, char **argv, struct fuse_config_opts *opts, struct fuse_args *args)
{
    memset(opts, 0, sizeof(*opts));
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    struct fuse_args in = FUSE_ARGS_INIT(0, NULL);
    if (strncmp(base, "mount.", 6) == 0) {
        if (helper_args(argc, argv, &in, opts)) {
            fuse_opt_free_args(&in);
            return -1;
        }
    } else {
        for (int i = 0; i < argc; i++)
            if (fuse_opt_add_arg(&in, argv[i])) {
                fuse_opt_free_args(&in);
                return -1;
            }
    }
    int rc = fuse_opt_parse(&in, opts, config_spec, config_proc);
    *args = in;
    if (rc)
        return -1;
    if (opts->show_help || opts->show_version)
        return 0;
    if (!opts->device) {
        fprintf(stderr, "vdfs-fuse: no image or device given (try --help)\n");
        return -1;
    }
    if (opts->host_uuid && strlen(opts->host_uuid) != 36) {
        fprintf(stderr, "vdfs-fuse: host_uuid must be a 36-character UUID, got '%s'\n", opts->host_uuid);
        return -1;
    }
    return 0;
}

void fuse_config_free(struct fuse_config_opts *opts)
{
    free(opts->device);
    free(opts->host_uuid);
    free(opts->host_name);
}
