/*
 * base64_test.c - RFC 4648 test vectors, round trips, strictness.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"

static void
test_base64_vectors(void **state)
{
	/* RFC 4648 10. */
	static const char *const v[][2] = {{"", ""}, {"f", "Zg=="},
	    {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *enc = base64_encode(v[i][0], strlen(v[i][0]));
		assert_string_equal(enc, v[i][1]);
		free(enc);
		char *dec;
		size_t len;
		assert_int_equal(base64_decode(v[i][1], &dec, &len), 0);
		assert_int_equal(len, strlen(v[i][0]));
		assert_memory_equal(dec, v[i][0], len);
		free(dec);
	}
}

static void
test_base64_binary_round_trip(void **state)
{
	unsigned char data[300];

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7);
	for (size_t n = 0; n < sizeof(data); n++) {
		char *enc = base64_encode(data, n), *dec;
		size_t len;
		assert_int_equal(base64_decode(enc, &dec, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(dec, data, n);
		free(enc);
		free(dec);
	}
}

static void
test_base64_strict(void **state)
{
	const char *bad[] = {"Zg", "Zg=", "Z===", "Zm9v YmFy", "Zm9v\r\n",
	    "Zg==Zg==", "Zm=v", "====", "Zm9*", "=Zm9"};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *dec = NULL;
		size_t len;
		assert_int_equal(base64_decode(bad[i], &dec, &len), -22);
		assert_null(dec);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64_vectors),
		cmocka_unit_test(test_base64_binary_round_trip),
		cmocka_unit_test(test_base64_strict),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
