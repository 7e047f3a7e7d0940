/*
 * cidr.c - network prefix lists (cidr.h). A malformed entry is an error at
 * parse time, never a silent mismatch later.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "xalloc.h"

struct cidr_entry {
	uint8_t addr[16];	/* IPv4 as ::ffff:a.b.c.d */
	unsigned bits;		/* prefix length over the 128 bits */
};

struct cidr_list {
	struct cidr_entry *entries;
	size_t n;
};

/* Text to 16 bytes; IPv4 becomes IPv4-mapped. 4 or 6, or 0 if bad. */
static int
to16(const char *text, uint8_t out[16])
{
	struct in_addr a4;

	if (inet_pton(AF_INET, text, &a4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		return 4;
	}
	if (inet_pton(AF_INET6, text, out) == 1)
		return 6;
	return 0;
}

static int
parse_entry(const char *item, struct cidr_entry *e)
{
	char text[64];
	const char *slash = strchr(item, '/');
	size_t len = slash ? (size_t)(slash - item) : strlen(item);

	if (len >= sizeof(text) || len == 0)
		return -EINVAL;
	memcpy(text, item, len);
	text[len] = '\0';
	if (text[0] == '[') {
		if (len < 3 || text[len - 1] != ']')
			return -EINVAL;
		memmove(text, text + 1, len - 2);
		text[len - 2] = '\0';
	}
	int family = to16(text, e->addr);
	if (family == 0)
		return -EINVAL;
	unsigned max = family == 4 ? 32 : 128;
	unsigned bits = max;
	if (slash != NULL) {
		char *end;
		if (slash[1] < '0' || slash[1] > '9')
			return -EINVAL;
		unsigned long v = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || v > max)
			return -EINVAL;
		bits = (unsigned)v;
	}
	e->bits = family == 4 ? bits + 96 : bits;
	return 0;
}

int
cidr_list_parse(char *const *items, size_t n, struct cidr_list **list_r,
    char **errstr_r)
{
	struct cidr_list *l = xcalloc(1, sizeof(*l));

	l->entries = xcalloc(n ? n : 1, sizeof(*l->entries));
	for (size_t i = 0; i < n; i++) {
		if (parse_entry(items[i], &l->entries[l->n]) < 0) {
			*errstr_r = xasprintf("bad network address '%s'",
			    items[i]);
			cidr_list_free(&l);
			return -EINVAL;
		}
		l->n++;
	}
	*list_r = l;
	return 0;
}

void
cidr_list_free(struct cidr_list **list)
{
	if (*list == NULL)
		return;
	free((*list)->entries);
	free(*list);
	*list = NULL;
}

static int
prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return 0;
	if (rest == 0)
		return 1;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

int
cidr_list_match(const struct cidr_list *list, const char *addr)
{
	uint8_t a[16];

	if (list == NULL || to16(addr, a) == 0)
		return 0;
	for (size_t i = 0; i < list->n; i++)
		if (prefix_match(a, list->entries[i].addr,
		    list->entries[i].bits))
			return 1;
	return 0;
}
