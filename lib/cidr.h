/*
 * cidr.h - address/prefix lists such as mynetworks ("127.0.0.0/8,
 * [::1]/128, 192.0.2.7"). IPv4-mapped IPv6 client addresses match IPv4
 * entries. Parse errors name the bad entry.
 */
#ifndef POCHTA_CIDR_H
#define POCHTA_CIDR_H

#include <stddef.h>

struct cidr_list;

/*
 * Parse the entries of items[0..n-1] (each "addr", "addr/len", "[v6]" or
 * "[v6]/len"). 0 and *list_r, or -EINVAL and a malloc'd *errstr_r.
 */
int cidr_list_parse(char *const *items, size_t n, struct cidr_list **list_r,
    char **errstr_r);
void cidr_list_free(struct cidr_list **list);

/* Whether the textual address addr is inside an entry: 1 or 0. */
int cidr_list_match(const struct cidr_list *list, const char *addr);

#endif
