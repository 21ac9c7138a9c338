/* Exit codes: 0 done, 1 the switch refused the command, 2 bad usage,
 * 3 the switch could not be reached. */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocol.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define RESPONSE_TIMEOUT_MS 10000

struct subcommand {
    const char *group, *verb;
    const char *options;  /* space-separated long options it accepts */
    const char *required; /* space-separated options it needs */
    const char *help;
};

static const struct subcommand subcommands[] = {
    {"status", NULL, "", "", "switch summary: sockets, MTU, ports, uplink, MAC table"},
    {"portgroup", "add", "name vlan", "name", "--name PG [--vlan 0-4095]   add a port group (VLAN 0 default)"},
    {"portgroup", "remove", "name", "name", "--name PG                    remove a port group with no ports"},
    {"portgroup", "list", "", "", "                             list port groups and effective policies"},
    {"portgroup", "set", "name vlan promiscuous mac-changes forged-transmits shaping", "name",
     "--name PG [--vlan N] [--promiscuous P] [--mac-changes P] [--forged-transmits P]\n"
     "                                  [--shaping avg=BPS,peak=BPS,burst=BYTES|off|inherit]\n"
     "                                  P is accept|reject|inherit"},
    {"policy", "set", "promiscuous mac-changes forged-transmits shaping", "",
     "[--promiscuous accept|reject] [--mac-changes ..] [--forged-transmits ..] [--shaping ..|off]\n"
     "                                  switch-wide defaults that port groups inherit"},
    {"policy", "show", "", "", "                             show the switch-wide policy"},
    {"uplink", "set", "tap nic", "", "--tap NAME|none | --nic IFACE  attach (creating) or detach the TAP uplink,\n"
     "                                  or attach Ethernet interface IFACE (AF_PACKET)"},
    {"uplink", "show", "", "", "                             show the uplink and its counters"},
    {"mtu", "set", "mtu", "mtu", "--mtu 68-9000                set the switch MTU"},
    {"mtu", "show", "", "", "                             show the MTU"},
    {"port", "list", "", "", "                             list attached ports"},
    {"port", "stats", "port", "", "[--port N]                   per-port counters and drops by reason"},
    {"mac", "list", "", "", "                             MAC table: port addresses and learned uplink addresses"},
    {"mac", "set", "cap aging", "", "[--cap N] [--aging SECONDS]  learned-address cap and aging time"},
    {"mac", "flush", "", "", "                             forget learned uplink addresses"},
};

#define SUBCOMMAND_COUNT (sizeof(subcommands) / sizeof(subcommands[0]))

void cli_usage(FILE *out)
{
    fprintf(out,
            "usage: vdfs-switch daemon --name NAME [options]     run a switch (see vdfs-switch daemon --help)\n"
            "       vdfs-switch [GLOBAL] COMMAND [OPTIONS]        control a running switch\n"
            "\nGLOBAL options:\n"
            "  --switch NAME    switch to talk to (default sw0: %s/NAME.sock.ctl)\n"
            "  --socket PATH    the switch's port socket (control is PATH.ctl)\n"
            "  --control PATH   the switch's control socket\n"
            "  --json           print JSON instead of text\n"
            "\nCOMMANDS:\n",
            VDSW_SOCKET_DIR);
    for (size_t i = 0; i < SUBCOMMAND_COUNT; i++) {
        char name[32];
        snprintf(name, sizeof(name), "%s%s%s", subcommands[i].group, subcommands[i].verb ? " " : "",
                 subcommands[i].verb ? subcommands[i].verb : "");
        fprintf(out, "  %-16s %s\n", name, subcommands[i].help);
    }
    fprintf(out, "\nExit status: 0 done, 1 refused by the switch, 2 bad usage, 3 switch unreachable.\n");
}

static bool word_in(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p++)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static int usage_error(const char *fmt, const char *detail)
{
    fprintf(stderr, "vdfs-switch: ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\nTry 'vdfs-switch --help'.\n");
    return EXIT_USAGE;
}

static bool value_is_clean(const char *v)
{
    if (*v == '\0')
        return false;
    for (; *v; v++)
        if ((unsigned char)*v <= ' ' || (unsigned char)*v >= 0x7f)
            return false;
    return true;
}

