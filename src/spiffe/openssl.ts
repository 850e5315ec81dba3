/**
 * RFC 5280 §6 certification path validation by OpenSSL's X509_verify_cert, called through koffi.
 *
 * The library is the OpenSSL already loaded in this process (the one node:tls runs the TLS
 * handshakes with): official node builds link OpenSSL statically and export its symbols, builds
 * against a shared libcrypto have it in the global scope. meshauth deliberately does not dlopen a
 * second libcrypto: its internal references would bind to node's exported copy (ELF symbol
 * interposition), mixing two OpenSSL builds in one call.
 *
 * Everything here is raw and synchronous; src/spiffe/x509-svid.ts turns results into X509SvidError.
 * Every native object is freed before a function returns, and the thread's OpenSSL error queue
 * is cleared so that node's own TLS code never sees an error left behind by a verification.
 */
import koffi from 'koffi';

/** OpenSSL verification result codes meshauth interprets (x509_vfy.h, OpenSSL 3.0). */
export const X509_V = {
  OK: 0,
  UNSPECIFIED: 1,
  UNABLE_TO_GET_ISSUER_CERT: 2,
  UNABLE_TO_DECRYPT_CERT_SIGNATURE: 4,
  UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: 6,
  CERT_SIGNATURE_FAILURE: 7,
  CERT_NOT_YET_VALID: 9,
  CERT_HAS_EXPIRED: 10,
  ERROR_IN_CERT_NOT_BEFORE_FIELD: 13,
  ERROR_IN_CERT_NOT_AFTER_FIELD: 14,
  OUT_OF_MEM: 17,
  DEPTH_ZERO_SELF_SIGNED_CERT: 18,
  SELF_SIGNED_CERT_IN_CHAIN: 19,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 20,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 21,
  CERT_CHAIN_TOO_LONG: 22,
  NO_ISSUER_PUBLIC_KEY: 24,
  PATH_LENGTH_EXCEEDED: 25,
  INVALID_PURPOSE: 26,
  CERT_UNTRUSTED: 27,
  CERT_REJECTED: 28,
  KEYUSAGE_NO_CERTSIGN: 32,
  UNHANDLED_CRITICAL_EXTENSION: 34,
  INVALID_NON_CA: 37,
  KEYUSAGE_NO_DIGITAL_SIGNATURE: 39,
  PROXY_CERTIFICATES_NOT_ALLOWED: 40,
  INVALID_EXTENSION: 41,
  INVALID_POLICY_EXTENSION: 42,
  NO_EXPLICIT_POLICY: 43,
  UNSUPPORTED_EXTENSION_FEATURE: 45,
  PERMITTED_VIOLATION: 47,
  EXCLUDED_VIOLATION: 48,
  SUBTREE_MINMAX: 49,
  UNSUPPORTED_CONSTRAINT_TYPE: 51,
  UNSUPPORTED_CONSTRAINT_SYNTAX: 52,
  UNSUPPORTED_NAME_SYNTAX: 53,
  PATH_LOOP: 55,
  EE_KEY_TOO_SMALL: 66,
  CA_KEY_TOO_SMALL: 67,
  CA_MD_TOO_WEAK: 68,
  UNSUPPORTED_SIGNATURE_ALGORITHM: 76,
  SIGNATURE_ALGORITHM_MISMATCH: 77,
  SIGNATURE_ALGORITHM_INCONSISTENCY: 78,
  INVALID_CA: 79,
  PATHLEN_INVALID_FOR_NON_CA: 80,
  PATHLEN_WITHOUT_KU_KEY_CERT_SIGN: 81,
  KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA: 82,
  ISSUER_NAME_EMPTY: 83,
  SUBJECT_NAME_EMPTY: 84,
  MISSING_AUTHORITY_KEY_IDENTIFIER: 85,
  MISSING_SUBJECT_KEY_IDENTIFIER: 86,
  EMPTY_SUBJECT_ALT_NAME: 87,
  EMPTY_SUBJECT_SAN_NOT_CRITICAL: 88,
  CA_BCONS_NOT_CRITICAL: 89,
  AUTHORITY_KEY_IDENTIFIER_CRITICAL: 90,
  SUBJECT_KEY_IDENTIFIER_CRITICAL: 91,
  CA_CERT_MISSING_KEY_USAGE: 92,
  EXTENSIONS_REQUIRE_VERSION_3: 93,
  EC_KEY_EXPLICIT_PARAMS: 94,
} as const;

