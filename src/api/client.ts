import * as grpc from '@grpc/grpc-js';
import { grpcDetailsReason } from '../errors.js';
import { ApiClientError } from './errors.js';
import type {
  EntryMsg,
  EventMsg,
  ListEntriesResponseMsg,
  NodeAnswerMsg,
  SignedHeadMsg,
  SubmitHeadResponseMsg,
  WitnessedHeadMsg,
  FlushEntriesRequestMsg,
  FollowEventsRequestMsg,
  QueryEventsRequestMsg,
  QueryEventsResponseMsg,
  StatusMsg,
} from './messages.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './convert.js';
import { loadServices } from './proto.js';

export interface ApiClientTls {
  /** Client X509-SVID chain (PEM) and key (PEM). */
  certChainPem: Buffer;
  keyPem: Buffer;
  /** CA certificates (PEM) the server's certificate must chain to. */
  caPem: Buffer;
  /** When set, the server certificate must carry exactly this SPIFFE ID. */
  serverSpiffeId?: string;
}

export interface ApiClientOptions {
  /** Unix socket path (used when address is not given). */
  socket?: string;
  /** host:port of a TCP listener (needs tls). */
  address?: string;
  tls?: ApiClientTls;
  /** Deadline for unary calls. Default 10 s. */
  timeoutMs?: number;
}

export interface EventPage {
  events: EventMsg[];
  nextPageToken: string;
  /** From meshauth-relay: how each node answered (empty from a node). */
  nodes: NodeAnswerMsg[];
  /** From meshauth-relay: some node's events are missing. */
  partial: boolean;
}

