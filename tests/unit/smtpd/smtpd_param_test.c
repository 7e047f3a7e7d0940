/*
 * smtpd_param_test.c - MAIL/RCPT parameters and xtext.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtpd_param.h"

static void
test_smtpd_param_mail_all(void **state)
{
	struct smtpd_mail_params p;
	const char *reply = NULL;

	(void)state;
	assert_int_equal(smtpd_mail_params_parse(
	    " SIZE=1000 body=8bitmime SMTPUTF8 RET=HDRS ENVID=a+2Bb AUTH=<>",
	    &p, &reply), 0);
	assert_int_equal(p.size, 1000);
	assert_int_equal(p.body, BODY_TYPE_8BITMIME);
	assert_true(p.smtputf8);
	assert_int_equal(p.ret, RET_HDRS);
	assert_string_equal(p.envid, "a+b");
	assert_string_equal(p.auth, "<>");
	smtpd_mail_params_clear(&p);
	assert_null(p.envid);

	assert_int_equal(smtpd_mail_params_parse("", &p, &reply), 0);
	assert_int_equal(p.size, -1);
	assert_int_equal(p.body, BODY_TYPE_NONE);
	smtpd_mail_params_clear(&p);
}

static void
test_smtpd_param_mail_errors(void **state)
{
	static const struct {
		const char *in;
		const char *code;
	} cases[] = {
		{" FOO=bar", "555 5.5.4"},
		{" SIZE=1 SIZE=2", "555 5.5.4"},
		{" SIZE=abc", "501 5.5.4"},
		{" SIZE=", "501 5.5.4"},
		{" SIZE=99999999999999999999999", "501 5.5.4"},
		{" BODY=BINARYMIME", "501 5.5.4"},
		{" SMTPUTF8=yes", "501 5.5.4"},
		{" RET=ALL", "501 5.5.4"},
		{" ENVID=+4", "501 5.5.4"},
		{" ENVID=+00", "501 5.5.4"},
		{" ENVID=+ZZ", "501 5.5.4"},
		{" =x", "501 5.5.4"},
		{" -X=1", "501 5.5.4"},
		{" X_Y=1", "501 5.5.4"},
		{" SIZE=1=2", "501 5.5.4"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtpd_mail_params p;
		const char *reply = NULL;

		assert_int_not_equal(smtpd_mail_params_parse(cases[i].in, &p,
		    &reply), 0);
		assert_non_null(reply);
		assert_memory_equal(reply, cases[i].code, 9);
	}
}

static void
test_smtpd_param_rcpt(void **state)
{
	struct smtpd_rcpt_params p;
	const char *reply = NULL;

	(void)state;
	assert_int_equal(smtpd_rcpt_params_parse(
	    " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+40x@example.test", &p,
	    &reply), 0);
	assert_int_equal(p.notify, NOTIFY_SUCCESS | NOTIFY_FAILURE);
	assert_string_equal(p.orcpt, "rfc822;bob@x@example.test");
	smtpd_rcpt_params_clear(&p);

	assert_int_equal(smtpd_rcpt_params_parse(" NOTIFY=NEVER", &p,
	    &reply), 0);
	assert_int_equal(p.notify, NOTIFY_NEVER);
	smtpd_rcpt_params_clear(&p);

	const char *bad[] = {" NOTIFY=NEVER,SUCCESS", " NOTIFY=", " NOTIFY=X",
	    " NOTIFY=SUCCESS,", " ORCPT=rfc822", " ORCPT=;a@b",
	    " ORCPT=rfc822;", " ORCPT=rf_c;a", " SIZE=1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_not_equal(smtpd_rcpt_params_parse(bad[i], &p,
		    &reply), 0);
}

static void
test_smtpd_param_xtext_round_trip(void **state)
{
	char in[256];

	(void)state;
	for (int c = 1; c < 256; c++) {
		in[0] = 'a';
		in[1] = (char)c;
		in[2] = 'z';
		in[3] = '\0';
		char *enc = smtpd_xtext_encode(in);
		char *dec = smtpd_xtext_decode(enc, strlen(enc));
		assert_non_null(dec);
		assert_string_equal(dec, in);
		free(enc);
		free(dec);
	}
	assert_null(smtpd_xtext_decode("a b", 3));
	assert_null(smtpd_xtext_decode("a=b", 3));
	assert_null(smtpd_xtext_decode("+", 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smtpd_param_mail_all),
		cmocka_unit_test(test_smtpd_param_mail_errors),
		cmocka_unit_test(test_smtpd_param_rcpt),
		cmocka_unit_test(test_smtpd_param_xtext_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
