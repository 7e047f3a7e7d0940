/*
 * dsn_test.c - unit tests for lib/dsn: the RFC 3464 report structure,
 * RET=HDRS (RFC 3462 text/rfc822-headers), ENVID, ORCPT, folding of long
 * and hostile diagnostic text, and 8-bit originals.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "dsn.h"

static const char msg[] = "Subject: hi\r\nFrom: a@b.test\r\n\r\nbody line\r\n";

static struct dsn_info
info(void)
{
	struct dsn_info i;

	memset(&i, 0, sizeof(i));
	i.myhostname = "mx.example.test";
	i.to = "bob@example.test";
	i.queue_id = "1K19Z0W1RQN00SWT0001";
	i.arrival = 1700000000;
	i.now = 1700000100;
	return i;
}

static struct dsn_rcpt
rcpt(const char *diag)
{
	struct dsn_rcpt r;

	memset(&r, 0, sizeof(r));
	r.address = "alice@example.test";
	r.action = "failed";
	r.status = "5.1.1";
	r.diag = diag;
	r.last_attempt = 1700000050;
	return r;
}

static void
test_structure(void **state)
{
	struct dsn_info i = info();
	struct dsn_rcpt r = rcpt("unknown user");
	struct buf out;

	(void)state;
	buf_init(&out, 0);
	assert_int_equal(dsn_build(&out, &i, &r, 1, msg, strlen(msg)), 0);
	assert_non_null(strstr(out.data, "From: Mail Delivery System "
	    "<MAILER-DAEMON@mx.example.test>\r\n"));
	assert_non_null(strstr(out.data, "To: <bob@example.test>\r\n"));
	assert_non_null(strstr(out.data, "Content-Type: multipart/report; "
	    "report-type=delivery-status;"));
	assert_non_null(strstr(out.data,
	    "Content-Type: message/delivery-status\r\n\r\n"
	    "Reporting-MTA: dns; mx.example.test\r\n"));
	assert_non_null(strstr(out.data, "Arrival-Date: Tue, 14 Nov 2023 "
	    "22:13:20 +0000\r\n"));
	assert_non_null(strstr(out.data,
	    "Final-Recipient: rfc822; alice@example.test\r\n"
	    "Action: failed\r\nStatus: 5.1.1\r\n"
	    "Diagnostic-Code: X-Pochta; unknown user\r\n"
	    "Last-Attempt-Date: "));
	assert_non_null(strstr(out.data, "Content-Type: message/rfc822\r\n"
	    "\r\nSubject: hi\r\n"));
	assert_non_null(strstr(out.data, "body line\r\n"));
	assert_null(strstr(out.data, "Original-Envelope-Id"));
	assert_null(strstr(out.data, "Original-Recipient"));
	assert_null(strstr(out.data, "Content-Transfer-Encoding"));
	/* The closing boundary ends the message. */
	assert_non_null(strstr(out.data, ".dsn--\r\n"));
	buf_release(&out);
}

static void
test_ret_hdrs_envid_orcpt(void **state)
{
	struct dsn_info i = info();
	struct dsn_rcpt r = rcpt("unknown user");
	struct buf out;

	(void)state;
	i.headers_only = 1;
	i.envid = "env-42";
	r.orcpt = "rfc822;Alice@Example.test";
	buf_init(&out, 0);
	assert_int_equal(dsn_build(&out, &i, &r, 1, msg, strlen(msg)), 0);
	assert_non_null(strstr(out.data, "Content-Type: text/rfc822-headers"
	    "\r\n\r\nSubject: hi\r\nFrom: a@b.test\r\n\r\n"));
	assert_null(strstr(out.data, "body line"));
	assert_non_null(strstr(out.data, "Original-Envelope-Id: env-42\r\n"));
	assert_non_null(strstr(out.data,
	    "Original-Recipient: rfc822; Alice@Example.test\r\n"));
	buf_release(&out);
}

static void
test_long_diag_folded(void **state)
{
	struct dsn_info i = info();
	char diag[2000];
	struct dsn_rcpt r;
	struct buf out;
	const char *p, *line;

	(void)state;
	diag[0] = '\0';
	for (int k = 0; k < 60; k++)
		strcat(diag, "word\r\nfrom-remote ");
	strcat(diag, "\x01\x7f");
	r = rcpt(diag);
	buf_init(&out, 0);
	assert_int_equal(dsn_build(&out, &i, &r, 1, msg, strlen(msg)), 0);
	p = strstr(out.data, "Diagnostic-Code: X-Pochta; word from-remote");
	assert_non_null(p);
	/* Every line of the report stays within 78 columns, no bare LF. */
	for (line = p; *line != '\0' && strncmp(line, "Last-", 5) != 0;) {
		const char *e = strstr(line, "\r\n");

		assert_non_null(e);
		assert_true(e - line <= 78);
		assert_null(memchr(line, '\n', e - line));
		line = e + 2;
		if (*line != ' ' && *line != 'L')
			fail();
	}
	assert_non_null(strstr(out.data, "??\r\n"));
	buf_release(&out);
}

