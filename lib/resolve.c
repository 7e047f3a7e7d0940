/*
 * resolve.c - our domains and known recipients (resolve.h). Lookups are
 * LMDB reads from a memory map, cheap enough for the event loop.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "log.h"
#include "map.h"
#include "resolve.h"
#include "xalloc.h"

/* The tables of one list parameter, searched in order. */
struct maplist {
	char *param;
	struct map_list *maps;
};

struct resolve {
	const struct conf *conf;
	char **local_domains;
	char **virtual_domains;
	char *delimiters;
	struct maplist *lists;	/* [0..2]: user, alias, virtual alias */
	size_t n_lists;
};

static int
maplist_open(const struct conf *conf, const char *param,
    struct maplist *ml, char **errstr_r)
{
	size_t n;
	char **specs = conf_list(conf, param, &n);
	char *err = NULL;

	ml->param = xstrdup(param);
	ml->maps = NULL;
	int r = map_list_open(specs, n, &ml->maps, &err);
	conf_list_free(&specs);
	if (r < 0) {
		*errstr_r = xasprintf("%s: %s", param, err);
		free(err);
	}
	return r;
}

static void
maplist_close(struct maplist *ml)
{
	map_list_free(&ml->maps);
	free(ml->param);
}

static struct maplist *
maplist_get(struct resolve *rs, const char *param, int *err_r)
{
	for (size_t i = 0; i < rs->n_lists; i++)
		if (strcmp(rs->lists[i].param, param) == 0)
			return &rs->lists[i];

	struct maplist ml;
	char *err = NULL;
	int r = maplist_open(rs->conf, param, &ml, &err);
	if (r < 0) {
		log_warn("cannot open tables: %s", err);
		free(err);
		maplist_close(&ml);
		*err_r = -EIO;
		return NULL;
	}
	rs->lists = xreallocarray(rs->lists, rs->n_lists + 1,
	    sizeof(*rs->lists));
	rs->lists[rs->n_lists] = ml;
	return &rs->lists[rs->n_lists++];
}

int
resolve_open(const struct conf *conf, struct resolve **resolve_r,
    char **errstr_r)
{
	static const char *const tables[] = {"user_maps", "alias_maps",
	    "virtual_alias_maps"};
	struct resolve *rs = xcalloc(1, sizeof(*rs));

	rs->conf = conf;
	rs->local_domains = conf_list(conf, "mydestination", NULL);
	rs->virtual_domains = conf_list(conf, "virtual_mailbox_domains",
	    NULL);
	rs->delimiters = xstrdup(conf_str(conf, "recipient_delimiter"));
	rs->lists = xcalloc(3, sizeof(*rs->lists));
	for (size_t i = 0; i < 3; i++) {
		int r = maplist_open(conf, tables[i], &rs->lists[i], errstr_r);
		rs->n_lists++;
		if (r < 0) {
			resolve_free(&rs);
			return r;
		}
	}
	*resolve_r = rs;
	return 0;
}

void
resolve_free(struct resolve **resolve)
{
	struct resolve *rs = *resolve;

	if (rs == NULL)
		return;
	conf_list_free(&rs->local_domains);
	conf_list_free(&rs->virtual_domains);
	for (size_t i = 0; i < rs->n_lists; i++)
		maplist_close(&rs->lists[i]);
	free(rs->lists);
	free(rs->delimiters);
	free(rs);
	*resolve = NULL;
}

static int
in_list(char **list, const char *domain)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcasecmp(*list, domain) == 0)
			return 1;
	return 0;
}

enum resolve_class
resolve_domain(const struct resolve *rs, const char *domain)
{
	if (domain[0] == '[' || domain[0] == '\0')
		return RESOLVE_REMOTE;
	if (in_list(rs->local_domains, domain))
		return RESOLVE_LOCAL;
	if (in_list(rs->virtual_domains, domain))
		return RESOLVE_VIRTUAL;
	return RESOLVE_REMOTE;
}

/* 1 found, 0 not, -EIO. */
static int
found(struct maplist *ml, const char *key)
{
	char *value = NULL;
	int r = map_list_lookup(ml->maps, key, &value);

	free(value);
	if (r == 0)
		return 1;
	return r == -ENOENT ? 0 : -EIO;
}

static int
known_exact(struct resolve *rs, const char *local, const char *domain)
{
	char *addr = xasprintf("%s@%s", local, domain);
	int r;

	/* lists[0..2]: user_maps, alias_maps, virtual_alias_maps */
	for (size_t i = 0; i < 3; i++) {
		if ((r = found(&rs->lists[i], addr)) != 0)
			goto out;
	}
	if (resolve_domain(rs, domain) == RESOLVE_LOCAL &&
	    (r = found(&rs->lists[1], local)) != 0)
		goto out;
	r = 0;
out:
	free(addr);
	return r;
}

int
resolve_rcpt(struct resolve *rs, const char *local, const char *domain)
{
	int r;

	if (strcasecmp(local, "postmaster") == 0)
		return 1;
	if ((r = known_exact(rs, local, domain)) != 0)
		return r;
	size_t base = rs->delimiters[0] != '\0' ?
	    strcspn(local, rs->delimiters) : strlen(local);
	if (base > 0 && local[base] != '\0') {
		char *user = xstrndup(local, base);
		r = known_exact(rs, user, domain);
		free(user);
		if (r != 0)
			return r;
	}
	char *catchall = xasprintf("@%s", domain);
	r = found(&rs->lists[2], catchall);
	free(catchall);
	return r;
}

int
resolve_user(struct resolve *rs, const char *key, char **value_r)
{
	return map_list_lookup(rs->lists[0].maps, key, value_r);
}

int
resolve_lookup(struct resolve *rs, const char *param, const char *key,
    char **value_r)
{
	int err = -EIO;
	struct maplist *ml = maplist_get(rs, param, &err);

	if (ml == NULL)
		return err;
	return map_list_lookup(ml->maps, key, value_r);
}
