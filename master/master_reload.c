/*
 * master_reload.c - SIGHUP: read both configuration files again and move
 * the running services to the new table. All or nothing: a bad file or a
 * socket that cannot be bound leaves everything as it was. An unchanged
 * service keeps its workers, its sockets and their connections (its
 * workers get SIGHUP to read pochta.conf again); a changed
 * one listening on the same address keeps its sockets, so no connection
 * attempt is refused while its workers are replaced.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "master.h"
#include "xalloc.h"

static struct master_svc *
find_svc(struct master_svc *list, const char *name)
{
	for (; list != NULL; list = list->next)
		if (strcmp(list->conf->name, name) == 0)
			return list;
	return NULL;
}

static int
listen_held(struct master_svc *list, const struct master_service *conf)
{
	for (; list != NULL; list = list->next)
		if (list->n_fds > 0 &&
		    master_service_same_listen(list->conf, conf))
			return 1;
	return 0;
}

/*
 * The services of the new table: running ones that did not change, and
 * new ones with fresh sockets where no running service has the address.
 * On a bind error, everything new is discarded and -1 returned.
 */
static int
prepare(struct master *m, struct master_conf *mconf,
    struct master_svc **next, int *is_new, char **errstr_r)
{
	size_t n = master_conf_count(mconf);

	for (size_t i = 0; i < n; i++) {
		const struct master_service *s = master_conf_service(mconf, i);
		struct master_svc *old = find_svc(m->svcs, s->name);

		if (old != NULL && master_service_equal(old->conf, s)) {
			next[i] = old;
			continue;
		}
		next[i] = master_svc_new(m, s);
		is_new[i] = 1;
		if (listen_held(m->svcs, s))
			continue;
		if (master_svc_bind(m, next[i], errstr_r) < 0) {
			for (size_t j = 0; j <= i; j++)
				if (is_new[j])
					master_svc_discard(m, next[j]);
			return -1;
		}
	}
	return 0;
}

static int
in_list(struct master_svc **list, size_t n, struct master_svc *svc)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == svc)
			return 1;
	return 0;
}

void
master_reload(struct master *m)
{
	struct master_conf *mconf = NULL;
	struct conf *conf = NULL;
	struct master_svc **next, *old;
	unsigned added = 0, removed = 0;
	char *err = NULL;
	int *is_new;
	size_t n;

	log_info("reloading %s", m->confdir);
	if (master_load_config(m, &conf, &mconf, &err) < 0) {
		log_error("reload failed, keeping the running configuration: "
		    "%s", err);
		free(err);
		return;
	}
	if (strcmp(conf_str(conf, "queue_directory"),
	    conf_str(m->conf, "queue_directory")) != 0) {
		log_error("reload failed, keeping the running configuration: "
		    "queue_directory cannot change without a restart");
		conf_free(&conf);
		master_conf_free(&mconf);
		return;
	}
	n = master_conf_count(mconf);
	next = xcalloc(n + 1, sizeof(*next));
	is_new = xcalloc(n + 1, sizeof(*is_new));
	if (prepare(m, mconf, next, is_new, &err) < 0) {
		log_error("reload failed, keeping the running configuration: "
		    "%s", err);
		free(err);
		free(next);
		free(is_new);
		conf_free(&conf);
		master_conf_free(&mconf);
		return;
	}
	/* From here on nothing can fail. */
	for (size_t i = 0; i < n; i++)
		if (is_new[i] && next[i]->n_fds == 0)
			master_svc_take(next[i], m->svcs);
	while ((old = m->svcs) != NULL) {
		m->svcs = old->next;
		if (!in_list(next, n, old)) {
			removed++;
			master_svc_retire(m, old);
		}
	}
	for (size_t i = n; i-- > 0;) {
		next[i]->next = m->svcs;
		m->svcs = next[i];
	}
	conf_free(&m->conf);
	m->conf = conf;
	master_conf_free(&m->mconf);
	m->mconf = mconf;
	for (size_t i = 0; i < n; i++) {
		if (is_new[i]) {
			added++;
			master_svc_start(m, next[i]);
			continue;
		}
		/* Unchanged services keep their workers and connections; they
		 * read pochta.conf again on SIGHUP (service_on_reload). */
		for (int j = 0; j < next[i]->conf->procs; j++)
			if (next[i]->slots[j].pid != 0 &&
			    !next[i]->slots[j].stopping)
				kill(next[i]->slots[j].pid, SIGHUP);
	}
	log_info("reloaded: %zu services, %u started, %u stopped", n, added,
	    removed);
	free(next);
	free(is_new);
}
