#include "commands.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "frame.h"
#include "loop.h"
#include "mactable.h"
#include "port.h"
#include "portgroup.h"
#include "security.h"
#include "shaping.h"
#include "uplink.h"

#define MAX_ARGS 16
#define ERR_LEN 200

struct request {
    const char *command;
    unsigned argc;
    const char *key[MAX_ARGS];
    const char *value[MAX_ARGS];
    bool json;
    struct output body;
    char err[ERR_LEN];
};

static const char *drop_names[DROP_REASONS] = {
    [DROP_RUNT] = "runt",
    [DROP_OVERSIZE] = "oversize",
    [DROP_BAD_VLAN] = "bad_vlan",
    [DROP_FORGED] = "forged",
    [DROP_BAD_SOURCE] = "bad_source",
    [DROP_SHAPING] = "shaping",
    [DROP_NO_ROUTE] = "no_route",
    [DROP_QUEUE_FULL] = "queue_full",
};

const char *drop_reason_name(enum drop_reason reason) { return drop_names[reason]; }

__attribute__((format(printf, 2, 3))) static int fail(struct request *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    return -1;
}

static const char *arg(const struct request *r, const char *key)
{
    for (unsigned i = 0; i < r->argc; i++)
        if (strcmp(r->key[i], key) == 0)
            return r->value[i];
    return NULL;
}

/* allowed is a space-separated list of keys. */
static int check_keys(struct request *r, const char *allowed)
{
    for (unsigned i = 0; i < r->argc; i++) {
        const char *p = strstr(allowed, r->key[i]);
        size_t n = strlen(r->key[i]);
        bool found = false;
        while (p) {
            if ((p == allowed || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) {
                found = true;
                break;
            }
            p = strstr(p + 1, r->key[i]);
        }
        if (!found)
            return fail(r, "%s does not take '%s' (it takes: %s)", r->command, r->key[i],
                        *allowed ? allowed : "nothing");
    }
    return 0;
}

static int need(struct request *r, const char *key, const char **out)
{
    *out = arg(r, key);
    if (!*out)
        return fail(r, "%s needs %s", r->command, key);
    return 0;
}

static int parse_number(struct request *r, const char *key, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno || v < min || v > max)
        return fail(r, "bad %s '%s' (an integer from %ld to %ld)", key, text, min, max);
    *out = v;
    return 0;
}

static void json_security(struct output *o, const struct security_policy *p)
{
    out_printf(o, "\"promiscuous\":\"%s\",\"mac_changes\":\"%s\",\"forged_transmits\":\"%s\"",
               policy_value_name(p->promiscuous), policy_value_name(p->mac_changes),
               policy_value_name(p->forged_transmits));
}

static void json_shaping(struct output *o, const struct shaping_policy *s)
{
    if (s->state == POLICY_INHERIT)
        out_printf(o, "\"inherit\"");
    else if (s->state == 0)
        out_printf(o, "\"off\"");
    else
        out_printf(o, "{\"average_bps\":%llu,\"peak_bps\":%llu,\"burst_bytes\":%llu}",
                   (unsigned long long)s->average_bps, (unsigned long long)s->peak_bps,
                   (unsigned long long)s->burst_bytes);
}

static const char *shaping_text(const struct shaping_policy *s, char *buf, size_t len)
{
    if (s->state == POLICY_INHERIT)
        return "inherit";
    if (s->state == 0)
        return "off";
    snprintf(buf, len, "avg=%llu,peak=%llu,burst=%llu", (unsigned long long)s->average_bps,
             (unsigned long long)s->peak_bps, (unsigned long long)s->burst_bytes);
    return buf;
}

