/*
 * address.h - mail addresses as SMTP carries them: the reverse-path and
 * forward-path of MAIL FROM and RCPT TO (RFC 5321 4.1.2, 4.5.3.1), with
 * RFC 5322 3.4.1 atext and RFC 6531 UTF-8 when SMTPUTF8 is in effect.
 * Strict parsing: any byte outside the grammar is an error with a constant
 * *errstr_r, never a guess. Thread-safe, no state.
 *
 * Decisions where RFC 5321 leaves room (pochta-queue(5) stores the result):
 *  - A trailing dot in a domain ("user@example.test.") is rejected, as the
 *    grammar says, rather than stripped.
 *  - An empty local part, even quoted (<""@example.test>), is rejected: no
 *    mailbox has an empty name and it only confuses later tables.
 *  - A source route (<@a.test,@b.test:user@c.test>) is accepted and
 *    ignored (RFC 5321 4.1.1.3, C.); ADDRESS_F_ROUTE says there was one.
 *  - Address literals: [IPv4] and [IPv6:...] only; general literals
 *    ([tag:...]) are rejected. Literals are canonicalized (inet_ntop).
 *  - The local part keeps its case (RFC 5321 2.4); the domain is lowercased
 *    (ASCII letters only; U-labels keep their other characters).
 *
 * Relay policy (what smtpd does with the helpers at the end): a local part
 * holding '%', '!' or '@' ("user%other@our.test", "other!user@our.test",
 * "\"user@other\"@our.test") is a request to relay disguised as local mail,
 * which a gateway further on may honour. smtpd rejects such recipients in
 * its own domains unless the client may relay anyway (authenticated or in
 * mynetworks), as Postfix does with allow_untrusted_routing = no. An
 * IP-literal domain is never one of our domains, so it is relayed only for
 * clients that may relay.
 */
#ifndef POCHTA_ADDRESS_H
#define POCHTA_ADDRESS_H

#include <stddef.h>

/* RFC 5321 4.5.3.1: octets, as sent (quotes and escapes count). */
#define ADDRESS_LOCAL_MAX 64
#define ADDRESS_DOMAIN_MAX 255
#define ADDRESS_LABEL_MAX 63
#define ADDRESS_PATH_MAX 256	/* with the angle brackets and any route */

/* What the caller allows (the flags argument). */
#define ADDRESS_ALLOW_NULL 0x01	/* <>: MAIL FROM, never RCPT TO */
#define ADDRESS_SMTPUTF8 0x02	/* UTF-8 local part and domain (RFC 6531) */
#define ADDRESS_ALLOW_POSTMASTER 0x04	/* <Postmaster>: RCPT TO only */

/* What was found (struct address flags). */
#define ADDRESS_F_NULL 0x01		/* the null path <> */
#define ADDRESS_F_QUOTED 0x02		/* the local part was quoted */
#define ADDRESS_F_LITERAL 0x04		/* domain is [IPv4] or [IPv6:...] */
#define ADDRESS_F_ROUTE 0x08		/* a source route was ignored */
#define ADDRESS_F_UTF8 0x10		/* non-ASCII characters present */
#define ADDRESS_F_POSTMASTER 0x20	/* <Postmaster> without a domain */

struct address {
	char *local;	/* unquoted, quoted-pairs resolved; "" for <> */
	char *domain;	/* lowercased, or "[...]" literal; "" for <> or
			 * <Postmaster> */
	char *canonical;	/* local@domain, the local part quoted only
				 * when it is not a dot-atom: the form for
				 * tables, the queue and logs; "" for <>,
				 * "postmaster" for <Postmaster> */
	unsigned flags;	/* ADDRESS_F_* */
};

/*
 * Parse a path that starts at s[0] with '<'. If end_r is NULL the path must
 * fill all len bytes; otherwise *end_r is set to the offset just past '>'
 * (where the ESMTP parameters begin, for the caller to parse).
 * Returns 0 and a new *addr_r, or: -EINVAL (syntax, *errstr_r says what),
 * -ENAMETOOLONG (a length limit above), -EILSEQ (UTF-8 without
 * ADDRESS_SMTPUTF8: RFC 6531 3.7.4.2 wants 553 5.6.7), -EPERM (<> or
 * <Postmaster> where flags do not allow it).
 */
int address_parse_path(const char *s, size_t len, unsigned flags,
    struct address **addr_r, size_t *end_r, const char **errstr_r);

/*
 * Parse a bare mailbox "local@domain" (tables, the command line): the same
 * rules without brackets or route. Errors as address_parse_path.
 */
int address_parse_mailbox(const char *s, size_t len, unsigned flags,
    struct address **addr_r, const char **errstr_r);

/* Free; *addr becomes NULL. NULL is allowed. */
void address_free(struct address **addr);

/* Whether the local part holds '%', '!' or '@' (see the relay policy). */
int address_has_routing_chars(const struct address *addr);

/* Whether the domain is an address literal. */
int address_is_literal(const struct address *addr);

#endif
