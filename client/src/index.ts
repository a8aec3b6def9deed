export { createExportClient } from "./client.js";
export type { ExportClient, ExportClientOptions, StreamMode } from "./client.js";
export { ExportError } from "./errors.js";
export type { FetchLike, RequestOptions } from "./http.js";
export type { NotifyOptions } from "./notify.js";
export type { ConnectionState, EventSourceConstructorLike } from "./stream.js";
export type { ExportEvent, ExportListener, Unsubscribe } from "./subscription.js";
export { isTerminalStatus } from "./types.js";
export type { ExportRequest, ExportStatus, Job, JobStatus } from "./types.js";
