import { ConfigError } from '../config/index.js';
import type { Inventory } from './inventory.js';

/**
 * Checks that the configured node name is in the inventory; throws ConfigError
 * "config <file>: node: "x" is not in <inventory label> (nodes: a, b)".
 */
export function assertNodeListed(
  inventory: Inventory,
  nodeName: string,
  configFile: string | undefined,
): void {
  if (inventory.node(nodeName)) return;
  const where = configFile !== undefined ? `config ${configFile}` : 'config';
  throw new ConfigError([
    `${where}: node: "${nodeName}" is not in ${inventory.label} (nodes: ${inventory
      .nodes()
      .map((n) => n.name)
      .join(', ')})`,
  ]);
}
