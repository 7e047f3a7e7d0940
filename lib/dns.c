/*
 * dns.c - asynchronous DNS through ldns on the libuv thread pool: PTR with
 * forward confirmation, A/AAAA (RFC 1035, RFC 3596), MX routing with
 * implicit MX (RFC 5321 5.1) and null MX (RFC 7505), TLSA (RFC 6698)
 * with the AD bit asked for and reported (RFC 6840 5.7), and a TTL cache
 * (RFC 2308 for negative answers). Hostile or malformed answers become
 * DNS_E_* results with a message, never crashes; nothing here exits.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dns.h"
#include "log.h"
#include "xalloc.h"

#define DNS_NAME_MAX		256	/* 253 characters, a dot, a NUL */
#define DNS_MAX_RECORDS		128	/* records of a type read per answer */
#define DNS_DEFAULT_TIMEOUT_MS	5000
#define DNS_DEFAULT_NEG_TTL	60
#define DNS_DEFAULT_MAX_TTL	86400
#define DNS_NEG_TTL_CAP		10800	/* RFC 2308 5: at most 3 hours */

struct dns_server {
	ldns_rdf *addr;
	uint16_t port;
};

struct dns_resolver {
	uv_loop_t *loop;
	int refs;		/* the owner's and each request's; loop only */
	struct dns_server servers[DNS_MAX_SERVERS];
	size_t nservers;
	unsigned timeout_ms;
	unsigned retries;
	unsigned families;
	int dnssec;		/* DO and AD in queries; report AD */
	struct dns_cache *cache;
};

enum dns_op {
	DNS_OP_PTR,
	DNS_OP_ADDR,
	DNS_OP_MX,
	DNS_OP_MX_HOSTS,
	DNS_OP_TLSA,
};

struct dns_request {
	uv_work_t work;
	struct dns_resolver *r;
	enum dns_op op;
	char name[DNS_NAME_MAX];
	struct dns_addr addr;
	dns_callback cb;
	void *arg;
	atomic_int cancelled;
	struct dns_result *res;
};

/*
 * Error codes and results.
 */

static const char *const dns_errors[] = {
	[DNS_E_BASE - DNS_E_NXDOMAIN] = "domain not found",
	[DNS_E_BASE - DNS_E_NODATA] = "no record of the requested type",
	[DNS_E_BASE - DNS_E_NULLMX] = "domain does not accept mail (null MX)",
	[DNS_E_BASE - DNS_E_SERVFAIL] = "name server failure",
	[DNS_E_BASE - DNS_E_TIMEOUT] = "no answer from any name server",
	[DNS_E_BASE - DNS_E_BADANSWER] = "malformed DNS answer",
	[DNS_E_BASE - DNS_E_BADNAME] = "invalid domain name",
	[DNS_E_BASE - DNS_E_NOTCONFIRMED] =
	    "host name does not resolve back to the address",
	[DNS_E_BASE - DNS_E_REFUSED] = "name server refused the query",
};

const char *
dns_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err < DNS_E_BASE && err >= DNS_E_REFUSED)
		return dns_errors[DNS_E_BASE - err];
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown DNS error";
}

int
dns_error_is_temporary(int err)
{
	switch (err) {
	case 0:
	case DNS_E_NXDOMAIN:
	case DNS_E_NODATA:
	case DNS_E_NULLMX:
	case DNS_E_BADNAME:
	case DNS_E_NOTCONFIRMED:
		return 0;
	default:
		return 1;
	}
}

/* Record err with a message in res (when res is not NULL); returns err. */
static int __attribute__((format(printf, 3, 4)))
res_error(struct dns_result *res, int err, const char *fmt, ...)
{
	va_list ap;

	if (res == NULL)
		return err;
	res->status = err;
	va_start(ap, fmt);
	vsnprintf(res->errstr, sizeof(res->errstr), fmt, ap);
	va_end(ap);
	return err;
}

/* Success after all: forget errors met on the way. */
static int
res_ok(struct dns_result *res)
{
	res->status = 0;
	res->errstr[0] = '\0';
	return 0;
}

static void
mx_list_free(struct dns_mx *mx, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(mx[i].host);
		free(mx[i].addrs);
	}
	free(mx);
}

void
dns_result_free(struct dns_result **resp)
{
	struct dns_result *res = *resp;

	if (res == NULL)
		return;
	free(res->name);
	free(res->ptr_name);
	free(res->addrs);
	mx_list_free(res->mx, res->nmx);
	for (size_t i = 0; i < res->ntlsa; i++)
		free(res->tlsa[i].data);
	free(res->tlsa);
	free(res);
	*resp = NULL;
}

/*
 * Addresses and names.
 */

int
dns_addr_parse(const char *text, struct dns_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, text, a->addr) == 1) {
		a->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, a->addr) == 1) {
		a->family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

void
dns_addr_format(const struct dns_addr *a, char *buf, size_t size)
{
	if ((a->family != AF_INET && a->family != AF_INET6) ||
	    inet_ntop(a->family, a->addr, buf, size) == NULL)
		snprintf(buf, size, "?");
}

static int
addr_equal(const struct dns_addr *a, const struct dns_addr *b)
{
	size_t n = a->family == AF_INET ? 4 : 16;

	return a->family == b->family && memcmp(a->addr, b->addr, n) == 0;
}

int
dns_ptr_qname(const struct dns_addr *a, char *buf, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	size_t off = 0;
	int i, n;

	if (a->family == AF_INET) {
		n = snprintf(buf, size, "%u.%u.%u.%u.in-addr.arpa.",
		    a->addr[3], a->addr[2], a->addr[1], a->addr[0]);
		return n < 0 || (size_t)n >= size ? -ENOBUFS : 0;
	}
	if (a->family != AF_INET6)
		return -EINVAL;
	/* RFC 3596 2.5: nibbles, least significant first. */
	if (size < 32 * 2 + sizeof("ip6.arpa."))
		return -ENOBUFS;
	for (i = 15; i >= 0; i--) {
		buf[off++] = hex[a->addr[i] & 0xf];
		buf[off++] = '.';
		buf[off++] = hex[a->addr[i] >> 4];
		buf[off++] = '.';
	}
	memcpy(buf + off, "ip6.arpa.", sizeof("ip6.arpa."));
	return 0;
}

/*
 * Check a domain name given by a caller or found in an answer and write it
 * lowercased and absolute to out. Letters, digits, '-' and '_' (SRV-style
 * labels appear in real MX targets); labels of 1-63 bytes; 253 in all.
 */
static int
name_normalize(const char *in, char *out, size_t size)
{
	size_t len = strlen(in), i, label = 0;

	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || size < len + 2)
		return DNS_E_BADNAME;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '.') {
			if (label == 0)
				return DNS_E_BADNAME;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return DNS_E_BADNAME;
		} else
			return DNS_E_BADNAME;
		out[i] = (char)tolower(c);
	}
	out[len] = '.';
	out[len + 1] = '\0';
	return 0;
}

