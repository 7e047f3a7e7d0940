/*
 * conf_test.c - unit tests for lib/conf: syntax, expansion, types, bounds,
 * overrides and hostile files, each written into a temporary directory.
 * read(2) and abort(3) are wrapped (conf_test.wrap) to fake an I/O error and
 * to catch the getters' panics.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

static int fail_read;		/* __wrap_read fails with EIO */
static int catch_abort;		/* __wrap_abort jumps to abort_jmp */
static jmp_buf abort_jmp;

ssize_t __real_read(int fd, void *p, size_t n);
void __real_abort(void);

ssize_t
__wrap_read(int fd, void *p, size_t n)
{
	if (fail_read) {
		errno = EIO;
		return -1;
	}
	return __real_read(fd, p, n);
}

void
__wrap_abort(void)
{
	if (catch_abort)
		longjmp(abort_jmp, 1);
	__real_abort();
}

struct fixture {
	char dir[64];
	char path[128];
	struct conf *conf;
	char *err;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/conf_test.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/pochta.conf", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	conf_free(&f->conf);
	free(f->err);
	unlink(f->path);
	rmdir(f->path);
	rmdir(f->dir);
	free(f);
	fail_read = catch_abort = 0;
	return 0;
}

static void
write_file(struct fixture *f, const char *text, size_t len)
{
	FILE *fp = fopen(f->path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Write text as pochta.conf and load it with the given overrides. */
static int
load_o(struct fixture *f, const char *text, char *const *o, size_t n)
{
	conf_free(&f->conf);
	free(f->err);
	f->err = NULL;
	write_file(f, text, strlen(text));
	return conf_load(f->dir, o, n, &f->conf, &f->err);
}

static int
load(struct fixture *f, const char *text)
{
	return load_o(f, text, NULL, 0);
}

/* The load fails and the message is "path:line: " followed by text. */
static void
expect_error(struct fixture *f, const char *conf_text, int line,
    const char *text)
{
	char want[512];

	assert_int_equal(load(f, conf_text), -EINVAL);
	assert_null(f->conf);
	assert_non_null(f->err);
	snprintf(want, sizeof(want), "%s:%d: ", f->path, line);
	if (strncmp(f->err, want, strlen(want)) != 0 ||
	    strstr(f->err, text) == NULL)
		fail_msg("got \"%s\", want \"%s...%s...\"", f->err, want,
		    text);
}

static void
test_conf_defaults(void **state)
{
	struct fixture *f = *state;
	char want[128];
	char **list;
	size_t n;

	assert_int_equal(load(f, ""), 0);
	assert_null(f->err);
	assert_string_equal(conf_dir(f->conf), f->dir);
	assert_string_equal(conf_str(f->conf, "config_directory"), f->dir);
	assert_int_equal(conf_time(f->conf, "dns_timeout"), 5);
	assert_int_equal(conf_int(f->conf, "dns_retries"), 2);
	assert_int_equal(conf_size(f->conf, "message_size_limit"),
	    50LL * 1024 * 1024);
	assert_int_equal(conf_bool(f->conf, "verbose"), 0);
	/* A default that refers to another parameter. */
	snprintf(want, sizeof(want), "%s/tls/cert.pem", f->dir);
	assert_string_equal(conf_str(f->conf, "tls_cert_file"), want);
	assert_string_equal(conf_raw(f->conf, "tls_cert_file"),
	    "$config_directory/tls/cert.pem");
	assert_false(conf_is_set(f->conf, "tls_cert_file"));
	list = conf_list(f->conf, "mydestination", &n);
	assert_int_equal(n, 1);
	assert_string_equal(list[0], "localhost");
	assert_null(list[1]);
	conf_list_free(&list);
	assert_null(list);
	conf_free(&f->conf);
	assert_null(f->conf);
}

static void
test_conf_every_type(void **state)
{
	struct fixture *f = *state;
	char **list;
	size_t n;

	assert_int_equal(load(f,
	    "dns_retries = 7\n"
	    "verbose = On\n"
	    "dns_timeout = 2m\n"
	    "queue_minfree = 3G\n"
	    "message_size_limit = 10k\n"
	    "myhostname = mx.example.test\n"
	    "mynetworks = 10.0.0.0/8,192.0.2.1 ,, [::1]/128\t"
	    "198.51.100.0/24\n"),
	    0);
	assert_int_equal(conf_int(f->conf, "dns_retries"), 7);
	assert_int_equal(conf_bool(f->conf, "verbose"), 1);
	assert_int_equal(conf_time(f->conf, "dns_timeout"), 120);
	assert_int_equal(conf_size(f->conf, "queue_minfree"),
	    3LL * 1024 * 1024 * 1024);
	assert_int_equal(conf_size(f->conf, "message_size_limit"), 10240);
	assert_string_equal(conf_str(f->conf, "myhostname"),
	    "mx.example.test");
	assert_true(conf_is_set(f->conf, "myhostname"));
	list = conf_list(f->conf, "mynetworks", &n);
	assert_int_equal(n, 4);
	assert_string_equal(list[0], "10.0.0.0/8");
	assert_string_equal(list[1], "192.0.2.1");
	assert_string_equal(list[2], "[::1]/128");
	assert_string_equal(list[3], "198.51.100.0/24");
	assert_null(list[4]);
	conf_list_free(&list);
	/* conf_str takes a list too: the text as a whole. */
	assert_string_equal(conf_str(f->conf, "mynetworks"),
	    "10.0.0.0/8,192.0.2.1 ,, [::1]/128\t198.51.100.0/24");
}

static void
test_conf_bool_spellings(void **state)
{
	struct fixture *f = *state;
	static const char *const yes[] = {"yes", "true", "on", "1", "YES"};
	static const char *const no[] = {"no", "false", "off", "0", "Off"};
	char text[64];

	for (size_t i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "verbose = %s\n", yes[i]);
		assert_int_equal(load(f, text), 0);
		assert_int_equal(conf_bool(f->conf, "verbose"), 1);
		snprintf(text, sizeof(text), "verbose = %s\n", no[i]);
		assert_int_equal(load(f, text), 0);
		assert_int_equal(conf_bool(f->conf, "verbose"), 0);
	}
	expect_error(f, "verbose = maybe\n", 1,
	    "parameter 'verbose': 'maybe': not a boolean");
	expect_error(f, "verbose =\n", 1, "parameter 'verbose': ''");
}

static void
test_conf_time_units(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *text;
		long long secs;
	} t[] = {
		{"90", 90}, {"90s", 90}, {"3m", 180}, {"1h", 3600},
		{"5S", 5}, {"2M", 120},
	};
	char text[64];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(text, sizeof(text), "dns_timeout = %s\n", t[i].text);
		assert_int_equal(load(f, text), 0);
		assert_int_equal(conf_time(f->conf, "dns_timeout"), t[i].secs);
	}
	/* Days and weeks, seen through the bound of 3600 seconds. */
	expect_error(f, "dns_timeout = 1d\n", 1, "'1d' is more than 3600s");
	expect_error(f, "dns_timeout = 1w\n", 1, "'1w' is more than 3600s");
	expect_error(f, "dns_timeout = 5y\n", 1, "bad unit (s, m, h, d or w)");
	expect_error(f, "dns_timeout = 5ss\n", 1, "bad unit");
	expect_error(f, "dns_timeout = s\n", 1, "not a number");
	expect_error(f, "dns_timeout = -5\n", 1, "not a number");
}

