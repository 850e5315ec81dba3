/** The auth-required signal stream: the ma_signals ring buffer behind the SignalSource interface. */
import { ClosedError } from '../errors.js';
import { RingBufReader } from './ringbuf.js';
import type { AuthSignal, SignalSource } from './types.js';
import { signal as signalCodec } from './wire.js';

export class RingBufSignalSource implements SignalSource {
  private readonly reader: RingBufReader;
  private running = false;

  constructor(mapFd: number, name = 'ma_signals') {
    this.reader = new RingBufReader(mapFd, { recordSize: signalCodec.size, name });
  }

  /** Records skipped because of a wrong size. */
  get badRecords(): number {
    return this.reader.badRecords;
  }

  /** Records delivered. */
  get delivered(): number {
    return this.reader.records;
  }

  async run(onSignal: (signal: AuthSignal) => void): Promise<void> {
    if (this.running) throw new Error('signal source: run() is already active');
    this.running = true;
    try {
      for (;;) {
        let batch: Buffer[];
        try {
          batch = await this.reader.read();
        } catch (err) {
          if (err instanceof ClosedError) return;
          throw err;
        }
        for (const rec of batch) onSignal(signalCodec.decode(rec));
      }
    } finally {
      this.running = false;
    }
  }

  /** Pending read ends; run() resolves. Idempotent. */
  close(): void {
    this.reader.close();
  }
}
