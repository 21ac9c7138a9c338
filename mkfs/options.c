/* The command line of mkfs.vdfs: parsing and checking every value before
 * anything is opened. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mkfs.h"

#define MIN_BLOCK_SIZE (4u << 10)
#define MAX_BLOCK_SIZE (64u << 20)
#define MAX_JOURNAL_BYTES (1u << 30)
#define MIN_FD_COUNT 16u
#define MAX_FD_COUNT 0x7fffffffu /* a pointer holds a 31-bit index */

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: " MKFS_PROG " [-L label] [-U uuid] [-b blocksize] [-s subblocksize] [-H maxhosts]\n"
            "                 [-J journal-size] [-N fd-count] [-G grow-limit] [-f] [-n] [-q] [--json]\n"
            "                 DEVICE|IMAGE [SIZE]\n");
}

static void print_help(void)
{
    print_usage(stdout);
    printf("\nCreate a vdfs datastore on a block device or an image file.\n\n"
           "  -L, --label LABEL        datastore label (at most %u bytes)\n"
           "  -U, --uuid UUID          datastore UUID, or \"random\" (default) or \"time\"\n"
           "  -b, --block-size SIZE    file block size, a power of two (default 1M)\n"
           "  -s, --subblock-size SIZE sub-block size for small files, a power of two <= block size (default 64K)\n"
           "  -H, --max-hosts N        hosts that may mount at once, 1..%u (default %u)\n"
           "  -J, --journal-size SIZE  redo journal per host (default %uM)\n"
           "  -N, --fd-count N         number of file descriptors (default: from the size)\n"
           "  -G, --grow-limit SIZE    largest size `vdfsctl grow` may take the datastore to\n"
           "                           (default %ux SIZE); costs 4.5K of metadata per 8192 blocks\n"
           "  -f, --force              format even if the device holds a filesystem\n"
           "  -n, --dry-run            check and print what would be created; write nothing\n"
           "  -q, --quiet              print nothing on success\n"
           "      --json               print the summary as JSON\n"
           "  -h, --help               this text\n\n"
           "SIZE (suffixes K, M, G, T, P) creates the image file, or extends it sparsely; the\n"
           "datastore then covers SIZE bytes.  Without SIZE it covers the whole file or device.\n"
           "Exit status: 0 success, 1 error (nothing written when refused).\n",
           VDFS_LABEL_SIZE, VDFS_MAX_HOSTS_LIMIT, VDFS_DEFAULT_MAX_HOSTS,
           VDFS_DEFAULT_JOURNAL_BLOCKS * VDFS_META_SIZE >> 20, VDFS_DEFAULT_GROWTH);
}

static enum mkfs_parse_result usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, MKFS_PROG ": ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    print_usage(stderr);
    return MKFS_PARSE_ERROR;
}

