/**
 * The SPIFFE ID of a node daemon: what its node SVID carries and what the peer end of a node
 * channel requires. `template` is a SPIFFE ID in which "{node}" is replaced by the node name;
 * by default spiffe://<trust domain>/meshauth/node/<node name>.
 */
export const DEFAULT_NODE_ID_PATH = '/meshauth/node/{node}';

/** Node name → node SPIFFE ID. Throws a RangeError on a template without "{node}" or not spiffe://. */
export function nodeSpiffeIdFor(template: string): (node: string) => string {
  if (!template.startsWith('spiffe://') || !template.includes('{node}')) {
    throw new RangeError(`node SPIFFE ID template "${template}": must be spiffe://... and contain {node}`);
  }
  return (node) => template.replaceAll('{node}', node);
}
