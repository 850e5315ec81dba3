import type * as grpc from '@grpc/grpc-js';

/**
 * Write one message to a server stream honouring back-pressure: resolves true once the message is
 * queued (at once, or after 'drain'), false when the call is cancelled or destroyed first.
 */
export async function writeMessage(
  call: grpc.ServerWritableStream<unknown, unknown>,
  msg: unknown,
): Promise<boolean> {
  if (call.cancelled || call.destroyed) return false;
  if (call.write(msg)) return true;
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      call.off('drain', onDrain);
      call.off('cancelled', onCancel);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onCancel = () => done(false);
    call.once('drain', onDrain);
    call.once('cancelled', onCancel);
  });
}