int mkfs_parse_size(const char *text, uint64_t *out)
{
    if (text == NULL || *text < '0' || *text > '9')
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    case 'p': case 'P': shift = 50; break;
    case 'e': case 'E': shift = 60; break;
    default: return -EINVAL;
    }
    if (shift != 0) {
        end++;
        if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
            end += strlen(end);
    }
    if (*end != '\0')
        return -EINVAL;
    if (shift != 0 && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

static bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

static int parse_count(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (mkfs_parse_size(text, &v) != 0 || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

enum { OPT_JSON = 1000 };

enum mkfs_parse_result mkfs_parse_options(int argc, char **argv, struct mkfs_options *o)
{
    static const struct option longopts[] = {
        {"label", required_argument, NULL, 'L'},
        {"uuid", required_argument, NULL, 'U'},
        {"block-size", required_argument, NULL, 'b'},
        {"subblock-size", required_argument, NULL, 's'},
        {"max-hosts", required_argument, NULL, 'H'},
        {"journal-size", required_argument, NULL, 'J'},
        {"fd-count", required_argument, NULL, 'N'},
        {"grow-limit", required_argument, NULL, 'G'},
        {"force", no_argument, NULL, 'f'},
        {"dry-run", no_argument, NULL, 'n'},
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->block_size = VDFS_DEFAULT_BLOCK_SIZE;
    o->max_hosts = VDFS_DEFAULT_MAX_HOSTS;
    o->journal_blocks = VDFS_DEFAULT_JOURNAL_BLOCKS;
    const char *uuid_arg = "random";
    bool subblock_given = false;
    uint64_t v;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":L:U:b:s:H:J:N:G:fnqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'L':
            if (strlen(optarg) > VDFS_LABEL_SIZE)
                return usage_error("label \"%s\" is longer than 64 bytes", optarg);
            snprintf(o->label, sizeof(o->label), "%s", optarg);
            break;
        case 'U':
            uuid_arg = optarg;
            break;
        case 'b':
            if (mkfs_parse_size(optarg, &v) != 0 || !is_pow2(v) || v < MIN_BLOCK_SIZE || v > MAX_BLOCK_SIZE)
                return usage_error("block size \"%s\" must be a power of two from 4K to 64M", optarg);
            o->block_size = (uint32_t)v;
            break;
        case 's':
            if (mkfs_parse_size(optarg, &v) != 0 || !is_pow2(v) || v < MIN_BLOCK_SIZE || v > MAX_BLOCK_SIZE)
                return usage_error("sub-block size \"%s\" must be a power of two from 4K up to the block size",
                                   optarg);
            o->subblock_size = (uint32_t)v;
            subblock_given = true;
            break;
        case 'H':
            if (parse_count(optarg, 1, VDFS_MAX_HOSTS_LIMIT, &v) != 0)
                return usage_error("max hosts \"%s\" must be a number from 1 to 64", optarg);
            o->max_hosts = (uint32_t)v;
            break;
        case 'J':
            if (mkfs_parse_size(optarg, &v) != 0 || v % VDFS_META_SIZE != 0 || v < MIN_JOURNAL_BYTES ||
                v > MAX_JOURNAL_BYTES)
                return usage_error("journal size \"%s\" must be a multiple of 4K from 1M to 1G", optarg);
            o->journal_blocks = (uint32_t)(v / VDFS_META_SIZE);
            o->journal_given = true;
            break;
        case 'N':
            if (parse_count(optarg, MIN_FD_COUNT, MAX_FD_COUNT, &v) != 0)
                return usage_error("fd count \"%s\" must be a number from 16 to 2147483647", optarg);
            o->fd_count = v;
            break;
        case 'G':
            if (mkfs_parse_size(optarg, &v) != 0 || v == 0)
                return usage_error("grow limit \"%s\" must be a size such as 64T", optarg);
            o->grow_limit = v;
            break;
        case 'f': o->force = true; break;
        case 'n': o->dry_run = true; break;
        case 'q': o->quiet = true; break;
        case OPT_JSON: o->json = true; break;
        case 'h':
            print_help();
            return MKFS_PARSE_HELP;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }

    if (!subblock_given)
        o->subblock_size = VDFS_DEFAULT_SUBBLOCK_SIZE < o->block_size ? VDFS_DEFAULT_SUBBLOCK_SIZE : o->block_size;
    if (o->subblock_size > o->block_size)
        return usage_error("%s", "the sub-block size must not exceed the block size");
    if (o->block_size / o->subblock_size > VDFS_DIRECT_SLOTS)
        return usage_error("%s", "a block may hold at most 256 sub-blocks; raise the sub-block size");

    int rest = argc - optind;
    if (rest < 1)
        return usage_error("%s", "missing DEVICE or IMAGE");
    if (rest > 2)
        return usage_error("unexpected argument \"%s\"", argv[optind + 2]);
    o->path = argv[optind];
    if (*o->path == '\0')
        return usage_error("%s", "empty DEVICE or IMAGE name");
    if (rest == 2) {
        int rc = mkfs_parse_size(argv[optind + 1], &o->size);
        if (rc != 0 || o->size == 0)
            return usage_error("SIZE \"%s\" must be a positive number with an optional K, M, G, T or P suffix",
                               argv[optind + 1]);
    }
    int rc = mkfs_uuid_from_arg(uuid_arg, o->uuid);
    if (rc == -EINVAL)
        return usage_error("uuid \"%s\" is neither a UUID nor \"random\" or \"time\"", uuid_arg);
    if (rc != 0) {
        fprintf(stderr, MKFS_PROG ": cannot make a uuid: %s\n", strerror(-rc));
        return MKFS_PARSE_ERROR;
    }
    return MKFS_PARSE_OK;
}
