/*
 * dns.h - asynchronous DNS lookups through ldns: PTR with forward
 * confirmation for smtpd, MX routing (RFC 5321 5.1, RFC 7505 null MX) for
 * smtp-out, A/AAAA (RFC 1035, RFC 3596), TLSA for DANE (RFC 6698, RFC
 * 7672) with the resolver's DNSSEC verdict (the AD bit, RFC 6840 5.7).
 * Queries block, so they run on the libuv thread pool; completion
 * callbacks run on the loop. Answers are cached for their TTL. Every
 * function returns 0 or a negative errno, or one of the DNS_E_* codes
 * below, which live in the same negative space.
 */
#ifndef POCHTA_DNS_H
#define POCHTA_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <ldns/ldns.h>
#include <uv.h>

/*
 * Lookup outcomes. Each is negative and outside the errno range, so it can
 * travel with -errno values. dns_error_is_temporary() tells the caller
 * whether to defer (4xx) or bounce (5xx).
 */
#define DNS_E_BASE		(-20000)
#define DNS_E_NXDOMAIN		(DNS_E_BASE - 1) /* permanent */
#define DNS_E_NODATA		(DNS_E_BASE - 2) /* permanent: no such type */
#define DNS_E_NULLMX		(DNS_E_BASE - 3) /* permanent: RFC 7505 */
#define DNS_E_SERVFAIL		(DNS_E_BASE - 4) /* temporary */
#define DNS_E_TIMEOUT		(DNS_E_BASE - 5) /* temporary: no answer */
#define DNS_E_BADANSWER		(DNS_E_BASE - 6) /* temporary: malformed */
#define DNS_E_BADNAME		(DNS_E_BASE - 7) /* permanent: bad query */
#define DNS_E_NOTCONFIRMED	(DNS_E_BASE - 8) /* permanent: PTR forged */
#define DNS_E_REFUSED		(DNS_E_BASE - 9) /* temporary */

/* Hard limits on what an answer may make us do or keep. */
#define DNS_MAX_MX_HOSTS	16	/* MX hosts resolved per domain */
#define DNS_MAX_ADDRS		16	/* addresses kept per host */
#define DNS_MAX_PTR_NAMES	4	/* PTR names forward-checked */
#define DNS_MAX_CNAME_CHAIN	8	/* CNAMEs followed in one answer */
#define DNS_MAX_SERVERS		8	/* entries of dns_config.servers */
#define DNS_MAX_TLSA		16	/* TLSA records kept per name */
#define DNS_MAX_TLSA_DATA	1024	/* bytes of one TLSA record's data */

/* Address families to look up (dns_config.families); 0 means both. */
#define DNS_INET4		0x1
#define DNS_INET6		0x2

/* Filled by the caller (from the dns_* parameters of pochta.conf). */
struct dns_config {
	/*
	 * Name servers as "addr[:port]" (IPv6 as "[addr]:port" or a bare
	 * address), separated by spaces or commas; NULL or empty: the ones
	 * in /etc/resolv.conf (resolv_conf, when set, names another file).
	 */
	const char *servers;
	const char *resolv_conf;
	unsigned timeout_ms;	/* per attempt and server; 0: 5000 */
	unsigned retries;	/* extra rounds over the servers; 0: none */
	unsigned families;	/* DNS_INET4 | DNS_INET6; 0: both */
	size_t cache_size;	/* cached answers; 0: caching off */
	/*
	 * Ask for DNSSEC (the DO and AD bits, RFC 6840 5.7) and report which
	 * answers the resolver validated (dns_result.secure). The resolver
	 * is trusted to validate, and the path to it to be safe.
	 */
	int dnssec;
	unsigned negative_ttl;	/* seconds, when no SOA says; 0: 60 */
	unsigned max_ttl;	/* cap on any cached TTL; 0: 86400 */
	/* Clock for the cache (tests); NULL: time(NULL). */
	time_t (*now)(void *now_arg);
	void *now_arg;
};

/* An IPv4 or IPv6 address in network byte order. */
struct dns_addr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];	/* 4 or 16 bytes used */
};

/* One mail exchanger. */
struct dns_mx {
	char *host;		/* no trailing dot */
	unsigned pref;
	size_t naddrs;
	struct dns_addr *addrs;	/* empty from dns_lookup_mx() */
	int secure;		/* its address records were validated */
};

