export { Metrics, type MetricsOptions, type VerdictSource } from './metrics.js';
export {
  MetricsServerError,
  startMetricsServer,
  type MetricsServer,
  type MetricsServerOptions,
  type ReadinessCheck,
} from './http-server.js';
export { FileReloadMetrics, type ReloadedFile } from './file-reload.js';
