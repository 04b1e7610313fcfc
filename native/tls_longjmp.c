/* Test helper: a TLS call whose return the probes never see, then another session's call on the
 * same thread.
 *
 * SSL_write on session A starts its handshake; the BIO's write callback longjmps out of the
 * library, so SSL_write never returns (its uretprobe does not fire and the thread's slot stays
 * marked running). Session B's SSL_write then begins at the same stack depth: the collector must
 * not take it for a call nested in A, and counts A's call as overlapped (its plaintext is lost).
 * Both sessions use BIOs without sockets: nothing goes on the network.
 * Prints "done" and exits 0. */
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <setjmp.h>
#include <stdio.h>

static jmp_buf escape;

static int jump_write(BIO *b, const char *data, int len)
{
	(void)b;
	(void)data;
	(void)len;
	longjmp(escape, 1);
}

static long jump_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int main(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return 1;

	BIO_METHOD *method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "longjmp");
	BIO_meth_set_write(method, jump_write);
	BIO_meth_set_ctrl(method, jump_ctrl);
	BIO *jumping = BIO_new(method);
	BIO_set_init(jumping, 1);
	SSL *a = SSL_new(ctx);
	SSL_set_bio(a, jumping, jumping);
	SSL_set_connect_state(a);
	if (setjmp(escape) == 0) {
		SSL_write(a, "never returns", 13);
		fprintf(stderr, "SSL_write returned: the BIO did not jump\n");
		return 1;
	}

	BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
	SSL *b = SSL_new(ctx);
	SSL_set_bio(b, in, out);
	SSL_set_connect_state(b);
	SSL_write(b, "second session", 14); /* writes its ClientHello to `out` and wants to read */

	printf("done\n");
	return 0;
}
