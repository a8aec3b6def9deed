export { createExportClient } from "./client.js";
export type { ExportClient, ExportClientOptions, StreamMode } from "./client.js";
export { ExportError } from "./errors.js";
export type { FetchLike } from "./http.js";
export type { FallbackOptions } from "./fallback.js";
export type { ConnectionState, EventSourceConstructorLike, TransportKind } from "./stream.js";
export type { ExportEvent, ExportListener, Unsubscribe } from "./subscription.js";
export { isTerminalStatus } from "./types.js";
export type { ExportRequest, ExportStatus, Job, JobStatus } from "./types.js";
