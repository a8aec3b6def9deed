import type { ErrorBody, ExportStatus, Job } from "./types.js";

/**
 * The codes the client itself gives an {@link ExportError}, with no server error to pass on:
 * - `ABORTED`: the request or wait was aborted through its AbortSignal;
 * - `NETWORK_ERROR`: fetch itself failed (network down, CORS, DNS…), no HTTP response;
 * - `BAD_RESPONSE`: the server answered something that is not the documented JSON;
 * - `STREAM_CLOSED`: the event stream closed for good without a terminal event;
 * - `NOT_READY`: download() (or the file's URL) of a job that has no file;
 * - `NOT_FOUND`: also the client's own when a stream is refused with HTTP 404, or a job
 *   it started is not in the session its requests carry (a session cookie left behind);
 * - `FAILED`, `CANCELLED`: the job ended so and carried no error of its own;
 * - `ERROR`: the BFF's ERROR event carried no error code.
 */
export type ClientErrorCode =
  | "ABORTED"
  | "NETWORK_ERROR"
  | "BAD_RESPONSE"
  | "STREAM_CLOSED"
  | "NOT_READY"
  | "NOT_FOUND"
  | "FAILED"
  | "CANCELLED"
  | "ERROR";

/** Error codes the BFF answers with (docs/openapi.yaml), and a FAILED job's `GENERATION_FAILED`. */
export type ServerErrorCode =
  | "NOT_FOUND"
  | "VALIDATION_FAILED"
  | "INVALID_JSON"
  | "INVALID_CODE"
  | "BODY_TOO_LARGE"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "FORBIDDEN_ORIGIN"
  | "SESSION_EXPIRED"
  | "EXPORT_DELETED"
  | "IDEMPOTENCY_KEY_REUSED"
  | "INVALID_IDEMPOTENCY_KEY"
  | "TOO_MANY_STREAMS"
  | "TOO_MANY_CONNECTIONS"
  | "TOO_MANY_ACTIVE"
  | "TOO_MANY_REQUESTS"
  | "TOO_MANY_SESSIONS"
  | "RATE_LIMITED"
  | "QUEUE_FULL"
  | "GONE"
  | "BACKEND_UNAVAILABLE"
  | "UPSTREAM_UNAVAILABLE"
  | "UNAVAILABLE"
  | "INTERNAL"
  | "SCENARIOS_DISABLED"
  | "INVALID_FAULT"
  | "GENERATION_FAILED";

/**
 * `ExportError.code`: one of the known codes, or any other string a newer server may
 * send (`string & {}` keeps the known ones in editors' completion).
 */
export type ExportErrorCode = ClientErrorCode | ServerErrorCode | (string & {});

export interface ExportErrorOptions {
  /** HTTP status of the response that failed; absent when there was none. */
  readonly httpStatus?: number | undefined;
  /** Status of the job (or `ERROR` of its stream) when the error is a job or stream that ended badly. */
  readonly jobStatus?: ExportStatus | undefined;
  /**
   * @deprecated Pass `httpStatus` or `jobStatus`. A number is taken as `httpStatus`
   * (`0`: none), a status string as `jobStatus`.
   */
  readonly status?: number | ExportStatus;
  /** The job, when the error is a job that ended badly (FAILED, CANCELLED). */
  readonly job?: Job | undefined;
  readonly cause?: unknown;
}

/**
 * The one error class of the client. `code` is the server's error code when the server
 * sent one (e.g. `NOT_FOUND`, `GENERATION_FAILED`, or `SESSION_EXPIRED` — HTTP 401, for
 * a request or a stream alike: see `ExportClient.renewSession`), otherwise one of
 * {@link ClientErrorCode}.
 *
 * `httpStatus` is the HTTP status of a failed request (undefined when there was no
 * response: network error, abort, a stream); `jobStatus` the job status (`FAILED`,
 * `CANCELLED`, or `ERROR` for a stream) when a job or stream ended badly.
 */
export class ExportError extends Error {
  override readonly name = "ExportError";
  readonly code: ExportErrorCode;
  readonly httpStatus: number | undefined;
  readonly jobStatus: ExportStatus | undefined;
  readonly job: Job | undefined;

  constructor(code: ExportErrorCode, message: string, options: ExportErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    const legacy = options.status;
    const legacyHttp = typeof legacy === "number" && legacy !== 0 ? legacy : undefined;
    this.httpStatus = options.httpStatus ?? legacyHttp;
    this.jobStatus = options.jobStatus ?? (typeof legacy === "string" ? legacy : undefined);
    this.job = options.job;
  }

  /**
   * @deprecated Mixes two things: use `httpStatus` (HTTP) or `jobStatus` (job state).
   * The job status if any, else the HTTP status, else `0`.
   */
  get status(): number | ExportStatus {
    return this.jobStatus ?? this.httpStatus ?? 0;
  }

  /** Builds the error for a job that ended without a file (FAILED or CANCELLED). */
  static fromJob(job: Job): ExportError {
    if (job.error) {
      return new ExportError(job.error.code, job.error.message, { jobStatus: job.status, job });
    }
    return new ExportError(job.status, `export ${job.code} ended ${job.status}`, { jobStatus: job.status, job });
  }

  /** Builds the error for the BFF's ERROR event. */
  static fromStreamError(code: string, error: ErrorBody): ExportError {
    return new ExportError(error.code, `export ${code}: ${error.message}`, { jobStatus: "ERROR" });
  }
}