static int talk(const char *control_path, const char *request)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(control_path) >= sizeof(addr.sun_path))
        return usage_error("control path too long: %s", control_path);
    strcpy(addr.sun_path, control_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "vdfs-switch: cannot reach the switch at %s: %s\n", control_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EXIT_UNREACHABLE;
    }
    size_t len = strlen(request);
    if (send(fd, request, len, MSG_NOSIGNAL) != (ssize_t)len) {
        fprintf(stderr, "vdfs-switch: sending to %s: %s\n", control_path, strerror(errno));
        close(fd);
        return EXIT_UNREACHABLE;
    }
    size_t cap = 4096, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fprintf(stderr, "vdfs-switch: out of memory\n");
            close(fd);
            return EXIT_UNREACHABLE;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, RESPONSE_TIMEOUT_MS) != 1) {
            fprintf(stderr, "vdfs-switch: no answer from the switch at %s\n", control_path);
            free(buf);
            close(fd);
            return EXIT_UNREACHABLE;
        }
        ssize_t n = recv(fd, buf + got, cap - got - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got + 1 == cap) {
            cap *= 2;
            char *bigger = realloc(buf, cap);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    close(fd);
    buf[got] = '\0';
    int rc;
    char *body = strchr(buf, '\n');
    body = body ? body + 1 : buf + got;
    if (strncmp(buf, "OK\n", 3) == 0) {
        fputs(body, stdout);
        rc = 0;
    } else if (strncmp(buf, "ERR ", 4) == 0) {
        fprintf(stderr, "vdfs-switch: %.*s\n", (int)(body - buf - 5), buf + 4);
        rc = EXIT_REFUSED;
    } else {
        fprintf(stderr, "vdfs-switch: unexpected answer from the switch\n");
        rc = EXIT_UNREACHABLE;
    }
    free(buf);
    return rc;
}

int cli_run(int argc, char **argv)
{
    const char *switch_name = "sw0", *socket_path = NULL, *control_path = NULL;
    bool json = false;
    int i = 0;
    const char *words[2] = {NULL, NULL};
    unsigned word_count = 0;
    const char *keys[16], *values[16];
    unsigned option_count = 0;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (word_count == 2)
                return usage_error("unexpected argument '%s'", a);
            words[word_count++] = a;
            continue;
        }
        const char *opt = a + 2;
        if (i + 1 >= argc)
            return usage_error("option --%s needs a value", opt);
        const char *value = argv[++i];
        if (word_count == 0 && strcmp(opt, "switch") == 0)
            switch_name = value;
        else if (word_count == 0 && strcmp(opt, "socket") == 0)
            socket_path = value;
        else if (word_count == 0 && strcmp(opt, "control") == 0)
            control_path = value;
        else if (word_count == 0)
            return usage_error("unknown global option '%s' (put command options after the command)", a);
        else if (option_count == 16)
            return usage_error("too many options at '%s'", a);
        else {
            keys[option_count] = opt;
            values[option_count++] = value;
        }
    }
    if (word_count == 0)
        return usage_error("%s", "no command given");
    const struct subcommand *sub = NULL;
    for (size_t k = 0; k < SUBCOMMAND_COUNT; k++) {
        const struct subcommand *s = &subcommands[k];
        if (strcmp(s->group, words[0]) != 0)
            continue;
        if ((s->verb == NULL && word_count == 1) || (s->verb && word_count == 2 && strcmp(s->verb, words[1]) == 0))
            sub = s;
    }
    if (!sub) {
        char what[80];
        snprintf(what, sizeof(what), "%s%s%s", words[0], word_count == 2 ? " " : "", word_count == 2 ? words[1] : "");
        return usage_error("unknown command '%s'", what);
    }
    char request[2048];
    size_t len = (size_t)snprintf(request, sizeof(request), "%s%s%s", sub->group, sub->verb ? "." : "",
                                  sub->verb ? sub->verb : "");
    for (unsigned k = 0; k < option_count; k++) {
        if (!word_in(sub->options, keys[k])) {
            fprintf(stderr, "vdfs-switch: %s %s does not take --%s", sub->group, sub->verb ? sub->verb : "", keys[k]);
            fprintf(stderr, *sub->options ? " (it takes --%s)\n" : "\n", sub->options);
            return EXIT_USAGE;
        }
        for (unsigned j = 0; j < k; j++)
            if (strcmp(keys[j], keys[k]) == 0)
                return usage_error("option --%s given twice", keys[k]);
        if (!value_is_clean(values[k]))
            return usage_error("bad value for --%s (empty or contains spaces)", keys[k]);
        len += (size_t)snprintf(request + len, sizeof(request) - len, " %s=%s", keys[k], values[k]);
        if (len >= sizeof(request))
            return usage_error("%s", "arguments too long");
    }
    char required[128];
    snprintf(required, sizeof(required), "%s", sub->required);
    for (char *save = NULL, *req = strtok_r(required, " ", &save); req; req = strtok_r(NULL, " ", &save)) {
        bool have = false;
        for (unsigned k = 0; k < option_count; k++)
            have |= strcmp(keys[k], req) == 0;
        if (!have)
            return usage_error("this command needs --%s", req);
    }
    len += (size_t)snprintf(request + len, sizeof(request) - len, "%s\n", json ? " format=json" : "");
    if (len >= sizeof(request))
        return usage_error("%s", "arguments too long");
    char path[256];
    if (control_path)
        snprintf(path, sizeof(path), "%s", control_path);
    else if (socket_path)
        snprintf(path, sizeof(path), "%s.ctl", socket_path);
    else
        snprintf(path, sizeof(path), "%s/%s.sock.ctl", VDSW_SOCKET_DIR, switch_name);
    return talk(path, request);
}
