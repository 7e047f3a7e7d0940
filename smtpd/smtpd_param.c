/*
 * smtpd_param.c - MAIL and RCPT parameters (RFC 5321 4.1.2 esmtp-param,
 * RFC 1870, RFC 6152, RFC 6531, RFC 3461, RFC 4954). Keywords are
 * case-insensitive; an unknown or repeated keyword is 555 5.5.4 (RFC 5321
 * 4.1.1.11), a bad value 501 5.5.4. Never trusts lengths from the client.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd_param.h"
#include "xalloc.h"

#define R_UNKNOWN "555 5.5.4 Unsupported parameter"
#define R_DUP "555 5.5.4 Duplicate parameter"
#define R_SYNTAX "501 5.5.4 Syntax error in parameters"

/* RFC 3461 4: xchar is 33..126 except '+' and '='. */
char *
smtpd_xtext_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1), *o = out;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			if (i + 2 >= len)
				goto bad;
			if (!isxdigit((unsigned char)s[i + 1]) ||
			    !isxdigit((unsigned char)s[i + 2]))
				goto bad;
			char hex[3] = {s[i + 1], s[i + 2], '\0'};
			unsigned long v = strtoul(hex, NULL, 16);
			if (v == 0)
				goto bad;
			*o++ = (char)v;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			goto bad;
		} else {
			*o++ = (char)c;
		}
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

char *
smtpd_xtext_encode(const char *s)
{
	size_t n = strlen(s);
	char *out = xmalloc(n * 3 + 1), *o = out;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 33 || c > 126 || c == '+' || c == '=') {
			static const char hex[] = "0123456789ABCDEF";
			*o++ = '+';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	*o = '\0';
	return out;
}

/*
 * Walk "KEY[=VALUE]" words separated by spaces. Calls fn for each; stops at
 * the first error. Words are at most 500 octets (the command line limit
 * bounds them anyway).
 */
typedef int (*param_fn)(void *arg, const char *key, size_t keylen,
    const char *val, size_t vallen, int has_val, const char **reply_r);

static int
walk(const char *s, param_fn fn, void *arg, const char **reply_r)
{
	while (*s != '\0') {
		if (*s == ' ') {
			s++;
			continue;
		}
		const char *w = s;
		while (*s != '\0' && *s != ' ')
			s++;
		const char *eq = memchr(w, '=', (size_t)(s - w));
		size_t keylen = eq ? (size_t)(eq - w) : (size_t)(s - w);
		const char *val = eq ? eq + 1 : s;
		size_t vallen = (size_t)(s - val);

		/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
		if (keylen == 0 || !isalnum((unsigned char)w[0])) {
			*reply_r = R_SYNTAX;
			return -EINVAL;
		}
		for (size_t i = 0; i < keylen; i++) {
			if (!isalnum((unsigned char)w[i]) && w[i] != '-') {
				*reply_r = R_SYNTAX;
				return -EINVAL;
			}
		}
		/* esmtp-value = 1*(%d33-60 / %d62-126) */
		for (size_t i = 0; i < vallen; i++) {
			unsigned char c = (unsigned char)val[i];
			if (c < 33 || c > 126 || c == '=') {
				*reply_r = R_SYNTAX;
				return -EINVAL;
			}
		}
		if (eq != NULL && vallen == 0) {
			*reply_r = R_SYNTAX;
			return -EINVAL;
		}
		int r = fn(arg, w, keylen, val, vallen, eq != NULL, reply_r);
		if (r < 0)
			return r;
	}
	return 0;
}

static int
keyis(const char *key, size_t keylen, const char *name)
{
	return strlen(name) == keylen && strncasecmp(key, name, keylen) == 0;
}

static int
valis(const char *val, size_t vallen, const char *name)
{
	return strlen(name) == vallen && strncasecmp(val, name, vallen) == 0;
}

