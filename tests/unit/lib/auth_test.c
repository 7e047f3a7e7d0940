/*
 * auth_test.c - unit tests for lib/auth: every crypt(3) scheme with known
 * vectors, Dovecot prefixes, unusable hashes, new hashes, user table values,
 * addresses, and the failed-login throttle with a hand-driven clock.
 * crypt_rn() is wrapped to count the hashes computed.
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

#include "auth.h"

/* crypt_rn is wrapped (auth_test.wrap) to count the hashes computed. */
static int crypt_calls;

char *__real_crypt_rn(const char *phrase, const char *setting, void *data,
    int size);

char *
__wrap_crypt_rn(const char *phrase, const char *setting, void *data,
    int size)
{
	crypt_calls++;
	return __real_crypt_rn(phrase, setting, data, size);
}

/* Vectors computed once with libxcrypt; password "password". */
static const char *const vectors[] = {
	"$y$j9T$abcdefgh$79JhsKZwfY/UU2qrk3QcffpHl7EyEEJK0pA5pD1wu73",
	"$gy$j9T$abcdefgh$.GwBoGpO1hljbC.UGBPrJEXsOk0bsIPZHaK7VIVMDN/",
	"$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8"
	    "wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
	"$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.",
	"$2b$05$abcdefghijklmnopqrstuuWG29KuyeAicPCJODk1zjyGvyQUU2awu",
	"$1$salt$qJH7.N4xYta3aEG/dfqo/0",
	NULL,
};

static void
test_auth_known_vectors(void **state)
{
	(void)state;
	for (int i = 0; vectors[i] != NULL; i++) {
		assert_int_equal(auth_check_password(vectors[i], "password"),
		    0);
		assert_int_equal(auth_check_password(vectors[i], "Password"),
		    -EACCES);
		assert_int_equal(auth_check_password(vectors[i], "passwor"),
		    -EACCES);
	}
	/* The SHA-crypt specification's own example. */
	assert_int_equal(auth_check_password("$6$saltstring$svn8UoSVapNtMuq1u"
	    "kKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35"
	    "inz1", "Hello world!"), 0);
}

static void
test_auth_wrong_and_empty_password(void **state)
{
	char pw[AUTH_PASSWORD_MAX + 2];

	(void)state;
	assert_int_equal(auth_check_password(vectors[0], ""), -EACCES);
	memset(pw, 'a', sizeof(pw) - 1);
	pw[sizeof(pw) - 1] = '\0';
	assert_int_equal(auth_check_password(vectors[0], pw), -EACCES);
}

static void
test_auth_dovecot_prefixes(void **state)
{
	char h[256];

	(void)state;
	snprintf(h, sizeof(h), "{SHA512-CRYPT}%s", vectors[2]);
	assert_int_equal(auth_check_password(h, "password"), 0);
	assert_int_equal(auth_check_password(h, "nope"), -EACCES);
	snprintf(h, sizeof(h), "{sha512-crypt}%s", vectors[2]);
	assert_int_equal(auth_check_password(h, "password"), 0);
	snprintf(h, sizeof(h), "{SHA256-CRYPT}%s", vectors[3]);
	assert_int_equal(auth_check_password(h, "password"), 0);
	snprintf(h, sizeof(h), "{BLF-CRYPT}%s", vectors[4]);
	assert_int_equal(auth_check_password(h, "password"), 0);
	snprintf(h, sizeof(h), "{MD5-CRYPT}%s", vectors[5]);
	assert_int_equal(auth_check_password(h, "password"), 0);
	snprintf(h, sizeof(h), "{CRYPT}%s", vectors[0]);
	assert_int_equal(auth_check_password(h, "password"), 0);
	/* A prefix that contradicts the hash is unusable. */
	snprintf(h, sizeof(h), "{SHA256-CRYPT}%s", vectors[2]);
	assert_int_equal(auth_check_password(h, "password"), -EINVAL);
	/* Other Dovecot schemes, plain text above all, are refused. */
	assert_int_equal(auth_check_password("{PLAIN}password", "password"),
	    -EINVAL);
	assert_int_equal(auth_check_password("{SSHA}abc", "abc"), -EINVAL);
	assert_int_equal(auth_check_password("{CRYPT}", "x"), -EINVAL);
}

