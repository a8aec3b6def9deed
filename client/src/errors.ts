import type { ErrorBody, ExportStatus, Job } from "./types.js";

export interface ExportErrorOptions {
  /** HTTP status of the failed response, the job status, or 0 when there was no response. */
  readonly status: number | ExportStatus;
  /** The job, when the error is a job that ended badly (FAILED, CANCELLED). */
  readonly job?: Job | undefined;
  readonly cause?: unknown;
}

/**
 * The one error class of the client. `code` is the server's error code when the server
 * sent one (e.g. `NOT_FOUND`, `GENERATION_FAILED`, or `SESSION_EXPIRED` — status 401, for
 * a request or a stream alike: see `ExportClient.renewSession`), otherwise the client's
 * own:
 * - `ABORTED`: the request or wait was aborted through its AbortSignal;
 * - `NETWORK_ERROR`: fetch itself failed (network down, CORS, DNS…), no HTTP response;
 * - `BAD_RESPONSE`: the server answered something that is not the documented JSON;
 * - `STREAM_CLOSED`: the event stream closed for good without a terminal event (e.g.
 *   HTTP 404 on connect);
 * - `NOT_READY`: download() of a job that has no file.
 *
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
