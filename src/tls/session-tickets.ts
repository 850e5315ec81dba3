/**
 * TLS 1.3 session tickets: meshauth issues none.
 *
 * A resumed session proves possession of a ticket, not of an SVID key, so the handshake server
 * refuses every resumption; tickets it sent would be wasted work and a confusing failure for a
 * client that tries one. SSL_OP_NO_TICKET does not stop TLS 1.3 tickets in OpenSSL (it switches to
 * stateful ones); only SSL_CTX_set_num_tickets(ctx, 0) does, and node:tls exposes neither that nor
 * the SSL_CTX. meshauth therefore sets `NumTickets = 0` in the `system_default` SSL_CONF section of
 * the OpenSSL that node runs (loaded through koffi, as src/spiffe/openssl.ts does), which OpenSSL
 * applies to every SSL_CTX created afterwards; src/tls/context.ts calls this before it creates
 * any context. It applies to the whole process (meshauthd resumes no TLS session anywhere) and
 * replaces an ssl_conf section given to node through OPENSSL_CONF.
 */
import koffi from 'koffi';

const CONFIG = Buffer.from(
  'openssl_conf = meshauth_conf\n' +
    '[meshauth_conf]\nssl_conf = meshauth_ssl\n' +
    '[meshauth_ssl]\nsystem_default = meshauth_system_default\n' +
    '[meshauth_system_default]\nNumTickets = 0\n',
);

let done = false;

/**
 * Make every TLS context created from now on send no NewSessionTicket (RFC 8446 §4.6.1).
 * Idempotent. Throws when OpenSSL refuses the setting (fail closed: no context is created).
 */
export function disableSessionTickets(): void {
  if (done) return;
  const h = koffi.load(null);
  const NCONF_new = h.func('void *NCONF_new(void *meth)');
  const NCONF_free = h.func('void NCONF_free(void *conf)');
  const NCONF_load_bio = h.func('int NCONF_load_bio(void *conf, void *bio, _Out_ long *eline)');
  const CONF_modules_load = h.func(
    'int CONF_modules_load(void *conf, const char *appname, unsigned long flags)',
  );
  const BIO_new_mem_buf = h.func('void *BIO_new_mem_buf(const void *buf, int len)');
  const BIO_free = h.func('int BIO_free(void *bio)');
  const ERR_clear_error = h.func('void ERR_clear_error()');
  const conf = NCONF_new(null);
  const bio = BIO_new_mem_buf(CONFIG, CONFIG.length);
  try {
    if (!conf || !bio) throw new Error('out of memory');
    if (NCONF_load_bio(conf, bio, [0]) !== 1) throw new Error('NCONF_load_bio failed');
    if (CONF_modules_load(conf, null, 0) !== 1) throw new Error('CONF_modules_load failed');
    done = true;
  } catch (err) {
    throw new Error(`TLS: cannot turn session tickets off: ${(err as Error).message}`, { cause: err });
  } finally {
    if (bio) BIO_free(bio);
    if (conf) NCONF_free(conf);
    ERR_clear_error();
  }
}
