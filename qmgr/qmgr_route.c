/*
 * qmgr_route.c - alias expansion (virtual_alias_maps, alias_maps; nested,
 * loop-limited as RFC 5321 3.9 asks) and routing of each recipient to a
 * transport and next hop (transport_maps, our domains, relayhost).
 * A failed append leaves the original recipient pending, never lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "log.h"
#include "qmgr.h"
#include "queue_file.h"
#include "resolve.h"
#include "xalloc.h"

/* Nested alias expansion stops here (RFC 5321 3.9 loops). */
#define QMGR_ROUTE_ALIAS_DEPTH 10
/* Most recipients one message may grow to through aliases. */
#define QMGR_ROUTE_ALIAS_MAX 5000

/*
 * The expansion of addr through the alias tables, as a malloc'd list
 * value, or NULL when it has none.
 */
static char *
qmgr_route_alias(struct qmgr *q, const char *addr)
{
	const char *at = strrchr(addr, '@');
	char *v = NULL, key[1100];

	if (resolve_lookup(q->resolve, "virtual_alias_maps", addr, &v) == 0)
		return v;
	if (at == NULL)
		return NULL;
	if (resolve_lookup(q->resolve, "virtual_alias_maps", at, &v) == 0)
		return v;
	if (resolve_domain(q->resolve, at + 1) != RESOLVE_LOCAL)
		return NULL;
	if (resolve_lookup(q->resolve, "alias_maps", addr, &v) == 0)
		return v;
	snprintf(key, sizeof(key), "%.*s", (int)(at - addr), addr);
	if (resolve_lookup(q->resolve, "alias_maps", key, &v) == 0)
		return v;
	return NULL;
}

/* Whether addr is already a recipient of env (any status). */
static int
qmgr_route_has(const struct queue_env *env, const char *addr)
{
	for (size_t j = 0; j < env->nrcpt; j++)
		if (strcasecmp(env->rcpts[j].address, addr) == 0)
			return 1;
	return 0;
}

/* Whether recipient i was expanded before (an F copy precedes it). */
static int
qmgr_route_expanded(const struct queue_env *env, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (env->rcpts[j].status == QUEUE_RCPT_FORWARDED &&
		    strcasecmp(env->rcpts[j].address,
		    env->rcpts[i].address) == 0)
			return 1;
	return 0;
}

/*
 * Append the targets in list v of recipient i (at depth[i]); a target
 * without '@' is in i's domain. Returns how many were appended.
 */
static int
qmgr_route_append(struct qmgr_msg *m, size_t i, char *v,
    unsigned char *depth, size_t *added)
{
	const struct queue_env *env = queue_file_env(m->qf);
	char *addr = xstrdup(env->rcpts[i].address);
	char *orcpt = NULL, *tok, *save = NULL, *p = v;
	const char *at = strrchr(addr, '@'), *errstr = NULL;
	const char *dom = at != NULL ? at + 1 : m->q->myhostname;
	unsigned notify = env->rcpts[i].notify;
	int nadd = 0;

	/* Targets keep the address the sender used, for DSNs (RFC 3461 4.2). */
	if (env->rcpts[i].orcpt != NULL)
		orcpt = xstrdup(env->rcpts[i].orcpt);
	else
		orcpt = xasprintf("rfc822;%s", addr);
	while ((tok = strtok_r(p, ", \t\r\n", &save)) != NULL) {
		char target[1100];
		int self;

		p = NULL;
		if (strchr(tok, '@') != NULL)
			snprintf(target, sizeof(target), "%s", tok);
		else
			snprintf(target, sizeof(target), "%s@%s", tok, dom);
		self = strcasecmp(target, addr) == 0;
		if (!self && qmgr_route_has(queue_file_env(m->qf), target))
			continue;
		if (*added >= QMGR_ROUTE_ALIAS_MAX)
			break;
		if (queue_file_add_rcpt(m->qf, target, orcpt, notify,
		    &errstr) < 0) {
			log_error("%s: cannot add alias target %s: %s", m->id,
			    target, errstr);
			break;
		}
		env = queue_file_env(m->qf);
		depth[env->nrcpt - 1] = self ? QMGR_ROUTE_ALIAS_DEPTH :
		    depth[i] + 1;
		(*added)++;
		nadd++;
	}
	if (nadd > 0) {
		if (queue_file_mark(m->qf, i, QUEUE_RCPT_FORWARDED,
		    &errstr) < 0)
			log_error("%s: cannot mark forwarded: %s", m->id,
			    errstr);
		else
			log_info("%s: to=<%s>, status=expanded (alias, %d "
			    "targets)", m->id, addr, nadd);
	}
	free(orcpt);
	free(addr);
	return nadd;
}

