// Original file: proto/meshauth/v1/audit.proto


/**
 * How one node answered a request fanned out by meshauth-relay.
 */
export interface NodeAnswer {
  'node'?: (string);
  'ok'?: (boolean);
  /**
   * When not ok: unreachable, deadline, malformed, refused, error.
   */
  'reason'?: (string);
  'message'?: (string);
  /**
   * Events this node contributed.
   */
  'events'?: (number);
}

/**
 * How one node answered a request fanned out by meshauth-relay.
 */
export interface NodeAnswer__Output {
  'node': (string);
  'ok': (boolean);
  /**
   * When not ok: unreachable, deadline, malformed, refused, error.
   */
  'reason': (string);
  'message': (string);
  /**
   * Events this node contributed.
   */
  'events': (number);
}