/* Applies promiscuous/mac-changes/forged-transmits/shaping keys to a policy pair. */
static int apply_policy_args(struct request *r, struct security_policy *sec, struct shaping_policy *shape,
                             bool allow_inherit)
{
    struct security_policy new_sec = *sec;
    struct shaping_policy new_shape = *shape;
    struct {
        const char *key;
        int8_t *slot;
    } fields[] = {{"promiscuous", &new_sec.promiscuous},
                  {"mac-changes", &new_sec.mac_changes},
                  {"forged-transmits", &new_sec.forged_transmits}};
    for (size_t i = 0; i < 3; i++) {
        const char *v = arg(r, fields[i].key);
        if (v && !policy_value_parse(v, allow_inherit, fields[i].slot))
            return fail(r, "bad %s '%s' (want accept|reject%s)", fields[i].key, v,
                        allow_inherit ? "|inherit" : "");
    }
    const char *v = arg(r, "shaping");
    if (v) {
        char err[ERR_LEN];
        if (!shaping_parse(v, &new_shape, err, sizeof(err)))
            return fail(r, "%s", err);
        if (!allow_inherit && new_shape.state == POLICY_INHERIT)
            return fail(r, "the switch policy cannot inherit shaping");
    }
    *sec = new_sec;
    *shape = new_shape;
    return 0;
}

static int cmd_status(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, ""))
        return -1;
    struct output *o = &r->body;
    const struct port *up = &sw->ports[VSW_UPLINK_PORT];
    if (r->json) {
        out_printf(o, "{\"name\":");
        out_json_string(o, sw->name);
        out_printf(o, ",\"socket\":");
        out_json_string(o, sw->socket_path);
        out_printf(o, ",\"control\":");
        out_json_string(o, sw->control_path);
        out_printf(o, ",\"config\":");
        if (sw->config_path[0])
            out_json_string(o, sw->config_path);
        else
            out_printf(o, "null");
        out_printf(o, ",\"mtu\":%u,\"ports_attached\":%u,\"max_ports\":%d,\"portgroups\":%u,\"uplink\":",
                   sw->mtu, sw->attached_ports, VSW_MAX_PORTS - 1, portgroup_count(sw));
        if (up->in_use) {
            out_json_string(o, up->uplink_ifname);
            out_printf(o, ",\"uplink_kind\":\"%s\"", up->uplink_kind == UPLINK_NIC ? "nic" : "tap");
        } else {
            out_printf(o, "null");
        }
        out_printf(o,
                   ",\"mac_learned\":%zu,\"mac_cap\":%zu,\"mac_aging_s\":%u,\"mac_port_addresses\":%zu,"
                   "\"hello_rejects\":%u}\n",
                   sw->macs.learned, sw->macs.cap, sw->macs.aging_s, sw->macs.statics, sw->hello_failures);
    } else {
        out_printf(o, "switch      %s\nsocket      %s\ncontrol     %s\nconfig      %s\nmtu         %u\n", sw->name,
                   sw->socket_path, sw->control_path, sw->config_path[0] ? sw->config_path : "none", sw->mtu);
        out_printf(o, "ports       %u attached (max %d)\nportgroups  %u\n", sw->attached_ports, VSW_MAX_PORTS - 1,
                   portgroup_count(sw));
        if (up->in_use)
            out_printf(o, "uplink      %s (%s)\n", up->uplink_ifname, uplink_kind_name(up->uplink_kind));
        else
            out_printf(o, "uplink      none\n");
        out_printf(o, "mac table   %zu learned (cap %zu, aging %u s), %zu port addresses\n", sw->macs.learned,
                   sw->macs.cap, sw->macs.aging_s, sw->macs.statics);
        out_printf(o, "hello rejects %u\n", sw->hello_failures);
    }
    return 0;
}

static int cmd_portgroup_add(struct vswitch *sw, struct request *r)
{
    const char *name, *vlan_text = arg(r, "vlan");
    long vlan = 0;
    if (check_keys(r, "name vlan") || need(r, "name", &name))
        return -1;
    if (vlan_text && parse_number(r, "vlan", vlan_text, 0, VSW_VLAN_TRUNK, &vlan))
        return -1;
    if (portgroup_add(sw, name, vlan, r->err, sizeof(r->err)))
        return -1;
    if (!r->json)
        out_printf(&r->body, "port group %s added (VLAN %ld)\n", name, vlan);
    else
        out_printf(&r->body, "{\"added\":\"%s\",\"vlan\":%ld}\n", name, vlan);
    return 0;
}