static void
test_8bit_original(void **state)
{
	static const char m8[] = "Subject: x\r\n\r\nh\xc3\xa9llo\r\n";
	struct dsn_info i = info();
	struct dsn_rcpt r = rcpt(NULL);
	struct buf out;

	(void)state;
	buf_init(&out, 0);
	assert_int_equal(dsn_build(&out, &i, &r, 1, m8, strlen(m8)), 0);
	assert_non_null(strstr(out.data, "Content-Type: message/rfc822\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n"));
	assert_null(strstr(out.data, "Diagnostic-Code"));
	buf_release(&out);
}

static void
test_several_and_limits(void **state)
{
	struct dsn_info i = info();
	struct dsn_rcpt r[2];
	struct buf out;

	(void)state;
	r[0] = rcpt("a");
	r[1] = rcpt("b");
	r[1].address = "carol@example.test";
	r[1].action = "delayed";
	r[1].status = "4.4.7";
	buf_init(&out, 0);
	assert_int_equal(dsn_build(&out, &i, r, 0, msg, strlen(msg)),
	    -EINVAL);
	assert_int_equal(dsn_build(&out, &i, r, 2, msg, strlen(msg)), 0);
	assert_non_null(strstr(out.data, "rfc822; carol@example.test\r\n"
	    "Action: delayed\r\nStatus: 4.4.7\r\n"));
	buf_release(&out);
	buf_init(&out, 100);
	assert_int_equal(dsn_build(&out, &i, r, 2, msg, strlen(msg)),
	    -ENOBUFS);
	buf_release(&out);
	/* A message with no header/body separator is attached whole. */
	assert_int_equal(dsn_header_len("abc", 3), 3);
	assert_int_equal(dsn_header_len("a: b\n\nc", 7), 6);
}

static void
test_remote_mta_will_retry(void **state)
{
	struct dsn_info i = info();
	struct dsn_rcpt r[2];
	struct buf out;

	(void)state;
	r[0] = rcpt("451 try later");
	r[0].action = "delayed";
	r[0].status = "4.7.1";
	r[0].remote_mta = "mx1.example.org";
	r[0].will_retry_until = 1700432000;
	r[1] = rcpt(NULL);
	r[1].address = "carol@example.test";
	buf_init(&out, 0);
	assert_int_equal(dsn_build(&out, &i, r, 2, msg, strlen(msg)), 0);
	/* RFC 3464 2.3 field order: Remote-MTA before Diagnostic-Code. */
	assert_non_null(strstr(out.data,
	    "Action: delayed\r\nStatus: 4.7.1\r\n"
	    "Remote-MTA: dns; mx1.example.org\r\n"
	    "Diagnostic-Code: smtp; 451 try later\r\n"
	    "Last-Attempt-Date: "));
	assert_non_null(strstr(out.data,
	    "Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n"));
	assert_non_null(strstr(out.data, "Subject: Delayed Mail"));
	/* Neither field for the recipient that has none. */
	assert_null(strstr(strstr(out.data, "carol@example.test\r\n"
	    "Action"), "Remote-MTA"));
	assert_null(strstr(strstr(out.data, "carol@example.test\r\n"
	    "Action"), "Will-Retry-Until"));
	buf_release(&out);
}

/* A quoted SMTP reply is of type smtp, anything else X-Pochta. */
static void
test_diagnostic_type(void **state)
{
	static const struct {
		const char *diag, *type;
	} cases[] = {
		{"550 5.1.1 <a@b>: no such user", "smtp"},
		{"421-busy", "smtp"},
		{"250", "smtp"},
		{"5.2.2 mailbox full", "X-Pochta"},
		{"mail loops back to myself", "X-Pochta"},
		{"600 not a reply", "X-Pochta"},
		{"55 short", "X-Pochta"},
		{"5500 long", "X-Pochta"},
		{"", NULL},
	};
	struct dsn_info i = info();

	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct dsn_rcpt r = rcpt(cases[k].diag);
		struct buf out;
		char want[128];

		buf_init(&out, 0);
		assert_int_equal(dsn_build(&out, &i, &r, 1, msg, strlen(msg)),
		    0);
		if (cases[k].type == NULL) {
			assert_null(strstr(out.data, "Diagnostic-Code"));
		} else {
			snprintf(want, sizeof(want), "Diagnostic-Code: %s; %s\r\n",
			    cases[k].type, cases[k].diag);
			assert_non_null(strstr(out.data, want));
		}
		buf_release(&out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_ret_hdrs_envid_orcpt),
		cmocka_unit_test(test_long_diag_folded),
		cmocka_unit_test(test_8bit_original),
		cmocka_unit_test(test_several_and_limits),
		cmocka_unit_test(test_remote_mta_will_retry),
		cmocka_unit_test(test_diagnostic_type),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
