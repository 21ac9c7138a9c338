/* fsck.vdfs: command line, signals and exit codes. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsck.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *out)
{
    fputs("usage: fsck.vdfs [-n|-y|-p] [-f] [-v] [-B OFFSET] [--json] DEVICE|IMAGE\n"
          "  -n        check only, open read-only, change nothing (the default)\n"
          "  -y        repair every problem found\n"
          "  -p        repair what is safe without asking (same as -y: fsck.vdfs never asks)\n"
          "  -f        force a full check (every check is full; accepted for fsck(8))\n"
          "  -v        verbose\n"
          "  -B OFFSET byte offset of the backup superblock, if the primary is damaged\n"
          "  --json    print a machine-readable report on stdout\n"
          "  -h, --help\n"
          "exit codes: 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 operational error,\n"
          "            16 usage error, 32 cancelled\n",
          out);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct fsck f;
    memset(&f, 0, sizeof(f));
    int mode = 0; /* 'n', 'y' or 'p' */
    int c;
    while ((c = getopt_long(argc, argv, "nypfvB:ha", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
        case 'y':
        case 'p':
        case 'a':
            if (c == 'a')
                c = 'p';
            if (mode && mode != c) {
                fprintf(stderr, "fsck.vdfs: only one of -n, -y and -p may be given\n");
                usage(stderr);
                return FSCK_EXIT_USAGE;
            }
            mode = c;
            break;
        case 'f': f.opt.force = true; break;
        case 'v': f.opt.verbose = true; break;
        case 'j': f.opt.json = true; break;
        case 'B': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 0);
            if (errno || *end || v == 0 || v % VDFS_META_SIZE) {
                fprintf(stderr, "fsck.vdfs: -B needs a non-zero multiple of 4096, not '%s'\n", optarg);
                usage(stderr);
                return FSCK_EXIT_USAGE;
            }
            f.opt.backup_offset = v;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return FSCK_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "fsck.vdfs: %s\n", optind >= argc ? "no device given" : "only one device may be given");
        usage(stderr);
        return FSCK_EXIT_USAGE;
    }
    f.path = argv[optind];
    f.opt.fix = mode == 'y' || mode == 'p';
    f.opt.progress = isatty(STDOUT_FILENO) && !f.opt.json;
    if (!mode && !f.opt.json)
        fprintf(stderr, "fsck.vdfs: no -y or -p given: checking only, as with -n\n");

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    f.cancel = &interrupted;

    int rc = vdfs_dev_open(f.path, f.opt.fix ? 0 : VDFS_DEV_RDONLY, &f.dev);
    int code;
    if (rc < 0) {
        fprintf(stderr, "fsck.vdfs: cannot open %s: %s\n", f.path, strerror(-rc));
        f.operational_error = true;
        code = FSCK_EXIT_OPERATIONAL;
    } else {
        code = fsck_run(&f);
        vdfs_dev_close(f.dev);
        f.dev = NULL;
    }
    if (f.opt.json)
        fsck_report_json(&f, code);
    else
        fsck_report_summary(&f, code);
    fsck_free(&f);
    return code;
}