static int cmd_portgroup_remove(struct vswitch *sw, struct request *r)
{
    const char *name;
    if (check_keys(r, "name") || need(r, "name", &name))
        return -1;
    if (portgroup_remove(sw, name, r->err, sizeof(r->err)))
        return -1;
    if (!r->json)
        out_printf(&r->body, "port group %s removed\n", name);
    else
        out_printf(&r->body, "{\"removed\":\"%s\"}\n", name);
    return 0;
}

static int cmd_portgroup_list(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, ""))
        return -1;
    struct output *o = &r->body;
    if (r->json)
        out_printf(o, "[");
    else
        out_printf(o, "%-20s %5s %5s  %-11s %-11s %-16s %s\n", "NAME", "VLAN", "PORTS", "PROMISCUOUS",
                   "MAC-CHANGES", "FORGED-TRANSMITS", "SHAPING");
    for (struct portgroup *pg = sw->portgroups; pg; pg = pg->next) {
        struct security_policy eff = security_effective(sw, pg);
        const struct shaping_policy *shape = shaping_effective(sw, pg);
        if (r->json) {
            out_printf(o, "%s{\"name\":", pg == sw->portgroups ? "" : ",");
            out_json_string(o, pg->name);
            out_printf(o, ",\"vlan\":%u,\"ports\":%u,\"configured\":{", pg->vlan, pg->attached_ports);
            json_security(o, &pg->security);
            out_printf(o, ",\"shaping\":");
            json_shaping(o, &pg->shaping);
            out_printf(o, "},\"effective\":{");
            json_security(o, &eff);
            out_printf(o, ",\"shaping\":");
            json_shaping(o, shape);
            out_printf(o, "}}");
        } else {
            char buf[96];
            out_printf(o, "%-20s %5u %5u  %-11s %-11s %-16s %s\n", pg->name, pg->vlan, pg->attached_ports,
                       policy_value_name(eff.promiscuous), policy_value_name(eff.mac_changes),
                       policy_value_name(eff.forged_transmits), shaping_text(shape, buf, sizeof(buf)));
        }
    }
    if (r->json)
        out_printf(o, "]\n");
    return 0;
}

static int cmd_portgroup_set(struct vswitch *sw, struct request *r)
{
    const char *name, *vlan_text = arg(r, "vlan");
    if (check_keys(r, "name vlan promiscuous mac-changes forged-transmits shaping") || need(r, "name", &name))
        return -1;
    struct portgroup *pg = portgroup_find(sw, name);
    if (!pg)
        return fail(r, "no port group '%s'", name);
    if (r->argc < 2)
        return fail(r, "portgroup.set needs something to set (vlan, promiscuous, mac-changes, forged-transmits, shaping)");
    struct security_policy sec = pg->security;
    struct shaping_policy shape = pg->shaping;
    long vlan = pg->vlan;
    if (vlan_text && parse_number(r, "vlan", vlan_text, 0, VSW_VLAN_TRUNK, &vlan))
        return -1;
    if (apply_policy_args(r, &sec, &shape, true))
        return -1;
    if (portgroup_set_vlan(sw, pg, vlan, r->err, sizeof(r->err)))
        return -1;
    pg->security = sec;
    pg->shaping = shape;
    ports_policy_changed(sw, pg);
    if (!r->json)
        out_printf(&r->body, "port group %s updated\n", name);
    else
        out_printf(&r->body, "{\"updated\":\"%s\"}\n", name);
    return 0;
}

static int cmd_policy_set(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, "promiscuous mac-changes forged-transmits shaping"))
        return -1;
    if (r->argc == 0)
        return fail(r, "policy.set needs something to set (promiscuous, mac-changes, forged-transmits, shaping)");
    if (apply_policy_args(r, &sw->security, &sw->shaping, false))
        return -1;
    ports_policy_changed(sw, NULL);
    out_printf(&r->body, r->json ? "{\"updated\":\"policy\"}\n" : "switch policy updated\n");
    return 0;
}

static int cmd_policy_show(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, ""))
        return -1;
    struct output *o = &r->body;
    if (r->json) {
        out_printf(o, "{");
        json_security(o, &sw->security);
        out_printf(o, ",\"shaping\":");
        json_shaping(o, &sw->shaping);
        out_printf(o, "}\n");
    } else {
        char buf[96];
        out_printf(o, "promiscuous       %s\nmac-changes       %s\nforged-transmits  %s\nshaping           %s\n",
                   policy_value_name(sw->security.promiscuous), policy_value_name(sw->security.mac_changes),
                   policy_value_name(sw->security.forged_transmits), shaping_text(&sw->shaping, buf, sizeof(buf)));
    }
    return 0;
}

