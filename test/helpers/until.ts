/**
 * Polls `fn` every `intervalMs` until it returns true and resolves with the milliseconds that took;
 * throws with `what` (and `detail()`) after `timeoutMs`.
 */
export async function until(
  what: string,
  fn: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
  detail: () => string = () => '',
  intervalMs = 20,
): Promise<number> {
  const t0 = performance.now();
  while (!(await fn())) {
    if (performance.now() - t0 > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return performance.now() - t0;
}
