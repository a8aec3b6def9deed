export { createExportClient } from "./client.js";
export type { ExportClient, ExportClientOptions, RequestOptions, StreamMode } from "./client.js";
export { ExportError } from "./errors.js";
export type { ClientErrorCode, ExportErrorOptions } from "./errors.js";
export type { FetchInitLike, FetchLike, FetchResponseLike } from "./http.js";
export type {
  ConnectionState,
  EventSourceConstructorLike,
  EventSourceInitLike,
  EventSourceLike,
  StreamErrorLike,
  StreamMessageLike,
} from "./stream.js";
export type {
  ExportEvent,
  ExportListener,
  JobObservation,
  SubscribeOptions,
  Unsubscribe,
} from "./subscriptions.js";
export { isTerminalStatus } from "./types.js";
export type {
  ErrorBody,
  ExportFile,
  ExportRequest,
  ExportStatus,
  Job,
  JobStatus,
  StreamErrorEvent,
  StreamEvent,
  TerminalJobStatus,
} from "./types.js";