/** X509_V_FLAG_* (x509_vfy.h). */
const FLAG = {
  X509_STRICT: 0x20,
  POLICY_CHECK: 0x80,
  PARTIAL_CHAIN: 0x80000,
} as const;

/** EXFLAG_INVALID (x509v3.h): extensions that cannot be decoded or are repeated. */
const EXFLAG_INVALID = 0x80;

/** anyPolicy (RFC 5280 §4.2.1.4), the user-initial-policy-set of §6.1.1 (c). */
const ANY_POLICY = '2.5.29.32.0';

/** X509_PURPOSE_* (x509v3.h). */
export const X509_PURPOSE = { SSL_CLIENT: 1, SSL_SERVER: 2 } as const;

type Ptr = unknown;

interface Libcrypto {
  OpenSSL_version: (t: number) => string;
  BIO_new_mem_buf: (buf: Buffer, len: number) => Ptr;
  BIO_free: (bio: Ptr) => number;
  d2i_X509_bio: (bio: Ptr, out: null) => Ptr;
  X509_free: (x: Ptr) => void;
  X509_check_purpose: (x: Ptr, id: number, ca: number) => number;
  X509_get_extension_flags: (x: Ptr) => number;
  OBJ_txt2obj: (s: string, noName: number) => Ptr;
  X509_STORE_get0_param: (s: Ptr) => Ptr;
  X509_VERIFY_PARAM_add0_policy: (p: Ptr, obj: Ptr) => number;
  ASN1_OBJECT_free: (obj: Ptr) => void;
  X509_STORE_new: () => Ptr;
  X509_STORE_free: (s: Ptr) => void;
  X509_STORE_add_cert: (s: Ptr, x: Ptr) => number;
  X509_STORE_set_flags: (s: Ptr, flags: number) => number;
  X509_STORE_set_purpose: (s: Ptr, purpose: number) => number;
  X509_STORE_set_depth: (s: Ptr, depth: number) => number;
  X509_STORE_CTX_new: () => Ptr;
  X509_STORE_CTX_free: (c: Ptr) => void;
  X509_STORE_CTX_init: (c: Ptr, s: Ptr, leaf: Ptr, untrusted: Ptr) => number;
  X509_STORE_CTX_set_time: (c: Ptr, flags: number, t: number) => void;
  X509_STORE_CTX_get_error: (c: Ptr) => number;
  X509_STORE_CTX_get_error_depth: (c: Ptr) => number;
  X509_STORE_CTX_get_current_cert: (c: Ptr) => Ptr;
  X509_STORE_CTX_get0_chain: (c: Ptr) => Ptr;
  X509_verify_cert: (c: Ptr) => number;
  X509_verify_cert_error_string: (n: number) => string;
  OPENSSL_sk_new_null: () => Ptr;
  OPENSSL_sk_push: (sk: Ptr, p: Ptr) => number;
  OPENSSL_sk_free: (sk: Ptr) => void;
  OPENSSL_sk_num: (sk: Ptr) => number;
  OPENSSL_sk_value: (sk: Ptr, i: number) => Ptr;
  ERR_clear_error: () => void;
  X509_get_ext_count: (x: Ptr) => number;
  X509_get_ext: (x: Ptr, loc: number) => Ptr;
  X509_EXTENSION_get_critical: (ex: Ptr) => number;
  X509_supported_extension: (ex: Ptr) => number;
  X509_EXTENSION_get_object: (ex: Ptr) => Ptr;
  OBJ_obj2txt: (buf: Buffer, len: number, obj: Ptr, noName: number) => number;
}

let lib: Libcrypto | undefined;
let loadError: Error | undefined;