static int
mail_param(void *arg, const char *key, size_t keylen, const char *val,
    size_t vallen, int has_val, const char **reply_r)
{
	struct smtpd_mail_params *p = arg;

	if (keyis(key, keylen, "SIZE")) {
		if (p->size >= 0)
			goto dup;
		if (!has_val || vallen > 18)
			goto syntax;
		long long v = 0;
		for (size_t i = 0; i < vallen; i++) {
			if (!isdigit((unsigned char)val[i]))
				goto syntax;
			v = v * 10 + (val[i] - '0');
		}
		p->size = v;
	} else if (keyis(key, keylen, "BODY")) {
		if (p->body != BODY_TYPE_NONE)
			goto dup;
		if (valis(val, vallen, "7BIT"))
			p->body = BODY_TYPE_7BIT;
		else if (valis(val, vallen, "8BITMIME"))
			p->body = BODY_TYPE_8BITMIME;
		else
			goto syntax;
	} else if (keyis(key, keylen, "SMTPUTF8")) {
		if (p->smtputf8)
			goto dup;
		if (has_val)
			goto syntax;
		p->smtputf8 = 1;
	} else if (keyis(key, keylen, "RET")) {
		if (p->ret != RET_NONE)
			goto dup;
		if (valis(val, vallen, "FULL"))
			p->ret = RET_FULL;
		else if (valis(val, vallen, "HDRS"))
			p->ret = RET_HDRS;
		else
			goto syntax;
	} else if (keyis(key, keylen, "ENVID")) {
		if (p->envid != NULL)
			goto dup;
		/* RFC 3461 4.4: at most 100 characters. */
		if (!has_val || vallen > 100 ||
		    (p->envid = smtpd_xtext_decode(val, vallen)) == NULL)
			goto syntax;
	} else if (keyis(key, keylen, "AUTH")) {
		if (p->auth != NULL)
			goto dup;
		if (!has_val || (p->auth = smtpd_xtext_decode(val, vallen)) ==
		    NULL)
			goto syntax;
	} else {
		*reply_r = R_UNKNOWN;
		return -EINVAL;
	}
	return 0;
dup:
	*reply_r = R_DUP;
	return -EINVAL;
syntax:
	*reply_r = R_SYNTAX;
	return -EINVAL;
}

int
smtpd_mail_params_parse(const char *s, struct smtpd_mail_params *p,
    const char **reply_r)
{
	memset(p, 0, sizeof(*p));
	p->size = -1;
	int r = walk(s, mail_param, p, reply_r);
	if (r < 0)
		smtpd_mail_params_clear(p);
	return r;
}

void
smtpd_mail_params_clear(struct smtpd_mail_params *p)
{
	free(p->envid);
	free(p->auth);
	p->envid = p->auth = NULL;
}

static int
notify_parse(const char *val, size_t vallen, int *notify_r)
{
	int bits = 0;
	size_t i = 0;

	while (i < vallen) {
		size_t j = i;
		while (j < vallen && val[j] != ',')
			j++;
		if (valis(val + i, j - i, "NEVER"))
			bits |= NOTIFY_NEVER;
		else if (valis(val + i, j - i, "SUCCESS"))
			bits |= NOTIFY_SUCCESS;
		else if (valis(val + i, j - i, "FAILURE"))
			bits |= NOTIFY_FAILURE;
		else if (valis(val + i, j - i, "DELAY"))
			bits |= NOTIFY_DELAY;
		else
			return -EINVAL;
		i = j + 1;
		if (j < vallen && i == vallen)
			return -EINVAL;	/* trailing comma */
	}
	/* RFC 3461 4.1: NEVER cannot be combined with the others. */
	if (bits == 0 || ((bits & NOTIFY_NEVER) && bits != NOTIFY_NEVER))
		return -EINVAL;
	*notify_r = bits;
	return 0;
}

static int
rcpt_param(void *arg, const char *key, size_t keylen, const char *val,
    size_t vallen, int has_val, const char **reply_r)
{
	struct smtpd_rcpt_params *p = arg;

	if (keyis(key, keylen, "NOTIFY")) {
		if (p->notify != 0) {
			*reply_r = R_DUP;
			return -EINVAL;
		}
		if (!has_val || notify_parse(val, vallen, &p->notify) < 0)
			goto syntax;
	} else if (keyis(key, keylen, "ORCPT")) {
		if (p->orcpt != NULL) {
			*reply_r = R_DUP;
			return -EINVAL;
		}
		/* RFC 3461 4.2: addr-type ";" xtext, at most 500 chars. */
		const char *semi = has_val ? memchr(val, ';', vallen) : NULL;
		if (semi == NULL || semi == val || vallen > 500)
			goto syntax;
		for (const char *t = val; t < semi; t++)
			if (!isalnum((unsigned char)*t) && *t != '-')
				goto syntax;
		char *addr = smtpd_xtext_decode(semi + 1,
		    vallen - (size_t)(semi + 1 - val));
		if (addr == NULL || addr[0] == '\0') {
			free(addr);
			goto syntax;
		}
		p->orcpt = xasprintf("%.*s;%s", (int)(semi - val), val, addr);
		free(addr);
	} else {
		*reply_r = R_UNKNOWN;
		return -EINVAL;
	}
	return 0;
syntax:
	*reply_r = R_SYNTAX;
	return -EINVAL;
}

int
smtpd_rcpt_params_parse(const char *s, struct smtpd_rcpt_params *p,
    const char **reply_r)
{
	memset(p, 0, sizeof(*p));
	int r = walk(s, rcpt_param, p, reply_r);
	if (r < 0)
		smtpd_rcpt_params_clear(p);
	return r;
}

void
smtpd_rcpt_params_clear(struct smtpd_rcpt_params *p)
{
	free(p->orcpt);
	p->orcpt = NULL;
}