/* One TLSA record (RFC 6698 2.1), not yet judged usable or not. */
struct dns_tlsa {
	uint8_t usage;
	uint8_t selector;
	uint8_t mtype;
	size_t len;
	uint8_t *data;		/* len bytes, at most DNS_MAX_TLSA_DATA */
};

/* The outcome of one lookup; owned by the callback, see dns_result_free. */
struct dns_result {
	int status;		/* 0 or a DNS_E_* / negative errno */
	char errstr[256];	/* human text when status != 0 */
	/* dns_lookup_ptr: the forward-confirmed name, or NULL; ptr_name is
	 * the first PTR name even when it did not confirm (for logs). */
	char *name;
	char *ptr_name;
	/* dns_lookup_addr */
	size_t naddrs;
	struct dns_addr *addrs;
	/* dns_lookup_mx, dns_resolve_mx_hosts: in delivery order */
	size_t nmx;
	struct dns_mx *mx;
	int implicit_mx;	/* no MX: the domain's own addresses */
	/* dns_lookup_tlsa: the records, at most DNS_MAX_TLSA */
	size_t ntlsa;
	struct dns_tlsa *tlsa;
	/*
	 * With dns_config.dnssec: every answer the result (or, for errors,
	 * the denial) rests on had the AD bit (RFC 4035 3.2.3). For
	 * dns_resolve_mx_hosts it is the MX RRset's (the implicit MX's
	 * addresses'); each dns_mx says the same of its addresses.
	 */
	int secure;
};

struct dns_resolver;
struct dns_request;
struct dns_cache;

/* Called on the loop with the result, which the callee now owns. */
typedef void (*dns_callback)(struct dns_result *res, void *arg);

/*
 * Create a resolver whose lookups complete on loop. The config strings are
 * copied. Errors: -EINVAL (bad server list, *errstr_r says why), -ENOENT
 * (no name server in resolv.conf).
 */
int dns_resolver_new(uv_loop_t *loop, const struct dns_config *cfg,
    struct dns_resolver **res_r, const char **errstr_r);

/*
 * Drop the caller's reference and clear *resp. Requests still in flight
 * keep the shared state alive and complete normally (cancel them first if
 * their callbacks must not run).
 */
void dns_resolver_free(struct dns_resolver **resp);

/*
 * Start a lookup. On success *req_r (when not NULL) is a handle valid until
 * cb runs or dns_cancel() is called; cb is always called later on the
 * loop, never from inside these functions. Errors (cb not called):
 * DNS_E_BADNAME for a syntactically bad name.
 *
 * dns_lookup_ptr: the PTR names of addr, forward-confirmed as Postfix does:
 *   res->name is set only when that name's A/AAAA records contain addr;
 *   otherwise status is DNS_E_NOTCONFIRMED or a lookup error.
 * dns_lookup_addr: A and AAAA records of host (CNAMEs followed).
 * dns_lookup_mx: MX records sorted by preference, random among equals,
 *   without addresses; DNS_E_NULLMX for a single "0 ." record.
 * dns_resolve_mx_hosts: RFC 5321 5.1 - the MX hosts with their addresses,
 *   or the domain itself (implicit_mx) when it has no MX but has addresses.
 *   Hosts that do not resolve are left out; when none is left the status is
 *   the most telling error (temporary ones win).
 */
int dns_lookup_ptr(struct dns_resolver *r, const struct dns_addr *addr,
    dns_callback cb, void *arg, struct dns_request **req_r);
int dns_lookup_addr(struct dns_resolver *r, const char *host,
    dns_callback cb, void *arg, struct dns_request **req_r);
int dns_lookup_mx(struct dns_resolver *r, const char *domain,
    dns_callback cb, void *arg, struct dns_request **req_r);
int dns_resolve_mx_hosts(struct dns_resolver *r, const char *domain,
    dns_callback cb, void *arg, struct dns_request **req_r);

/*
 * dns_lookup_tlsa: the TLSA records of _port._tcp.host (RFC 6698 3, RFC
 *   7672 2.2.3), CNAMEs followed. status 0 with res->tlsa (records whose
 *   rdata is malformed are left out), DNS_E_NODATA or DNS_E_NXDOMAIN when
 *   there are none (res->secure says whether the denial was validated),
 *   or a temporary error. DNS_E_BADNAME also for a port outside 1-65535.
 */