static void
test_conf_size_units(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "queue_minfree = 0\n"), 0);
	assert_int_equal(conf_size(f->conf, "queue_minfree"), 0);
	assert_int_equal(load(f, "queue_minfree = 1234\n"), 0);
	assert_int_equal(conf_size(f->conf, "queue_minfree"), 1234);
	assert_int_equal(load(f, "queue_minfree = 2M\n"), 0);
	assert_int_equal(conf_size(f->conf, "queue_minfree"), 2 << 20);
	expect_error(f, "queue_minfree = 1t\n", 1, "bad unit (k, m or g)");
	expect_error(f, "queue_minfree = 1.5m\n", 1, "bad unit");
	/* Overflow is an error, not a wrapped number. */
	expect_error(f, "queue_minfree = 99999999999999999999\n", 1,
	    "number too large");
	expect_error(f, "queue_minfree = 9000000000000g\n", 1,
	    "number too large");
}

static void
test_conf_bounds(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "dns_retries = 0\ndns_timeout = 1h\n"), 0);
	assert_int_equal(conf_int(f->conf, "dns_retries"), 0);
	assert_int_equal(conf_time(f->conf, "dns_timeout"), 3600);
	expect_error(f, "# x\ndns_retries = 11\n", 2,
	    "parameter 'dns_retries': '11' is more than 10");
	expect_error(f, "dns_retries = -1\n", 1, "'-1' is less than 0");
	expect_error(f, "dns_timeout = 0\n", 1,
	    "parameter 'dns_timeout': '0' is less than 1s");
	expect_error(f, "dns_timeout = 61m\n", 1, "is more than 3600s");
	expect_error(f, "message_size_limit = 1023\n", 1,
	    "'1023' is less than 1024");
	expect_error(f, "dns_retries = 2x\n", 1, "'2x': not a number");
	expect_error(f, "dns_retries =\n", 1, "'': not a number");
	/* Of several bad values, the first in the file is reported. */
	expect_error(f, "# x\nverbose = maybe\ndns_timeout = 0\n"
	    "dns_retries = -1\n", 2, "parameter 'verbose'");
	expect_error(f, "verbose = no\ndns_timeout = 0\ndns_retries = -1\n", 2,
	    "parameter 'dns_timeout'");
}

