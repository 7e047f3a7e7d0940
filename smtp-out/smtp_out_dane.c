/*
 * smtp_out_dane.c - DANE for SMTP (RFC 7672, RFC 6698, RFC 7218): what a
 * host's TLSA lookup makes of its TLS level, and the host list's memory.
 * Pure: the lookups run in smtp-out.c, the handshake in smtp_out_conn.c.
 * A failed lookup marks the host unusable; nothing here sends plain text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_out.h"
#include "tls.h"
#include "xalloc.h"

const char *
so_tls_level_name(enum so_tls_level level)
{
	switch (level) {
	case SO_TLS_NONE:
		return "none";
	case SO_TLS_MAY:
		return "may";
	case SO_TLS_ENCRYPT:
		return "encrypt";
	case SO_TLS_VERIFY:
		return "verify";
	case SO_TLS_DANE:
		return "dane";
	}
	return "unknown";
}

void
so_hosts_free(struct so_host **hostsp, size_t n)
{
	struct so_host *hosts = *hostsp;

	if (hosts == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < hosts[i].ntlsa; j++)
			free(hosts[i].tlsa[j].data);
		free(hosts[i].tlsa);
		free(hosts[i].tlsa_err);
		free(hosts[i].name);
	}
	free(hosts);
	*hostsp = NULL;
}

/* h's copies of the usable records of res. */
static void
copy_usable(struct so_host *h, const struct dns_result *res)
{
	for (size_t i = 0; i < res->ntlsa; i++) {
		const struct dns_tlsa *t = &res->tlsa[i];
		struct dns_tlsa *c;

		if (!tls_tlsa_usable(t->usage, t->selector, t->mtype, t->len))
			continue;
		h->tlsa = xreallocarray(h->tlsa, h->ntlsa + 1,
		    sizeof(*h->tlsa));
		c = &h->tlsa[h->ntlsa++];
		*c = *t;
		c->data = xmalloc(t->len);
		memcpy(c->data, t->data, t->len);
	}
}

/* RFC 7672 2.2.3 for one host. */
static void
apply_one(struct so_host *h, const struct dns_result *res)
{
	if (res->status == 0 && res->secure) {
		copy_usable(h, res);
		/* 2.2: a validated RRset makes TLS mandatory even when no
		 * record is usable (then unauthenticated, 3.1.3). */
		h->tls_level = h->ntlsa > 0 ? SO_TLS_DANE : SO_TLS_ENCRYPT;
	} else if (res->status == 0 || res->status == DNS_E_NODATA ||
	    res->status == DNS_E_NXDOMAIN) {
		/* Unvalidated records, or none: opportunistic TLS. */
		h->tls_level = SO_TLS_MAY;
	} else {
		/* A failure may hide records a validator found bogus. */
		h->tlsa_err = xasprintf("TLSA lookup for %s failed: %s",
		    h->name, *res->errstr != '\0' ? res->errstr :
		    dns_strerror(res->status));
	}
}

void
so_dane_apply(struct so_host *hosts, size_t n, const char *name,
    const struct dns_result *res)
{
	for (size_t i = 0; i < n; i++)
		if (hosts[i].dnssec && strcmp(hosts[i].name, name) == 0 &&
		    hosts[i].tlsa == NULL && hosts[i].tlsa_err == NULL)
			apply_one(&hosts[i], res);
}
