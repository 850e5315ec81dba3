import * as grpc from '@grpc/grpc-js';

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

interface CheckRequest {
  service: string;
}

/** grpc.health.v1.Health: '' (the whole server) and each registered service name. */
export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Set<{
    service: string;
    call: grpc.ServerWritableStream<CheckRequest, unknown>;
  }>();

  constructor(services: readonly string[]) {
    this.statuses.set('', 'SERVING');
    for (const s of services) this.statuses.set(s, 'SERVING');
  }

  set(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const w of this.watchers) if (w.service === service) w.call.write({ status });
  }

  /** Mark every service (and the server) as status. */
  setAll(status: ServingStatus): void {
    for (const s of [...this.statuses.keys()]) this.set(s, status);
  }

  handlers(): grpc.UntypedServiceImplementation {
    return {
      Check: (call: grpc.ServerUnaryCall<CheckRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const status = this.statuses.get(call.request.service);
        if (!status) {
          cb({ code: grpc.status.NOT_FOUND, details: `health: unknown service "${call.request.service}"` });
          return;
        }
        cb(null, { status });
      },
      Watch: (call: grpc.ServerWritableStream<CheckRequest, unknown>) => {
        const service = call.request.service;
        const w = { service, call };
        this.watchers.add(w);
        call.write({ status: this.statuses.get(service) ?? 'SERVICE_UNKNOWN' });
        call.on('cancelled', () => this.watchers.delete(w));
        call.on('close', () => this.watchers.delete(w));
      },
    };
  }

  /** End all Watch streams (server shutdown). */
  close(): void {
    for (const w of this.watchers) w.call.end();
    this.watchers.clear();
  }
}
