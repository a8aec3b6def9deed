import { ExportError } from "./errors.js";
import { isJobShape, isRecord, parseJSON } from "./json.js";
import type { ErrorBody, StreamEvent } from "./types.js";

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
  onopen: Handler<unknown> | null;
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

/** Said with every NOT_FOUND that may come from a session cookie left behind. */
export const NO_SESSION_HINT =
  "; if the export is yours, the session cookie did not come with the request — in Node, " +
  "spread createNodeSession() from @exportstream/client/node into createExportClient()";

/** WHATWG `EventSource.CLOSED`: the source gave up and will not reconnect. */
const EVENT_SOURCE_CLOSED = 2;

/**
 * The state of the connection behind a subscription: `connecting` until the response
 * arrives and again while the EventSource reconnects by itself after a drop (which is
 * not an error: it resumes with `Last-Event-ID`), `open` while events can flow.
 */
export type ConnectionState = "connecting" | "open";

/** How a subscription's events reach it: the event stream, or snapshot GETs (the fallback). */
export type TransportKind = "sse" | "polling";

/** Receives what one EventSource delivers. */
export interface StreamSink {
  /** A parsed event (job snapshot or the BFF's ERROR). */
  event(event: StreamEvent): void;
  /** The connection opened, or dropped and is reconnecting. */
  state(state: ConnectionState): void;
  /** The stream ended for good without a terminal event. */
  fatal(error: ExportError): void;
  /**
   * The events now come by `kind` (the fallback switched); `sse` until told otherwise.
   * A plain method with a serialisable argument, so it can be forwarded between tabs.
   */
  transport?(kind: TransportKind): void;
}

/** `per-job` mode: one EventSource per code on `GET /api/exports/{code}/events`. */
export interface PerJobTransport {
  /** Starts delivering the events of `code` to `sink`; returns the function that stops. */
  open(code: string, sink: StreamSink): () => void;
}

/**
 * `multiplex` mode: one EventSource on `GET /api/events` for the whole client; every
 * event carries its code and the subscription Map dispatches it.
 */
export interface SharedTransport {
  /** Opens the one shared stream; returns the function that closes it. */
  connect(sink: StreamSink): () => void;
}

interface TransportOptions {
  /**
   * The EventSource class, resolved at each open rather than up front, so a client can
   * be created where there are no streams (SSR, Node without a polyfill).
   */
  readonly EventSource: () => EventSourceConstructorLike;
  readonly withCredentials: boolean;
}

/**
 * Asks the BFF, with a request of its own, why a stream closed for good: an EventSource
 * cannot read the status or body of a refused connect. Resolves with the error to
 * report instead of `STREAM_CLOSED` (`SESSION_EXPIRED`), or undefined.
 */
export type ClosedProbe = () => Promise<ExportError | undefined>;

export function perJobTransport(
  options: TransportOptions & {
    readonly eventsUrl: (code: string) => string;
    readonly probe: (code: string) => ClosedProbe;
  },
): PerJobTransport {
  return {
    open: (code, sink) => attach(options, options.eventsUrl(code), `export ${code}`, options.probe(code), sink),
  };
}

export function sharedTransport(
  options: TransportOptions & { readonly url: string; readonly probe: ClosedProbe },
): SharedTransport {
  return { connect: (sink) => attach(options, options.url, "the session", options.probe, sink) };
}