static int cmd_uplink_set(struct vswitch *sw, struct request *r)
{
    const char *tap = arg(r, "tap"), *nic = arg(r, "nic");
    if (check_keys(r, "tap nic"))
        return -1;
    if (!tap == !nic)
        return fail(r, "%s needs one of tap and nic", r->command);
    const char *name = tap ? tap : nic;
    if (tap && strcmp(tap, "none") == 0)
        uplink_close(sw);
    else if (uplink_open(sw, tap ? UPLINK_TAP : UPLINK_NIC, name, r->err, sizeof(r->err)))
        return -1;
    if (r->json) {
        out_printf(&r->body, "{\"uplink\":");
        out_json_string(&r->body, name);
        out_printf(&r->body, ",\"kind\":\"%s\"}\n", tap ? "tap" : "nic");
    } else {
        out_printf(&r->body, "uplink %s%s\n", tap ? "" : "NIC ", name);
    }
    return 0;
}

static void port_stats_json(struct output *o, const struct port *p)
{
    const struct port_counters *c = &p->counters;
    out_printf(o, "{\"port\":%d,\"rx_frames\":%llu,\"rx_bytes\":%llu,\"tx_frames\":%llu,\"tx_bytes\":%llu,", p->id,
               (unsigned long long)c->rx_frames, (unsigned long long)c->rx_bytes, (unsigned long long)c->tx_frames,
               (unsigned long long)c->tx_bytes);
    out_printf(o, "\"unlearned\":%llu,\"gso_split\":%llu,\"drops\":{", (unsigned long long)c->unlearned,
               (unsigned long long)c->gso_split);
    for (int i = 0; i < DROP_REASONS; i++)
        out_printf(o, "%s\"%s\":%llu", i ? "," : "", drop_names[i], (unsigned long long)c->drops[i]);
    out_printf(o, "}}");
}

static int cmd_uplink_show(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, ""))
        return -1;
    const struct port *up = &sw->ports[VSW_UPLINK_PORT];
    struct output *o = &r->body;
    if (r->json) {
        /* "tap" stays for scripts written before NIC uplinks. */
        out_printf(o, "{\"tap\":");
        if (up->in_use && up->uplink_kind == UPLINK_TAP)
            out_json_string(o, up->uplink_ifname);
        else
            out_printf(o, "null");
        if (up->in_use) {
            out_printf(o, ",\"kind\":\"%s\",\"interface\":", up->uplink_kind == UPLINK_NIC ? "nic" : "tap");
            out_json_string(o, up->uplink_ifname);
            out_printf(o, ",\"stats\":");
            port_stats_json(o, up);
        }
        out_printf(o, "}\n");
    } else if (up->in_use) {
        out_printf(o, "uplink %s %s: rx %llu frames, tx %llu frames, %zu learned MACs\n",
                   uplink_kind_name(up->uplink_kind), up->uplink_ifname,
                   (unsigned long long)up->counters.rx_frames, (unsigned long long)up->counters.tx_frames,
                   sw->macs.learned);
    } else {
        out_printf(o, "no uplink\n");
    }
    return 0;
}

static int cmd_mtu_set(struct vswitch *sw, struct request *r)
{
    const char *text;
    long mtu;
    if (check_keys(r, "mtu") || need(r, "mtu", &text) ||
        parse_number(r, "mtu", text, VDSW_MIN_MTU, VDSW_MAX_MTU, &mtu))
        return -1;
    sw->mtu = (unsigned)mtu;
    uplink_apply_mtu(sw);
    ports_policy_changed(sw, NULL);
    out_printf(&r->body, r->json ? "{\"mtu\":%u}\n" : "mtu %u\n", sw->mtu);
    return 0;
}

static int cmd_mtu_show(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, ""))
        return -1;
    out_printf(&r->body, r->json ? "{\"mtu\":%u}\n" : "mtu %u\n", sw->mtu);
    return 0;
}

