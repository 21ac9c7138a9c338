/* Open addressing with linear probing and backward-shift deletion, so there
 * are no tombstones and lookups stay short however much the uplink churns. */
#include "mactable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t slots_for(size_t cap)
{
    size_t want = 2 * (cap + VSW_MAX_PORTS * 2);
    size_t n = 64;
    while (n < want)
        n <<= 1;
    return n;
}

static size_t hash_key(const uint8_t *mac, uint16_t vlan)
{
    uint64_t k = 0;
    memcpy(&k, mac, 6);
    k ^= (uint64_t)vlan << 48;
    k *= 0x9e3779b97f4a7c15ull;
    return (size_t)(k >> 29);
}

int mac_table_init(struct mac_table *t, size_t cap, unsigned aging_s)
{
    size_t n = slots_for(cap);
    t->slots = calloc(n, sizeof(*t->slots));
    if (!t->slots)
        return -ENOMEM;
    t->mask = n - 1;
    t->learned = t->statics = 0;
    t->cap = cap;
    t->aging_s = aging_s;
    return 0;
}

void mac_table_free(struct mac_table *t)
{
    free(t->slots);
    t->slots = NULL;
}

static struct mac_entry *lookup(const struct mac_table *t, const uint8_t *mac, uint16_t vlan)
{
    for (size_t i = hash_key(mac, vlan) & t->mask;; i = (i + 1) & t->mask) {
        struct mac_entry *e = &t->slots[i];
        if (!e->used)
            return NULL;
        if (e->vlan == vlan && memcmp(e->mac, mac, 6) == 0)
            return e;
    }
}

static struct mac_entry *insert_slot(struct mac_table *t, const uint8_t *mac, uint16_t vlan)
{
    size_t i = hash_key(mac, vlan) & t->mask;
    while (t->slots[i].used)
        i = (i + 1) & t->mask;
    struct mac_entry *e = &t->slots[i];
    memcpy(e->mac, mac, 6);
    e->vlan = vlan;
    e->used = 1;
    return e;
}

static void remove_slot(struct mac_table *t, struct mac_entry *e)
{
    size_t hole = (size_t)(e - t->slots);
    if (t->slots[hole].vlan == MAC_VLAN_STATIC)
        t->statics--;
    else
        t->learned--;
    t->slots[hole].used = 0;
    /* Shift back later members of the probe run whose home is at or before the hole. */
    for (size_t i = (hole + 1) & t->mask; t->slots[i].used; i = (i + 1) & t->mask) {
        size_t home = hash_key(t->slots[i].mac, t->slots[i].vlan) & t->mask;
        bool movable = hole <= i ? (home <= hole || home > i) : (home <= hole && home > i);
        if (movable) {
            t->slots[hole] = t->slots[i];
            t->slots[i].used = 0;
            hole = i;
        }
    }
}

int mac_table_set_cap(struct mac_table *t, size_t cap)
{
    struct mac_table fresh;
    int err = mac_table_init(&fresh, cap, t->aging_s);
    if (err)
        return err;
    for (size_t i = 0; i <= t->mask; i++) {
        struct mac_entry *old = &t->slots[i];
        if (!old->used)
            continue;
        bool is_static = old->vlan == MAC_VLAN_STATIC;
        if (!is_static && fresh.learned >= cap)
            continue;
        struct mac_entry *e = insert_slot(&fresh, old->mac, old->vlan);
        e->port_id = old->port_id;
        e->last_seen_s = old->last_seen_s;
        if (is_static)
            fresh.statics++;
        else
            fresh.learned++;
    }
    mac_table_free(t);
    *t = fresh;
    return 0;
}

int mac_table_find_static(const struct mac_table *t, const uint8_t *mac)
{
    const struct mac_entry *e = lookup(t, mac, MAC_VLAN_STATIC);
    return e ? e->port_id : -1;
}

bool mac_table_add_static(struct mac_table *t, const uint8_t *mac, int port_id)
{
    if (lookup(t, mac, MAC_VLAN_STATIC))
        return false;
    struct mac_entry *e = insert_slot(t, mac, MAC_VLAN_STATIC);
    e->port_id = (uint16_t)port_id;
    e->last_seen_s = 0;
    t->statics++;
    return true;
}

void mac_table_remove_static(struct mac_table *t, const uint8_t *mac)
{
    struct mac_entry *e = lookup(t, mac, MAC_VLAN_STATIC);
    if (e)
        remove_slot(t, e);
}

static bool expired(const struct mac_table *t, const struct mac_entry *e, uint64_t now_s)
{
    return now_s - e->last_seen_s > t->aging_s;
}

enum learn_result mac_table_learn(struct mac_table *t, const uint8_t *mac, uint16_t vlan, int port_id,
                                  uint64_t now_s)
{
    struct mac_entry *e = lookup(t, mac, vlan);
    if (e) {
        e->port_id = (uint16_t)port_id;
        e->last_seen_s = now_s;
        return LEARN_REFRESHED;
    }
    if (t->learned >= t->cap)
        return LEARN_TABLE_FULL;
    e = insert_slot(t, mac, vlan);
    e->port_id = (uint16_t)port_id;
    e->last_seen_s = now_s;
    t->learned++;
    return LEARN_ADDED;
}

int mac_table_find_learned(const struct mac_table *t, const uint8_t *mac, uint16_t vlan, uint64_t now_s)
{
    const struct mac_entry *e = lookup(t, mac, vlan);
    if (!e || expired(t, e, now_s))
        return -1;
    return e->port_id;
}

size_t mac_table_expire(struct mac_table *t, uint64_t now_s)
{
    size_t removed = 0;
    /* Backward shifts can move an unvisited entry into slot i, so recheck it. */
    for (size_t i = 0; i <= t->mask; i++) {
        while (t->slots[i].used && t->slots[i].vlan != MAC_VLAN_STATIC && expired(t, &t->slots[i], now_s)) {
            remove_slot(t, &t->slots[i]);
            removed++;
        }
    }
    return removed;
}

void mac_table_flush_learned(struct mac_table *t)
{
    for (size_t i = 0; i <= t->mask; i++)
        while (t->slots[i].used && t->slots[i].vlan != MAC_VLAN_STATIC)
            remove_slot(t, &t->slots[i]);
}