int dns_lookup_tlsa(struct dns_resolver *r, const char *host, int port,
    dns_callback cb, void *arg, struct dns_request **req_r);

/*
 * Cancel a request and clear *reqp: its callback will not be called, so a
 * session may free itself right after. A NULL *reqp is ignored. The lookup
 * may still finish in the thread pool; its result is then discarded.
 */
void dns_cancel(struct dns_request **reqp);

/* Free a result and clear *resp. */
void dns_result_free(struct dns_result **resp);

/* A static description of a DNS_E_* code or negative errno. */
const char *dns_strerror(int err);

/* Whether err calls for a retry later (SERVFAIL, timeout, ...). */
int dns_error_is_temporary(int err);

/*
 * Pure helpers, exported for the daemons and for tests.
 */

/* Parse "192.0.2.1" or "2001:db8::1" into *a. 0 or -EINVAL. */
int dns_addr_parse(const char *text, struct dns_addr *a);

/* Text form of a into buf (at least 46 bytes). */
void dns_addr_format(const struct dns_addr *a, char *buf, size_t size);

/*
 * The reverse name of a (RFC 1035 3.5, RFC 3596 2.5), with a trailing dot:
 * "1.2.0.192.in-addr.arpa." or the 34 labels under ip6.arpa. Needs 74 bytes.
 * 0 or -EINVAL (unknown family), -ENOBUFS (size too small).
 */
int dns_ptr_qname(const struct dns_addr *a, char *buf, size_t size);

/*
 * Sort mx by preference; hosts of equal preference are shuffled with
 * rnd(rnd_arg) (NULL: arc4random), as RFC 5321 5.1 asks.
 */
void dns_mx_sort(struct dns_mx *mx, size_t n,
    uint32_t (*rnd)(void *rnd_arg), void *rnd_arg);

/*
 * Read the MX records for qname (absolute, "example.test.") out of pkt into
 * res->mx, unsorted, following CNAMEs inside the answer. Returns 0,
 * DNS_E_NXDOMAIN, DNS_E_NODATA, DNS_E_SERVFAIL, DNS_E_REFUSED,
 * DNS_E_NULLMX (RFC 7505: one MX of preference 0 and host "."), or
 * DNS_E_BADANSWER (CNAME loop, MX naming an IP address literal, ...), with
 * res->errstr set.
 */
int dns_mx_from_pkt(const ldns_pkt *pkt, const char *qname,
    struct dns_result *res);

/*
 * Append the addresses of type (LDNS_RR_TYPE_A or _AAAA) for qname in pkt
 * to res->addrs, at most DNS_MAX_ADDRS in all. Errors as dns_mx_from_pkt.
 */
int dns_addrs_from_pkt(const ldns_pkt *pkt, const char *qname,
    ldns_rr_type type, struct dns_result *res);

/*
 * Append the TLSA records for qname in pkt to res->tlsa, at most
 * DNS_MAX_TLSA; records with malformed or oversized rdata are skipped.
 * Errors as dns_mx_from_pkt (DNS_E_NODATA when none is left).
 */
int dns_tlsa_from_pkt(const ldns_pkt *pkt, const char *qname,
    struct dns_result *res);

/*
 * The answer cache: DNS packets keyed by (name, type), kept for the TTL of
 * their answer, or for the SOA minimum (RFC 2308 5) for NXDOMAIN and no
 * data; SERVFAIL is never cached. Bounded: the least recently used entry
 * goes when it is full. Safe to use from several threads.
 */
struct dns_cache *dns_cache_new(size_t max_entries, unsigned negative_ttl,
    unsigned max_ttl, time_t (*now)(void *), void *now_arg);
void dns_cache_free(struct dns_cache **cachep);

/* Store a copy of pkt under (qname, type); uncacheable packets are ignored. */
void dns_cache_put(struct dns_cache *c, const char *qname, ldns_rr_type type,
    const ldns_pkt *pkt);

/* A fresh copy of the cached packet (caller frees), or NULL. */
ldns_pkt *dns_cache_get(struct dns_cache *c, const char *qname,
    ldns_rr_type type);

/* Entries held, for tests and statistics. */
size_t dns_cache_count(struct dns_cache *c);

#endif