static void
test_conf_expansion(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f,
	    "mydomain = example.test\n"
	    "myhostname = mx.$mydomain\n"
	    "relayhost = [${myhostname}]:25 costs $$5 ${mydomain}x\n"
	    "recipient_delimiter = $$\n"), 0);
	assert_string_equal(conf_str(f->conf, "myhostname"),
	    "mx.example.test");
	assert_string_equal(conf_str(f->conf, "relayhost"),
	    "[mx.example.test]:25 costs $5 example.testx");
	assert_string_equal(conf_raw(f->conf, "relayhost"),
	    "[${myhostname}]:25 costs $$5 ${mydomain}x");
	assert_string_equal(conf_str(f->conf, "recipient_delimiter"), "$");
	/* A default refers to a parameter that was set. */
	assert_int_equal(load(f, "myhostname = a.example.test\n"), 0);
	assert_string_equal(conf_value(f->conf, "mydestination"),
	    "a.example.test, localhost");
	/* Typed values are checked after expansion. */
	assert_int_equal(load(f, "dns_retries = 3\n"
	    "dns_timeout = ${dns_retries}m\n"), 0);
	assert_int_equal(conf_time(f->conf, "dns_timeout"), 180);
}

static void
test_conf_expansion_errors(void **state)
{
	struct fixture *f = *state;

	expect_error(f, "# loop\nmyhostname = $relayhost\n"
	    "relayhost = x$myhostname\n", 3,
	    "$name expansion loop: myhostname -> relayhost -> myhostname");
	expect_error(f, "relayhost = $relayhost\n", 1, "loop");
	/* A loop through a default is blamed on the line that closes it. */
	expect_error(f, "\n\nmyhostname = ${mydestination}\n", 3,
	    "parameter 'myhostname': $name expansion loop");
	expect_error(f, "\nrelayhost = $nosuch\n", 2,
	    "parameter 'relayhost': unknown parameter '$nosuch'");
	expect_error(f, "relayhost = a $ b\n", 1,
	    "'$' without a parameter name");
	expect_error(f, "relayhost = ${mydomain\n", 1, "'${' without");
	expect_error(f, "relayhost = ${}\n", 1, "'${' without");
	expect_error(f, "relayhost = x$\n", 1, "'$' without");
}

