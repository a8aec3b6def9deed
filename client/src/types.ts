/**
 * The exportstream wire types, exactly as the BFF serves them (camelCase JSON).
 * Every endpoint and every stream event carries the same {@link Job} object.
 */

/** The states of a job. COMPLETED, FAILED and CANCELLED are terminal. */
export type JobStatus = "PENDING" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED";

/** The job states after which nothing changes any more. */
export type TerminalJobStatus = "COMPLETED" | "FAILED" | "CANCELLED";

/**
 * What a client can see as a status: a job state, or `ERROR`, which is never a job
 * state but what the BFF says when it cannot reach the truth (backend gone for good,
 * job vanished). An `ERROR` ends the stream.
 */
export type ExportStatus = JobStatus | "ERROR";

/** The server's error object, in error responses and in FAILED jobs / ERROR events. */
export interface ErrorBody {
  readonly code: string;
  readonly message: string;
}

/** The generated file of a COMPLETED job. */
export interface ExportFile {
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /** Hex SHA-256 of the file's bytes. */
  readonly sha256: string;
  readonly contentType: string;
  /** Download path as the caller sees it, e.g. `/api/exports/{code}/file`. */
  readonly url: string;
  /** RFC 3339 time after which the file is gone (410 GONE). */
  readonly expiresAt: string;
}

/** One export job: a full snapshot, as every endpoint and event carries it. */
export interface Job {
  /** Random UUID v4 chosen by the backend. */
  readonly code: string;
  readonly status: JobStatus;
  /** Integer percent, 0–100. */
  readonly progress: number;
  readonly rowsDone: number;
  readonly rowsTotal: number;
  /** Increases by one with every change of the job; also the SSE event id. */
  readonly seq: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** Only when COMPLETED. */
  readonly file?: ExportFile;
  /** Only when FAILED. */
  readonly error?: ErrorBody;
}

/** The BFF's "cannot reach the truth" event; it ends the stream. */
export interface StreamErrorEvent {
  readonly code: string;
  readonly status: "ERROR";
  readonly error: ErrorBody;
}

/** What one SSE `data:` line of an export stream holds. */
export type StreamEvent = Job | StreamErrorEvent;

/** Body of `POST /api/exports`. */
export interface ExportRequest {
  /** Number of CSV rows to generate. */
  readonly rows: number;
  /** Roughly how long the generation takes, in milliseconds; absent is 0 (as fast as it goes). */
  readonly durationMs?: number;
  /** File name for the download; the server picks one when absent. */
  readonly filename?: string;
  /**
   * Scenario fields (demos and tests; the server refuses them with `SCENARIOS_DISABLED`
   * unless it runs with `SCENARIOS=on`). `failAt` 1–99: FAILED at that percent.
   */
  readonly failAt?: number;
  /** With `failAt`: the FAILED job's `error.code` (default `GENERATION_FAILED`). */
  readonly errorCode?: string;
  /** Stays PENDING this long once a worker has it. */
  readonly startDelayMs?: number;
  /** With `stallMs`: progress stops at this percent for `stallMs` (heartbeats go on). */
  readonly stallAt?: number;
  readonly stallMs?: number;
  /** The file's `expiresAt` is this long after completion; its download is then 410 GONE. */
  readonly expireAfterMs?: number;
  /** Paces the generation instead of `durationMs` (not both). */
  readonly rowsPerSecond?: number;
  /**
   * The job's event streams are cut once, right after the first snapshot at or past this
   * percent: the client resumes with Last-Event-ID (one reconnect, no snapshot twice).
   */
  readonly dropStreamAt?: number;
}

/** Returns true for COMPLETED, FAILED and CANCELLED. */
export function isTerminalStatus(status: ExportStatus): status is TerminalJobStatus {
  return status === "COMPLETED" || status === "FAILED" || status === "CANCELLED";
}