function load(): Libcrypto {
  if (lib) return lib;
  if (loadError) throw loadError;
  try {
    const h = koffi.load(null);
    const f = <T>(decl: string): T => h.func(decl) as unknown as T;
    lib = {
      OpenSSL_version: f('const char *OpenSSL_version(int t)'),
      BIO_new_mem_buf: f('void *BIO_new_mem_buf(const void *buf, int len)'),
      BIO_free: f('int BIO_free(void *bio)'),
      d2i_X509_bio: f('void *d2i_X509_bio(void *bio, void *out)'),
      X509_free: f('void X509_free(void *x)'),
      X509_check_purpose: f('int X509_check_purpose(void *x, int id, int ca)'),
      X509_get_extension_flags: f('uint32_t X509_get_extension_flags(void *x)'),
      OBJ_txt2obj: f('void *OBJ_txt2obj(const char *s, int noName)'),
      X509_STORE_get0_param: f('void *X509_STORE_get0_param(void *s)'),
      X509_VERIFY_PARAM_add0_policy: f('int X509_VERIFY_PARAM_add0_policy(void *p, void *obj)'),
      ASN1_OBJECT_free: f('void ASN1_OBJECT_free(void *obj)'),
      X509_STORE_new: f('void *X509_STORE_new()'),
      X509_STORE_free: f('void X509_STORE_free(void *s)'),
      X509_STORE_add_cert: f('int X509_STORE_add_cert(void *s, void *x)'),
      X509_STORE_set_flags: f('int X509_STORE_set_flags(void *s, unsigned long flags)'),
      X509_STORE_set_purpose: f('int X509_STORE_set_purpose(void *s, int purpose)'),
      X509_STORE_set_depth: f('int X509_STORE_set_depth(void *s, int depth)'),
      X509_STORE_CTX_new: f('void *X509_STORE_CTX_new()'),
      X509_STORE_CTX_free: f('void X509_STORE_CTX_free(void *c)'),
      X509_STORE_CTX_init: f('int X509_STORE_CTX_init(void *c, void *s, void *leaf, void *untrusted)'),
      X509_STORE_CTX_set_time: f('void X509_STORE_CTX_set_time(void *c, unsigned long flags, int64_t t)'),
      X509_STORE_CTX_get_error: f('int X509_STORE_CTX_get_error(void *c)'),
      X509_STORE_CTX_get_error_depth: f('int X509_STORE_CTX_get_error_depth(void *c)'),
      X509_STORE_CTX_get_current_cert: f('void *X509_STORE_CTX_get_current_cert(void *c)'),
      X509_STORE_CTX_get0_chain: f('void *X509_STORE_CTX_get0_chain(void *c)'),
      X509_verify_cert: f('int X509_verify_cert(void *c)'),
      X509_verify_cert_error_string: f('const char *X509_verify_cert_error_string(long n)'),
      OPENSSL_sk_new_null: f('void *OPENSSL_sk_new_null()'),
      OPENSSL_sk_push: f('int OPENSSL_sk_push(void *sk, void *p)'),
      OPENSSL_sk_free: f('void OPENSSL_sk_free(void *sk)'),
      OPENSSL_sk_num: f('int OPENSSL_sk_num(void *sk)'),
      OPENSSL_sk_value: f('void *OPENSSL_sk_value(void *sk, int i)'),
      ERR_clear_error: f('void ERR_clear_error()'),
      X509_get_ext_count: f('int X509_get_ext_count(void *x)'),
      X509_get_ext: f('void *X509_get_ext(void *x, int loc)'),
      X509_EXTENSION_get_critical: f('int X509_EXTENSION_get_critical(void *ex)'),
      X509_supported_extension: f('int X509_supported_extension(void *ex)'),
      X509_EXTENSION_get_object: f('void *X509_EXTENSION_get_object(void *ex)'),
      OBJ_obj2txt: f('int OBJ_obj2txt(_Out_ uint8_t *buf, int len, void *a, int no_name)'),
    };
    return lib;
  } catch (err) {
    loadError = new Error(
      `OpenSSL path validation is unavailable: the process exports no usable libcrypto (${(err as Error).message})`,
      { cause: err },
    );
    throw loadError;
  }
}

/** The OpenSSL version string path validation runs with (e.g. "OpenSSL 3.0.19 27 Jan 2026"). */
export function opensslVersion(): string {
  return load().OpenSSL_version(0);
}

export interface PathInput {
  /** DER of the end-entity certificate. */
  leaf: Buffer;
  /** DER of the presented certificates that may serve as intermediates (untrusted). */
  untrusted: readonly Buffer[];
  /** DER of the trust anchors (any of them may end a path, RFC 5280 §6.1.1 (d)). */
  anchors: readonly Buffer[];
  /** Verification time, seconds since the epoch. */
  atSeconds: number;
  /** Most intermediates a path may hold (X509_VERIFY_PARAM depth). */
  maxDepth: number;
}

/** Where a certificate came from: the leaf, `untrusted[i]` or `anchors[i]`. */
export type CertRef =
  { kind: 'leaf' } | { kind: 'untrusted'; index: number } | { kind: 'anchor'; index: number };

export type PathResult =
  | { ok: true; /** The validated path, leaf first, ending with its trust anchor. */ path: CertRef[] }
  | {
      ok: false;
      /** X509_V_ERR_* code (or -1 when a certificate could not be decoded). */
      code: number;
      /** OpenSSL's text for the code. */
      text: string;
      /** Depth in the path being built (0 = leaf). */
      depth: number;
      /** The certificate the error is about, when OpenSSL names one. */
      cert: CertRef | undefined;
    };