/* Postfix's ${name?text}, ${name:text} and $(name). */
static void
test_conf_expansion_conditional(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f,
	    "mydomain = example.test\n"
	    "myhostname = ${relayhost?relay}${relayhost:direct}.$(mydomain)\n"
	    "smtpd_banner = ${mydomain?{$mydomain ${relayhost:{none}}}} x\n"
	    "recipient_delimiter = ${relayhost?$nosuch}-\n"), 0);
	assert_string_equal(conf_str(f->conf, "myhostname"),
	    "direct.example.test");
	assert_string_equal(conf_str(f->conf, "smtpd_banner"),
	    "{example.test {none}} x");
	/* Text not chosen is not expanded, so its references do not count. */
	assert_string_equal(conf_str(f->conf, "recipient_delimiter"), "-");
	assert_int_equal(load(f, "relayhost = r.test\n"
	    "myhostname = ${relayhost?relay}${relayhost:direct}\n"), 0);
	assert_string_equal(conf_str(f->conf, "myhostname"), "relay");
	expect_error(f, "myhostname = ${relayhost?x\n", 1,
	    "'${relayhost?' without its '}'");
	expect_error(f, "myhostname = ${relayhost!x}\n", 1,
	    "'${' without a name and '}'");
	expect_error(f, "myhostname = $(mydomain\n", 1,
	    "'$(' without a name and ')'");
	expect_error(f, "myhostname = ${nosuch?x}\n", 1,
	    "unknown parameter '$nosuch'");
	expect_error(f, "myhostname = ${myhostname:x}\n", 1, "loop");
}

/* Nesting is bounded, so a hostile value cannot exhaust the stack. */
static void
test_conf_expansion_nesting(void **state)
{
	struct fixture *f = *state;
	char text[4096];
	size_t len, i;

	len = sprintf(text, "myhostname = ");
	for (i = 0; i < 40; i++)
		len += sprintf(text + len, "${mydomain?");
	for (i = 0; i < 40; i++)
		text[len++] = '}';
	strcpy(text + len, "\n");
	expect_error(f, text, 1, "nested too deeply");
	len = sprintf(text, "myhostname = ");
	for (i = 0; i < 20; i++)
		len += sprintf(text + len, "${mydomain?");
	text[len++] = 'x';
	for (i = 0; i < 20; i++)
		text[len++] = '}';
	strcpy(text + len, "\n");
	assert_int_equal(load(f, text), 0);
	assert_string_equal(conf_str(f->conf, "myhostname"), "x");
}

/* Doubling through ten parameters would be 2^10 times the input: bounded. */
static void
test_conf_expansion_bounded(void **state)
{
	struct fixture *f = *state;
	struct big {
		char text[1 << 16];
	} *b = malloc(sizeof(*b));
	static const char *const names[] = {"myhostname", "mydomain",
	    "relayhost", "recipient_delimiter", "inet_protocols", "log_target",
	    "mail_owner", "mail_store_owner", "queue_directory",
	    "mail_directory", NULL};
	size_t len = 0;

	assert_non_null(b);
	len += sprintf(b->text + len, "%s = %0512d\n", names[0], 0);
	for (size_t i = 1; names[i] != NULL; i++)
		len += sprintf(b->text + len, "%s = $%s$%s$%s$%s\n", names[i],
		    names[i - 1], names[i - 1], names[i - 1], names[i - 1]);
	assert_int_equal(load(f, b->text), -EINVAL);
	assert_non_null(strstr(f->err, "after expansion"));
	free(b);
}

static void
test_conf_syntax(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f,
	    "# a comment\n"
	    "\n"
	    "   \t\n"
	    "mydestination = a.test,\n"
	    "    b.test   \n"
	    "  # a comment inside a setting\n"
	    "\n"
	    "\tc.test\r\n"
	    "relayhost=[smtp.example.test]   \n"
	    "  # indented comment\n"
	    "myhostname = x # not a comment\n"), 0);
	assert_string_equal(conf_raw(f->conf, "mydestination"),
	    "a.test, b.test c.test");
	assert_string_equal(conf_str(f->conf, "relayhost"),
	    "[smtp.example.test]");
	assert_string_equal(conf_str(f->conf, "myhostname"),
	    "x # not a comment");
	/* No final newline. */
	assert_int_equal(load(f, "dns_retries = 4"), 0);
	assert_int_equal(conf_int(f->conf, "dns_retries"), 4);
	/* The last setting wins. */
	assert_int_equal(load(f, "dns_retries = 4\ndns_retries = 5\n"), 0);
	assert_int_equal(conf_int(f->conf, "dns_retries"), 5);
}