/* A domain name rdf from an answer as a normalized string (no dot). */
static int
rdf_name(const ldns_rdf *rdf, char *out, size_t size)
{
	char *s;
	int rc;

	if (rdf == NULL || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME)
		return DNS_E_BADANSWER;
	if ((s = ldns_rdf2str(rdf)) == NULL)
		return DNS_E_BADANSWER;
	rc = name_normalize(s, out, size);
	free(s);
	if (rc == 0)
		out[strlen(out) - 1] = '\0';
	return rc;
}

/*
 * MX ordering (RFC 5321 5.1): by preference, random among equals so load
 * spreads over hosts of the same preference.
 */

struct mx_key {
	unsigned pref;
	uint32_t rnd;
	size_t idx;
};

static int
mx_key_cmp(const void *a, const void *b)
{
	const struct mx_key *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	if (x->rnd != y->rnd)
		return x->rnd < y->rnd ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static uint32_t
mx_default_rnd(void *arg)
{
	(void)arg;
	return arc4random();
}

void
dns_mx_sort(struct dns_mx *mx, size_t n, uint32_t (*rnd)(void *),
    void *rnd_arg)
{
	struct mx_key *keys;
	struct dns_mx *tmp;
	size_t i;

	if (n < 2)
		return;
	if (rnd == NULL)
		rnd = mx_default_rnd;
	keys = xcalloc(n, sizeof(*keys));
	for (i = 0; i < n; i++) {
		keys[i].pref = mx[i].pref;
		keys[i].rnd = rnd(rnd_arg);
		keys[i].idx = i;
	}
	qsort(keys, n, sizeof(*keys), mx_key_cmp);
	tmp = xcalloc(n, sizeof(*tmp));
	for (i = 0; i < n; i++)
		tmp[i] = mx[keys[i].idx];
	memcpy(mx, tmp, n * sizeof(*mx));
	free(tmp);
	free(keys);
}

/*
 * Reading answers.
 */

/* The rcode of pkt as a DNS_E_* code (0 for NOERROR). */
static int
pkt_rcode_error(const ldns_pkt *pkt, const char *qname,
    struct dns_result *res)
{
	switch (ldns_pkt_get_rcode(pkt)) {
	case LDNS_RCODE_NOERROR:
		return 0;
	case LDNS_RCODE_NXDOMAIN:
		return res_error(res, DNS_E_NXDOMAIN, "%s: domain not found",
		    qname);
	case LDNS_RCODE_SERVFAIL:
		return res_error(res, DNS_E_SERVFAIL,
		    "%s: name server failure (SERVFAIL)", qname);
	case LDNS_RCODE_REFUSED:
		return res_error(res, DNS_E_REFUSED,
		    "%s: query refused by the name server", qname);
	default:
		return res_error(res, DNS_E_BADANSWER,
		    "%s: name server answered rcode %d", qname,
		    (int)ldns_pkt_get_rcode(pkt));
	}
}

/*
 * Collect up to max answer records of type for qname, following CNAMEs
 * inside the answer (RFC 1034 3.6.2; RFC 2317 uses them for PTR). The
 * records stay owned by pkt.
 */
static int
pkt_answer_rrs(const ldns_pkt *pkt, const char *qname, ldns_rr_type type,
    ldns_rr **out, size_t max, size_t *n_r, char *target,
    struct dns_result *res)
{
	ldns_rr_list *an = ldns_pkt_answer(pkt);
	size_t count = an != NULL ? ldns_rr_list_rr_count(an) : 0;
	ldns_rdf *cur;
	ldns_rr *cname;
	size_t i, n = 0;
	int rc, hops;

	*n_r = 0;
	if (target != NULL)
		target[0] = '\0';
	if ((rc = pkt_rcode_error(pkt, qname, res)) != 0)
		return rc;
	if ((cur = ldns_dname_new_frm_str(qname)) == NULL)
		return res_error(res, DNS_E_BADNAME, "%s: invalid name", qname);
	for (hops = 0;; hops++) {
		n = 0;
		cname = NULL;
		for (i = 0; i < count; i++) {
			ldns_rr *rr = ldns_rr_list_rr(an, i);

			if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
			    ldns_dname_compare(ldns_rr_owner(rr), cur) != 0)
				continue;
			if (ldns_rr_get_type(rr) == type) {
				if (n < max)
					out[n] = rr;
				if (n < max || out == NULL)
					n++;
			} else if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME)
				cname = rr;
		}
		if (n > 0 || cname == NULL)
			break;
		if (hops == DNS_MAX_CNAME_CHAIN) {
			ldns_rdf_deep_free(cur);
			return res_error(res, DNS_E_BADANSWER,
			    "%s: CNAME chain too long or looping", qname);
		}
		if (ldns_rr_rd_count(cname) != 1 ||
		    ldns_rdf_get_type(ldns_rr_rdf(cname, 0)) !=
		    LDNS_RDF_TYPE_DNAME) {
			ldns_rdf_deep_free(cur);
			return res_error(res, DNS_E_BADANSWER,
			    "%s: malformed CNAME record", qname);
		}
		ldns_rdf_deep_free(cur);
		cur = ldns_rdf_clone(ldns_rr_rdf(cname, 0));
	}
	/* The chain left the answer: tell the caller where it ended. */
	if (target != NULL && n == 0 && hops > 0 &&
	    rdf_name(cur, target, DNS_NAME_MAX - 1) == 0)
		strcat(target, ".");
	ldns_rdf_deep_free(cur);
	*n_r = n;
	if (n == 0)
		return res_error(res, DNS_E_NODATA, "%s: no %s record",
		    qname, type == LDNS_RR_TYPE_MX ? "MX" :
		    type == LDNS_RR_TYPE_A ? "A" :
		    type == LDNS_RR_TYPE_AAAA ? "AAAA" :
		    type == LDNS_RR_TYPE_PTR ? "PTR" :
		    type == LDNS_RR_TYPE_TLSA ? "TLSA" : "matching");
	return 0;
}

