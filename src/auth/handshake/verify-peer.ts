import type { TrustBundles } from '../../spiffe/index.js';
import { verifyX509Svid, X509SvidError, type X509SvidVerifier } from '../../spiffe/index.js';
import { HandshakeError, messageOf } from './errors.js';
import { earliestNotAfterMs } from './expiry.js';

/** A peer whose presented chain passed X509-SVID verification. */
export interface VerifiedPeer {
  spiffeId: string;
  /** The chain as presented, leaf first (what the expiry is computed from). */
  chainDer: Buffer[];
  /** Serial numbers as reported by the verifier, leaf first. */
  serials: string[];
  /** notAfter the verifier reports for the SVID. */
  notAfterMs: number;
  /** Earliest notAfter over the presented chain. */
  earliestNotAfterMs: number;
}

/**
 * Verify the peer's presented chain (leaf FIRST) against the bundle of its trust domain and,
 * when `expectedId` is given, that its SPIFFE ID is exactly that. Fails closed: every problem,
 * including an unexpected exception, throws a HandshakeError. With a `verifier`, a chain it has
 * already verified under the same bundle, inside the validity window of its path, is not validated
 * again (src/spiffe/verify-cache.ts explains why that is the same verdict); every other check here
 * runs on each call.
 */
export function verifyPeerChain(
  chainDer: readonly Buffer[],
  bundles: TrustBundles,
  expectedId: string | undefined,
  now: Date,
  verifier?: X509SvidVerifier,
): VerifiedPeer {
  let verified: ReturnType<typeof verifyX509Svid>;
  try {
    verified = verifier
      ? verifier.verify(chainDer, bundles, { now })
      : verifyX509Svid(chainDer, bundles, { now });
  } catch (err) {
    if (err instanceof X509SvidError) {
      throw new HandshakeError(`svid-${err.reason}`, `verify peer SVID: ${err.message}`, { cause: err });
    }
    throw new HandshakeError('internal-error', `verify peer SVID: ${messageOf(err)}`, {
      cause: err,
    });
  }
  const spiffeId = verified.spiffeId.toString();
  if (expectedId !== undefined && spiffeId !== expectedId) {
    throw new HandshakeError(
      'spiffe-id-mismatch',
      `verify peer SVID: peer is ${spiffeId}, expected ${expectedId}`,
      {
        details: { expected: expectedId, actual: spiffeId },
      },
    );
  }
  const chain = [...chainDer];
  return {
    spiffeId,
    chainDer: chain,
    serials: [...verified.serials],
    notAfterMs: verified.notAfter.getTime(),
    earliestNotAfterMs: earliestNotAfterMs(chain),
  };
}
