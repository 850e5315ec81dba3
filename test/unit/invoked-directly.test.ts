import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { invokedDirectly } from '../../src/invoked-directly.js';

describe('invokedDirectly', () => {
  it('is true only for the script node was started with', () => {
    // Under vitest, process.argv[1] is the test runner's script, not this module.
    expect(invokedDirectly(import.meta.url)).toBe(false);
    expect(invokedDirectly(pathToFileURL(process.argv[1]!).href)).toBe(true);
    expect(invokedDirectly(pathToFileURL('/nonexistent/meshauth/main.js').href)).toBe(false);
  });
});