/* An MX record's fields; DNS_E_BADANSWER when they are not sane. */
static int
mx_record(const ldns_rr *rr, unsigned *pref_r, const ldns_rdf **host_r)
{
	const ldns_rdf *p, *h;

	if (ldns_rr_rd_count(rr) != 2)
		return DNS_E_BADANSWER;
	p = ldns_rr_rdf(rr, 0);
	h = ldns_rr_rdf(rr, 1);
	if (p == NULL || h == NULL || ldns_rdf_size(p) != 2 ||
	    ldns_rdf_get_type(h) != LDNS_RDF_TYPE_DNAME)
		return DNS_E_BADANSWER;
	*pref_r = ldns_rdf2native_int16(p);
	*host_r = h;
	return 0;
}

int
dns_mx_from_pkt(const ldns_pkt *pkt, const char *qname,
    struct dns_result *res)
{
	ldns_rr *rrs[DNS_MAX_RECORDS];
	char host[DNS_NAME_MAX];
	struct dns_addr lit;
	const ldns_rdf *h;
	size_t n, i, literals = 0, bad = 0;
	unsigned pref;
	int rc;

	res->status = 0;
	if ((rc = pkt_answer_rrs(pkt, qname, LDNS_RR_TYPE_MX, rrs,
	    DNS_MAX_RECORDS, &n, NULL, res)) != 0)
		return rc;
	/* RFC 7505 3: a single MX of preference 0 naming the root. */
	if (n == 1 && mx_record(rrs[0], &pref, &h) == 0 &&
	    ldns_dname_label_count(h) == 0)
		return res_error(res, pref == 0 ? DNS_E_NULLMX :
		    DNS_E_BADANSWER, "%s: %s", qname, pref == 0 ?
		    "domain does not accept mail (null MX)" :
		    "MX record names the root");
	res->mx = xcalloc(n, sizeof(*res->mx));
	for (i = 0; i < n; i++) {
		if (mx_record(rrs[i], &pref, &h) != 0 ||
		    ldns_dname_label_count(h) == 0 ||
		    rdf_name(h, host, sizeof(host)) != 0) {
			bad++;
			continue;
		}
		/* A name that reads as an address is a misconfiguration
		 * that Postfix also refuses to follow (RFC 5321 5.1). */
		if (dns_addr_parse(host, &lit) == 0) {
			literals++;
			continue;
		}
		res->mx[res->nmx].host = xstrdup(host);
		res->mx[res->nmx].pref = pref;
		res->nmx++;
	}
	if (bad > 0 || literals > 0)
		log_warn("dns: %s: ignored %zu malformed MX record(s) and %zu "
		    "naming an IP address", qname, bad, literals);
	if (res->nmx == 0)
		return res_error(res, DNS_E_BADANSWER, "%s: %s", qname,
		    literals > 0 ? "MX host is an IP address literal" :
		    "malformed MX records");
	return 0;
}

int
dns_addrs_from_pkt(const ldns_pkt *pkt, const char *qname,
    ldns_rr_type type, struct dns_result *res)
{
	ldns_rr *rrs[DNS_MAX_RECORDS];
	size_t n, i, malformed = 0, len = type == LDNS_RR_TYPE_A ? 4 : 16;
	int rc;

	if (type != LDNS_RR_TYPE_A && type != LDNS_RR_TYPE_AAAA)
		return res_error(res, -EINVAL, "bad address type");
	if ((rc = pkt_answer_rrs(pkt, qname, type, rrs, DNS_MAX_RECORDS, &n,
	    NULL, res)) != 0)
		return rc;
	for (i = 0; i < n && res->naddrs < DNS_MAX_ADDRS; i++) {
		const ldns_rdf *rdf = ldns_rr_rdf(rrs[i], 0);
		struct dns_addr *a;

		if (ldns_rr_rd_count(rrs[i]) != 1 || rdf == NULL ||
		    ldns_rdf_size(rdf) != len) {
			malformed++;
			continue;
		}
		res->addrs = xreallocarray(res->addrs, res->naddrs + 1,
		    sizeof(*res->addrs));
		a = &res->addrs[res->naddrs++];
		memset(a, 0, sizeof(*a));
		a->family = type == LDNS_RR_TYPE_A ? AF_INET : AF_INET6;
		memcpy(a->addr, ldns_rdf_data(rdf), len);
	}
	if (malformed == n)
		return res_error(res, DNS_E_BADANSWER,
		    "%s: malformed address records", qname);
	return 0;
}

int
dns_tlsa_from_pkt(const ldns_pkt *pkt, const char *qname,
    struct dns_result *res)
{
	ldns_rr *rrs[DNS_MAX_RECORDS];
	size_t n, i, k;
	int rc;

	if ((rc = pkt_answer_rrs(pkt, qname, LDNS_RR_TYPE_TLSA, rrs,
	    DNS_MAX_RECORDS, &n, NULL, res)) != 0)
		return rc;
	/* Malformed records are unusable ones: the RRset still exists,
	 * which RFC 7672 2.2 makes TLS mandatory for. */
	for (i = 0; i < n && res->ntlsa < DNS_MAX_TLSA; i++) {
		const ldns_rdf *f[4];
		struct dns_tlsa *t;

		if (ldns_rr_rd_count(rrs[i]) != 4)
			continue;
		for (k = 0; k < 4; k++)
			f[k] = ldns_rr_rdf(rrs[i], k);
		if (f[0] == NULL || f[1] == NULL || f[2] == NULL ||
		    f[3] == NULL || ldns_rdf_size(f[0]) != 1 ||
		    ldns_rdf_size(f[1]) != 1 || ldns_rdf_size(f[2]) != 1 ||
		    ldns_rdf_size(f[3]) == 0 ||
		    ldns_rdf_size(f[3]) > DNS_MAX_TLSA_DATA)
			continue;
		res->tlsa = xreallocarray(res->tlsa, res->ntlsa + 1,
		    sizeof(*res->tlsa));
		t = &res->tlsa[res->ntlsa++];
		t->usage = ldns_rdf_data(f[0])[0];
		t->selector = ldns_rdf_data(f[1])[0];
		t->mtype = ldns_rdf_data(f[2])[0];
		t->len = ldns_rdf_size(f[3]);
		t->data = xmalloc(t->len);
		memcpy(t->data, ldns_rdf_data(f[3]), t->len);
	}
	return 0;
}

/*
 * The answer cache: a hash table of wire-format packets with an LRU list.
 */

struct cache_entry {
	struct cache_entry *hnext;	/* hash chain */
	struct cache_entry *prev;	/* LRU list, most recent first */
	struct cache_entry *next;
	char *key;
	uint8_t *wire;
	size_t len;
	time_t expires;
};

struct dns_cache {
	pthread_mutex_t lock;
	struct cache_entry **buckets;
	size_t nbuckets;
	struct cache_entry *head;
	struct cache_entry *tail;
	size_t count;
	size_t max;
	unsigned neg_ttl;
	unsigned max_ttl;
	time_t (*now)(void *);
	void *now_arg;
};

