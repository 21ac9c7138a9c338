/* The MAC table: VM port addresses (static, known at attach) and addresses
 * learned on the uplink (bounded by a cap, expired by aging). */
#ifndef VDFS_VSWITCH_MACTABLE_H
#define VDFS_VSWITCH_MACTABLE_H

#include "vswitch.h"

int mac_table_init(struct mac_table *t, size_t cap, unsigned aging_s);
void mac_table_free(struct mac_table *t);
/* Rebuilds the table for a new cap; learned entries beyond it are dropped. */
int mac_table_set_cap(struct mac_table *t, size_t cap);

/* The VM port owning mac, or -1. */
int mac_table_find_static(const struct mac_table *t, const uint8_t *mac);
/* false if another port holds the address already. */
bool mac_table_add_static(struct mac_table *t, const uint8_t *mac, int port_id);
void mac_table_remove_static(struct mac_table *t, const uint8_t *mac);

enum learn_result { LEARN_REFRESHED, LEARN_ADDED, LEARN_TABLE_FULL };
enum learn_result mac_table_learn(struct mac_table *t, const uint8_t *mac, uint16_t vlan, int port_id,
                                  uint64_t now_s);
/* The port a learned, unexpired address lives behind, or -1. */
int mac_table_find_learned(const struct mac_table *t, const uint8_t *mac, uint16_t vlan, uint64_t now_s);
/* Removes learned entries older than the aging time; returns how many. */
size_t mac_table_expire(struct mac_table *t, uint64_t now_s);
void mac_table_flush_learned(struct mac_table *t);

#endif
