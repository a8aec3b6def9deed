import { ExportError } from "./errors.js";
import { isRecord, parseJSON } from "./http.js";
import type { ErrorBody, JobStatus, StreamEvent } from "./types.js";

/**
 * A method-style signature is checked bivariantly, so implementations whose handlers
 * take narrower event types (the DOM's EventSource, the `eventsource` package) are
 * assignable to {@link EventSourceLike} while the client stays DOM-free in its types.
 */
type Handler<E> = { bivarianceHack(event: E): unknown }["bivarianceHack"];

/** The part of a MessageEvent the client reads. */
export interface StreamMessageLike {
  readonly data: unknown;
}

/** The part of an error Event the client reads (the `eventsource` package adds `code`). */
export interface StreamErrorLike {
  readonly type: string;
}

/** The part of an EventSource the client uses. */
export interface EventSourceLike {
  readonly readyState: number;
  onmessage: Handler<StreamMessageLike> | null;
  onerror: Handler<StreamErrorLike> | null;
  close(): void;
}

export interface EventSourceInitLike {
  withCredentials?: boolean;
}

/** An EventSource class: `globalThis.EventSource`, the `eventsource` package's, a fake… */
export type EventSourceConstructorLike = new (
  url: string,
  init?: EventSourceInitLike,
) => EventSourceLike;

/** WHATWG `EventSource.CLOSED`: the source gave up and will not reconnect. */
export const EVENT_SOURCE_CLOSED = 2;

/** Receives what the stream of one code delivers. */
export interface StreamSink {
  /** A parsed event for this code (job snapshot or the BFF's ERROR). */
  event(event: StreamEvent): void;
  /** The stream ended for good without a terminal event. */
  fatal(error: ExportError): void;
}

/**
 * How events reach the subscriptions. `per-job` opens one EventSource per code; a
 * `multiplex` transport (one EventSource on `/api/events` for the whole tab, each event
 * carrying its code) will implement the same interface, so the subscription Map above it
 * stays as it is.
 */
export interface StreamTransport {
  /** Starts delivering the events of `code` to `sink`; returns the function that stops. */
  open(code: string, sink: StreamSink): () => void;
}

export interface PerJobTransportOptions {
  readonly EventSource: EventSourceConstructorLike;
  /** The events URL of one code. */
  readonly eventsUrl: (code: string) => string;
  readonly withCredentials: boolean;
}

/** One EventSource per code on `GET /api/exports/{code}/events`. */
export function perJobTransport(options: PerJobTransportOptions): StreamTransport {
  return {
    open(code, sink) {
      const source = new options.EventSource(
        options.eventsUrl(code),
        options.withCredentials ? { withCredentials: true } : undefined,
      );
      source.onmessage = (message) => {
        const event = parseStreamEvent(message.data);
        // A malformed event is dropped: the next snapshot carries the whole job again.
        if (event) sink.event(event);
      };
      source.onerror = (errorEvent) => {
        // CONNECTING means the source is already reconnecting (it resumes with
        // Last-Event-ID); only CLOSED is the end: e.g. the BFF answered 404 or not SSE.
        if (source.readyState !== EVENT_SOURCE_CLOSED) return;
        const httpStatus = httpStatusOf(errorEvent);
        const detail = httpStatus === undefined ? "" : ` (HTTP ${httpStatus})`;
        sink.fatal(
          new ExportError("STREAM_CLOSED", `event stream of export ${code} closed${detail}`, {
            status: "ERROR",
          }),
        );
      };
      return () => {
        source.onmessage = null;
        source.onerror = null;
        source.close();
      };
    },
  };
}

const jobStatuses: ReadonlySet<string> = new Set<JobStatus>([
  "PENDING",
  "IN_PROGRESS",
  "COMPLETED",
  "FAILED",
  "CANCELLED",
]);

/**
 * Parses one `data:` payload. Returns undefined for anything that is not a job snapshot
 * or an ERROR event, checking just enough for the client's own logic (code, status, seq).
 */
export function parseStreamEvent(data: unknown): StreamEvent | undefined {
  if (typeof data !== "string") return undefined;
  const value = parseJSON(data);
  if (!isRecord(value) || typeof value["code"] !== "string") return undefined;
  const status = value["status"];
  if (status === "ERROR") {
    const error = value["error"];
    const body: ErrorBody =
      isRecord(error) && typeof error["code"] === "string"
        ? {
            code: error["code"],
            message: typeof error["message"] === "string" ? error["message"] : error["code"],
          }
        : { code: "ERROR", message: "the server ended the stream" };
    return { code: value["code"], status: "ERROR", error: body };
  }
  return isJobShape(value) ? (value as unknown as StreamEvent) : undefined;
}

/** The fields the client relies on; the rest is passed through as the server sent it. */
export function isJobShape(value: unknown): boolean {
  return (
    isRecord(value) &&
    typeof value["code"] === "string" &&
    typeof value["status"] === "string" &&
    jobStatuses.has(value["status"]) &&
    typeof value["seq"] === "number" &&
    typeof value["progress"] === "number"
  );
}

function httpStatusOf(event: StreamErrorLike): number | undefined {
  // The `eventsource` package reports the HTTP status of a failed connect as `code`.
  const code: unknown = (event as { code?: unknown }).code;
  return typeof code === "number" ? code : undefined;
}
