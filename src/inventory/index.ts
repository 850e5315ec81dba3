export { frozenCopy, Inventory, type InventoryChange } from './inventory.js';
export { InventoryError } from './errors.js';
export { loadInventoryFile, parseInventory, parseInventoryDocument, readInventoryFile } from './load.js';
export { watchInventoryFile, type InventoryWatcher } from './watch.js';
export type { InventoryData, InventoryNode, InventoryWorkload } from './types.js';
export { assertNodeListed } from './node-check.js';
