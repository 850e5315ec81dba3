// Original file: proto/meshauth/v1/witness.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ListWitnessedHeadsRequest as _meshauth_v1_ListWitnessedHeadsRequest, ListWitnessedHeadsRequest__Output as _meshauth_v1_ListWitnessedHeadsRequest__Output } from '../../meshauth/v1/ListWitnessedHeadsRequest.js';
import type { SignHeadRequest as _meshauth_v1_SignHeadRequest, SignHeadRequest__Output as _meshauth_v1_SignHeadRequest__Output } from '../../meshauth/v1/SignHeadRequest.js';
import type { SignedHead as _meshauth_v1_SignedHead, SignedHead__Output as _meshauth_v1_SignedHead__Output } from '../../meshauth/v1/SignedHead.js';
import type { SubmitHeadRequest as _meshauth_v1_SubmitHeadRequest, SubmitHeadRequest__Output as _meshauth_v1_SubmitHeadRequest__Output } from '../../meshauth/v1/SubmitHeadRequest.js';
import type { SubmitHeadResponse as _meshauth_v1_SubmitHeadResponse, SubmitHeadResponse__Output as _meshauth_v1_SubmitHeadResponse__Output } from '../../meshauth/v1/SubmitHeadResponse.js';
import type { WitnessedHead as _meshauth_v1_WitnessedHead, WitnessedHead__Output as _meshauth_v1_WitnessedHead__Output } from '../../meshauth/v1/WitnessedHead.js';

export interface WitnessClient extends grpc.Client {
  /**
   * Heads this witness recorded for one node, oldest first.
   */
  ListWitnessedHeads(argument: _meshauth_v1_ListWitnessedHeadsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_WitnessedHead__Output>;
  ListWitnessedHeads(argument: _meshauth_v1_ListWitnessedHeadsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_WitnessedHead__Output>;
  /**
   * Heads this witness recorded for one node, oldest first.
   */
  listWitnessedHeads(argument: _meshauth_v1_ListWitnessedHeadsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_WitnessedHead__Output>;
  listWitnessedHeads(argument: _meshauth_v1_ListWitnessedHeadsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_WitnessedHead__Output>;
  
  /**
   * This node's own audit head, signed now (on demand; also handed to its witnesses when publish is set).
   */
  SignHead(argument: _meshauth_v1_SignHeadRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_SignedHead__Output>): grpc.ClientUnaryCall;
  SignHead(argument: _meshauth_v1_SignHeadRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_SignedHead__Output>): grpc.ClientUnaryCall;
  SignHead(argument: _meshauth_v1_SignHeadRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_SignedHead__Output>): grpc.ClientUnaryCall;
  SignHead(argument: _meshauth_v1_SignHeadRequest, callback: grpc.requestCallback<_meshauth_v1_SignedHead__Output>): grpc.ClientUnaryCall;
  /**
   * This node's own audit head, signed now (on demand; also handed to its witnesses when publish is set).
   */
  signHead(argument: _meshauth_v1_SignHeadRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_SignedHead__Output>): grpc.ClientUnaryCall;
  signHead(argument: _meshauth_v1_SignHeadRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_SignedHead__Output>): grpc.ClientUnaryCall;
  signHead(argument: _meshauth_v1_SignHeadRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_SignedHead__Output>): grpc.ClientUnaryCall;
  signHead(argument: _meshauth_v1_SignHeadRequest, callback: grpc.requestCallback<_meshauth_v1_SignedHead__Output>): grpc.ClientUnaryCall;
  
  /**
   * Record a signed head of the caller's own audit trail. The caller's SPIFFE ID (mTLS) must be the
   * signer's. Refusals are answered in the response (accepted = false) with a stable reason.
   */
  SubmitHead(argument: _meshauth_v1_SubmitHeadRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_SubmitHeadResponse__Output>): grpc.ClientUnaryCall;
  SubmitHead(argument: _meshauth_v1_SubmitHeadRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_SubmitHeadResponse__Output>): grpc.ClientUnaryCall;
  SubmitHead(argument: _meshauth_v1_SubmitHeadRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_SubmitHeadResponse__Output>): grpc.ClientUnaryCall;
  SubmitHead(argument: _meshauth_v1_SubmitHeadRequest, callback: grpc.requestCallback<_meshauth_v1_SubmitHeadResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Record a signed head of the caller's own audit trail. The caller's SPIFFE ID (mTLS) must be the
   * signer's. Refusals are answered in the response (accepted = false) with a stable reason.
   */
  submitHead(argument: _meshauth_v1_SubmitHeadRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_SubmitHeadResponse__Output>): grpc.ClientUnaryCall;
  submitHead(argument: _meshauth_v1_SubmitHeadRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_SubmitHeadResponse__Output>): grpc.ClientUnaryCall;
  submitHead(argument: _meshauth_v1_SubmitHeadRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_SubmitHeadResponse__Output>): grpc.ClientUnaryCall;
  submitHead(argument: _meshauth_v1_SubmitHeadRequest, callback: grpc.requestCallback<_meshauth_v1_SubmitHeadResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface WitnessHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Heads this witness recorded for one node, oldest first.
   */
  ListWitnessedHeads: grpc.handleServerStreamingCall<_meshauth_v1_ListWitnessedHeadsRequest__Output, _meshauth_v1_WitnessedHead>;
  
  /**
   * This node's own audit head, signed now (on demand; also handed to its witnesses when publish is set).
   */
  SignHead: grpc.handleUnaryCall<_meshauth_v1_SignHeadRequest__Output, _meshauth_v1_SignedHead>;
  
  /**
   * Record a signed head of the caller's own audit trail. The caller's SPIFFE ID (mTLS) must be the
   * signer's. Refusals are answered in the response (accepted = false) with a stable reason.
   */
  SubmitHead: grpc.handleUnaryCall<_meshauth_v1_SubmitHeadRequest__Output, _meshauth_v1_SubmitHeadResponse>;
  
}

export interface WitnessDefinition extends grpc.ServiceDefinition {
  ListWitnessedHeads: MethodDefinition<_meshauth_v1_ListWitnessedHeadsRequest, _meshauth_v1_WitnessedHead, _meshauth_v1_ListWitnessedHeadsRequest__Output, _meshauth_v1_WitnessedHead__Output>
  SignHead: MethodDefinition<_meshauth_v1_SignHeadRequest, _meshauth_v1_SignedHead, _meshauth_v1_SignHeadRequest__Output, _meshauth_v1_SignedHead__Output>
  SubmitHead: MethodDefinition<_meshauth_v1_SubmitHeadRequest, _meshauth_v1_SubmitHeadResponse, _meshauth_v1_SubmitHeadRequest__Output, _meshauth_v1_SubmitHeadResponse__Output>
}