static void
test_conf_syntax_errors(void **state)
{
	struct fixture *f = *state;

	expect_error(f, "# one\n\n# three\n  relayhost = x\n", 4,
	    "continuation line without a setting before it");
	expect_error(f, "dns_retries = 1\njust words\n", 2,
	    "expected 'name = value'");
	expect_error(f, "= value\n", 1, "missing parameter name");
	expect_error(f, "config_directory = /etc\n", 1,
	    "'config_directory' cannot be set");
	expect_error(f, "relay-host = x\n", 1,
	    "unknown parameter 'relay-host'");
	expect_error(f, "#\nrelayhost = a\033[2Jb\n", 2,
	    "parameter 'relayhost': control character in the value");
	expect_error(f, "relayhost = a\rb\n", 1, "control character");
	/* A tab inside a value is white space, not an error. */
	assert_int_equal(load(f, "relayhost = a\tb\n"), 0);
	assert_string_equal(conf_str(f->conf, "relayhost"), "a\tb");
}

static void
test_conf_unknown_parameter_line(void **state)
{
	struct fixture *f = *state;

	expect_error(f,
	    "# comment\n"
	    "mydomain = example.test\n"
	    "mydestination = a,\n"
	    "    b\n"
	    "\n"
	    "no_such_parameter = 1\n"
	    "  continued\n", 6, "unknown parameter 'no_such_parameter'");
	/* Control characters in a name are not echoed raw. */
	expect_error(f, "bad\033[2Jname = 1\n", 1,
	    "unknown parameter 'bad?[2J");
}

static void
test_conf_overrides(void **state)
{
	struct fixture *f = *state;
	char *o1[] = {"dns_retries=9", " myhostname = o.example.test "};
	char *o2[] = {"nosuch=1"};
	char *o3[] = {"dns_retries=many"};
	char *o4[] = {"dns_retries"};
	char *o5[] = {"config_directory=/"};
	char *o6[] = {"relayhost=$relayhost"};
	char *o7[] = {"relayhost=a\nverbose=yes"};

	assert_int_equal(load_o(f, "dns_retries = 1\n", o1, 2), 0);
	assert_int_equal(conf_int(f->conf, "dns_retries"), 9);
	assert_string_equal(conf_str(f->conf, "myhostname"), "o.example.test");
	assert_true(conf_is_set(f->conf, "myhostname"));
	assert_int_equal(load_o(f, "", o2, 1), -EINVAL);
	assert_string_equal(f->err, "-o nosuch: unknown parameter 'nosuch'");
	assert_int_equal(load_o(f, "", o3, 1), -EINVAL);
	assert_string_equal(f->err,
	    "-o dns_retries: parameter 'dns_retries': 'many': not a number");
	assert_int_equal(load_o(f, "", o4, 1), -EINVAL);
	assert_string_equal(f->err, "-o dns_retries: expected name=value");
	assert_int_equal(load_o(f, "", o5, 1), -EINVAL);
	assert_non_null(strstr(f->err, "-o config_directory: "));
	assert_int_equal(load_o(f, "", o6, 1), -EINVAL);
	assert_non_null(strstr(f->err, "-o relayhost: parameter 'relayhost': "
	    "$name expansion loop"));
	assert_int_equal(load_o(f, "", o7, 1), -EINVAL);
	assert_string_equal(f->err, "-o relayhost: parameter 'relayhost': "
	    "control character in the value");
	/* An override fixes a bad file value: the file is checked after. */
	assert_int_equal(load_o(f, "dns_retries = many\n", o1, 1), 0);
	assert_int_equal(conf_int(f->conf, "dns_retries"), 9);
}

static void
test_conf_missing_file(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(conf_load(f->dir, NULL, 0, &f->conf, &f->err),
	    -ENOENT);
	assert_null(f->conf);
	assert_non_null(strstr(f->err, f->path));
	assert_non_null(strstr(f->err, "No such file"));
}

static void
test_conf_not_a_file(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(mkdir(f->path, 0700), 0);
	assert_int_equal(conf_load(f->dir, NULL, 0, &f->conf, &f->err),
	    -EINVAL);
	assert_non_null(strstr(f->err, "not a regular file"));
	/* A FIFO must not block the reader. */
	assert_int_equal(rmdir(f->path), 0);
	assert_int_equal(mkfifo(f->path, 0600), 0);
	free(f->err);
	assert_int_equal(conf_load(f->dir, NULL, 0, &f->conf, &f->err),
	    -EINVAL);
	assert_non_null(strstr(f->err, "not a regular file"));
}

