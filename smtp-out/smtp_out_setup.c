/*
 * smtp_out_setup.c - smtp-out's settings from pochta.conf and master.conf:
 * TLS client context, timeouts (RFC 5321 4.5.3.2), SASL password tables
 * and our own SMTP listeners for loop detection (RFC 5321 5.1). A bad
 * setting is an error with a message; the caller decides whether to die.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "map.h"
#include "master_conf.h"
#include "smtp_out.h"
#include "tls.h"
#include "xalloc.h"

static int
tls_level_parse(const char *s, enum so_tls_level *l)
{
	static const struct {
		const char *name;
		enum so_tls_level level;
	} names[] = {
		{"none", SO_TLS_NONE}, {"may", SO_TLS_MAY},
		{"encrypt", SO_TLS_ENCRYPT}, {"verify", SO_TLS_VERIFY},
		{"secure", SO_TLS_VERIFY}, {"dane", SO_TLS_DANE},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].name) == 0) {
			*l = names[i].level;
			return 0;
		}
	return -EINVAL;
}

/* The inet services that run smtpd: where mail to us arrives. */
static void
own_listeners(const struct conf *conf, struct so_setup *s)
{
	struct master_conf *mc;
	char *path, *err = NULL;
	size_t n;

	path = xasprintf("%s/master.conf", conf_dir(conf));
	if (master_conf_load(path, 0, &mc, &err) < 0) {
		/* Without it only the MX-is-us rule is lost; say so. */
		log_warn("loop detection off: %s", err);
		free(err);
		free(path);
		return;
	}
	free(path);
	n = master_conf_count(mc);
	s->own = xcalloc(n + 1, sizeof(*s->own));
	for (size_t i = 0; i < n; i++) {
		const struct master_service *svc = master_conf_service(mc, i);
		const char *cmd = strrchr(svc->argv[0], '/');
		struct so_listener *l = &s->own[s->nown];

		cmd = cmd != NULL ? cmd + 1 : svc->argv[0];
		if (svc->type != MASTER_SERVICE_INET ||
		    strcmp(cmd, "smtpd") != 0)
			continue;
		l->port = svc->port;
		if (svc->host == NULL)
			l->wildcard = 1;
		else if (dns_addr_parse(svc->host, &l->addr) < 0)
			continue;
		s->nown++;
	}
	master_conf_free(&mc);
}

static int
setup_fail(struct so_setup **sp, char **errstr_r, char *msg)
{
	*errstr_r = msg;
	so_setup_unref(sp);
	return -EINVAL;
}

int
so_setup_new(const struct conf *conf, struct so_setup **setup_r,
    char **errstr_r)
{
	struct so_setup *s = xcalloc(1, sizeof(*s));
	const char *name = conf_str(conf, "smtp_helo_name");
	const char *ca = conf_str(conf, "smtp_tls_CAfile");
	char host[256], *err = NULL, **maps;
	size_t nmaps;

	s->refs = 1;
	pthread_mutex_init(&s->sasl_lock, NULL);
	if (*name == '\0') {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		name = host;
	}
	s->helo_name = xstrdup(name);
	s->port = (int)conf_int(conf, "smtp_out_port");
	if (tls_level_parse(conf_str(conf, "smtp_tls_security_level"),
	    &s->tls_level) < 0)
		return setup_fail(&s, errstr_r, xasprintf(
		    "smtp_tls_security_level: unknown level \"%s\"",
		    conf_str(conf, "smtp_tls_security_level")));
	if (s->tls_level != SO_TLS_NONE && tls_ctx_client_new(
	    s->tls_level == SO_TLS_VERIFY ? TLS_VERIFY_PEER : TLS_VERIFY_NONE,
	    *ca != '\0' ? ca : NULL, &s->tls_ctx, &err) < 0)
		return setup_fail(&s, errstr_r, err);
	s->connect_timeout = (unsigned)conf_time(conf, "smtp_connect_timeout");
	s->helo_timeout = (unsigned)conf_time(conf, "smtp_helo_timeout");
	s->mail_timeout = (unsigned)conf_time(conf, "smtp_mail_timeout");
	s->rcpt_timeout = (unsigned)conf_time(conf, "smtp_rcpt_timeout");
	s->data_init_timeout =
	    (unsigned)conf_time(conf, "smtp_data_init_timeout");
	s->data_timeout = (unsigned)conf_time(conf, "smtp_data_xfer_timeout");
	s->data_done_timeout =
	    (unsigned)conf_time(conf, "smtp_data_done_timeout");
	s->cache_time = (unsigned)conf_time(conf,
	    "smtp_connection_cache_time_limit");
	s->max_rcpts = (size_t)conf_int(conf, "smtp_recipient_limit");
	maps = conf_list(conf, "smtp_sasl_password_maps", &nmaps);
	if (nmaps > 0 && map_list_open(maps, nmaps, &s->sasl_maps,
	    &err) < 0) {
		char *msg = xasprintf("smtp_sasl_password_maps: %s", err);

		free(err);
		conf_list_free(&maps);
		return setup_fail(&s, errstr_r, msg);
	}
	conf_list_free(&maps);
	own_listeners(conf, s);
	*setup_r = s;
	return 0;
}

void
so_setup_unref(struct so_setup **sp)
{
	struct so_setup *s = *sp;

	*sp = NULL;
	if (s == NULL || --s->refs > 0)
		return;
	free(s->helo_name);
	tls_ctx_free(&s->tls_ctx);
	map_list_free(&s->sasl_maps);
	pthread_mutex_destroy(&s->sasl_lock);
	free(s->own);
	free(s);
}