struct dns_cache *
dns_cache_new(size_t max_entries, unsigned negative_ttl, unsigned max_ttl,
    time_t (*now)(void *), void *now_arg)
{
	struct dns_cache *c = xcalloc(1, sizeof(*c));

	pthread_mutex_init(&c->lock, NULL);
	c->max = max_entries > 0 ? max_entries : 1;
	for (c->nbuckets = 16; c->nbuckets < c->max && c->nbuckets < 65536;)
		c->nbuckets *= 2;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	c->neg_ttl = negative_ttl > 0 ? negative_ttl : DNS_DEFAULT_NEG_TTL;
	c->max_ttl = max_ttl > 0 ? max_ttl : DNS_DEFAULT_MAX_TTL;
	c->now = now;
	c->now_arg = now_arg;
	return c;
}

static void
cache_entry_free(struct cache_entry *e)
{
	free(e->key);
	free(e->wire);
	free(e);
}

void
dns_cache_free(struct dns_cache **cachep)
{
	struct dns_cache *c = *cachep;
	struct cache_entry *e, *next;

	if (c == NULL)
		return;
	for (e = c->head; e != NULL; e = next) {
		next = e->next;
		cache_entry_free(e);
	}
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
	*cachep = NULL;
}

static time_t
cache_now(const struct dns_cache *c)
{
	return c->now != NULL ? c->now(c->now_arg) : time(NULL);
}

static size_t
cache_hash(const struct dns_cache *c, const char *key)
{
	uint32_t h = 2166136261u;

	for (; *key != '\0'; key++)
		h = (h ^ (uint8_t)*key) * 16777619u;
	return h & (c->nbuckets - 1);
}

