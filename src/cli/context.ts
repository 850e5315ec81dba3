import type { Command } from 'commander';
import type { ApiClient } from '../api/index.js';
import { connect, explain, peerOf, type GlobalOptions } from './connect.js';
import type { CliIo } from './io.js';

export interface CliContext {
  io: CliIo;
  now(): number;
  globals(): GlobalOptions;
  /** Run fn with a connected client; API failures become readable CliErrors. */
  withClient<T>(fn: (c: ApiClient) => Promise<T>): Promise<T>;
}

export function makeContext(program: Command, io: CliIo): CliContext {
  return {
    io,
    now: io.now ?? Date.now,
    globals: () => program.opts<GlobalOptions>(),
    async withClient<T>(fn: (c: ApiClient) => Promise<T>): Promise<T> {
      let client: ApiClient | undefined;
      try {
        client = connect(program.opts<GlobalOptions>(), io);
        return await fn(client);
      } catch (err) {
        throw explain(err, client, peerOf(program.opts<GlobalOptions>()));
      } finally {
        client?.close();
      }
    },
  };
}
