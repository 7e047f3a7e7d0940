/*
 * smtpd_param.h - ESMTP parameters of MAIL and RCPT (RFC 5321 4.1.2,
 * RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3461 DSN,
 * RFC 4954 5 AUTH). Pure parsing; the session decides what is allowed.
 */
#ifndef POCHTA_SMTPD_PARAM_H
#define POCHTA_SMTPD_PARAM_H

#include <stddef.h>

enum smtpd_body_type { BODY_TYPE_NONE, BODY_TYPE_7BIT, BODY_TYPE_8BITMIME };
enum smtpd_ret { RET_NONE, RET_FULL, RET_HDRS };

/* NOTIFY= bits (RFC 3461 4.1). */
#define NOTIFY_NEVER	0x01
#define NOTIFY_SUCCESS	0x02
#define NOTIFY_FAILURE	0x04
#define NOTIFY_DELAY	0x08

struct smtpd_mail_params {
	long long size;			/* SIZE=, -1 when absent */
	enum smtpd_body_type body;
	int smtputf8;
	enum smtpd_ret ret;
	char *envid;			/* ENVID=, xtext-decoded; or NULL */
	char *auth;			/* AUTH=, xtext-decoded; or NULL */
};

struct smtpd_rcpt_params {
	int notify;			/* NOTIFY_* bits, 0 when absent */
	char *orcpt;			/* ORCPT= as "type;addr", decoded */
};

/*
 * Parse the parameters following the path of a MAIL command. s is the text
 * after the closing '>' (may be empty or start with spaces). Returns 0, or
 * -EINVAL with *reply_r set to the complete reply line to send (555 5.5.4
 * for unknown or duplicate parameters, 501 5.5.4 for bad values). The
 * params must be released with smtpd_mail_params_clear().
 */
int smtpd_mail_params_parse(const char *s, struct smtpd_mail_params *p,
    const char **reply_r);
void smtpd_mail_params_clear(struct smtpd_mail_params *p);

/* Likewise for RCPT (NOTIFY=, ORCPT=). */
int smtpd_rcpt_params_parse(const char *s, struct smtpd_rcpt_params *p,
    const char **reply_r);
void smtpd_rcpt_params_clear(struct smtpd_rcpt_params *p);

/*
 * Decode RFC 3461 4 xtext ("+XX" hex escapes of octets outside 33..126 and
 * '+', '='). Returns a malloc'd string, or NULL when malformed (a bad
 * escape, a raw octet outside 33..126, an escaped NUL).
 */
char *smtpd_xtext_decode(const char *s, size_t len);

/* Encode as xtext into a malloc'd string. */
char *smtpd_xtext_encode(const char *s);

#endif
