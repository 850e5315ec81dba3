// Original file: proto/meshauth/v1/audit.proto

import type { Long } from '@grpc/proto-loader';

export interface Event {
  'seq'?: (number | string | Long);
  'atMs'?: (number | string | Long);
  /**
   * signal, handshake-succeeded, handshake-failed, entry-written, entry-expired, entry-removed,
   * svid-rotated, reauth, peer-unreachable, gap, retention, head-witnessed, head-rejected,
   * clock-step, policy-changed;
   * from meshauth-relay during a follow also node-unavailable / node-available (seq 0: a status
   * change of the origin node's stream, not a stored event)
   */
  'type'?: (string);
  /**
   * success, failure, info (empty when not set)
   */
  'outcome'?: (string);
  'reason'?: (string);
  'localId'?: (string);
  'remoteId'?: (string);
  'node'?: (string);
  'direction'?: (string);
  /**
   * JSON object (serials, notAfter, TLS version, cipher, duration, packet counts, ...); empty when none.
   */
  'detailsJson'?: (string);
  'prevHash'?: (string);
  'hash'?: (string);
  /**
   * The node whose trail holds the event. Set by meshauth-relay on every event; empty from a node.
   */
  'origin'?: (string);
}

export interface Event__Output {
  'seq': (number);
  'atMs': (number);
  /**
   * signal, handshake-succeeded, handshake-failed, entry-written, entry-expired, entry-removed,
   * svid-rotated, reauth, peer-unreachable, gap, retention, head-witnessed, head-rejected,
   * clock-step, policy-changed;
   * from meshauth-relay during a follow also node-unavailable / node-available (seq 0: a status
   * change of the origin node's stream, not a stored event)
   */
  'type': (string);
  /**
   * success, failure, info (empty when not set)
   */
  'outcome': (string);
  'reason': (string);
  'localId': (string);
  'remoteId': (string);
  'node': (string);
  'direction': (string);
  /**
   * JSON object (serials, notAfter, TLS version, cipher, duration, packet counts, ...); empty when none.
   */
  'detailsJson': (string);
  'prevHash': (string);
  'hash': (string);
  /**
   * The node whose trail holds the event. Set by meshauth-relay on every event; empty from a node.
   */
  'origin': (string);
}
