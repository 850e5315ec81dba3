export { ConfigError } from './errors.js';
export { loadConfig, type LoadConfigOptions, type OverrideValue } from './load.js';
export { describeOptions, type OptionDescription, type OptionKind } from './options.js';
export type { AttachPoint, DaemonConfig, HostPort, Hook, IdentitySourceKind, LogLevel } from './types.js';
export { parseDuration, formatDuration } from './duration.js';
export { DEFAULTS as CONFIG_DEFAULTS, DURATION_LIMITS } from './schema.js';
// Helpers shared by the inventory and policy documents.
export { readYamlFile, parseYamlText, validateDocument, formatPath, type DocPath } from './yaml-document.js';
export * as fields from './fields.js';
export {
  cidrContains,
  hostCidr,
  ipToBigInt,
  normalizeIp,
  parseCidr,
  spiffeIdProblem,
  showValue,
  type Cidr,
} from './validate.js';
export {
  followFile,
  reloadErrorFields,
  watchFile,
  type FileFollower,
  type FileWatch,
  type FollowFileOptions,
  type ReloadOutcome,
  type ReloadResult,
} from './watch-file.js';
