/* Port groups: a name, a VLAN and policies shared by the ports attached to it. */
#ifndef VDFS_VSWITCH_PORTGROUP_H
#define VDFS_VSWITCH_PORTGROUP_H

#include "vswitch.h"

struct portgroup *portgroup_find(const struct vswitch *sw, const char *name);
/* Returns 0 or -1 with err filled. */
int portgroup_add(struct vswitch *sw, const char *name, long vlan, char *err, size_t err_len);
int portgroup_remove(struct vswitch *sw, const char *name, char *err, size_t err_len);
int portgroup_set_vlan(struct vswitch *sw, struct portgroup *pg, long vlan, char *err, size_t err_len);
void portgroups_free(struct vswitch *sw);
unsigned portgroup_count(const struct vswitch *sw);

#endif