static void
test_conf_read_error(void **state)
{
	struct fixture *f = *state;

	write_file(f, "dns_retries = 1\n", 16);
	fail_read = 1;
	assert_int_equal(conf_load(f->dir, NULL, 0, &f->conf, &f->err), -EIO);
	fail_read = 0;
	assert_null(f->conf);
	assert_non_null(strstr(f->err, f->path));
	assert_non_null(strstr(f->err, "Input/output error"));
}

static void
test_conf_binary_garbage(void **state)
{
	struct fixture *f = *state;
	unsigned char junk[4096];
	char want[160];

	/* A NUL byte: the error names its line. */
	write_file(f, "# x\n\nmyhostname = a\0b\n", 21);
	assert_int_equal(conf_load(f->dir, NULL, 0, &f->conf, &f->err),
	    -EINVAL);
	snprintf(want, sizeof(want), "%s:3: NUL byte in the file", f->path);
	assert_string_equal(f->err, want);
	free(f->err);
	f->err = NULL;
	/* Pseudo-random bytes, with and without NULs: a clean error. */
	srandom(1);
	for (int round = 0; round < 50; round++) {
		for (size_t i = 0; i < sizeof(junk); i++) {
			junk[i] = random() & 0xff;
			if (round % 2 && junk[i] == 0)
				junk[i] = '\n';
		}
		write_file(f, (char *)junk, sizeof(junk));
		assert_int_equal(conf_load(f->dir, NULL, 0, &f->conf, &f->err),
		    -EINVAL);
		assert_null(f->conf);
		assert_non_null(f->err);
		free(f->err);
		f->err = NULL;
	}
}

static void
test_conf_long_lines(void **state)
{
	struct fixture *f = *state;
	size_t n = CONF_LINE_MAX + 100;
	char *text = malloc(2 * n);
	size_t len;

	assert_non_null(text);
	/* One physical line over the limit. */
	len = sprintf(text, "# c\nrelayhost = ");
	memset(text + len, 'a', n);
	strcpy(text + len + n, "\n");
	expect_error(f, text, 2, "logical line longer than 65536 bytes");
	/* Many short continuation lines adding up past the limit. */
	len = sprintf(text, "relayhost = a\n");
	while (len < n + n / 4)
		len += sprintf(text + len, " bbbbbbbbbbbbbbb\n");
	expect_error(f, text, 1, "logical line longer than");
	/* Just under the limit is fine. */
	len = sprintf(text, "relayhost = ");
	memset(text + len, 'c', CONF_LINE_MAX - len);
	strcpy(text + CONF_LINE_MAX, "\n");
	assert_int_equal(load(f, text), 0);
	assert_int_equal(strlen(conf_str(f->conf, "relayhost")),
	    CONF_LINE_MAX - len);
	free(text);
}

static void
test_conf_file_too_large(void **state)
{
	struct fixture *f = *state;
	size_t n = CONF_FILE_MAX + 1;
	char *text = malloc(n);

	assert_non_null(text);
	memset(text, '\n', n);
	write_file(f, text, n);
	assert_int_equal(conf_load(f->dir, NULL, 0, &f->conf, &f->err),
	    -EFBIG);
	assert_non_null(strstr(f->err, "larger than"));
	/* Exactly the limit is read. */
	write_file(f, text, n - 1);
	free(f->err);
	f->err = NULL;
	assert_int_equal(conf_load(f->dir, NULL, 0, &f->conf, &f->err), 0);
	free(text);
}

static void
test_conf_load_text(void **state)
{
	struct fixture *f = *state;
	static const char text[] = "dns_retries = 3\nx";

	/* len bounds the text: the "x" after it is not read. */
	assert_int_equal(conf_load_text("/d", "mem", text, 16, NULL, 0,
	    &f->conf, &f->err), 0);
	assert_int_equal(conf_int(f->conf, "dns_retries"), 3);
	assert_string_equal(conf_str(f->conf, "tls_key_file"),
	    "/d/tls/key.pem");
	conf_free(&f->conf);
	assert_int_equal(conf_load_text("/d", "mem", text, sizeof(text) - 1,
	    NULL, 0, &f->conf, &f->err), -EINVAL);
	assert_string_equal(f->err, "mem:2: expected 'name = value'");
	free(f->err);
	f->err = NULL;
	/* Trailing slashes of the directory do not double in expansions. */
	assert_int_equal(conf_load_text("/d//", "mem", "", 0, NULL, 0,
	    &f->conf, &f->err), 0);
	assert_string_equal(conf_str(f->conf, "config_directory"), "/d");
	assert_string_equal(conf_str(f->conf, "tls_key_file"),
	    "/d/tls/key.pem");
}

