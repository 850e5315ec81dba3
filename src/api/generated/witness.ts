import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { ListWitnessedHeadsRequest as _meshauth_v1_ListWitnessedHeadsRequest, ListWitnessedHeadsRequest__Output as _meshauth_v1_ListWitnessedHeadsRequest__Output } from './meshauth/v1/ListWitnessedHeadsRequest.js';
import type { SignHeadRequest as _meshauth_v1_SignHeadRequest, SignHeadRequest__Output as _meshauth_v1_SignHeadRequest__Output } from './meshauth/v1/SignHeadRequest.js';
import type { SignedHead as _meshauth_v1_SignedHead, SignedHead__Output as _meshauth_v1_SignedHead__Output } from './meshauth/v1/SignedHead.js';
import type { SubmitHeadRequest as _meshauth_v1_SubmitHeadRequest, SubmitHeadRequest__Output as _meshauth_v1_SubmitHeadRequest__Output } from './meshauth/v1/SubmitHeadRequest.js';
import type { SubmitHeadResponse as _meshauth_v1_SubmitHeadResponse, SubmitHeadResponse__Output as _meshauth_v1_SubmitHeadResponse__Output } from './meshauth/v1/SubmitHeadResponse.js';
import type { WitnessClient as _meshauth_v1_WitnessClient, WitnessDefinition as _meshauth_v1_WitnessDefinition } from './meshauth/v1/Witness.js';
import type { WitnessedHead as _meshauth_v1_WitnessedHead, WitnessedHead__Output as _meshauth_v1_WitnessedHead__Output } from './meshauth/v1/WitnessedHead.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  meshauth: {
    v1: {
      ListWitnessedHeadsRequest: MessageTypeDefinition<_meshauth_v1_ListWitnessedHeadsRequest, _meshauth_v1_ListWitnessedHeadsRequest__Output>
      SignHeadRequest: MessageTypeDefinition<_meshauth_v1_SignHeadRequest, _meshauth_v1_SignHeadRequest__Output>
      SignedHead: MessageTypeDefinition<_meshauth_v1_SignedHead, _meshauth_v1_SignedHead__Output>
      SubmitHeadRequest: MessageTypeDefinition<_meshauth_v1_SubmitHeadRequest, _meshauth_v1_SubmitHeadRequest__Output>
      SubmitHeadResponse: MessageTypeDefinition<_meshauth_v1_SubmitHeadResponse, _meshauth_v1_SubmitHeadResponse__Output>
      Witness: SubtypeConstructor<typeof grpc.Client, _meshauth_v1_WitnessClient> & { service: _meshauth_v1_WitnessDefinition }
      WitnessedHead: MessageTypeDefinition<_meshauth_v1_WitnessedHead, _meshauth_v1_WitnessedHead__Output>
    }
  }
}