static void
test_auth_unusable_hashes_never_match(void **state)
{
	static const char *const bad[] = {
		"", "*", "!", "!!", "x", "password",
		"abJnggxhB/yWI",	/* DES: "password" really */
		"_J9..saltJW8FtKdEkNM",	/* BSDi DES */
		"$6$", "$6$saltsalt", "$y$", "$y$j9T$", "$2b$05$short",
		"$6$saltsalt$wrong-length", "$9$x$y",
		"!$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctK"
		    "u9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
		"$6$salt salt$x", "$6$salt\nsalt$x",
		NULL,
	};

	(void)state;
	for (int i = 0; bad[i] != NULL; i++) {
		int rc = auth_check_password(bad[i], "password");

		if (rc == 0)
			fail_msg("hash '%s' matched", bad[i]);
		assert_true(rc == -EINVAL || rc == -EACCES);
	}
	assert_int_equal(auth_check_password("", "password"), -EINVAL);
	assert_int_equal(auth_check_password("*", "password"), -EINVAL);
	assert_int_equal(auth_check_password("!", ""), -EINVAL);
	assert_int_equal(auth_check_password("abJnggxhB/yWI", "password"),
	    -EINVAL);
	assert_int_equal(auth_check_password(NULL, "password"), -EINVAL);
}

static void
test_auth_unknown_user_costs_a_hash(void **state)
{
	(void)state;
	/* Unknown users and unusable hashes take as long as real ones. */
	crypt_calls = 0;
	assert_int_equal(auth_check_password(NULL, "guess"), -EINVAL);
	assert_int_equal(crypt_calls, 1);
	assert_int_equal(auth_check_password("!", "guess"), -EINVAL);
	assert_int_equal(crypt_calls, 2);
	assert_int_equal(auth_check_password("{PLAIN}guess", "guess"),
	    -EINVAL);
	assert_int_equal(crypt_calls, 3);
	assert_int_equal(auth_check_password(vectors[0], "guess"), -EACCES);
	assert_int_equal(crypt_calls, 4);
}

static void
test_auth_generated_hash_verifies(void **state)
{
	char *h1 = NULL, *h2 = NULL;

	(void)state;
	assert_int_equal(auth_hash_password("s3cret pass", &h1), 0);
	assert_int_equal(strncmp(h1, "$y$", 3), 0);
	assert_int_equal(auth_check_password(h1, "s3cret pass"), 0);
	assert_int_equal(auth_check_password(h1, "s3cret pas"), -EACCES);
	/* A random salt each time. */
	assert_int_equal(auth_hash_password("s3cret pass", &h2), 0);
	assert_string_not_equal(h1, h2);
	assert_int_equal(auth_check_password(h2, "s3cret pass"), 0);
	free(h1);
	free(h2);
	assert_int_equal(auth_hash_password("", &h1), -EINVAL);
}

static void
test_auth_user_parse(void **state)
{
	struct auth_user *u = NULL;
	const char *err = NULL;

	(void)state;
	assert_int_equal(auth_user_parse("Bob@Example.TEST", vectors[0], &u,
	    &err), 0);
	assert_string_equal(u->hash, vectors[0]);
	assert_string_equal(u->mailbox, "example.test/bob/");
	assert_int_equal(u->quota, 0);
	auth_user_free(&u);
	assert_null(u);

	assert_int_equal(auth_user_parse("bob@example.test",
	    "$6$x$y  quota=10M\tmailbox=custom/place", &u, &err), 0);
	assert_string_equal(u->hash, "$6$x$y");
	assert_string_equal(u->mailbox, "custom/place/");
	assert_int_equal(u->quota, 10ULL << 20);
	auth_user_free(&u);

	assert_int_equal(auth_user_parse("a@b", "! quota=2g mailbox=m/",
	    &u, &err), 0);
	assert_string_equal(u->hash, "!");
	assert_string_equal(u->mailbox, "m/");
	assert_int_equal(u->quota, 2ULL << 30);
	auth_user_free(&u);

	static const char *const bad[] = {
		"", "   ", "h quota=", "h quota=x", "h quota=10x", "h quota=-1",
		"h quota=1kk", "h quota=99999999999999999999",
		"h quota=1 quota=2", "h mailbox=a mailbox=b",
		"h mailbox=/abs", "h mailbox=a/../b", "h mailbox=..",
		"h mailbox=./x", "h mailbox=", "h other=1", "h extra",
		NULL,
	};
	for (int i = 0; bad[i] != NULL; i++) {
		err = NULL;
		if (auth_user_parse("a@b", bad[i], &u, &err) != -EINVAL)
			fail_msg("value '%s' accepted", bad[i]);
		assert_null(u);
		assert_non_null(err);
	}
}

