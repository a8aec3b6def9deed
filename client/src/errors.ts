import type { ErrorBody, ExportStatus, Job } from "./types.js";

/**
 * Error codes the client produces itself, when no server code is available. Server
 * codes (NOT_FOUND, VALIDATION_FAILED, GENERATION_FAILED, …) are passed through as is.
 */
export type ClientErrorCode =
  /** The request or wait was aborted through its AbortSignal. */
  | "ABORTED"
  /** fetch itself failed (network down, CORS, DNS…): there is no HTTP response. */
  | "NETWORK_ERROR"
  /** The server answered something that is not the documented JSON. */
  | "BAD_RESPONSE"
  /** The event stream closed for good without a terminal event (e.g. HTTP 404 on connect). */
  | "STREAM_CLOSED";

export interface ExportErrorOptions {
  /** HTTP status of the failed response, the job status, or 0 when there was no response. */
  readonly status: number | ExportStatus;
  /** The job, when the error is a job that ended badly (FAILED, CANCELLED). */
  readonly job?: Job | undefined;
  readonly cause?: unknown;
}

/**
 * The one error class of the client. `code` is the server's error code when the server
 * sent one (e.g. `NOT_FOUND`, `GENERATION_FAILED`), otherwise a {@link ClientErrorCode}.
 * `status` is the HTTP status for a failed request, the job status (`FAILED`,
 * `CANCELLED`, `ERROR`) for a job or stream that ended badly, and `0` when there was no
 * response at all (network error, abort).
 */
export class ExportError extends Error {
  override readonly name = "ExportError";
  readonly code: string;
  readonly status: number | ExportStatus;
  readonly job: Job | undefined;

  constructor(code: string, message: string, options: ExportErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.job = options.job;
  }

  /** Builds the error for a job that ended without a file (FAILED or CANCELLED). */
  static fromJob(job: Job): ExportError {
    if (job.error) {
      return new ExportError(job.error.code, job.error.message, { status: job.status, job });
    }
    return new ExportError(job.status, `export ${job.code} ended ${job.status}`, {
      status: job.status,
      job,
    });
  }

  /** Builds the error for the BFF's ERROR event. */
  static fromStreamError(code: string, error: ErrorBody): ExportError {
    return new ExportError(error.code, `export ${code}: ${error.message}`, { status: "ERROR" });
  }
}
