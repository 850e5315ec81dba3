import { MeshauthError } from '../../errors.js';

/** A SPIRE selector: type without ':' (e.g. "k8s") and value (e.g. "ns:demo"). */
export interface Selector {
  type: string;
  value: string;
}

export class SelectorError extends MeshauthError {
  constructor(message: string) {
    super('MESHAUTH_ERR_SELECTOR', message);
  }
}

/** Parse "type:value" (e.g. "k8s:ns:demo" → {type: "k8s", value: "ns:demo"}). */
export function parseSelector(text: string): Selector {
  const i = text.indexOf(':');
  if (i <= 0) throw new SelectorError(`parse selector "${text}": expected "type:value"`);
  const type = text.slice(0, i);
  const value = text.slice(i + 1);
  if (value === '') throw new SelectorError(`parse selector "${text}": value is empty`);
  if (/\s/.test(type)) throw new SelectorError(`parse selector "${text}": type contains whitespace`);
  return { type, value };
}

/** "type:value" form. */
export function formatSelector(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/** A canonical key for a selector set (order-insensitive, duplicates removed). */
export function selectorSetKey(selectors: readonly Selector[]): string {
  return [...new Set(selectors.map(formatSelector))].sort().join('\n');
}