/*
 * Targets are appended to the file, then the original is marked F, so a
 * crash loses nobody. An address already expanded once in this message is
 * final (self-reference, loops).
 */
void
qmgr_route_expand(struct qmgr_msg *m)
{
	size_t nrcpt = queue_file_env(m->qf)->nrcpt, added = 0;
	unsigned char *depth = xcalloc(nrcpt + QMGR_ROUTE_ALIAS_MAX + 1, 1);

	for (size_t i = 0; i < queue_file_env(m->qf)->nrcpt; i++) {
		const struct queue_env *env = queue_file_env(m->qf);
		char *v;

		if (env->rcpts[i].status != QUEUE_RCPT_PENDING ||
		    qmgr_route_expanded(env, i))
			continue;
		if ((v = qmgr_route_alias(m->q, env->rcpts[i].address)) ==
		    NULL)
			continue;
		if (depth[i] >= QMGR_ROUTE_ALIAS_DEPTH)
			qmgr_msg_outcome(m, i, "none", "5.4.6",
			    "alias expansion too deep (mail loop?)");
		else
			qmgr_route_append(m, i, v, depth, &added);
		free(v);
	}
	free(depth);
}

void
qmgr_route_decide(const char *addr, const char *table, int ours,
    const char *relayhost, char **transport_r, char **nexthop_r)
{
	const char *at = strrchr(addr, '@');
	const char *domain = at != NULL ? at + 1 : "";

	if (table != NULL) {
		/* "transport:nexthop"; the next hop may hold ':' ([h]:port). */
		size_t end = strcspn(table, " \t\r\n");
		size_t tlen = strcspn(table, ": \t\r\n");
		const char *hop = table + tlen;

		if (tlen > 0) {
			*transport_r = xstrndup(table, tlen);
			if (*hop == ':' && (size_t)(hop + 1 - table) < end)
				*nexthop_r = xstrndup(hop + 1,
				    end - (hop + 1 - table));
			else
				*nexthop_r = xstrdup(strcmp(*transport_r,
				    "local") == 0 ? "local" : domain);
			return;
		}
	}
	if (ours) {
		/* Our domains never go to the relayhost. */
		*transport_r = xstrdup("local");
		*nexthop_r = xstrdup("local");
	} else {
		*transport_r = xstrdup("smtp");
		*nexthop_r = xstrdup(*relayhost != '\0' ? relayhost : domain);
	}
}

void
qmgr_route(struct qmgr *q, const char *addr, char **transport_r,
    char **nexthop_r)
{
	const char *at = strrchr(addr, '@');
	const char *domain = at != NULL ? at + 1 : "";
	char *v = NULL;
	enum resolve_class cls;

	if (resolve_lookup(q->resolve, "transport_maps", addr, &v) < 0 &&
	    (*domain == '\0' || resolve_lookup(q->resolve, "transport_maps",
	    domain, &v) < 0))
		v = NULL;
	cls = resolve_domain(q->resolve, domain);
	qmgr_route_decide(addr, v, cls == RESOLVE_LOCAL ||
	    cls == RESOLVE_VIRTUAL, conf_str(q->conf, "relayhost"),
	    transport_r, nexthop_r);
	free(v);
}
