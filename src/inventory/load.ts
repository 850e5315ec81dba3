import { resolve } from 'node:path';
import { ConfigError, parseYamlText, readYamlFile, validateDocument } from '../config/index.js';
import { InventoryError } from './errors.js';
import { Inventory } from './inventory.js';
import { inventorySchema, toInventoryData } from './schema.js';
import type { InventoryData } from './types.js';

const CODE = 'MESHAUTH_ERR_INVENTORY';

function asInventoryError(err: unknown): never {
  if (err instanceof ConfigError && !(err instanceof InventoryError))
    throw new InventoryError(err.problems, { cause: err });
  throw err;
}

/** Parses and checks an inventory document (no cross-reference checks). */
export function parseInventoryDocument(doc: unknown, label: string): InventoryData {
  try {
    return toInventoryData(validateDocument(inventorySchema, doc, () => label, CODE));
  } catch (err) {
    return asInventoryError(err);
  }
}

/** Reads and fully validates an inventory file; throws InventoryError. */
export function readInventoryFile(file: string): { data: InventoryData; label: string } {
  const abs = resolve(file);
  const label = `inventory ${abs}`;
  let doc: unknown;
  try {
    doc = readYamlFile(abs, label, CODE);
  } catch (err) {
    return asInventoryError(err);
  }
  const data = parseInventoryDocument(doc, label);
  new Inventory(data, label); // cross-reference checks
  return { data, label };
}

/** Loads an inventory file into a new Inventory. */
export function loadInventoryFile(file: string): Inventory {
  const { data, label } = readInventoryFile(file);
  return new Inventory(data, label);
}

/** Parses inventory YAML text (tests, embedded documents). */
export function parseInventory(text: string, label = 'inventory'): Inventory {
  let doc: unknown;
  try {
    doc = parseYamlText(text, label, CODE);
  } catch (err) {
    return asInventoryError(err);
  }
  return new Inventory(parseInventoryDocument(doc, label), label);
}
