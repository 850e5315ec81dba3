/**
 * WireGuard transport for meshauth: the node key (generated once, 0600 under the state dir), one
 * interface per node (kernel module or wireguard-go), peers and routes reconciled from the
 * inventory, and state read back from `wg show dump`.
 *
 *   const wg = await WireguardManager.open({ stateDir, interfaceName: 'meshauth0' });
 *   const peers = nodes.flatMap((n) => (n.name === self ? [] : [peerFromNode(n, { port: wg.listenPort })]))
 *     .filter((p) => p !== undefined);
 *   await wg.reconcile(peers);   // again whenever the inventory changes
 *   wg.publicKey;                // published for the inventory, sent in the auth handshake
 *   wg.ifindex;                  // for the datapath's strict mode
 *   await wg.close();            // the tunnel keeps running; the next open() adopts it
 */
export { WireguardError, type WireguardErrorCode } from './errors.js';
export {
  WIREGUARD_KEY_BYTES,
  isWireguardKey,
  decodeWireguardKey,
  encodeWireguardKey,
  generatePrivateKey,
  publicKeyFromPrivate,
  loadOrCreateNodeKey,
  readKeyFile,
  privateKeyPath,
  publicKeyPath,
  type NodeKey,
} from './keys.js';
export {
  parseCidr,
  canonicalCidr,
  canonicalAddress,
  canonicalEndpoint,
  formatEndpoint,
  type Cidr,
} from './cidr.js';
export { parseWgDump, type DeviceState, type InterfaceState, type PeerState } from './dump.js';
export {
  peerFromNode,
  normalizePeers,
  planReconcile,
  isEmptyPlan,
  wgSetArgs,
  type WireguardPeer,
  type DesiredPeer,
  type PeerChange,
  type RouteChange,
  type ReconcilePlan,
} from './plan.js';
export {
  createExec,
  runChecked,
  formatCommand,
  type Exec,
  type ExecResult,
  type ExecOptions,
} from './exec.js';
export { WireguardDevice, type LinkInfo } from './device.js';
export {
  DEFAULT_SOCKET_DIR,
  uapiSocketPath,
  findWireguardGoPid,
  processCpuSeconds,
  netnsInode,
} from './userspace.js';
export {
  WireguardManager,
  DEFAULT_INTERFACE_NAME,
  DEFAULT_LISTEN_PORT,
  type WireguardManagerOptions,
  type WireguardMode,
  type WireguardStatus,
  type PeerStatus,
  type ReconcileResult,
} from './manager.js';