static const char *port_vlan_text(const struct port *p, char *buf, size_t len)
{
    if (p->is_uplink)
        return "all";
    snprintf(buf, len, "%u", p->pg->vlan);
    return buf;
}

static int cmd_port_list(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, ""))
        return -1;
    struct output *o = &r->body;
    uint64_t now = vsw_now_s();
    bool first = true;
    if (r->json)
        out_printf(o, "[");
    else
        out_printf(o, "%4s  %-17s  %-20s %5s  %-16s %s\n", "PORT", "MAC", "PORTGROUP", "VLAN", "CLIENT", "UPTIME");
    for (int id = 0; id < VSW_MAX_PORTS; id++) {
        const struct port *p = &sw->ports[id];
        if (!p->in_use)
            continue;
        char mac[18] = "-", vlan[8];
        if (!p->is_uplink)
            mac_format(p->mac, mac);
        const char *pg = p->is_uplink ? "(uplink)" : p->pg->name;
        const char *client = p->is_uplink ? p->uplink_ifname : p->client_name;
        if (r->json) {
            out_printf(o, "%s{\"port\":%d,\"uplink\":%s,\"mac\":", first ? "" : ",", id, p->is_uplink ? "true" : "false");
            if (p->is_uplink)
                out_printf(o, "null");
            else
                out_json_string(o, mac);
            out_printf(o, ",\"portgroup\":");
            if (p->is_uplink)
                out_printf(o, "null");
            else
                out_json_string(o, pg);
            out_printf(o, ",\"vlan\":%d,\"client\":", p->is_uplink ? -1 : (int)p->pg->vlan);
            out_json_string(o, client);
            if (p->has_extra_mac) {
                char extra[18];
                mac_format(p->extra_mac, extra);
                out_printf(o, ",\"changed_mac\":\"%s\"", extra);
            }
            out_printf(o, ",\"uptime_s\":%llu}", (unsigned long long)(now - p->attached_at));
        } else {
            out_printf(o, "%4d  %-17s  %-20s %5s  %-16s %llus\n", id, mac, pg, port_vlan_text(p, vlan, sizeof(vlan)),
                       client, (unsigned long long)(now - p->attached_at));
        }
        first = false;
    }
    if (r->json)
        out_printf(o, "]\n");
    return 0;
}

static int cmd_port_stats(struct vswitch *sw, struct request *r)
{
    const char *port_text = arg(r, "port");
    long only = -1;
    if (check_keys(r, "port"))
        return -1;
    if (port_text) {
        if (parse_number(r, "port", port_text, 0, VSW_MAX_PORTS - 1, &only))
            return -1;
        if (!sw->ports[only].in_use)
            return fail(r, "no port %ld attached", only);
    }
    struct output *o = &r->body;
    bool first = true;
    if (r->json)
        out_printf(o, "[");
    for (int id = 0; id < VSW_MAX_PORTS; id++) {
        const struct port *p = &sw->ports[id];
        if (!p->in_use || (only >= 0 && id != only))
            continue;
        if (r->json) {
            if (!first)
                out_printf(o, ",");
            port_stats_json(o, p);
        } else {
            const struct port_counters *c = &p->counters;
            out_printf(o, "port %d (%s)\n  rx %llu frames %llu bytes\n  tx %llu frames %llu bytes\n  drops", id,
                       p->is_uplink ? p->uplink_ifname : p->client_name, (unsigned long long)c->rx_frames,
                       (unsigned long long)c->rx_bytes, (unsigned long long)c->tx_frames,
                       (unsigned long long)c->tx_bytes);
            for (int i = 0; i < DROP_REASONS; i++)
                out_printf(o, " %s=%llu", drop_names[i], (unsigned long long)c->drops[i]);
            if (p->is_uplink)
                out_printf(o, "\n  unlearned %llu gso_split %llu", (unsigned long long)c->unlearned,
                           (unsigned long long)c->gso_split);
            out_printf(o, "\n");
        }
        first = false;
    }
    if (r->json)
        out_printf(o, "]\n");
    return 0;
}