function attach(
  options: TransportOptions,
  url: string,
  what: string,
  probe: ClosedProbe,
  sink: StreamSink,
): () => void {
  const EventSourceImpl = options.EventSource();
  const source = new EventSourceImpl(
    url,
    options.withCredentials ? { withCredentials: true } : undefined,
  );
  source.onopen = () => sink.state("open");
  source.onmessage = (message) => {
    const event = parseStreamEvent(message.data);
    // A malformed event is dropped: the next snapshot carries the whole job again.
    if (event) sink.event(event);
  };
  source.onerror = (errorEvent) => {
    // CONNECTING means the source is already reconnecting (it resumes with
    // Last-Event-ID); only CLOSED is the end: e.g. the BFF answered 404 or not SSE.
    if (source.readyState !== EVENT_SOURCE_CLOSED) {
      sink.state("connecting");
      return;
    }
    const httpStatus = httpStatusOf(errorEvent);
    if (httpStatus === 404) {
      // The BFF answers 404 to a stream whose session does not own the export: most
      // often no session at all, because the cookie did not come along (Node).
      sink.fatal(new ExportError("NOT_FOUND", `${what}: no such export in this session (HTTP 404 on its event stream)${NO_SESSION_HINT}`, { httpStatus, jobStatus: "ERROR" }));
      return;
    }
    const detail = httpStatus === undefined ? "" : ` (HTTP ${httpStatus})`;
    const closed = new ExportError("STREAM_CLOSED", `event stream of ${what} closed${detail}`, {
      jobStatus: "ERROR",
    });
    // Only a 401 can be an expired session; a browser's EventSource tells no status.
    if (httpStatus !== undefined && httpStatus !== 401) {
      sink.fatal(closed);
      return;
    }
    // An answer after the caller stopped is harmless: the sink is the stopped stream's
    // (a per-job subscription of its own; SharedStream drops a connection not current).
    void probe().then(
      (why) => sink.fatal(why ?? closed),
      () => sink.fatal(closed),
    );
  };
  return () => {
    source.onopen = null;
    source.onmessage = null;
    source.onerror = null;
    source.close();
  };
}

/**
 * Parses one `data:` payload. Returns undefined for anything that is not a job snapshot
 * or an ERROR event, checking just enough for the client's own logic (code, status, seq).
 */
function parseStreamEvent(data: unknown): StreamEvent | undefined {
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

function httpStatusOf(event: StreamErrorLike): number | undefined {
  // The `eventsource` package reports the HTTP status of a failed connect as `code`.
  const code: unknown = (event as { code?: unknown }).code;
  return typeof code === "number" ? code : undefined;
}

/**
 * The one connection of `multiplex` mode: opened on demand, closed one microtask after
 * the caller said it may go (so a subscribe in the same tick keeps it), reopened by the
 * next demand. Only the connection still current reaches `sink`: a closed one's late
 * callbacks are dropped. On a fatal error it is gone, and the next demand opens anew.
 */
export class SharedStream {
  readonly #transport: SharedTransport;
  readonly #sink: StreamSink;
  #connection: { stop: () => void; state: ConnectionState; transport: TransportKind } | undefined;
  #closeQueued = false;

  constructor(transport: SharedTransport, sink: StreamSink) {
    this.#transport = transport;
    this.#sink = sink;
  }

  get open(): boolean {
    return this.#connection !== undefined;
  }

  /** The state of the open connection (`connecting` when there is none yet). */
  get state(): ConnectionState {
    return this.#connection?.state ?? "connecting";
  }

  /** How the open connection's events come (`sse` when there is none yet). */
  get transport(): TransportKind {
    return this.#connection?.transport ?? "sse";
  }

  connect(): void {
    if (this.#connection) return;
    const connection = { stop: noop, state: "connecting" as ConnectionState, transport: "sse" as TransportKind };
    const current = (): boolean => this.#connection === connection;
    connection.stop = this.#transport.connect({
      event: (event) => {
        if (current()) this.#sink.event(event);
      },
      state: (state) => {
        if (!current()) return;
        connection.state = state;
        this.#sink.state(state);
      },
      transport: (kind) => {
        if (!current()) return;
        connection.transport = kind;
        this.#sink.transport?.(kind);
      },
      fatal: (error) => {
        if (!current()) return;
        this.#connection = undefined;
        connection.stop();
        this.#sink.fatal(error);
      },
    });
    this.#connection = connection;
  }

  /** Closes the connection one microtask from now, unless `stillNeeded()` says otherwise then. */
  release(stillNeeded: () => boolean): void {
    if (this.#closeQueued || !this.#connection) return;
    this.#closeQueued = true;
    queueMicrotask(() => {
      this.#closeQueued = false;
      const connection = this.#connection;
      if (stillNeeded() || !connection) return;
      this.#connection = undefined;
      connection.stop();
    });
  }
}

function noop(): void {}