static void
test_auth_parse_size(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(auth_parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(auth_parse_size("512", &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(auth_parse_size("3k", &v), 0);
	assert_int_equal(v, 3072);
	assert_int_equal(auth_parse_size("1T", &v), 0);
	assert_int_equal(v, 1ULL << 40);
	assert_int_equal(auth_parse_size("", &v), -EINVAL);
	assert_int_equal(auth_parse_size("k", &v), -EINVAL);
	assert_int_equal(auth_parse_size("1 k", &v), -EINVAL);
	assert_int_equal(auth_parse_size("9999999999t", &v), -ERANGE);
}

static void
test_auth_address_check(void **state)
{
	static const char *const good[] = {
		"bob@example.test", "b.o.b+tag@sub.example.test", "x@localhost",
		"o'neil@ex-ample.test", "Bob@EXAMPLE.test", NULL,
	};
	static const char *const bad[] = {
		"", "bob", "@example.test", "bob@", "bob@@x", "a@b@c",
		".bob@x", "bob.@x", "b..ob@x", "bo b@x", "a/b@x", "../x@y",
		"bob@-x.test", "bob@x-.test", "bob@x..test", "bob@x.test.",
		"bob@x_y.test", "bob@[127.0.0.1]", "b\"ob@x", "bob@x y",
		NULL,
	};
	const char *err;
	char longer[80];

	(void)state;
	for (int i = 0; good[i] != NULL; i++)
		if (auth_address_check(good[i], &err) != 0)
			fail_msg("'%s' refused: %s", good[i], err);
	for (int i = 0; bad[i] != NULL; i++)
		if (auth_address_check(bad[i], &err) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	memset(longer, 'a', 65);
	strcpy(longer + 65, "@x");
	assert_int_equal(auth_address_check(longer, &err), -EINVAL);
}

static uint64_t clock_ms;

static uint64_t
fake_now(void *arg)
{
	(void)arg;
	return clock_ms;
}

static void
test_auth_throttle_delays_and_blocks(void **state)
{
	struct auth_throttle_conf c = {
		.limit = 6, .base_ms = 1000, .max_ms = 5000,
		.expire_ms = 60000, .now_ms = fake_now,
	};
	struct auth_throttle *t;

	(void)state;
	clock_ms = 1000000;
	t = auth_throttle_new(&c);
	assert_int_equal(auth_throttle_blocked(t, "192.0.2.1"), 0);
	assert_int_equal(auth_throttle_fail(t, "192.0.2.1"), 0);
	assert_int_equal(auth_throttle_fail(t, "192.0.2.1"), 1000);
	assert_int_equal(auth_throttle_fail(t, "192.0.2.1"), 2000);
	assert_int_equal(auth_throttle_fail(t, "192.0.2.1"), 4000);
	assert_int_equal(auth_throttle_blocked(t, "192.0.2.1"), 0);
	assert_int_equal(auth_throttle_fail(t, "192.0.2.1"), 5000);
	assert_int_equal(auth_throttle_fail(t, "192.0.2.1"), 5000);
	assert_int_equal(auth_throttle_blocked(t, "192.0.2.1"), 1);
	assert_int_equal(auth_throttle_count(t, "192.0.2.1"), 6);
	/* Another address is not affected. */
	assert_int_equal(auth_throttle_blocked(t, "192.0.2.2"), 0);
	assert_int_equal(auth_throttle_fail(t, "192.0.2.2"), 0);
	/* Many more failures keep the cap, no overflow. */
	for (int i = 0; i < 100; i++)
		assert_int_equal(auth_throttle_fail(t, "192.0.2.1"), 5000);
	auth_throttle_free(&t);
	assert_null(t);
	auth_throttle_free(&t);
}

static void
test_auth_throttle_expiry(void **state)
{
	struct auth_throttle_conf c = {
		.limit = 3, .expire_ms = 60000, .now_ms = fake_now,
	};
	struct auth_throttle *t;

	(void)state;
	clock_ms = 50;
	t = auth_throttle_new(&c);
	for (int i = 0; i < 3; i++)
		auth_throttle_fail(t, "2001:db8::1");
	assert_int_equal(auth_throttle_blocked(t, "2001:db8::1"), 1);
	/* Each failure restarts the expiry. */
	clock_ms += 59999;
	assert_int_equal(auth_throttle_blocked(t, "2001:db8::1"), 1);
	auth_throttle_fail(t, "2001:db8::1");
	clock_ms += 59999;
	assert_int_equal(auth_throttle_count(t, "2001:db8::1"), 4);
	clock_ms += 1;
	assert_int_equal(auth_throttle_blocked(t, "2001:db8::1"), 0);
	assert_int_equal(auth_throttle_count(t, "2001:db8::1"), 0);
	assert_int_equal(auth_throttle_size(t), 0);
	/* Forgotten: the next failure is a first one again. */
	assert_int_equal(auth_throttle_fail(t, "2001:db8::1"), 0);
	auth_throttle_free(&t);
}

static void
test_auth_throttle_address_grouping(void **state)
{
	struct auth_throttle_conf c = { .limit = 3, .now_ms = fake_now };
	struct auth_throttle *t;

	(void)state;
	clock_ms = 7;
	t = auth_throttle_new(&c);
	/* One IPv6 host owns its /64. */
	auth_throttle_fail(t, "2001:db8:1:2::1");
	auth_throttle_fail(t, "2001:db8:1:2:ffff::9");
	auth_throttle_fail(t, "2001:DB8:1:2:0:0:0:77");
	assert_int_equal(auth_throttle_blocked(t, "2001:db8:1:2::abcd"), 1);
	assert_int_equal(auth_throttle_blocked(t, "2001:db8:1:3::1"), 0);
	/* Mapped IPv4 is IPv4. */
	auth_throttle_fail(t, "::ffff:198.51.100.7");
	auth_throttle_fail(t, "198.51.100.7");
	assert_int_equal(auth_throttle_count(t, "198.51.100.7"), 2);
	/* Anything else counts as given, even if long. */
	auth_throttle_fail(t, "unix");
	assert_int_equal(auth_throttle_count(t, "unix"), 1);
	{
		char huge[1000];

		memset(huge, 'z', sizeof(huge) - 1);
		huge[sizeof(huge) - 1] = '\0';
		auth_throttle_fail(t, huge);
		assert_int_equal(auth_throttle_count(t, huge), 1);
	}
	auth_throttle_free(&t);
}

static void
test_auth_throttle_eviction_bounds_memory(void **state)
{
	struct auth_throttle_conf c = {
		.max_entries = 8, .limit = 3, .now_ms = fake_now,
	};
	struct auth_throttle *t;
	char a[32];

	(void)state;
	clock_ms = 1;
	t = auth_throttle_new(&c);
	for (int i = 0; i < 3; i++)
		auth_throttle_fail(t, "203.0.113.1");
	assert_int_equal(auth_throttle_blocked(t, "203.0.113.1"), 1);
	/* Cycling through many addresses never tracks more than 8. */
	for (int i = 0; i < 10000; i++) {
		clock_ms++;
		snprintf(a, sizeof(a), "10.%d.%d.%d", i >> 16, (i >> 8) & 255,
		    i & 255);
		assert_int_equal(auth_throttle_fail(t, a), 0);
		assert_true(auth_throttle_size(t) <= 8);
	}
	assert_int_equal(auth_throttle_size(t), 8);
	/* The oldest went first; the most recent ones are still there. */
	assert_int_equal(auth_throttle_count(t, "203.0.113.1"), 0);
	assert_int_equal(auth_throttle_count(t, "10.0.39.15"), 1);
	assert_int_equal(auth_throttle_count(t, "10.0.39.8"), 1);
	assert_int_equal(auth_throttle_count(t, "10.0.39.7"), 0);
	/* A recent failure refreshes an entry so it is not evicted. */
	auth_throttle_fail(t, "10.0.39.8");
	for (int i = 0; i < 7; i++) {
		snprintf(a, sizeof(a), "172.16.0.%d", i);
		auth_throttle_fail(t, a);
	}
	assert_int_equal(auth_throttle_count(t, "10.0.39.8"), 2);
	assert_int_equal(auth_throttle_count(t, "10.0.39.9"), 0);
	auth_throttle_free(&t);
}

static void
test_auth_throttle_defaults(void **state)
{
	struct auth_throttle *t = auth_throttle_new(NULL);
	unsigned int d = 0;

	(void)state;
	for (int i = 0; i < 9; i++) {
		d = auth_throttle_fail(t, "127.0.0.1");
		assert_int_equal(auth_throttle_blocked(t, "127.0.0.1"), 0);
	}
	assert_int_equal(d, 15000);
	auth_throttle_fail(t, "127.0.0.1");
	assert_int_equal(auth_throttle_blocked(t, "127.0.0.1"), 1);
	auth_throttle_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth_known_vectors),
		cmocka_unit_test(test_auth_wrong_and_empty_password),
		cmocka_unit_test(test_auth_dovecot_prefixes),
		cmocka_unit_test(test_auth_unusable_hashes_never_match),
		cmocka_unit_test(test_auth_unknown_user_costs_a_hash),
		cmocka_unit_test(test_auth_generated_hash_verifies),
		cmocka_unit_test(test_auth_user_parse),
		cmocka_unit_test(test_auth_parse_size),
		cmocka_unit_test(test_auth_address_check),
		cmocka_unit_test(test_auth_throttle_delays_and_blocks),
		cmocka_unit_test(test_auth_throttle_expiry),
		cmocka_unit_test(test_auth_throttle_address_grouping),
		cmocka_unit_test(test_auth_throttle_eviction_bounds_memory),
		cmocka_unit_test(test_auth_throttle_defaults),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