static int cmd_mac_list(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, ""))
        return -1;
    struct output *o = &r->body;
    uint64_t now = vsw_now_s();
    bool first = true;
    if (r->json)
        out_printf(o, "[");
    else
        out_printf(o, "%-17s  %5s  %4s  %-8s %s\n", "MAC", "VLAN", "PORT", "TYPE", "AGE");
    for (size_t i = 0; i <= sw->macs.mask; i++) {
        const struct mac_entry *e = &sw->macs.slots[i];
        if (!e->used)
            continue;
        char mac[18];
        mac_format(e->mac, mac);
        bool is_static = e->vlan == MAC_VLAN_STATIC;
        unsigned long long age = is_static ? 0 : (unsigned long long)(now - e->last_seen_s);
        if (r->json) {
            out_printf(o, "%s{\"mac\":\"%s\",\"vlan\":", first ? "" : ",", mac);
            if (is_static)
                out_printf(o, "null");
            else
                out_printf(o, "%u", e->vlan);
            out_printf(o, ",\"port\":%u,\"type\":\"%s\",\"age_s\":%llu}", e->port_id, is_static ? "port" : "learned",
                       age);
        } else if (is_static) {
            out_printf(o, "%-17s  %5s  %4u  %-8s -\n", mac, "-", e->port_id, "port");
        } else {
            out_printf(o, "%-17s  %5u  %4u  %-8s %llus\n", mac, e->vlan, e->port_id, "learned", age);
        }
        first = false;
    }
    if (r->json)
        out_printf(o, "]\n");
    return 0;
}

static int cmd_mac_set(struct vswitch *sw, struct request *r)
{
    const char *cap_text = arg(r, "cap"), *aging_text = arg(r, "aging");
    long cap = (long)sw->macs.cap, aging = sw->macs.aging_s;
    if (check_keys(r, "cap aging"))
        return -1;
    if (!cap_text && !aging_text)
        return fail(r, "mac.set needs cap or aging");
    if (cap_text && parse_number(r, "cap", cap_text, 1, 1 << 20, &cap))
        return -1;
    if (aging_text && parse_number(r, "aging", aging_text, 1, 1000000, &aging))
        return -1;
    sw->macs.aging_s = (unsigned)aging;
    if ((size_t)cap != sw->macs.cap && mac_table_set_cap(&sw->macs, (size_t)cap))
        return fail(r, "out of memory for %ld entries", cap);
    out_printf(&r->body, r->json ? "{\"cap\":%zu,\"aging_s\":%u}\n" : "mac table cap %zu, aging %u s\n", sw->macs.cap,
               sw->macs.aging_s);
    return 0;
}

static int cmd_mac_flush(struct vswitch *sw, struct request *r)
{
    if (check_keys(r, ""))
        return -1;
    size_t before = sw->macs.learned;
    mac_table_flush_learned(&sw->macs);
    out_printf(&r->body, r->json ? "{\"flushed\":%zu}\n" : "%zu learned MACs flushed\n", before);
    return 0;
}

/* A setting is a command whose effect commands_write_settings reproduces,
 * so it is saved to the configuration file and may appear in it. */
static const struct {
    const char *name;
    int (*run)(struct vswitch *sw, struct request *r);
    bool setting;
} commands[] = {
    {"status", cmd_status, false},
    {"portgroup.add", cmd_portgroup_add, true},
    {"portgroup.remove", cmd_portgroup_remove, true},
    {"portgroup.list", cmd_portgroup_list, false},
    {"portgroup.set", cmd_portgroup_set, true},
    {"policy.set", cmd_policy_set, true},
    {"policy.show", cmd_policy_show, false},
    {"uplink.set", cmd_uplink_set, true},
    {"uplink.show", cmd_uplink_show, false},
    {"mtu.set", cmd_mtu_set, true},
    {"mtu.show", cmd_mtu_show, false},
    {"port.list", cmd_port_list, false},
    {"port.stats", cmd_port_stats, false},
    {"mac.list", cmd_mac_list, false},
    {"mac.set", cmd_mac_set, true},
    {"mac.flush", cmd_mac_flush, false},
};

