/*
 * tls.c - OpenSSL 3 through memory BIOs (tls.h): contexts, the
 * per-connection engine, and self-signed certificates for `pochta init`.
 * TLS 1.2 minimum (RFC 8996 retired 1.0 and 1.1), no compression (CRIME),
 * no renegotiation. Every OpenSSL failure becomes a negative errno plus the
 * library's reason text; the error queue is cleared so none leaks across.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"
#include "xalloc.h"

/*
 * For TLS 1.2: forward secrecy and AEAD first, nothing anonymous, export,
 * RC4, 3DES or MD5. CBC suites stay last because many MTAs still only have
 * those, and opportunistic TLS beats plaintext. TLS 1.3 suites are
 * OpenSSL's defaults.
 */
#define TLS_CIPHERS \
	"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:" \
	"DHE+AES:!aNULL:!eNULL:!MD5:!RC4:!3DES:!DSS"

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	enum tls_role role;
};

struct tls {
	SSL *ssl;
	BIO *rbio;		/* ciphertext from the peer */
	BIO *wbio;		/* ciphertext for the peer */
	enum tls_role role;
	int done;		/* handshake complete */
	int shut;		/* our close_notify queued */
	int failed;		/* a fatal error: OpenSSL forbids more calls */
	char err[256];
};

/* OpenSSL's reason for the oldest queued error, then clear the queue. */
static void
ssl_reason(char *out, size_t outlen, const char *fallback)
{
	unsigned long e = ERR_get_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	if (e == 0)
		snprintf(out, outlen, "%s", fallback);
	else if (r != NULL)
		snprintf(out, outlen, "%s", r);
	else
		snprintf(out, outlen, "error:%08lX", e);
	ERR_clear_error();
}

/* A malloc'd "prefix: reason" message from the error queue. */
static char *
ssl_errstr(const char *prefix)
{
	char reason[256];

	ssl_reason(reason, sizeof(reason), "unknown error");
	return xasprintf("%s: %s", prefix, reason);
}

/* Settings common to both roles. */
static SSL_CTX *
ctx_common(const SSL_METHOD *method)
{
	SSL_CTX *c = SSL_CTX_new(method);

	if (c == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(c, TLS_CIPHERS) != 1) {
		SSL_CTX_free(c);
		return NULL;
	}
	SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Idle IMAP connections are many; keep no buffers while idle. */
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
	return c;
}

/* Map an OpenSSL file-loading failure to an errno. */
static int
file_errno(const char *path)
{
	if (access(path, R_OK) == 0)
		return -EINVAL;
	return errno == ENOENT ? -ENOENT : -EACCES;
}

static char *
mismatch(const char *key_file, const char *cert_file)
{
	return xasprintf("private key %s does not match certificate %s",
	    key_file, cert_file);
}

int
tls_ctx_server_new(const char *cert_file, const char *key_file,
    struct tls_ctx **ctx_r, char **errstr_r)
{
	SSL_CTX *c;
	char *prefix;
	int r;

	*ctx_r = NULL;
	ERR_clear_error();
	if ((c = ctx_common(TLS_server_method())) == NULL) {
		*errstr_r = ssl_errstr("cannot create TLS server context");
		return -ENOMEM;
	}
	if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
		r = file_errno(cert_file);
		prefix = xasprintf("cannot load certificate chain %s",
		    cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();

		r = file_errno(key_file);
		/* The likeliest operator mistake gets a plain message. */
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
		    ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH))
			prefix = mismatch(key_file, cert_file);
		else
			prefix = xasprintf("cannot load private key %s",
			    key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(c) != 1) {
		r = -EINVAL;
		prefix = mismatch(key_file, cert_file);
		goto fail;
	}
	SSL_CTX_set_dh_auto(c, 1);
	/* Needed for session resumption with any server-side verification. */
	SSL_CTX_set_session_id_context(c, (const unsigned char *)"pochta", 6);
	*ctx_r = xcalloc(1, sizeof(**ctx_r));
	(*ctx_r)->ssl_ctx = c;
	(*ctx_r)->role = TLS_SERVER;
	return 0;
fail:
	*errstr_r = ssl_errstr(prefix);
	free(prefix);
	SSL_CTX_free(c);
	return r;
}

int
tls_ctx_client_new(enum tls_verify verify, const char *ca_file,
    struct tls_ctx **ctx_r, char **errstr_r)
{
	SSL_CTX *c;
	int ok;

