/*
 * resolve.h - which domains are ours and which recipients exist, from
 * mydestination, virtual_mailbox_domains and the user, alias and virtual
 * alias tables (pochta-maps(5)). smtpd asks it at RCPT time so unknown
 * users are refused then (550 5.1.1), never bounced later.
 * Table errors are reported to the caller (a 4xx, never a false "unknown").
 */
#ifndef POCHTA_RESOLVE_H
#define POCHTA_RESOLVE_H

struct conf;
struct resolve;

enum resolve_class {
	RESOLVE_REMOTE,		/* not ours: relay rules apply */
	RESOLVE_LOCAL,		/* in mydestination */
	RESOLVE_VIRTUAL,	/* in virtual_mailbox_domains */
};

/*
 * Read the domain lists and open the tables named by user_maps, alias_maps
 * and virtual_alias_maps. 0, or a negative errno and a malloc'd *errstr_r.
 */
int resolve_open(const struct conf *conf, struct resolve **resolve_r,
    char **errstr_r);
void resolve_free(struct resolve **resolve);

/*
 * Classify a domain (lower case, no trailing dot). Address literals such as
 * "[192.0.2.1]" are never ours: mail to them is relaying.
 */
enum resolve_class resolve_domain(const struct resolve *resolve,
    const char *domain);

/*
 * Whether local@domain (domain ours) is a recipient we accept: postmaster
 * (RFC 5321 4.5.1), a user, an alias (for mydestination domains also the
 * bare local part, as in aliases(5)), a virtual alias, or caught by a
 * virtual alias "@domain". An address extension after recipient_delimiter
 * is tried with and without. 1 known, 0 unknown, -EIO on a table error.
 */
int resolve_rcpt(struct resolve *resolve, const char *local,
    const char *domain);

/*
 * Look key up in the user tables: 0 and a malloc'd value (caller frees),
 * -ENOENT, or -EIO.
 */
int resolve_user(struct resolve *resolve, const char *key, char **value_r);

/*
 * Look key up in the tables named by the list parameter param (opened on
 * first use and kept): 0 and a malloc'd value, -ENOENT, or -EIO (also when
 * a table cannot be opened; logged).
 */
int resolve_lookup(struct resolve *resolve, const char *param,
    const char *key, char **value_r);

#endif