static int parse_request(struct request *r, char *line)
{
    char *save = NULL;
    r->command = strtok_r(line, " \t", &save);
    if (!r->command)
        return fail(r, "empty request");
    for (char *tok = strtok_r(NULL, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok)
            return fail(r, "argument '%.40s' is not key=value", tok);
        *eq = '\0';
        if (strcmp(tok, "format") == 0) {
            if (strcmp(eq + 1, "json") && strcmp(eq + 1, "text"))
                return fail(r, "format must be json or text");
            r->json = strcmp(eq + 1, "json") == 0;
            continue;
        }
        if (arg(r, tok))
            return fail(r, "'%.40s' given twice", tok);
        if (r->argc == MAX_ARGS)
            return fail(r, "too many arguments");
        r->key[r->argc] = tok;
        r->value[r->argc] = eq + 1;
        r->argc++;
    }
    return 0;
}

/* Parses and runs one request. Returns -1 with r->err set, or with
 * r->body.failed; with settings_only, anything but a setting is refused. */
static int run_request(struct vswitch *sw, struct request *r, char *line, bool settings_only)
{
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t')
            *c = '?';
    if (parse_request(r, line))
        return -1;
    size_t i;
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, r->command) == 0)
            break;
    if (i == sizeof(commands) / sizeof(commands[0]))
        return fail(r, "unknown command '%.40s'", r->command);
    if (settings_only && !commands[i].setting)
        return fail(r, "'%.40s' is not a setting", r->command);
    if (commands[i].run(sw, r) || r->body.failed)
        return -1;
    char reason[ERR_LEN - 64];
    if (commands[i].setting && !settings_only && sw->config_path[0] && config_save(sw, reason, sizeof(reason)))
        return fail(r, "set, but not saved: %s (the change lasts until the switch stops)", reason);
    return 0;
}

void command_execute(struct vswitch *sw, char *line, struct output *response)
{
    struct request r = {0};
    if (run_request(sw, &r, line, false) == 0) {
        out_printf(response, "OK\n");
        if (r.body.len)
            out_printf(response, "%s", r.body.data);
    } else {
        out_printf(response, "ERR %s\n", r.body.failed ? "out of memory" : r.err);
    }
    out_free(&r.body);
}

int command_apply_setting(struct vswitch *sw, char *line, char *err, size_t err_len)
{
    struct request r = {0};
    int rc = run_request(sw, &r, line, true);
    if (rc)
        snprintf(err, err_len, "%s", r.body.failed ? "out of memory" : r.err);
    out_free(&r.body);
    return rc;
}

static void write_portgroup_settings(struct output *o, const struct portgroup *pg)
{
    char buf[96];
    out_printf(o, "portgroup.set name=%s vlan=%u promiscuous=%s mac-changes=%s forged-transmits=%s shaping=%s\n",
               pg->name, pg->vlan, policy_value_name(pg->security.promiscuous),
               policy_value_name(pg->security.mac_changes), policy_value_name(pg->security.forged_transmits),
               shaping_text(&pg->shaping, buf, sizeof(buf)));
}

void commands_write_settings(const struct vswitch *sw, struct output *o)
{
    char buf[96];
    out_printf(o, "mtu.set mtu=%u\n", sw->mtu);
    out_printf(o, "mac.set cap=%zu aging=%u\n", sw->macs.cap, sw->macs.aging_s);
    out_printf(o, "policy.set promiscuous=%s mac-changes=%s forged-transmits=%s shaping=%s\n",
               policy_value_name(sw->security.promiscuous), policy_value_name(sw->security.mac_changes),
               policy_value_name(sw->security.forged_transmits), shaping_text(&sw->shaping, buf, sizeof(buf)));
    for (const struct portgroup *pg = sw->portgroups; pg; pg = pg->next) {
        if (strcmp(pg->name, VSW_DEFAULT_PORTGROUP) != 0)
            out_printf(o, "portgroup.add name=%s\n", pg->name);
        write_portgroup_settings(o, pg);
    }
    const struct port *up = &sw->ports[VSW_UPLINK_PORT];
    if (up->in_use)
        out_printf(o, "uplink.set %s=%s\n", up->uplink_kind == UPLINK_NIC ? "nic" : "tap", up->uplink_ifname);
}
