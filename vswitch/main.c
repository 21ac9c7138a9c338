/* vdfs-switch: `daemon` runs a switch; every other subcommand talks to one. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "loop.h"
#include "portgroup.h"

static void daemon_usage(FILE *out)
{
    fprintf(out,
            "usage: vdfs-switch daemon --name NAME [options]\n"
            "  --name NAME           switch name (default sw0)\n"
            "  --socket PATH         port socket (default %s/NAME.sock)\n"
            "  --control PATH        control socket (default PATH-of-socket.ctl)\n"
            "  --uplink TAP          attach TAP device TAP as the uplink (created if missing)\n"
            "  --uplink-nic IFACE    attach Ethernet interface IFACE as the uplink (AF_PACKET, promiscuous)\n"
            "  --mtu N               MTU, %d-%d (default %d)\n"
            "  --mac-cap N           most learned uplink MACs (default %d)\n"
            "  --mac-aging SECONDS   learned MAC aging time (default %d)\n"
            "  --portgroup NAME[:VLAN]  create a port group at start (repeatable; 'default' VLAN 0 always exists)\n"
            "  --config FILE         keep the settings in FILE: applied at start (created if missing) and\n"
            "                        rewritten after each change; options above win over it\n"
            "  -f, --foreground      stay in the foreground (default: detach once started)\n",
            VDSW_SOCKET_DIR, VDSW_MIN_MTU, VDSW_MAX_MTU, VDSW_DEFAULT_MTU, VSW_DEFAULT_MAC_CAP,
            VSW_DEFAULT_MAC_AGING);
}

static bool parse_unsigned(const char *text, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    if (*text < '0' || *text > '9')
        return false;
    unsigned long v = strtoul(text, &end, 10);
    if (*end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int daemon_main(int argc, char **argv)
{
    struct daemon_options opts = {
        .name = "sw0",
        .mtu = VDSW_DEFAULT_MTU,
        .mac_cap = VSW_DEFAULT_MAC_CAP,
        .mac_aging_s = VSW_DEFAULT_MAC_AGING,
    };
    static const struct option long_options[] = {
        {"name", required_argument, NULL, 'n'},      {"socket", required_argument, NULL, 's'},
        {"control", required_argument, NULL, 'c'},   {"uplink", required_argument, NULL, 'u'},
        {"mtu", required_argument, NULL, 'm'},       {"mac-cap", required_argument, NULL, 'C'},
        {"mac-aging", required_argument, NULL, 'A'}, {"portgroup", required_argument, NULL, 'p'},
        {"foreground", no_argument, NULL, 'f'},      {"help", no_argument, NULL, 'h'},
        {"uplink-nic", required_argument, NULL, 'N'}, {"config", required_argument, NULL, 'F'},
        {NULL, 0, NULL, 0},
    };
    int c;
    unsigned long v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "fh", long_options, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (!vdsw_name_is_valid(optarg)) {
                fprintf(stderr, "vdfs-switch: bad switch name '%s' (1-31 of A-Z a-z 0-9 _ . -)\n", optarg);
                return 2;
            }
            opts.name = optarg;
            break;
        case 's':
            opts.socket_path = optarg;
            break;
        case 'c':
            opts.control_path = optarg;
            break;
        case 'u':
        case 'N':
            if (opts.uplink) {
                fprintf(stderr, "vdfs-switch: one uplink only (--uplink TAP or --uplink-nic IFACE)\n");
                return 2;
            }
            opts.uplink = optarg;
            opts.uplink_kind = c == 'N' ? UPLINK_NIC : UPLINK_TAP;
            break;
        case 'm':
            if (!parse_unsigned(optarg, VDSW_MIN_MTU, VDSW_MAX_MTU, &v)) {
                fprintf(stderr, "vdfs-switch: bad --mtu '%s' (%d-%d)\n", optarg, VDSW_MIN_MTU, VDSW_MAX_MTU);
                return 2;
            }
            opts.mtu = (unsigned)v;
            opts.mtu_given = true;
            break;
        case 'C':
            if (!parse_unsigned(optarg, 1, 1 << 20, &v)) {
                fprintf(stderr, "vdfs-switch: bad --mac-cap '%s' (1-%d)\n", optarg, 1 << 20);
                return 2;
            }
            opts.mac_cap = v;
            opts.mac_cap_given = true;
            break;
        case 'A':
            if (!parse_unsigned(optarg, 1, 1000000, &v)) {
                fprintf(stderr, "vdfs-switch: bad --mac-aging '%s' (1-1000000 seconds)\n", optarg);
                return 2;
            }
            opts.mac_aging_s = (unsigned)v;
            opts.mac_aging_given = true;
            break;
        case 'p':
            if (opts.portgroup_count == sizeof(opts.portgroups) / sizeof(opts.portgroups[0])) {
                fprintf(stderr, "vdfs-switch: too many --portgroup options\n");
                return 2;
            }
            opts.portgroups[opts.portgroup_count++] = optarg;
            break;
        case 'F':
            opts.config_path = optarg;
            break;
        case 'f':
            opts.foreground = true;
            break;
        case 'h':
            daemon_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "vdfs-switch daemon: bad option '%s'\n", argv[optind - 1]);
            daemon_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vdfs-switch daemon: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return daemon_run(&opts);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "daemon") == 0)
        return daemon_main(argc - 1, argv + 1);
    if (argc < 2) {
        cli_usage(stderr);
        return 2;
    }
    return cli_run(argc - 1, argv + 1);
}