	*ctx_r = NULL;
	ERR_clear_error();
	if ((c = ctx_common(TLS_client_method())) == NULL) {
		*errstr_r = ssl_errstr("cannot create TLS client context");
		return -ENOMEM;
	}
	if (ca_file != NULL)
		ok = SSL_CTX_load_verify_locations(c, ca_file, NULL);
	else
		ok = SSL_CTX_set_default_verify_paths(c);
	if (ok != 1) {
		char *prefix = xasprintf("cannot load CA certificates %s",
		    ca_file != NULL ? ca_file : "(system store)");
		int r = ca_file != NULL ? file_errno(ca_file) : -EINVAL;

		*errstr_r = ssl_errstr(prefix);
		free(prefix);
		SSL_CTX_free(c);
		return r;
	}
	SSL_CTX_set_verify(c, verify == TLS_VERIFY_PEER ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);
	/* Lets connections use DANE (tls_dane_enable); others are not
	 * affected. */
	if (SSL_CTX_dane_enable(c) <= 0) {
		*errstr_r = ssl_errstr("cannot enable DANE");
		SSL_CTX_free(c);
		return -ENOMEM;
	}
	*ctx_r = xcalloc(1, sizeof(**ctx_r));
	(*ctx_r)->ssl_ctx = c;
	(*ctx_r)->role = TLS_CLIENT;
	return 0;
}

enum tls_role
tls_ctx_role(const struct tls_ctx *ctx)
{
	return ctx->role;
}

void
tls_ctx_free(struct tls_ctx **ctx)
{
	if (*ctx == NULL)
		return;
	SSL_CTX_free((*ctx)->ssl_ctx);
	free(*ctx);
	*ctx = NULL;
}

/* Whether name is an IPv4 or IPv6 literal (no SNI for those, RFC 6066 3). */
static int
ip_literal(const char *name)
{
	unsigned char a[16];

	return inet_pton(AF_INET, name, a) == 1 ||
	    inet_pton(AF_INET6, name, a) == 1;
}

struct tls *
tls_new(struct tls_ctx *ctx, const char *servername)
{
	struct tls *t = xcalloc(1, sizeof(*t));

	t->role = ctx->role;
	t->ssl = SSL_new(ctx->ssl_ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL)
		fatal("out of memory creating a TLS session");
	/* An empty input means "wait for more", not end of file. */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	if (t->role == TLS_SERVER) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (servername != NULL && *servername != '\0') {
			if (!ip_literal(servername))
				SSL_set_tlsext_host_name(t->ssl, servername);
			SSL_set1_host(t->ssl, servername);
		}
	}
	ERR_clear_error();
	return t;
}

void
tls_free(struct tls **t)
{
	if (*t == NULL)
		return;
	SSL_free((*t)->ssl);	/* frees both BIOs */
	free(*t);
	*t = NULL;
}

int
tls_feed(struct tls *t, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		int n = len > 1 << 30 ? 1 << 30 : (int)len;
		int w = BIO_write(t->rbio, p, n);

		if (w <= 0) {
			ERR_clear_error();
			return -ENOMEM;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/*
 * Turn a failed SSL_* call into an errno: -EAGAIN for "need input", 0 for
 * close_notify, else -EPROTO with the reason (and the certificate verify
 * result, which says more than "certificate verify failed").
 */
static int
ssl_result(struct tls *t, int ret, const char *what)
{
	int e = SSL_get_error(t->ssl, ret);
	long v;

	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ERR_clear_error();
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return 0;
	default:
		break;
	}
	v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK && !t->done &&
	    SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE) {
		snprintf(t->err, sizeof(t->err), "%s: certificate verify "
		    "failed: %s", what, X509_verify_cert_error_string(v));
		ERR_clear_error();
	} else {
		char reason[200];

		ssl_reason(reason, sizeof(reason), e == SSL_ERROR_SYSCALL ?
		    "unexpected end of data" : "protocol error");
		snprintf(t->err, sizeof(t->err), "%s: %s", what, reason);
	}
	t->failed = 1;
	return -EPROTO;
}

int
tls_handshake(struct tls *t)
{
	int ret, r;

	if (t->done)
		return 0;
	if (t->failed)
		return -EPROTO;
	ERR_clear_error();
	ret = SSL_do_handshake(t->ssl);
	if (ret == 1) {
		t->done = 1;
		return 0;
	}
	r = ssl_result(t, ret, "TLS handshake failed");
	/* close_notify during the handshake is a failure too. */
	if (r == 0) {
		snprintf(t->err, sizeof(t->err),
		    "TLS handshake failed: peer closed the session");
		t->failed = 1;
		r = -EPROTO;
	}
	return r;
}

int
tls_handshake_done(const struct tls *t)
{
	return t->done;
}

long
tls_read(struct tls *t, void *p, size_t len)
{
	int n;

	if (!t->done)
		return -EAGAIN;
	if (t->failed)
		return -EPROTO;
	if (len > 1 << 30)
		len = 1 << 30;
	ERR_clear_error();
	n = SSL_read(t->ssl, p, (int)len);
	if (n > 0)
		return n;
	return ssl_result(t, n, "TLS read error");
}