/**
 * Validate the path from `leaf` to one of `anchors` as `openssl verify -x509_strict -policy_check
 * -policy 2.5.29.32.0 -partial_chain -purpose sslclient -attime <atSeconds>` does (RFC 5280 §6.1 with
 * OpenSSL's strict
 * RFC 5280 profile checks), then require that every certificate of the path is fit for TLS server
 * use as well (X509_check_purpose sslserver, what `-purpose sslserver` checks): an X509-SVID
 * authenticates both ends of a connection. -partial_chain makes every bundle authority a trust
 * anchor even when it is not self-signed, as SPIFFE bundles are sets of trust anchors.
 * Throws only when OpenSSL itself cannot be used.
 */
export function validatePath(input: PathInput): PathResult {
  const c = load();
  const owned: Ptr[] = [];
  const refs = new Map<bigint, CertRef>();
  let store: Ptr = null;
  let sk: Ptr = null;
  let ctx: Ptr = null;
  const decode = (der: Buffer, ref: CertRef): Ptr => {
    const bio = c.BIO_new_mem_buf(der, der.length);
    if (!bio) throw new Error('OpenSSL: BIO_new_mem_buf failed');
    try {
      const x = c.d2i_X509_bio(bio, null);
      if (x) {
        owned.push(x);
        refs.set(koffi.address(x), ref);
      }
      return x;
    } finally {
      c.BIO_free(bio);
    }
  };
  const refOf = (x: Ptr): CertRef | undefined => (x ? refs.get(koffi.address(x)) : undefined);
  try {
    const leaf = decode(input.leaf, { kind: 'leaf' });
    if (!leaf) return undecodable(c, { kind: 'leaf' }, 0);
    // OpenSSL marks a certificate whose extensions it cannot decode, or that repeats one (RFC 5280
    // §4.2), as invalid and then never finds an issuer for it; report what is wrong with the leaf.
    if ((c.X509_get_extension_flags(leaf) & EXFLAG_INVALID) !== 0) {
      return {
        ok: false,
        code: X509_V.INVALID_EXTENSION,
        text: c.X509_verify_cert_error_string(X509_V.INVALID_EXTENSION),
        depth: 0,
        cert: { kind: 'leaf' },
      };
    }
    store = c.X509_STORE_new();
    sk = c.OPENSSL_sk_new_null();
    ctx = c.X509_STORE_CTX_new();
    if (!store || !sk || !ctx) throw new Error('OpenSSL: out of memory');
    for (const [index, der] of input.anchors.entries()) {
      const x = decode(der, { kind: 'anchor', index });
      if (!x) return undecodable(c, { kind: 'anchor', index }, -1);
      // Adding the same certificate twice is not an error since OpenSSL 1.1.1.
      if (c.X509_STORE_add_cert(store, x) !== 1) throw new Error('OpenSSL: X509_STORE_add_cert failed');
    }
    for (const [index, der] of input.untrusted.entries()) {
      const x = decode(der, { kind: 'untrusted', index });
      if (!x) return undecodable(c, { kind: 'untrusted', index }, -1);
      if (c.OPENSSL_sk_push(sk, x) <= 0) throw new Error('OpenSSL: out of memory');
    }
    c.X509_STORE_set_flags(store, FLAG.X509_STRICT | FLAG.POLICY_CHECK | FLAG.PARTIAL_CHAIN);
    c.X509_STORE_set_purpose(store, X509_PURPOSE.SSL_CLIENT);
    c.X509_STORE_set_depth(store, input.maxDepth);
    // RFC 5280 §6.1.1 (c): the user-initial-policy-set is {anyPolicy}. OpenSSL must be told so:
    // with no set at all it fails every path that requires an explicit policy.
    const anyPolicy = c.OBJ_txt2obj(ANY_POLICY, 1);
    if (!anyPolicy) throw new Error('OpenSSL: OBJ_txt2obj failed');
    if (c.X509_VERIFY_PARAM_add0_policy(c.X509_STORE_get0_param(store), anyPolicy) !== 1) {
      c.ASN1_OBJECT_free(anyPolicy);
      throw new Error('OpenSSL: X509_VERIFY_PARAM_add0_policy failed');
    }
    if (c.X509_STORE_CTX_init(ctx, store, leaf, sk) !== 1)
      throw new Error('OpenSSL: X509_STORE_CTX_init failed');
    c.X509_STORE_CTX_set_time(ctx, 0, Math.floor(input.atSeconds));
    const verdict = c.X509_verify_cert(ctx);
    const chain = c.X509_STORE_CTX_get0_chain(ctx);
    if (verdict !== 1) {
      const code = c.X509_STORE_CTX_get_error(ctx);
      // A negative verdict without an error code is an internal failure: fail closed with UNSPECIFIED.
      const effective = code === X509_V.OK ? X509_V.UNSPECIFIED : code;
      return {
        ok: false,
        code: effective,
        text: c.X509_verify_cert_error_string(effective),
        depth: c.X509_STORE_CTX_get_error_depth(ctx),
        cert: refOf(c.X509_STORE_CTX_get_current_cert(ctx)),
      };
    }
    const path: CertRef[] = [];
    const n = chain ? c.OPENSSL_sk_num(chain) : 0;
    for (let i = 0; i < n; i++) {
      const x = c.OPENSSL_sk_value(chain, i);
      const ref = refOf(x);
      if (!ref) throw new Error('OpenSSL: the validated path holds a certificate meshauth did not supply');
      // The SSL client purpose was checked during validation; an X509-SVID must also serve as a
      // server certificate. 1 is the only conforming answer in strict mode (check_purpose in x509_vfy.c).
      if (c.X509_check_purpose(x, X509_PURPOSE.SSL_SERVER, i > 0 ? 1 : 0) !== 1) {
        return {
          ok: false,
          code: X509_V.INVALID_PURPOSE,
          text: `${c.X509_verify_cert_error_string(X509_V.INVALID_PURPOSE)} (TLS server)`,
          depth: i,
          cert: ref,
        };
      }
      path.push(ref);
    }
    if (path.length < 2 || path[path.length - 1]!.kind !== 'anchor' || path[0]!.kind !== 'leaf') {
      // E.g. the leaf itself is a bundle authority: a path must end at an authority other than the leaf.
      return {
        ok: false,
        code: X509_V.CERT_UNTRUSTED,
        text: c.X509_verify_cert_error_string(X509_V.CERT_UNTRUSTED),
        depth: 0,
        cert: { kind: 'leaf' },
      };
    }
    return { ok: true, path };
  } finally {
    if (ctx) c.X509_STORE_CTX_free(ctx);
    if (sk) c.OPENSSL_sk_free(sk);
    if (store) c.X509_STORE_free(store);
    for (const x of owned) c.X509_free(x);
    c.ERR_clear_error();
  }
}

