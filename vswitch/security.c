/* Forged transmits decide whether a frame whose source MAC is not the MAC
 * the port attached with may leave the port.  MAC changes decide whether
 * such a source becomes an address of the port, so unicast replies reach it
 * directly instead of being flooded.  Promiscuous mode is applied by the
 * forwarder (forward.c). */
#include "security.h"

#include <string.h>

#include "frame.h"
#include "mactable.h"

struct security_policy security_effective(const struct vswitch *sw, const struct portgroup *pg)
{
    struct security_policy p = sw->security;
    if (pg) {
        if (pg->security.promiscuous != POLICY_INHERIT)
            p.promiscuous = pg->security.promiscuous;
        if (pg->security.mac_changes != POLICY_INHERIT)
            p.mac_changes = pg->security.mac_changes;
        if (pg->security.forged_transmits != POLICY_INHERIT)
            p.forged_transmits = pg->security.forged_transmits;
    }
    return p;
}

void security_forget_changed_mac(struct vswitch *sw, struct port *port)
{
    if (!port->has_extra_mac)
        return;
    if (mac_table_find_static(&sw->macs, port->extra_mac) == port->id)
        mac_table_remove_static(&sw->macs, port->extra_mac);
    port->has_extra_mac = false;
}

enum drop_reason security_check_source(struct vswitch *sw, struct port *port, const uint8_t *src)
{
    if (mac_is_multicast(src) || mac_is_zero(src))
        return DROP_BAD_SOURCE;
    if (mac_equal(src, port->mac) || (port->has_extra_mac && mac_equal(src, port->extra_mac)))
        return DROP_REASONS;
    struct security_policy p = security_effective(sw, port->pg);
    if (p.forged_transmits != POLICY_ACCEPT)
        return DROP_FORGED;
    if (p.mac_changes == POLICY_ACCEPT && mac_table_find_static(&sw->macs, src) < 0) {
        security_forget_changed_mac(sw, port);
        if (mac_table_add_static(&sw->macs, src, port->id)) {
            memcpy(port->extra_mac, src, 6);
            port->has_extra_mac = true;
        }
    }
    return DROP_REASONS;
}

bool policy_value_parse(const char *text, bool allow_inherit, int8_t *out)
{
    if (!strcmp(text, "on") || !strcmp(text, "accept") || !strcmp(text, "true"))
        *out = POLICY_ACCEPT;
    else if (!strcmp(text, "off") || !strcmp(text, "reject") || !strcmp(text, "false"))
        *out = POLICY_REJECT;
    else if (allow_inherit && !strcmp(text, "inherit"))
        *out = POLICY_INHERIT;
    else
        return false;
    return true;
}

const char *policy_value_name(int8_t value)
{
    return value == POLICY_ACCEPT ? "accept" : value == POLICY_REJECT ? "reject" : "inherit";
}
