/*
 * auth.h - password checking with crypt(3), the user table's value format,
 * and failed-login throttling, shared by smtpd, pop3d, imapd and the
 * pochta command. Nothing here blocks on I/O, but crypt(3) is slow by
 * design: daemons call auth_check_password() on the libuv thread pool.
 */
#ifndef POCHTA_AUTH_H
#define POCHTA_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* Longest password accepted (libcrypt's CRYPT_MAX_PASSPHRASE_SIZE - 1). */
#define AUTH_PASSWORD_MAX	511

/*
 * Check password against a crypt(3) hash: yescrypt ($y$, $gy$), scrypt
 * ($7$), SHA-512 ($6$), SHA-256 ($5$), bcrypt ($2b$, $2y$, $2a$) and
 * MD5-crypt ($1$, for migrated tables). Dovecot's scheme prefixes
 * {CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT} and {MD5-CRYPT} are
 * accepted when they match the hash. Thread-safe; compares in constant
 * time. Returns 0 on a match, -EACCES on a mismatch (also for an empty or
 * over-long password), -EINVAL when the hash is unusable: empty, "*", "!",
 * a locked "!hash", traditional DES, or any other scheme. Unusable hashes
 * never match, whatever the password. hash may be NULL for an unknown
 * user (-EINVAL): a hash is still computed, so that the time taken does
 * not reveal whether an account exists or is usable.
 */
int auth_check_password(const char *hash, const char *password);

/*
 * A new yescrypt hash of password with a random salt, in *hash_r (malloc'd,
 * caller frees). Returns 0, -EINVAL for an empty or over-long password, or
 * -EIO when libcrypt fails (no entropy).
 */
int auth_hash_password(const char *password, char **hash_r);

/*
 * Whether address is acceptable as a user table key: "local@domain" with a
 * dot-atom local part (RFC 5322 3.2.3) of at most 64 bytes and a domain of
 * letter-digit-hyphen labels of at most 255 bytes (RFC 5321 4.5.3.1).
 * Returns 0, or -EINVAL and a static *errstr_r.
 */
int auth_address_check(const char *address, const char **errstr_r);

/* A parsed user table value: "HASH [mailbox=PATH] [quota=SIZE]". */
struct auth_user {
	char *hash;		/* the password hash as written */
	char *mailbox;		/* relative to mail_directory, ends in '/' */
	uint64_t quota;		/* bytes; 0 means unlimited */
};

/*
 * Parse the user table value for address (used for the default mailbox
 * "domain/localpart/", in lower case). The mailbox must be relative with
 * no "." or ".." component; the quota is a number with an optional k, m,
 * g or t suffix (powers of 1024). Unknown or repeated options are errors.
 * Returns 0 and a new *user_r, or -EINVAL and a static *errstr_r.
 */
int auth_user_parse(const char *address, const char *value,
    struct auth_user **user_r, const char **errstr_r);

/* Free a user and set *user to NULL. NULL is allowed. */
void auth_user_free(struct auth_user **user);

/*
 * Parse a size "123", "10k", "5M", "2g", "1t" (powers of 1024). Returns 0
 * and *size_r, or -EINVAL (malformed) or -ERANGE (over 2^63).
 */
int auth_parse_size(const char *s, uint64_t *size_r);

/*
 * Failed-login throttling per client address. Each failure from an
 * address delays the answer to the next one: no delay for the first, then
 * base_ms doubling up to max_ms. At limit failures the address is
 * blocked: the caller refuses further attempts (and may disconnect)
 * until expire_ms pass without a failure, after which the address is
 * forgotten. IPv6 addresses count per /64 (one host owns the whole
 * prefix); IPv4-mapped IPv6 counts as IPv4. At most max_entries addresses
 * are tracked: a new one evicts the least recently failed, so an attacker
 * cycling addresses cannot grow memory. A success does not reset the
 * count: an attacker holding one account could otherwise reset it between
 * guesses at others. Not thread-safe; one per event loop.
 */
struct auth_throttle_conf {
	size_t max_entries;	/* 0: 4096 */
	unsigned int limit;	/* failures before blocking; 0: 10 */
	unsigned int base_ms;	/* delay after the second failure; 0: 1000 */
	unsigned int max_ms;	/* delay cap; 0: 15000 */
	unsigned int expire_ms;	/* forget after this long; 0: 15 min */
	/* Milliseconds on any monotonic scale; NULL: CLOCK_MONOTONIC. */
	uint64_t (*now_ms)(void *arg);
	void *now_arg;
};

struct auth_throttle;

/* A new throttle; conf NULL or zero fields take the defaults. */
struct auth_throttle *auth_throttle_new(const struct auth_throttle_conf *conf);

/* Free the throttle and set *t to NULL. NULL is allowed. */
void auth_throttle_free(struct auth_throttle **t);

/*
 * Record a failed attempt from addr (text, IPv4 or IPv6; anything else is
 * counted as given, e.g. "unix"). Returns the delay in milliseconds to
 * wait before answering this failure.
 */
unsigned int auth_throttle_fail(struct auth_throttle *t, const char *addr);

/* Whether addr has reached the failure limit (and not yet expired). */
int auth_throttle_blocked(struct auth_throttle *t, const char *addr);

/* Failures counted for addr now (0 when unknown or expired). */
unsigned int auth_throttle_count(struct auth_throttle *t, const char *addr);

/* Addresses tracked now, at most max_entries. */
size_t auth_throttle_size(const struct auth_throttle *t);

#endif