function undecodable(c: Libcrypto, cert: CertRef, depth: number): PathResult {
  c.ERR_clear_error();
  return { ok: false, code: -1, text: 'OpenSSL cannot decode the certificate', depth, cert };
}

/** One critical extension of a certificate, as path validation sees it. */
export interface CriticalExtension {
  /** Dotted OID. */
  oid: string;
  /** Whether OpenSSL's path validation processes it (X509_supported_extension); if not, it refuses the certificate (X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION, RFC 5280 §4.2). */
  handled: boolean;
}

/**
 * The critical extensions of a DER certificate, in certificate order, each with whether the path
 * validation validatePath runs handles it: the same OpenSSL call decides both, so a certificate
 * listed here with `handled: false` is one that verification refuses with
 * `unhandled-critical-extension`. Throws when OpenSSL cannot decode the certificate or be used.
 */
export function criticalExtensions(der: Buffer): CriticalExtension[] {
  const c = load();
  const bio = c.BIO_new_mem_buf(der, der.length);
  if (!bio) throw new Error('OpenSSL: BIO_new_mem_buf failed');
  let x: Ptr = null;
  try {
    x = c.d2i_X509_bio(bio, null);
    if (!x) throw new Error('OpenSSL cannot decode the certificate');
    const out: CriticalExtension[] = [];
    const buf = Buffer.alloc(256);
    const n = c.X509_get_ext_count(x);
    for (let i = 0; i < n; i++) {
      const ext = c.X509_get_ext(x, i);
      if (!ext || c.X509_EXTENSION_get_critical(ext) <= 0) continue;
      const len = c.OBJ_obj2txt(buf, buf.length, c.X509_EXTENSION_get_object(ext), 1);
      out.push({
        oid: len > 0 ? buf.toString('latin1', 0, Math.min(len, buf.length - 1)) : '?',
        handled: c.X509_supported_extension(ext) === 1,
      });
    }
    return out;
  } finally {
    if (x) c.X509_free(x);
    c.BIO_free(bio);
    c.ERR_clear_error();
  }
}
