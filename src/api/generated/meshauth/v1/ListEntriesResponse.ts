// Original file: proto/meshauth/v1/audit.proto

import type { Entry as _meshauth_v1_Entry, Entry__Output as _meshauth_v1_Entry__Output } from '../../meshauth/v1/Entry.js';

export interface ListEntriesResponse {
  'entries'?: (_meshauth_v1_Entry)[];
}

export interface ListEntriesResponse__Output {
  'entries': (_meshauth_v1_Entry__Output)[];
}
