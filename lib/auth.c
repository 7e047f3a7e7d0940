/*
 * auth.c - crypt(3) password checks, user table values and failed-login
 * throttling (see auth.h and pochta-maps(5)). A hash that cannot be
 * checked never matches; malformed table values are errors for the
 * caller to log, never guesses.
 */
#include <sys/random.h>

#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "xalloc.h"

/* Schemes we check; the rest of libcrypt's (DES, NT, ...) are too weak. */
static const char *const auth_schemes[] = {
	"$y$", "$gy$", "$7$", "$6$", "$5$", "$2b$", "$2y$", "$2a$", "$1$",
	NULL,
};

/* Dovecot's scheme prefixes and the crypt(3) prefix each requires. */
static const struct {
	const char *name;
	const char *requires;	/* NULL: any scheme above */
} auth_dovecot[] = {
	{"{CRYPT}", NULL},
	{"{SHA512-CRYPT}", "$6$"},
	{"{SHA256-CRYPT}", "$5$"},
	{"{BLF-CRYPT}", "$2"},
	{"{MD5-CRYPT}", "$1$"},
	{NULL, NULL},
};

/* The crypt(3) string inside hash, or NULL when we cannot check it. */
static const char *
auth_usable_hash(const char *hash)
{
	const char *need = NULL;
	size_t i, n;

	if (hash[0] == '{') {
		for (i = 0; auth_dovecot[i].name != NULL; i++) {
			n = strlen(auth_dovecot[i].name);
			if (strncasecmp(hash, auth_dovecot[i].name, n) == 0)
				break;
		}
		if (auth_dovecot[i].name == NULL)
			return NULL;
		hash += n;
		need = auth_dovecot[i].requires;
		if (need != NULL && strncmp(hash, need, strlen(need)) != 0)
			return NULL;
	}
	for (const char *p = hash; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return NULL;
	for (i = 0; auth_schemes[i] != NULL; i++)
		if (strncmp(hash, auth_schemes[i],
		    strlen(auth_schemes[i])) == 0)
			return hash;
	return NULL;
}

/* Equality of two strings in time depending only on their lengths. */
static int
auth_equal(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	volatile unsigned char diff = na != nb;

	for (size_t i = 0; i < na && i < nb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

/*
 * A yescrypt hash nobody knows the password of (it was random). Unknown
 * users and unusable hashes are checked against it and then refused, so
 * the answer takes as long as for a real user and timing does not tell an
 * attacker which accounts exist.
 */
static const char auth_dummy_hash[] =
    "$y$j9T$3HM0xPgNV2RS/Ve.2ngJT.$sSJoqCUDDlz/THTODFEIFYn/H.L4lr00wCnvXfA/GY2";

int
auth_check_password(const char *hash, const char *password)
{
	struct crypt_data *cd;
	const char *h = NULL, *out;
	size_t plen = strlen(password);
	int rc;

	if (hash != NULL)
		h = auth_usable_hash(hash);
	if (plen == 0 || plen > AUTH_PASSWORD_MAX)
		return h == NULL ? -EINVAL : -EACCES;
	/* About 32 KiB: too much for a thread-pool stack. */
	cd = xcalloc(1, sizeof(*cd));
	out = crypt_rn(password, h != NULL ? h : auth_dummy_hash, cd,
	    (int)sizeof(*cd));
	if (h == NULL || out == NULL || out[0] == '*')
		rc = -EINVAL;
	else
		rc = auth_equal(out, h) ? 0 : -EACCES;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

int
auth_hash_password(const char *password, char **hash_r)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *out;
	size_t plen = strlen(password);
	int rc = 0;

	if (plen == 0 || plen > AUTH_PASSWORD_MAX)
		return -EINVAL;
	/* NULL random bytes: libcrypt reads the system's entropy itself. */
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting,
	    (int)sizeof(setting)) == NULL)
		return -EIO;
	cd = xcalloc(1, sizeof(*cd));
	out = crypt_rn(password, setting, cd, (int)sizeof(*cd));
	if (out == NULL || out[0] == '*')
		rc = -EIO;
	else
		*hash_r = xstrdup(out);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

static int
auth_is_atext(unsigned char c)
{
	/*
	 * RFC 5322 3.2.3 atext, without '/': the local part names the
	 * default mailbox directory. Bytes over 0x7f are UTF-8 (RFC 6531).
	 */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-=?^_`{|}~", c) != NULL);
}

int
auth_address_check(const char *address, const char **errstr_r)
{
	const char *at = strchr(address, '@'), *p, *label;

	if (at == NULL || strchr(at + 1, '@') != NULL) {
		*errstr_r = "address must be local-part@domain";
		return -EINVAL;
	}
	if (at == address || at - address > 64) {
		*errstr_r = "local part must be 1 to 64 bytes";
		return -EINVAL;
	}
	for (p = address; p < at; p++) {
		if (*p == '.' && (p == address || p[-1] == '.' ||
		    p + 1 == at))
			break;
		if (*p != '.' && !auth_is_atext((unsigned char)*p))
			break;
	}
	if (p != at) {
		*errstr_r = "invalid character or dot in the local part";
		return -EINVAL;
	}
	if (at[1] == '\0' || strlen(at + 1) > 255) {
		*errstr_r = "domain must be 1 to 255 bytes";
		return -EINVAL;
	}
	for (label = p = at + 1;; p++) {
		if (*p == '.' || *p == '\0') {
			if (p == label || p - label > 63 || *label == '-' ||
			    p[-1] == '-') {
				*errstr_r = "invalid domain label";
				return -EINVAL;
			}
			if (*p == '\0')
				return 0;
			label = p + 1;
		} else if (!((*p >= 'a' && *p <= 'z') ||
		    (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '-')) {
			*errstr_r = "invalid character in the domain";
			return -EINVAL;
		}
	}
}

int
auth_parse_size(const char *s, uint64_t *size_r)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX >> 1) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case '\0':
		break;
	case 'k': case 'K':
		mult = 1ULL << 10;
		break;
	case 'm': case 'M':
		mult = 1ULL << 20;
		break;
	case 'g': case 'G':
		mult = 1ULL << 30;
		break;
	case 't': case 'T':
		mult = 1ULL << 40;
		break;
	default:
		return -EINVAL;
	}
	if (*p != '\0' && p[1] != '\0')
		return -EINVAL;
	if (v > (UINT64_MAX >> 1) / mult)
		return -ERANGE;
	*size_r = v * mult;
	return 0;
}

/* A mailbox path: relative, no "." or ".." component, printable. */
static int
auth_mailbox_ok(const char *path)
{
	const char *p, *comp = path;

	if (*path == '\0' || *path == '/' || strlen(path) > 1024)
		return 0;
	for (p = path;; p++) {
		if (*p == '/' || *p == '\0') {
			if ((p - comp == 1 && comp[0] == '.') ||
			    (p - comp == 2 && comp[0] == '.' && comp[1] == '.'))
				return 0;
			if (*p == '\0')
				return 1;
			comp = p + 1;
		} else if ((unsigned char)*p < ' ' || *p == 0x7f) {
			return 0;
		}
	}
}

/* The user's mailbox: the given path, or "domain/localpart/". */
static int
auth_user_mailbox(struct auth_user *u, const char *address, const char *opt)
{
	const char *at;
	size_t n;

	if (opt == NULL) {
		at = strchr(address, '@');
		if (at == NULL)
			return -EINVAL;
		u->mailbox = xasprintf("%s/%.*s/", at + 1, (int)(at - address),
		    address);
		for (char *p = u->mailbox; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	} else {
		n = strlen(opt);
		u->mailbox = n > 0 && opt[n - 1] == '/' ? xstrdup(opt) :
		    xasprintf("%s/", opt);
	}
	return auth_mailbox_ok(u->mailbox) ? 0 : -EINVAL;
}

int
auth_user_parse(const char *address, const char *value,
    struct auth_user **user_r, const char **errstr_r)
{
	struct auth_user *u;
	char *copy, *tok, *save = NULL, *mailbox = NULL;
	int have_quota = 0, rc = 0;

	u = xcalloc(1, sizeof(*u));
	copy = xstrdup(value);
	tok = strtok_r(copy, " \t", &save);
	if (tok == NULL) {
		*errstr_r = "missing password hash";
		rc = -EINVAL;
		goto out;
	}
	u->hash = xstrdup(tok);
	while (rc == 0 && (tok = strtok_r(NULL, " \t", &save)) != NULL) {
		if (strncmp(tok, "mailbox=", 8) == 0 && mailbox == NULL) {
			mailbox = tok + 8;
		} else if (strncmp(tok, "quota=", 6) == 0 && !have_quota) {
			have_quota = 1;
			if (auth_parse_size(tok + 6, &u->quota) != 0) {
				*errstr_r = "invalid quota (a number with an "
				    "optional k, m, g or t suffix)";
				rc = -EINVAL;
			}
		} else if (strncmp(tok, "mailbox=", 8) == 0 ||
		    strncmp(tok, "quota=", 6) == 0) {
			*errstr_r = "option given twice";
			rc = -EINVAL;
		} else {
			*errstr_r = "unknown option (only mailbox= and quota=)";
			rc = -EINVAL;
		}
	}
	if (rc == 0 && auth_user_mailbox(u, address, mailbox) != 0) {
		*errstr_r = "invalid mailbox path (must be relative, without "
		    ". or .. components)";
		rc = -EINVAL;
	}
out:
	free(copy);
	if (rc != 0)
		auth_user_free(&u);
	*user_r = u;
	return rc;
}

void
auth_user_free(struct auth_user **userp)
{
	struct auth_user *u = *userp;

	if (u == NULL)
		return;
	free(u->hash);
	free(u->mailbox);
	free(u);
	*userp = NULL;
}

/* Throttling. Entries live in one array, linked by index. */
#define AUTH_NIL	UINT32_MAX
#define AUTH_KEY_MAX	64

struct auth_throttle_ent {
	char key[AUTH_KEY_MAX];
	uint32_t hnext;		/* hash chain, or the free list */
	uint32_t newer, older;	/* recency list by last failure */
	unsigned int failures;
	uint64_t last_ms;
};

struct auth_throttle {
	struct auth_throttle_conf c;
	struct auth_throttle_ent *ents;
	uint32_t *buckets;
	size_t nbuckets;	/* a power of two */
	uint32_t newest, oldest, free;
	size_t n;
	uint64_t seed;
};

static uint64_t
auth_mono_ms(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct auth_throttle *
auth_throttle_new(const struct auth_throttle_conf *conf)
{
	struct auth_throttle *t = xcalloc(1, sizeof(*t));

	if (conf != NULL)
		t->c = *conf;
	if (t->c.max_entries == 0)
		t->c.max_entries = 4096;
	if (t->c.max_entries >= AUTH_NIL)
		t->c.max_entries = AUTH_NIL - 1;
	if (t->c.limit == 0)
		t->c.limit = 10;
	if (t->c.base_ms == 0)
		t->c.base_ms = 1000;
	if (t->c.max_ms == 0)
		t->c.max_ms = 15000;
	if (t->c.expire_ms == 0)
		t->c.expire_ms = 15 * 60 * 1000;
	if (t->c.now_ms == NULL)
		t->c.now_ms = auth_mono_ms;
	t->ents = xcalloc(t->c.max_entries, sizeof(*t->ents));
	for (t->nbuckets = 16; t->nbuckets < t->c.max_entries;)
		t->nbuckets <<= 1;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	for (size_t i = 0; i < t->nbuckets; i++)
		t->buckets[i] = AUTH_NIL;
	for (size_t i = 0; i < t->c.max_entries; i++)
		t->ents[i].hnext = i + 1 < t->c.max_entries ?
		    (uint32_t)(i + 1) : AUTH_NIL;
	t->free = 0;
	t->newest = t->oldest = AUTH_NIL;
	/* A secret seed: chains stay short whatever addresses come. */
	if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) !=
	    sizeof(t->seed))
		t->seed = auth_mono_ms(NULL) ^ (uint64_t)(uintptr_t)t;
	return t;
}

void
auth_throttle_free(struct auth_throttle **tp)
{
	struct auth_throttle *t = *tp;

	if (t == NULL)
		return;
	free(t->ents);
	free(t->buckets);
	free(t);
	*tp = NULL;
}

size_t
auth_throttle_size(const struct auth_throttle *t)
{
	return t->n;
}

/* IPv4 as is, IPv6 as its /64, mapped IPv4 as IPv4, others verbatim. */
static void
auth_addr_key(const char *addr, char key[AUTH_KEY_MAX])
{
	char tmp[INET6_ADDRSTRLEN + 8], *pct;
	unsigned char a6[16];
	struct in_addr a4;

	snprintf(tmp, sizeof(tmp), "%s", addr);
	if ((pct = strchr(tmp, '%')) != NULL)
		*pct = '\0';
	if (inet_pton(AF_INET, tmp, &a4) == 1) {
		inet_ntop(AF_INET, &a4, key, AUTH_KEY_MAX);
	} else if (inet_pton(AF_INET6, tmp, a6) == 1) {
		if (memcmp(a6, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
			inet_ntop(AF_INET, a6 + 12, key, AUTH_KEY_MAX);
			return;
		}
		memset(a6 + 8, 0, 8);
		inet_ntop(AF_INET6, a6, key, AUTH_KEY_MAX - 4);
		strcat(key, "/64");
	} else {
		snprintf(key, AUTH_KEY_MAX, "%s", addr);
	}
}

static size_t
auth_hash(const struct auth_throttle *t, const char *key)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 29;
	return (size_t)(h & (t->nbuckets - 1));
}

static void
auth_lru_unlink(struct auth_throttle *t, uint32_t i)
{
	struct auth_throttle_ent *e = &t->ents[i];

	if (e->newer != AUTH_NIL)
		t->ents[e->newer].older = e->older;
	else
		t->newest = e->older;
	if (e->older != AUTH_NIL)
		t->ents[e->older].newer = e->newer;
	else
		t->oldest = e->newer;
}

static void
auth_lru_push(struct auth_throttle *t, uint32_t i)
{
	struct auth_throttle_ent *e = &t->ents[i];

	e->newer = AUTH_NIL;
	e->older = t->newest;
	if (t->newest != AUTH_NIL)
		t->ents[t->newest].newer = i;
	t->newest = i;
	if (t->oldest == AUTH_NIL)
		t->oldest = i;
}

static void
auth_remove(struct auth_throttle *t, uint32_t i)
{
	uint32_t *pp = &t->buckets[auth_hash(t, t->ents[i].key)];

	while (*pp != i)
		pp = &t->ents[*pp].hnext;
	*pp = t->ents[i].hnext;
	auth_lru_unlink(t, i);
	t->ents[i].hnext = t->free;
	t->free = i;
	t->n--;
}

/* Forget entries whose last failure is older than the expiry. */
static void
auth_expire(struct auth_throttle *t, uint64_t now)
{
	while (t->oldest != AUTH_NIL &&
	    now - t->ents[t->oldest].last_ms >= t->c.expire_ms)
		auth_remove(t, t->oldest);
}

static uint32_t
auth_find(struct auth_throttle *t, const char *key)
{
	uint32_t i = t->buckets[auth_hash(t, key)];

	while (i != AUTH_NIL && strcmp(t->ents[i].key, key) != 0)
		i = t->ents[i].hnext;
	return i;
}

unsigned int
auth_throttle_fail(struct auth_throttle *t, const char *addr)
{
	char key[AUTH_KEY_MAX];
	struct auth_throttle_ent *e;
	uint64_t now = t->c.now_ms(t->c.now_arg), d;
	uint32_t i;
	size_t b;

	auth_addr_key(addr, key);
	auth_expire(t, now);
	if ((i = auth_find(t, key)) != AUTH_NIL) {
		auth_lru_unlink(t, i);
	} else {
		if (t->n == t->c.max_entries)
			auth_remove(t, t->oldest);
		i = t->free;
		e = &t->ents[i];
		t->free = e->hnext;
		memcpy(e->key, key, sizeof(e->key));
		e->failures = 0;
		b = auth_hash(t, key);
		e->hnext = t->buckets[b];
		t->buckets[b] = i;
		t->n++;
	}
	e = &t->ents[i];
	auth_lru_push(t, i);
	e->last_ms = now;
	if (e->failures < UINT32_MAX)
		e->failures++;
	if (e->failures < 2)
		return 0;
	if (e->failures - 2 >= 32)
		return t->c.max_ms;
	d = (uint64_t)t->c.base_ms << (e->failures - 2);
	return d > t->c.max_ms ? t->c.max_ms : (unsigned int)d;
}

unsigned int
auth_throttle_count(struct auth_throttle *t, const char *addr)
{
	char key[AUTH_KEY_MAX];
	uint32_t i;

	auth_addr_key(addr, key);
	auth_expire(t, t->c.now_ms(t->c.now_arg));
	i = auth_find(t, key);
	return i == AUTH_NIL ? 0 : t->ents[i].failures;
}

int
auth_throttle_blocked(struct auth_throttle *t, const char *addr)
{
	return auth_throttle_count(t, addr) >= t->c.limit;
}
