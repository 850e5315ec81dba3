/**
 * WireGuard transport for meshauth: the node key (generated once, 0600 under the state dir), one
 * interface per node (kernel module or wireguard-go), peers and routes reconciled from the
 * inventory, and state read back from `wg show dump`.
 *
 * The daemon needs one call:
 *
 *   const wg = await startWireguard({
 *     config,                       // DaemonConfig (reads config.wireguard)
 *     inventory,                    // Inventory: peers = other nodes with wireguardPublicKey
 *     nodeName: config.node,
 *     stateDir: config.stateDir,
 *     logger,
 *     onIfindexChange: (ifindex) => datapath.setSettings({ ...settings, wireguardIfindex: ifindex }),
 *   });
 *   wg.publicKey;                   // sent in the auth handshake, published in the inventory
 *   wg.ifindex;                     // the datapath's strict mode (DatapathSettings.wireguardIfindex)
 *   await wg.status();              // interface, peers (handshakes, bytes), inventory key state
 *   await wg.close();               // stop managing; the tunnel keeps carrying traffic and the
 *                                   // next startWireguard() adopts it without re-keying
 *   await wg.close({ teardown: true }); // remove the interface instead
 *
 * Peers follow inventory changes by themselves (and a periodic resync brings back an interface
 * that vanished). WireguardManager is the lower layer for callers that build the peer list
 * themselves.
 */
export {
  startWireguard,
  type StartWireguardOptions,
  type WireguardTunnel,
  type WireguardTunnelStatus,
  type WireguardInventory,
  type InventoryKeyState,
} from './node-tunnel.js';
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
  wireguardKeyAgreement,
  type WireguardKeyAgreement,
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
export { WireguardInterface, type InterfaceOptions } from './interface.js';
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
