/*
 * address_fuzz.c - libFuzzer harness for the SMTP path parser
 * (lib/address): any bytes, under every flag combination, must parse or
 * fail cleanly; a parsed path's canonical form must parse again to the same
 * result. Link with -fsanitize=fuzzer,address and lib/address.c
 * lib/buf.c lib/xalloc.c lib/log.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (unsigned flags = 0; flags < 8; flags++) {
		struct address *a = NULL, *b = NULL;
		const char *err = NULL;
		size_t end = 0;

		if (address_parse_path((const char *)data, size, flags, &a,
		    &end, &err) < 0) {
			if (err == NULL || a != NULL)
				abort();
			continue;
		}
		if (end > size || data[end - 1] != '>')
			abort();
		/* A mailbox's canonical form is a fixed point. */
		if (a->domain[0] != '\0' && (a->flags & ADDRESS_F_NULL) == 0) {
			if (address_parse_mailbox(a->canonical,
			    strlen(a->canonical), flags, &b, &err) < 0)
				abort();
			if (strcmp(a->canonical, b->canonical) != 0 ||
			    strcmp(a->local, b->local) != 0 ||
			    strcmp(a->domain, b->domain) != 0)
				abort();
			address_free(&b);
		}
		address_free(&a);
	}
	return 0;
}