type Unary<Req, Res> = (
  req: Req,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Res) => void,
) => void;
type ServerStream<Req> = (req: Req, opts?: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;

function uriSans(cert: { subjectaltname?: string }): string[] {
  return (cert.subjectaltname ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/** The TLS server name the client sends; the server's identity is checked by SPIFFE ID. */
const SNI_NAME = 'meshauthd.api';

/** gRPC client of meshauth.v1.Audit (and health), over the Unix socket or mTLS TCP. */
export class ApiClient {
  /** Where the client connects, for messages ("unix socket /run/meshauth/api.sock"). */
  readonly target: string;
  private readonly client: grpc.Client;
  private readonly witness: grpc.Client;
  private readonly health: grpc.Client;
  private readonly timeoutMs: number;

  constructor(opts: ApiClientOptions) {
    const { audit, health, witness } = loadServices();
    let address: string;
    let creds: grpc.ChannelCredentials;
    let channelOptions: grpc.ChannelOptions = {};
    if (opts.address) {
      if (!opts.tls)
        throw new ApiClientError(
          `api: connect ${opts.address}: TCP needs a client certificate, key and CA bundle`,
          grpc.status.INVALID_ARGUMENT,
        );
      const tls = opts.tls;
      creds = grpc.credentials.createSsl(tls.caPem, tls.keyPem, tls.certChainPem, {
        // SVIDs name a SPIFFE ID, not a host: check that instead of the host name.
        checkServerIdentity: (_host, cert) => {
          const ids = uriSans(cert);
          if (!ids.some((u) => u.startsWith('spiffe://')))
            return new Error('server certificate has no SPIFFE ID');
          if (tls.serverSpiffeId && !ids.includes(tls.serverSpiffeId)) {
            return new Error(`server is ${ids.join(',')}, expected ${tls.serverSpiffeId}`);
          }
          return undefined;
        },
      });
      address = opts.address;
      this.target = `address ${opts.address}`;
      // TLS server names must be host names (RFC 6066), and the server is identified by its SPIFFE
      // ID anyway: send a fixed name rather than the IP address of the target.
      channelOptions = { 'grpc.ssl_target_name_override': SNI_NAME };
    } else {
      const socket = opts.socket ?? '/run/meshauth/api.sock';
      address = `unix://${socket}`;
      creds = grpc.credentials.createInsecure();
      this.target = `unix socket ${socket}`;
    }
    this.client = new audit(address, creds, channelOptions);
    this.health = new health(address, creds, channelOptions);
    this.witness = new witness(address, creds, channelOptions);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  private unary<Req, Res>(method: string, req: Req, on: grpc.Client = this.client): Promise<Res> {
    const fn = (on as unknown as Record<string, Unary<Req, Res>>)[method]!.bind(on);
    return new Promise((resolve, reject) => {
      fn(req, { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        if (err) reject(this.wrap(method, err));
        else resolve(res as Res);
      });
    });
  }

  private stream<Req>(method: string, req: Req, opts?: grpc.CallOptions): grpc.ClientReadableStream<unknown> {
    const fn = (this.client as unknown as Record<string, ServerStream<Req>>)[method]!.bind(this.client);
    return fn(req, opts);
  }

  /**
   * A server that streams more items than asked for (a lying witness, a node gone wrong) is cut
   * off at `cap`: the answer is never held in memory without bound. Code OUT_OF_RANGE.
   */
  private tooMany(op: string, call: { cancel(): void }, cap: number): ApiClientError {
    call.cancel();
    return new ApiClientError(
      `${op}: the server sent more than the ${cap} items asked for`,
      grpc.status.OUT_OF_RANGE,
    );
  }

  private wrap(op: string, err: grpc.ServiceError): ApiClientError {
    const reason = grpcDetailsReason(err.details || err.message);
    // the server's details often name the operation already ("QueryEvents: ...")
    const message = reason.toLowerCase().startsWith(`${op.toLowerCase()}: `) ? reason : `${op}: ${reason}`;
    return new ApiClientError(message, err.code, { cause: err, reason });
  }

  /** One page of stored events. */
  async queryEvents(req: QueryEventsRequestMsg): Promise<EventPage> {
    // page_size is an int32 on the wire: a larger number would be sent wrapped (2^32 + 1 as 1)
    // and answered with fewer events than asked, silently
    const size = req.pageSize ?? 0;
    if (!Number.isInteger(size) || size < 0 || size > MAX_PAGE_SIZE) {
      throw new ApiClientError(
        `QueryEvents: page_size must be 0..${MAX_PAGE_SIZE} (0 = ${DEFAULT_PAGE_SIZE}), got ${size}`,
        grpc.status.INVALID_ARGUMENT,
      );
    }
    const call = this.stream('queryEvents', req, { deadline: Date.now() + this.timeoutMs * 6 });
    const events: EventMsg[] = [];
    let nextPageToken = '';
    let nodes: NodeAnswerMsg[] = [];
    let partial = false;
    const cap = Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    try {
      for await (const m of call as AsyncIterable<QueryEventsResponseMsg>) {
        if (m.event) {
          if (events.length === cap) throw this.tooMany('QueryEvents', call, cap);
          events.push(m.event);
        } else if (m.pageEnd) {
          nextPageToken = m.pageEnd.nextPageToken;
          nodes = m.pageEnd.nodes ?? [];
          partial = Boolean(m.pageEnd.partial);
        }
      }
    } catch (err) {
      if (err instanceof ApiClientError) throw err;
      throw this.wrap('QueryEvents', err as grpc.ServiceError);
    }
    return { events, nextPageToken, nodes, partial };
  }

  /** Events as they are written (after_seq: replay stored events after it first). Ends when signal aborts. */
  async *followEvents(req: FollowEventsRequestMsg, signal?: AbortSignal): AsyncGenerator<EventMsg> {
    const call = this.stream('followEvents', req);
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const m of call as AsyncIterable<EventMsg>) yield m;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.CANCELLED && (signal?.aborted ?? true)) return;
      throw this.wrap('FollowEvents', err as grpc.ServiceError);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  async listEntries(): Promise<EntryMsg[]> {
    const res = await this.unary<object, { entries: EntryMsg[] }>('listEntries', {});
    return res.entries;
  }

  /** ListEntries with the relay's per-node answers. */
  listEntriesResponse(): Promise<ListEntriesResponseMsg> {
    return this.unary<object, ListEntriesResponseMsg>('listEntries', {});
  }

  /** meshauth.v1.Witness/SubmitHead: hand this witness a signed head of the caller's trail. */
  submitHead(head: { note: string; certChain: readonly Buffer[] }): Promise<SubmitHeadResponseMsg> {
    return this.unary(
      'submitHead',
      { head: { note: head.note, certChain: [...head.certChain] } },
      this.witness,
    );
  }

  /** meshauth.v1.Witness/SignHead: the node's audit head signed now (publish: also hand it to its witnesses). */
  signHead(publish = false): Promise<SignedHeadMsg> {
    return this.unary('signHead', { publish }, this.witness);
  }

  /** meshauth.v1.Witness/ListWitnessedHeads: heads this witness recorded for a node, oldest first. */
  async listWitnessedHeads(spiffeId: string, limit = 0): Promise<WitnessedHeadMsg[]> {
    const fn = (this.witness as unknown as Record<string, ServerStream<object>>)['listWitnessedHeads']!.bind(
      this.witness,
    );
    const call = fn({ spiffeId, limit }, { deadline: Date.now() + this.timeoutMs * 6 });
    const out: WitnessedHeadMsg[] = [];
    const cap = limit || 10_000;
    try {
      for await (const m of call as AsyncIterable<WitnessedHeadMsg>) {
        if (out.length === cap) throw this.tooMany('ListWitnessedHeads', call, cap);
        out.push(m);
      }
    } catch (err) {
      if (err instanceof ApiClientError) throw err;
      throw this.wrap('ListWitnessedHeads', err as grpc.ServiceError);
    }
    return out;
  }

  status(): Promise<StatusMsg> {
    return this.unary<object, StatusMsg>('getStatus', {});
  }

  async flush(req: FlushEntriesRequestMsg): Promise<number> {
    const res = await this.unary<FlushEntriesRequestMsg, { removed: number }>('flushEntries', req);
    return res.removed;
  }

  /** grpc.health.v1 Check: SERVING / NOT_SERVING. */
  healthCheck(service = ''): Promise<string> {
    const fn = (this.health as unknown as Record<string, Unary<{ service: string }, { status: string }>>)[
      'check'
    ]!.bind(this.health);
    return new Promise((resolve, reject) => {
      fn({ service }, { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        if (err) reject(this.wrap('Health.Check', err));
        else resolve(res!.status);
      });
    });
  }

  /** Idempotent. */
  close(): void {
    this.client.close();
    this.health.close();
    this.witness.close();
  }
}