int
tls_write(struct tls *t, const void *data, size_t len)
{
	const char *p = data;

	if (!t->done)
		return -EAGAIN;
	if (t->shut)
		return -EPIPE;
	if (t->failed)
		return -EPROTO;
	ERR_clear_error();
	while (len > 0) {
		int n = len > 1 << 30 ? 1 << 30 : (int)len;
		int w = SSL_write(t->ssl, p, n);

		if (w <= 0) {
			int r = ssl_result(t, w, "TLS write error");

			return r == 0 || r == -EAGAIN ? -EPROTO : r;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int
tls_shutdown(struct tls *t)
{
	int ret;

	if (t->shut)
		return 0;
	if (t->failed || !t->done)
		return -EPROTO;
	t->shut = 1;
	ERR_clear_error();
	/* 0 means "sent, the peer's not seen yet": that is all we wait for. */
	ret = SSL_shutdown(t->ssl);
	if (ret >= 0)
		return 0;
	ret = ssl_result(t, ret, "TLS shutdown error");
	return ret == -EAGAIN || ret == 0 ? 0 : ret;
}

size_t
tls_out_pending(const struct tls *t)
{
	return BIO_ctrl_pending(t->wbio);
}

size_t
tls_out_take(struct tls *t, void *p, size_t len)
{
	int n;

	if (len > 1 << 30)
		len = 1 << 30;
	if (len == 0 || BIO_ctrl_pending(t->wbio) == 0)
		return 0;
	n = BIO_read(t->wbio, p, (int)len);
	return n > 0 ? (size_t)n : 0;
}

const char *
tls_error(const struct tls *t)
{
	return t->err;
}

const char *
tls_version(const struct tls *t)
{
	return t->done ? SSL_get_version(t->ssl) : "";
}

const char *
tls_cipher(const struct tls *t)
{
	const char *c = t->done ? SSL_get_cipher_name(t->ssl) : NULL;

	return c != NULL ? c : "";
}

int
tls_cipher_bits(const struct tls *t)
{
	return t->done ? SSL_get_cipher_bits(t->ssl, NULL) : 0;
}

char *
tls_peer_cn(const struct tls *t)
{
	X509 *cert = SSL_get0_peer_certificate(t->ssl);
	X509_NAME *subj;
	unsigned char *utf8 = NULL;
	char *cn;
	int i, n;

	if (cert == NULL || (subj = X509_get_subject_name(cert)) == NULL)
		return NULL;
	i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (i < 0)
		return NULL;
	n = ASN1_STRING_to_UTF8(&utf8,
	    X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
	if (n < 0) {
		ERR_clear_error();
		return NULL;
	}
	/* The name ends up in log lines and headers: no control bytes. */
	cn = xstrndup((const char *)utf8, (size_t)n);
	for (i = 0; i < n; i++)
		if ((unsigned char)cn[i] < 0x20 || cn[i] == 0x7f)
			cn[i] = '?';
	OPENSSL_free(utf8);
	return cn;
}

const char *
tls_servername(const struct tls *t)
{
	return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

int
tls_peer_verified(const struct tls *t)
{
	return t->done && SSL_get0_peer_certificate(t->ssl) != NULL &&
	    SSL_get_verify_result(t->ssl) == X509_V_OK;
}

int
tls_dane_enable(struct tls *t, const char *basedomain)
{
	if (t->role != TLS_CLIENT || t->done ||
	    SSL_dane_enable(t->ssl, basedomain) <= 0) {
		ssl_reason(t->err, sizeof(t->err), "cannot enable DANE");
		return -EPROTO;
	}
	/* RFC 7672 3.1.1: DANE-EE(3) binds the key, not a name; 3.2.3:
	 * no partial wildcards ("mx*.example") for DANE-TA(2). */
	SSL_dane_set_flags(t->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	/* A peer that matches no record fails the handshake. */
	SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
	return 0;
}

int
tls_dane_add(struct tls *t, unsigned usage, unsigned selector,
    unsigned mtype, const unsigned char *data, size_t len)
{
	int r;

	if (usage > 255 || selector > 255 || mtype > 255)
		return 0;
	r = SSL_dane_tlsa_add(t->ssl, (uint8_t)usage, (uint8_t)selector,
	    (uint8_t)mtype, data, len);
	if (r < 0) {
		ssl_reason(t->err, sizeof(t->err), "DANE is not enabled");
		return -EPROTO;
	}
	ERR_clear_error();	/* an unusable record leaves a reason */
	return r > 0 ? 1 : 0;
}

int
tls_peer_dane_verified(const struct tls *t)
{
	return tls_peer_verified(t) &&
	    SSL_get0_dane_authority(t->ssl, NULL, NULL) >= 0;
}

int
tls_tlsa_usable(unsigned usage, unsigned selector, unsigned mtype,
    size_t len)
{
	if (usage != 2 && usage != 3)
		return 0;
	if (selector != 0 && selector != 1)
		return 0;
	switch (mtype) {
	case 0:
		return len > 0;
	case 1:
		return len == 32;
	case 2:
		return len == 64;
	default:
		return 0;
	}
}

/* Host names as certificates carry them: LDH labels, or an IP literal. */
static int
hostname_ok(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > 253)
		return 0;
	if (ip_literal(h))
		return 1;
	return strspn(h, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == n &&
	    h[0] != '.' && h[0] != '-';
}

static int
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return 0;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

/* A certificate for hostname signed by its own key, or NULL. */
static X509 *
selfsigned_cert(EVP_PKEY *key, const char *hostname, int days)
{
	X509 *x = X509_new();
	X509_NAME *name;
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	char *san;
	int ok;

	if (x == NULL)
		return NULL;
	/* RFC 5280 4.1.2.2: positive, at most 20 octets, unpredictable. */
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ==
	    NULL)
		goto fail;
	name = X509_get_subject_name(x);
	if (X509_set_version(x, 2) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL ||
	    X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
	    (const unsigned char *)hostname, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 ||
	    X509_set_pubkey(x, key) != 1)
		goto fail;
	san = xasprintf("%s:%s", ip_literal(hostname) ? "IP" : "DNS",
	    hostname);
	ok = add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
	    add_ext(x, NID_key_usage, "critical,digitalSignature") &&
	    add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth") &&
	    add_ext(x, NID_subject_key_identifier, "hash") &&
	    add_ext(x, NID_subject_alt_name, san);
	free(san);
	if (!ok || X509_sign(x, key, EVP_sha256()) <= 0)
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

/*
 * Write a PEM object to path via a temporary file in the same directory:
 * mode, fsync, rename, so readers see the old file or the new, whole.
 */
static int
write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert,
    char **errstr_r)
{
	char *tmp = xasprintf("%s.XXXXXX", path);
	int fd, ok, r;
	FILE *fp;

	if ((fd = mkstemp(tmp)) < 0) {
		r = -errno;
		*errstr_r = xasprintf("cannot create %s: %s", tmp,
		    strerror(errno));
		free(tmp);
		return r;
	}
	if (fchmod(fd, mode) < 0 || (fp = fdopen(fd, "w")) == NULL) {
		r = -errno;
		close(fd);
		goto fail_errno;
	}
	ok = key != NULL ? PEM_write_PrivateKey(fp, key, NULL, NULL, 0,
	    NULL, NULL) : PEM_write_X509(fp, cert);
	if (!ok) {
		fclose(fp);
		unlink(tmp);
		*errstr_r = ssl_errstr(path);
		free(tmp);
		return -EIO;
	}
	if (fflush(fp) != 0 || fsync(fileno(fp)) < 0) {
		r = -errno;
		fclose(fp);
		goto fail_errno;
	}
	if (fclose(fp) != 0 || rename(tmp, path) < 0) {
		r = -errno;
		goto fail_errno;
	}
	free(tmp);
	return 0;
fail_errno:
	*errstr_r = xasprintf("cannot write %s: %s", path, strerror(-r));
	unlink(tmp);
	free(tmp);
	return r;
}

int
tls_selfsigned_create(const char *cert_path, const char *key_path,
    const char *hostname, int days, char **errstr_r)
{
	EVP_PKEY *key;
	X509 *cert;
	int r;

	if (!hostname_ok(hostname)) {
		*errstr_r = xasprintf("invalid host name for a certificate: "
		    "\"%s\"", hostname);
		return -EINVAL;
	}
	if (days < 1 || days > 36500) {
		*errstr_r = xasprintf("invalid certificate lifetime: %d days",
		    days);
		return -EINVAL;
	}
	ERR_clear_error();
	if ((key = EVP_EC_gen("P-256")) == NULL) {
		*errstr_r = ssl_errstr("cannot generate an EC P-256 key");
		return -EIO;
	}
	if ((cert = selfsigned_cert(key, hostname, days)) == NULL) {
		*errstr_r = ssl_errstr("cannot make a self-signed certificate");
		EVP_PKEY_free(key);
		return -EIO;
	}
	/* The key first: a new certificate with an old key would not load. */
	r = write_pem(key_path, 0600, key, NULL, errstr_r);
	if (r == 0)
		r = write_pem(cert_path, 0644, NULL, cert, errstr_r);
	X509_free(cert);
	EVP_PKEY_free(key);
	return r;
}