static void
test_conf_default_dir(void **state)
{
	(void)state;
	unsetenv("POCHTA_CONF");
	assert_string_equal(conf_default_dir(), POCHTA_SYSCONFDIR);
	setenv("POCHTA_CONF", "", 1);
	assert_string_equal(conf_default_dir(), POCHTA_SYSCONFDIR);
	setenv("POCHTA_CONF", "/srv/pochta/conf", 1);
	assert_string_equal(conf_default_dir(), "/srv/pochta/conf");
	unsetenv("POCHTA_CONF");
}

static void
test_conf_line_kind(void **state)
{
	(void)state;
	assert_int_equal(conf_line_kind("", 0), CONF_LINE_BLANK);
	assert_int_equal(conf_line_kind(" \t\r", 3), CONF_LINE_BLANK);
	assert_int_equal(conf_line_kind("# x", 3), CONF_LINE_COMMENT);
	assert_int_equal(conf_line_kind("  # x", 5), CONF_LINE_COMMENT);
	assert_int_equal(conf_line_kind(" a", 2), CONF_LINE_CONT);
	assert_int_equal(conf_line_kind("a = b", 5), CONF_LINE_SETTING);
	assert_int_equal(conf_line_name_len("abc = d", 7), 3);
	assert_int_equal(conf_line_name_len("abc=d", 5), 3);
	assert_int_equal(conf_line_name_len("abc", 3), 3);
}

/* Each getter panics (abort) on an undeclared name or the wrong type. */
static void
expect_panic(struct fixture *f, int which)
{
	catch_abort = 1;
	if (setjmp(abort_jmp) == 0) {
		switch (which) {
		case 0:
			conf_str(f->conf, "no_such_parameter");
			break;
		case 1:
			conf_int(f->conf, "verbose");
			break;
		case 2:
			conf_time(f->conf, "message_size_limit");
			break;
		case 3:
			conf_size(f->conf, "dns_timeout");
			break;
		case 4:
			conf_bool(f->conf, "dns_retries");
			break;
		case 5:
			conf_list(f->conf, "relayhost", NULL);
			break;
		case 6:
			conf_str(f->conf, "verbose");
			break;
		case 7:
			conf_raw(f->conf, "nosuch");
			break;
		}
		catch_abort = 0;
		fail_msg("getter %d did not panic", which);
	}
	catch_abort = 0;
}

static void
test_conf_getters_panic(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, ""), 0);
	for (int i = 0; i < 8; i++)
		expect_panic(f, i);
}

/* Every declared default is valid for its type: an empty file loads. */
static void
test_conf_all_defaults_valid(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "\n"), 0);
	for (const struct conf_param_group *g = conf_param_groups;
	     g->name != NULL; g++)
		for (const struct conf_param *p = g->params; p->name != NULL;
		     p++) {
			assert_ptr_equal(conf_param_find(p->name), p);
			assert_non_null(p->def);
			assert_non_null(p->desc);
			assert_non_null(conf_value(f->conf, p->name));
			assert_false(conf_is_set(f->conf, p->name));
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_conf_defaults),
		T(test_conf_every_type),
		T(test_conf_bool_spellings),
		T(test_conf_time_units),
		T(test_conf_size_units),
		T(test_conf_bounds),
		T(test_conf_expansion),
		T(test_conf_expansion_errors),
		T(test_conf_expansion_conditional),
		T(test_conf_expansion_nesting),
		T(test_conf_expansion_bounded),
		T(test_conf_syntax),
		T(test_conf_syntax_errors),
		T(test_conf_unknown_parameter_line),
		T(test_conf_overrides),
		T(test_conf_missing_file),
		T(test_conf_not_a_file),
		T(test_conf_read_error),
		T(test_conf_binary_garbage),
		T(test_conf_long_lines),
		T(test_conf_file_too_large),
		T(test_conf_load_text),
		T(test_conf_default_dir),
		T(test_conf_line_kind),
		T(test_conf_getters_panic),
		T(test_conf_all_defaults_valid),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