static char *
cache_key(const char *qname, ldns_rr_type type)
{
	char *key = xasprintf("%u/%s", (unsigned)type, qname), *p;

	for (p = key; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return key;
}

static void
cache_unlink(struct dns_cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = &c->buckets[cache_hash(c, e->key)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	c->count--;
}

/* Put e in its hash chain and at the front of the LRU list. */
static void
cache_link(struct dns_cache *c, struct cache_entry *e)
{
	size_t h = cache_hash(c, e->key);

	e->hnext = c->buckets[h];
	c->buckets[h] = e;
	e->prev = NULL;
	if ((e->next = c->head) != NULL)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
	c->count++;
}

static struct cache_entry *
cache_find(struct dns_cache *c, const char *key)
{
	struct cache_entry *e;

	for (e = c->buckets[cache_hash(c, key)]; e != NULL; e = e->hnext)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

/* The negative TTL of RFC 2308 5: the SOA's TTL capped by its minimum. */
static unsigned
cache_negative_ttl(const struct dns_cache *c, const ldns_pkt *pkt)
{
	ldns_rr_list *au = ldns_pkt_authority(pkt);
	size_t i;

	for (i = 0; au != NULL && i < ldns_rr_list_rr_count(au); i++) {
		ldns_rr *rr = ldns_rr_list_rr(au, i);
		const ldns_rdf *min;
		uint32_t ttl;

		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA ||
		    ldns_rr_rd_count(rr) != 7)
			continue;
		min = ldns_rr_rdf(rr, 6);
		if (min == NULL || ldns_rdf_size(min) != 4)
			continue;
		ttl = ldns_rr_ttl(rr);
		if (ldns_rdf2native_int32(min) < ttl)
			ttl = ldns_rdf2native_int32(min);
		return ttl < DNS_NEG_TTL_CAP ? ttl : DNS_NEG_TTL_CAP;
	}
	return c->neg_ttl;
}

/* How long pkt may be kept; 0: not at all. */
static unsigned
cache_ttl(const struct dns_cache *c, const ldns_pkt *pkt)
{
	ldns_rr_list *an = ldns_pkt_answer(pkt);
	size_t i, n = an != NULL ? ldns_rr_list_rr_count(an) : 0;
	uint32_t ttl = UINT32_MAX;

	/* A truncated answer is incomplete; failures must be retried. */
	if (ldns_pkt_tc(pkt))
		return 0;
	switch (ldns_pkt_get_rcode(pkt)) {
	case LDNS_RCODE_NOERROR:
		if (n == 0) {
			ttl = cache_negative_ttl(c, pkt);
			break;
		}
		for (i = 0; i < n; i++)
			if (ldns_rr_ttl(ldns_rr_list_rr(an, i)) < ttl)
				ttl = ldns_rr_ttl(ldns_rr_list_rr(an, i));
		break;
	case LDNS_RCODE_NXDOMAIN:
		ttl = cache_negative_ttl(c, pkt);
		break;
	default:
		return 0;
	}
	return ttl < c->max_ttl ? ttl : c->max_ttl;
}

void
dns_cache_put(struct dns_cache *c, const char *qname, ldns_rr_type type,
    const ldns_pkt *pkt)
{
	struct cache_entry *e, *old;
	unsigned ttl;
	uint8_t *wire = NULL;
	size_t len = 0;

	if (c == NULL || (ttl = cache_ttl(c, pkt)) == 0)
		return;
	if (ldns_pkt2wire(&wire, pkt, &len) != LDNS_STATUS_OK) {
		free(wire);
		return;
	}
	e = xcalloc(1, sizeof(*e));
	e->key = cache_key(qname, type);
	e->wire = wire;
	e->len = len;
	pthread_mutex_lock(&c->lock);
	e->expires = cache_now(c) + (time_t)ttl;
	if ((old = cache_find(c, e->key)) != NULL) {
		cache_unlink(c, old);
		cache_entry_free(old);
	}
	/* Full: the least recently used entries make room. */
	while (c->count >= c->max && c->tail != NULL) {
		struct cache_entry *victim = c->tail;

		cache_unlink(c, victim);
		cache_entry_free(victim);
	}
	cache_link(c, e);
	pthread_mutex_unlock(&c->lock);
}

ldns_pkt *
dns_cache_get(struct dns_cache *c, const char *qname, ldns_rr_type type)
{
	struct cache_entry *e;
	ldns_pkt *pkt = NULL;
	char *key;

	if (c == NULL)
		return NULL;
	key = cache_key(qname, type);
	pthread_mutex_lock(&c->lock);
	if ((e = cache_find(c, key)) != NULL) {
		if (e->expires <= cache_now(c)) {
			cache_unlink(c, e);
			cache_entry_free(e);
		} else {
			if (ldns_wire2pkt(&pkt, e->wire, e->len) !=
			    LDNS_STATUS_OK)
				pkt = NULL;
			cache_unlink(c, e);	/* now recently used */
			cache_link(c, e);
		}
	}
	pthread_mutex_unlock(&c->lock);
	free(key);
	return pkt;
}

size_t
dns_cache_count(struct dns_cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->count;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/*
 * Queries. These block and run on thread-pool threads only.
 */

/* One ldns resolver per query and server: ldns resolvers are not
 * thread-safe, and each query gets fresh sockets and IDs. */
static ldns_resolver *
query_resolver(const struct dns_resolver *r, const struct dns_server *srv)
{
	ldns_resolver *lr = ldns_resolver_new();
	struct timeval tv;

	if (lr == NULL)
		return NULL;
	if (ldns_resolver_push_nameserver(lr, srv->addr) != LDNS_STATUS_OK) {
		ldns_resolver_deep_free(lr);
		return NULL;
	}
	ldns_resolver_set_port(lr, srv->port);
	tv.tv_sec = r->timeout_ms / 1000;
	tv.tv_usec = (r->timeout_ms % 1000) * 1000;
	ldns_resolver_set_timeout(lr, tv);
	ldns_resolver_set_retry(lr, 1);
	ldns_resolver_set_recursive(lr, true);
	ldns_resolver_set_fallback(lr, true);	/* TCP when truncated */
	ldns_resolver_set_defnames(lr, false);
	ldns_resolver_set_dnsrch(lr, false);
	ldns_resolver_set_dnssec(lr, false);
	ldns_resolver_set_random(lr, false);
	return lr;
}

/* Whether answer really answers query: QR set, same ID and question. */
static int
answer_matches(const ldns_pkt *query, const ldns_pkt *answer)
{
	ldns_rr_list *qq = ldns_pkt_question(query);
	ldns_rr_list *aq = ldns_pkt_question(answer);
	ldns_rr *q, *a;

	if (!ldns_pkt_qr(answer) ||
	    ldns_pkt_id(answer) != ldns_pkt_id(query) ||
	    qq == NULL || aq == NULL || ldns_rr_list_rr_count(aq) != 1)
		return 0;
	q = ldns_rr_list_rr(qq, 0);
	a = ldns_rr_list_rr(aq, 0);
	return ldns_rr_get_type(q) == ldns_rr_get_type(a) &&
	    ldns_rr_get_class(q) == ldns_rr_get_class(a) &&
	    ldns_dname_compare(ldns_rr_owner(q), ldns_rr_owner(a)) == 0;
}

/* Send one query to one server; 0 with *pkt_r, or a DNS_E_* code. */
static int
query_server(const struct dns_resolver *r, const struct dns_server *srv,
    const ldns_rdf *name, ldns_rr_type type, ldns_pkt **pkt_r)
{
	ldns_resolver *lr;
	ldns_pkt *query = NULL, *answer = NULL;
	ldns_status st;
	int rc;

	*pkt_r = NULL;
	if ((lr = query_resolver(r, srv)) == NULL)
		return -ENOMEM;
	st = ldns_resolver_prepare_query_pkt(&query, lr, name, type,
	    LDNS_RR_CLASS_IN, LDNS_RD);
	if (st != LDNS_STATUS_OK) {
		ldns_resolver_deep_free(lr);
		return DNS_E_BADNAME;
	}
	if (r->dnssec) {
		/* RFC 6840 5.7: AD asks for AD back; DO (RFC 3225) is what
		 * older validating resolvers need to say it. */
		ldns_pkt_set_ad(query, true);
		ldns_pkt_set_edns_do(query, true);
		if (ldns_pkt_edns_udp_size(query) == 0)
			ldns_pkt_set_edns_udp_size(query, 1232);
	}
	st = ldns_resolver_send_pkt(&answer, lr, query);
	if (st == LDNS_STATUS_OK && answer != NULL) {
		if (answer_matches(query, answer)) {
			*pkt_r = answer;
			answer = NULL;
			rc = 0;
		} else
			rc = DNS_E_BADANSWER;
	} else if (st == LDNS_STATUS_NETWORK_ERR ||
	    st == LDNS_STATUS_SOCKET_ERROR || st == LDNS_STATUS_ERR ||
	    st == LDNS_STATUS_RES_NO_NS)
		rc = DNS_E_TIMEOUT;
	else
		rc = DNS_E_BADANSWER;	/* the wire data did not parse */
	ldns_pkt_free(answer);
	ldns_pkt_free(query);
	ldns_resolver_deep_free(lr);
	return rc;
}

/*
 * Ask the servers in turn, each round retried cfg->retries times, and keep
 * the first usable answer: NOERROR or NXDOMAIN (which one server's SERVFAIL
 * or REFUSED must not hide). Answers are cached and served from the cache.
 */
static int
dns_query(struct dns_request *req, const char *qname, ldns_rr_type type,
    ldns_pkt **pkt_r, struct dns_result *res)
{
	struct dns_resolver *r = req->r;
	ldns_rdf *name;
	ldns_pkt *pkt;
	unsigned round;
	size_t i;
	int rc, worst = DNS_E_TIMEOUT;

	*pkt_r = NULL;
	if ((pkt = dns_cache_get(r->cache, qname, type)) != NULL) {
		*pkt_r = pkt;
		return 0;
	}
	if ((name = ldns_dname_new_frm_str(qname)) == NULL)
		return res_error(res, DNS_E_BADNAME, "%s: invalid name", qname);
	for (round = 0; round <= r->retries; round++) {
		for (i = 0; i < r->nservers; i++) {
			if (atomic_load(&req->cancelled)) {
				ldns_rdf_deep_free(name);
				return res_error(res, -ECANCELED, "cancelled");
			}
			rc = query_server(r, &r->servers[i], name, type, &pkt);
			if (rc == 0) {
				rc = pkt_rcode_error(pkt, qname, NULL);
				if (rc == 0 || rc == DNS_E_NXDOMAIN) {
					ldns_rdf_deep_free(name);
					dns_cache_put(r->cache, qname, type,
					    pkt);
					*pkt_r = pkt;
					return 0;
				}
				ldns_pkt_free(pkt);
			}
			/* A server that answered (badly) says more than
			 * one that said nothing. */
			if (rc != DNS_E_TIMEOUT)
				worst = rc;
		}
	}
	ldns_rdf_deep_free(name);
	switch (worst) {
	case DNS_E_TIMEOUT:
		return res_error(res, worst, "%s: no answer from any name "
		    "server", qname);
	case DNS_E_SERVFAIL:
		return res_error(res, worst, "%s: name server failure "
		    "(SERVFAIL)", qname);
	default:
		return res_error(res, worst, "%s: %s", qname,
		    dns_strerror(worst));
	}
}

/*
 * dns_query, and when the answer is a CNAME chain that ends outside it
 * (forwarders that do not chase), query the chain's end, a few times at
 * most. name (DNS_NAME_MAX bytes) gets the name *pkt_r answers; *secure_r
 * (when not NULL) whether every packet on the way had the AD bit.
 */
static int
dns_query_chased(struct dns_request *req, const char *qname,
    ldns_rr_type type, ldns_pkt **pkt_r, char *name, int *secure_r,
    struct dns_result *res)
{
	char target[DNS_NAME_MAX];
	ldns_pkt *pkt;
	size_t n;
	int rc, i, secure = req->r->dnssec;

	snprintf(name, DNS_NAME_MAX, "%s", qname);
	for (i = 0;; i++) {
		if ((rc = dns_query(req, name, type, &pkt, res)) != 0)
			return rc;
		secure = secure && ldns_pkt_ad(pkt);
		if (secure_r != NULL)
			*secure_r = secure;
		rc = pkt_answer_rrs(pkt, name, type, NULL, 0, &n, target,
		    NULL);
		if (rc != DNS_E_NODATA || target[0] == '\0') {
			*pkt_r = pkt;
			return 0;
		}
		ldns_pkt_free(pkt);
		if (i == DNS_MAX_CNAME_CHAIN / 2)
			return res_error(res, DNS_E_BADANSWER, "%s: CNAME "
			    "chain too long or looping", qname);
		memcpy(name, target, DNS_NAME_MAX);
	}
}

/*
 * Lookups, run by the thread pool. Each fills res and returns res->status.
 */

/* The addresses of name (absolute) of the families asked for. */
static int
op_addr(struct dns_request *req, const char *name, unsigned families,
    struct dns_result *res)
{
	static const ldns_rr_type types[] = { LDNS_RR_TYPE_A,
	    LDNS_RR_TYPE_AAAA };
	int rc, err[2] = { DNS_E_NODATA, DNS_E_NODATA };
	char msg[2][sizeof(res->errstr)] = { "", "" };
	char final[DNS_NAME_MAX];
	ldns_pkt *pkt;
	size_t i;
	int secure, all_secure = req->r->dnssec;

	if (families == 0)
		families = DNS_INET4 | DNS_INET6;
	for (i = 0; i < 2; i++) {
		if ((families & (i == 0 ? DNS_INET4 : DNS_INET6)) == 0)
			continue;
		/* NXDOMAIN holds for every type: no second query. */
		if (i == 1 && err[0] == DNS_E_NXDOMAIN)
			break;
		rc = dns_query_chased(req, name, types[i], &pkt, final,
		    &secure, res);
		if (rc == 0) {
			rc = dns_addrs_from_pkt(pkt, final, types[i], res);
			ldns_pkt_free(pkt);
			/* The records used, and any denial, must be valid. */
			all_secure = all_secure && secure;
		}
		err[i] = rc;
		snprintf(msg[i], sizeof(msg[i]), "%s", res->errstr);
		if (rc == -ECANCELED)
			return rc;
	}
	res->secure = all_secure;
	if (res->naddrs > 0)
		return res_ok(res);
	/* A temporary failure of either type wins: the other might exist. */
	i = dns_error_is_temporary(err[0]) ? 0 :
	    dns_error_is_temporary(err[1]) ? 1 :
	    err[0] == DNS_E_NXDOMAIN ? 0 : 1;
	if (err[i] == DNS_E_NODATA)
		return res_error(res, DNS_E_NODATA, "%s: no address record",
		    name);
	return res_error(res, err[i], "%s", msg[i]);
}

static int
op_mx(struct dns_request *req, const char *domain, struct dns_result *res)
{
	char final[DNS_NAME_MAX];
	ldns_pkt *pkt;
	int rc;

	if ((rc = dns_query_chased(req, domain, LDNS_RR_TYPE_MX, &pkt, final,
	    &res->secure, res)) != 0)
		return rc;
	rc = dns_mx_from_pkt(pkt, final, res);
	ldns_pkt_free(pkt);
	if (rc == 0)
		dns_mx_sort(res->mx, res->nmx, NULL, NULL);
	return rc;
}

/* RFC 5321 5.1: no MX records at all means the domain is its own MX. */
static int
op_implicit_mx(struct dns_request *req, const char *domain,
    struct dns_result *res)
{
	struct dns_result tmp;
	int rc;

	memset(&tmp, 0, sizeof(tmp));
	rc = op_addr(req, domain, req->r->families, &tmp);
	if (rc != 0) {
		res->status = rc;
		memcpy(res->errstr, tmp.errstr, sizeof(res->errstr));
		free(tmp.addrs);
		return rc;
	}
	res->mx = xcalloc(1, sizeof(*res->mx));
	res->mx[0].host = xstrndup(domain, strlen(domain) - 1);
	res->mx[0].addrs = tmp.addrs;
	res->mx[0].naddrs = tmp.naddrs;
	/* Both the MX denial (op_mx set res->secure) and the addresses. */
	res->secure = res->secure && tmp.secure;
	res->mx[0].secure = res->secure;
	res->nmx = 1;
	res->implicit_mx = 1;
	return res_ok(res);
}

static int
op_mx_hosts(struct dns_request *req, const char *domain,
    struct dns_result *res)
{
	struct dns_result tmp;
	char host[DNS_NAME_MAX + 1];
	size_t i, kept = 0;
	int rc, worst = 0;

	memset(&tmp, 0, sizeof(tmp));
	rc = op_mx(req, domain, res);
	if (rc == DNS_E_NODATA)
		return op_implicit_mx(req, domain, res);
	if (rc != 0)
		return rc;
	for (i = 0; i < res->nmx; i++) {
		struct dns_mx *mx = &res->mx[i];

		if (i >= DNS_MAX_MX_HOSTS) {
			free(mx->host);
			continue;
		}
		memset(&tmp, 0, sizeof(tmp));
		snprintf(host, sizeof(host), "%s.", mx->host);
		rc = op_addr(req, host, req->r->families, &tmp);
		if (rc == -ECANCELED) {
			free(tmp.addrs);
			for (; i < res->nmx; i++)
				free(res->mx[i].host);
			res->nmx = kept;
			return res_error(res, rc, "cancelled");
		}
		if (rc != 0) {
			/* Deliver to the hosts that do resolve; remember
			 * why this one did not, temporary errors first. */
			if (worst == 0 || (dns_error_is_temporary(rc) &&
			    !dns_error_is_temporary(worst))) {
				worst = rc;
				memcpy(res->errstr, tmp.errstr,
				    sizeof(res->errstr));
			}
			free(mx->host);
			free(tmp.addrs);
			continue;
		}
		mx->addrs = tmp.addrs;
		mx->naddrs = tmp.naddrs;
		mx->secure = tmp.secure;
		res->mx[kept++] = *mx;
	}
	res->nmx = kept;
	if (kept > 0)
		return res_ok(res);
	if (worst == DNS_E_NXDOMAIN || worst == DNS_E_NODATA) {
		memcpy(tmp.errstr, res->errstr, sizeof(tmp.errstr));
		return res_error(res, DNS_E_NODATA, "%s: no MX host has an "
		    "address (%s)", domain, tmp.errstr);
	}
	res->status = worst;
	return worst;
}

/* The TLSA records of req->name, "_port._tcp.host." already. */
static int
op_tlsa(struct dns_request *req, struct dns_result *res)
{
	char final[DNS_NAME_MAX];
	ldns_pkt *pkt;
	int rc;

	if ((rc = dns_query_chased(req, req->name, LDNS_RR_TYPE_TLSA, &pkt,
	    final, &res->secure, res)) != 0)
		return rc;
	rc = dns_tlsa_from_pkt(pkt, final, res);
	ldns_pkt_free(pkt);
	return rc == 0 ? res_ok(res) : rc;
}

/*
 * The PTR names of req->addr, each checked against its own A or AAAA
 * records: a PTR record is controlled by whoever owns the address block,
 * so a name is believed only when it resolves back (Postfix's "unknown").
 */
static int
op_ptr(struct dns_request *req, struct dns_result *res)
{
	ldns_rr *rrs[DNS_MAX_PTR_NAMES];
	char qname[DNS_NAME_MAX], final[DNS_NAME_MAX], name[DNS_NAME_MAX];
	char abs[DNS_NAME_MAX + 1];
	struct dns_result tmp;
	ldns_pkt *pkt;
	size_t n, i, j;
	int rc, worst = DNS_E_NOTCONFIRMED;

	if (dns_ptr_qname(&req->addr, qname, sizeof(qname)) != 0)
		return res_error(res, -EINVAL, "bad address family");
	if ((rc = dns_query_chased(req, qname, LDNS_RR_TYPE_PTR, &pkt, final,
	    NULL, res)) != 0)
		return rc;
	rc = pkt_answer_rrs(pkt, final, LDNS_RR_TYPE_PTR, rrs,
	    DNS_MAX_PTR_NAMES, &n, NULL, res);
	for (i = 0; rc == 0 && i < n; i++) {
		if (ldns_rr_rd_count(rrs[i]) != 1 ||
		    rdf_name(ldns_rr_rdf(rrs[i], 0), name, sizeof(name)) != 0)
			continue;
		if (res->ptr_name == NULL)
			res->ptr_name = xstrdup(name);
		snprintf(abs, sizeof(abs), "%s.", name);
		memset(&tmp, 0, sizeof(tmp));
		rc = op_addr(req, abs, req->addr.family == AF_INET ?
		    DNS_INET4 : DNS_INET6, &tmp);
		for (j = 0; rc == 0 && j < tmp.naddrs; j++)
			if (addr_equal(&tmp.addrs[j], &req->addr))
				break;
		free(tmp.addrs);
		if (rc == 0 && j < tmp.naddrs) {
			res->name = xstrdup(name);
			ldns_pkt_free(pkt);
			return res_ok(res);
		}
		if (rc == -ECANCELED)
			break;
		if (rc != 0 && dns_error_is_temporary(rc))
			worst = rc;
		rc = 0;
	}
	ldns_pkt_free(pkt);
	if (rc != 0)
		return rc;
	if (res->ptr_name == NULL)
		return res_error(res, DNS_E_BADANSWER, "%s: malformed PTR "
		    "record", qname);
	if (worst != DNS_E_NOTCONFIRMED)
		return res_error(res, worst, "%s: forward lookup failed "
		    "temporarily", res->ptr_name);
	dns_addr_format(&req->addr, abs, sizeof(abs));
	return res_error(res, DNS_E_NOTCONFIRMED, "hostname %s does not "
	    "resolve to address %s", res->ptr_name, abs);
}

/*
 * The libuv side: requests, cancellation and the resolver's lifetime.
 */

static void
request_work(uv_work_t *work)
{
	struct dns_request *req = work->data;
	struct dns_result *res = req->res;

	switch (req->op) {
	case DNS_OP_PTR:
		op_ptr(req, res);
		break;
	case DNS_OP_ADDR:
		op_addr(req, req->name, req->r->families, res);
		break;
	case DNS_OP_MX:
		op_mx(req, req->name, res);
		break;
	case DNS_OP_MX_HOSTS:
		op_mx_hosts(req, req->name, res);
		break;
	case DNS_OP_TLSA:
		op_tlsa(req, res);
		break;
	}
}

static void
resolver_unref(struct dns_resolver *r)
{
	size_t i;

	if (--r->refs > 0)
		return;
	for (i = 0; i < r->nservers; i++)
		ldns_rdf_deep_free(r->servers[i].addr);
	dns_cache_free(&r->cache);
	free(r);
}

static void
request_done(uv_work_t *work, int status)
{
	struct dns_request *req = work->data;

	if (status == 0 && !atomic_load(&req->cancelled))
		req->cb(req->res, req->arg);	/* the callee owns res */
	else
		dns_result_free(&req->res);
	resolver_unref(req->r);
	free(req);
}

static int
request_start(struct dns_resolver *r, enum dns_op op, const char *name,
    const struct dns_addr *addr, dns_callback cb, void *arg,
    struct dns_request **req_r)
{
	struct dns_request *req;
	int rc;

	if (r == NULL || cb == NULL)
		return -EINVAL;
	req = xcalloc(1, sizeof(*req));
	if (name != NULL &&
	    name_normalize(name, req->name, sizeof(req->name)) != 0) {
		free(req);
		return DNS_E_BADNAME;
	}
	if (addr != NULL) {
		if (addr->family != AF_INET && addr->family != AF_INET6) {
			free(req);
			return -EINVAL;
		}
		req->addr = *addr;
		/* A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d;
		 * their PTR records live under in-addr.arpa. */
		if (addr->family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(
		    (const struct in6_addr *)(const void *)addr->addr)) {
			memset(&req->addr, 0, sizeof(req->addr));
			req->addr.family = AF_INET;
			memcpy(req->addr.addr, addr->addr + 12, 4);
		}
	}
	req->r = r;
	req->op = op;
	req->cb = cb;
	req->arg = arg;
	atomic_init(&req->cancelled, 0);
	req->res = xcalloc(1, sizeof(*req->res));
	req->work.data = req;
	if ((rc = uv_queue_work(r->loop, &req->work, request_work,
	    request_done)) != 0) {
		dns_result_free(&req->res);
		free(req);
		return rc;
	}
	r->refs++;
	if (req_r != NULL)
		*req_r = req;
	return 0;
}

int
dns_lookup_ptr(struct dns_resolver *r, const struct dns_addr *addr,
    dns_callback cb, void *arg, struct dns_request **req_r)
{
	return request_start(r, DNS_OP_PTR, NULL, addr, cb, arg, req_r);
}

int
dns_lookup_addr(struct dns_resolver *r, const char *host, dns_callback cb,
    void *arg, struct dns_request **req_r)
{
	return request_start(r, DNS_OP_ADDR, host, NULL, cb, arg, req_r);
}

int
dns_lookup_mx(struct dns_resolver *r, const char *domain, dns_callback cb,
    void *arg, struct dns_request **req_r)
{
	return request_start(r, DNS_OP_MX, domain, NULL, cb, arg, req_r);
}

int
dns_resolve_mx_hosts(struct dns_resolver *r, const char *domain,
    dns_callback cb, void *arg, struct dns_request **req_r)
{
	return request_start(r, DNS_OP_MX_HOSTS, domain, NULL, cb, arg,
	    req_r);
}

int
dns_lookup_tlsa(struct dns_resolver *r, const char *host, int port,
    dns_callback cb, void *arg, struct dns_request **req_r)
{
	char name[DNS_NAME_MAX + 16];

	if (port < 1 || port > 65535 ||
	    (size_t)snprintf(name, sizeof(name), "_%d._tcp.%s", port, host) >=
	    sizeof(name))
		return DNS_E_BADNAME;
	return request_start(r, DNS_OP_TLSA, name, NULL, cb, arg, req_r);
}

void
dns_cancel(struct dns_request **reqp)
{
	struct dns_request *req = *reqp;

	if (req == NULL)
		return;
	*reqp = NULL;
	/* The worker checks the flag between queries; request_done, which
	 * runs on the loop either way, frees the request without calling
	 * back. uv_cancel only succeeds while the work has not started. */
	atomic_store(&req->cancelled, 1);
	uv_cancel((uv_req_t *)&req->work);
}

/*
 * Parse one "addr", "addr:port", "[addr]" or "[addr]:port" into srv.
 */
static int
server_parse(const char *tok, struct dns_server *srv)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *end;
	struct dns_addr a;
	size_t len;
	long p;

	if (tok[0] == '[') {
		if ((end = strchr(tok, ']')) == NULL)
			return -EINVAL;
		len = (size_t)(end - tok - 1);
		tok++;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -EINVAL;
	} else if ((end = strchr(tok, ':')) != NULL &&
	    strchr(end + 1, ':') == NULL) {
		len = (size_t)(end - tok);	/* IPv4 with a port */
		port = end + 1;
	} else
		len = strlen(tok);		/* bare IPv4 or IPv6 */
	if (len == 0 || len >= sizeof(host))
		return -EINVAL;
	memcpy(host, tok, len);
	host[len] = '\0';
	if (dns_addr_parse(host, &a) != 0)
		return -EINVAL;
	srv->port = 53;
	if (port != NULL) {
		char *ep;

		p = strtol(port, &ep, 10);
		if (*port == '\0' || *ep != '\0' || p < 1 || p > 65535)
			return -EINVAL;
		srv->port = (uint16_t)p;
	}
	srv->addr = ldns_rdf_new_frm_data(a.family == AF_INET ?
	    LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA,
	    a.family == AF_INET ? 4 : 16, a.addr);
	return srv->addr != NULL ? 0 : -ENOMEM;
}

static int
servers_parse(struct dns_resolver *r, const char *list,
    const char **errstr_r)
{
	char *copy = xstrdup(list), *tok, *save = NULL;
	int rc = 0;

	for (tok = strtok_r(copy, " \t,", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t,", &save)) {
		if (r->nservers == DNS_MAX_SERVERS) {
			*errstr_r = "too many name servers";
			rc = -EINVAL;
			break;
		}
		if (server_parse(tok, &r->servers[r->nservers]) != 0) {
			*errstr_r = "name server is not addr[:port]";
			rc = -EINVAL;
			break;
		}
		r->nservers++;
	}
	free(copy);
	return rc;
}

static int
servers_from_resolv_conf(struct dns_resolver *r, const char *path,
    const char **errstr_r)
{
	ldns_resolver *lr = NULL;
	ldns_rdf **ns;
	size_t i, n;

	if (ldns_resolver_new_frm_file(&lr, path) != LDNS_STATUS_OK) {
		*errstr_r = "cannot read the resolver configuration";
		return -ENOENT;
	}
	ns = ldns_resolver_nameservers(lr);
	n = ldns_resolver_nameserver_count(lr);
	for (i = 0; i < n && r->nservers < DNS_MAX_SERVERS; i++) {
		r->servers[r->nservers].addr = ldns_rdf_clone(ns[i]);
		r->servers[r->nservers].port = ldns_resolver_port(lr);
		r->nservers++;
	}
	ldns_resolver_deep_free(lr);
	if (r->nservers == 0) {
		*errstr_r = "no name server in the resolver configuration";
		return -ENOENT;
	}
	return 0;
}

int
dns_resolver_new(uv_loop_t *loop, const struct dns_config *cfg,
    struct dns_resolver **res_r, const char **errstr_r)
{
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	int rc;

	*res_r = NULL;
	*errstr_r = NULL;
	r->loop = loop;
	r->refs = 1;
	r->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms :
	    DNS_DEFAULT_TIMEOUT_MS;
	r->retries = cfg->retries;
	r->dnssec = cfg->dnssec != 0;
	r->families = cfg->families & (DNS_INET4 | DNS_INET6);
	if (r->families == 0)
		r->families = DNS_INET4 | DNS_INET6;
	if (cfg->servers != NULL && cfg->servers[strspn(cfg->servers,
	    " \t,")] != '\0')
		rc = servers_parse(r, cfg->servers, errstr_r);
	else
		rc = servers_from_resolv_conf(r, cfg->resolv_conf, errstr_r);
	if (rc != 0) {
		resolver_unref(r);
		return rc;
	}
	if (cfg->cache_size > 0)
		r->cache = dns_cache_new(cfg->cache_size, cfg->negative_ttl,
		    cfg->max_ttl, cfg->now, cfg->now_arg);
	*res_r = r;
	return 0;
}

void
dns_resolver_free(struct dns_resolver **resp)
{
	if (*resp == NULL)
		return;
	resolver_unref(*resp);
	*resp = NULL;
}
