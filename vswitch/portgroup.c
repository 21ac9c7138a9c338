#include "portgroup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct portgroup *portgroup_find(const struct vswitch *sw, const char *name)
{
    for (struct portgroup *pg = sw->portgroups; pg; pg = pg->next)
        if (strcmp(pg->name, name) == 0)
            return pg;
    return NULL;
}

static bool vlan_is_valid(long vlan, char *err, size_t err_len)
{
    if (vlan < 0 || vlan > VSW_VLAN_TRUNK) {
        snprintf(err, err_len, "VLAN %ld out of range (0 untagged, 1-4094 tagged, 4095 trunk)", vlan);
        return false;
    }
    return true;
}

int portgroup_add(struct vswitch *sw, const char *name, long vlan, char *err, size_t err_len)
{
    if (!vdsw_name_is_valid(name)) {
        snprintf(err, err_len, "bad port group name '%s' (1-31 of A-Z a-z 0-9 _ . -)", name);
        return -1;
    }
    if (!vlan_is_valid(vlan, err, err_len))
        return -1;
    if (portgroup_find(sw, name)) {
        snprintf(err, err_len, "port group '%s' already exists", name);
        return -1;
    }
    struct portgroup *pg = calloc(1, sizeof(*pg));
    if (!pg) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    snprintf(pg->name, sizeof(pg->name), "%s", name);
    pg->vlan = (uint16_t)vlan;
    pg->security = (struct security_policy){POLICY_INHERIT, POLICY_INHERIT, POLICY_INHERIT};
    pg->shaping.state = POLICY_INHERIT;
    struct portgroup **tail = &sw->portgroups;
    while (*tail)
        tail = &(*tail)->next;
    *tail = pg;
    return 0;
}

int portgroup_remove(struct vswitch *sw, const char *name, char *err, size_t err_len)
{
    for (struct portgroup **link = &sw->portgroups; *link; link = &(*link)->next) {
        struct portgroup *pg = *link;
        if (strcmp(pg->name, name) != 0)
            continue;
        if (strcmp(name, VSW_DEFAULT_PORTGROUP) == 0) {
            snprintf(err, err_len, "the port group '%s' always exists", name);
            return -1;
        }
        if (pg->attached_ports) {
            snprintf(err, err_len, "port group '%s' has %u attached port(s)", name, pg->attached_ports);
            return -1;
        }
        *link = pg->next;
        free(pg);
        return 0;
    }
    snprintf(err, err_len, "no port group '%s'", name);
    return -1;
}

int portgroup_set_vlan(struct vswitch *sw, struct portgroup *pg, long vlan, char *err, size_t err_len)
{
    if (!vlan_is_valid(vlan, err, err_len))
        return -1;
    if (pg->attached_ports && vlan != pg->vlan) {
        snprintf(err, err_len, "port group '%s' has %u attached port(s); detach them to change its VLAN",
                 pg->name, pg->attached_ports);
        return -1;
    }
    pg->vlan = (uint16_t)vlan;
    return 0;
}

void portgroups_free(struct vswitch *sw)
{
    while (sw->portgroups) {
        struct portgroup *next = sw->portgroups->next;
        free(sw->portgroups);
        sw->portgroups = next;
    }
}

unsigned portgroup_count(const struct vswitch *sw)
{
    unsigned n = 0;
    for (struct portgroup *pg = sw->portgroups; pg; pg = pg->next)
        n++;
    return n;
}
