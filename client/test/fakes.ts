/**
 * Every test double in one place, shared by the suites:
 * - the client's world in a unit test: {@link FakeEventSource}, fetch doubles, job
 *   snapshots, a client wired to them ({@link fakeClient}), a listener that records;
 * - docs/fixtures, typed ({@link wire});
 * - what Node lacks for the client against a real BFF: a cookie-keeping fetch and the
 *   `eventsource` package, counting ({@link cookieFetch}, {@link countingEventSource});
 * - a scripted backend that sends the BFF tricky SSE ({@link startScriptedBackend});
 * - one browser's Web Locks and BroadcastChannel for several tabs ({@link FakeBrowser}).
 * The real binaries are started by servers.ts.
 */
import { EventSource } from "eventsource";
import { createServer } from "node:http";
import type { Server, ServerResponse } from "node:http";
import { beforeEach, expect } from "vitest";
import { createExportClient } from "../src/index.js";
import type {
  EventSourceConstructorLike,
  ExportClient,
  ExportEvent,
  ExportStatus,
  FetchLike,
  Job,
  JobStatus,
  StreamMode,
} from "../src/index.js";
import type { FetchInitLike } from "../src/http.js";
import type { EventSourceInitLike, EventSourceLike, StreamErrorLike, StreamMessageLike } from "../src/stream.js";
import type { BroadcastChannelLike, LockManagerLike } from "../src/crosstab.js";
import type { StreamErrorEvent } from "../src/types.js";
import cancelledJSON from "../../docs/fixtures/job-cancelled.json" with { type: "json" };
import completedJSON from "../../docs/fixtures/job-completed.json" with { type: "json" };
import failedJSON from "../../docs/fixtures/job-failed.json" with { type: "json" };
import inProgressJSON from "../../docs/fixtures/job-in-progress.json" with { type: "json" };
import pendingJSON from "../../docs/fixtures/job-pending.json" with { type: "json" };
import errorEventJSON from "../../docs/fixtures/error-event.json" with { type: "json" };

// ---------------------------------------------------------------------------------------
// Web Locks and BroadcastChannel: several "tabs" of one browser in one process

interface LockRequest {
  readonly name: string;
  readonly tab: number;
  readonly granted: () => Promise<unknown>;
  readonly settle: (outcome: { value: unknown } | { error: unknown }) => void;
}

/** One browser's lock manager and channels; each tab gets its own view and can crash. */
export class FakeBrowser {
  readonly #held = new Map<string, LockRequest>();
  readonly #queue: LockRequest[] = [];
  readonly #channels = new Set<{ tab: number; name: string; channel: BroadcastChannelLike; closed: boolean }>();

  locks(tab: number): LockManagerLike {
    return {
      request: <T>(name: string, options: { signal?: AbortSignal }, granted: () => Promise<T>) =>
        new Promise<T>((resolve, reject) => {
          const request: LockRequest = {
            name,
            tab,
            granted,
            settle: (outcome) => ("value" in outcome ? resolve(outcome.value as T) : reject(outcome.error)),
          };
          this.#queue.push(request);
          options.signal?.addEventListener("abort", () => {
            const at = this.#queue.indexOf(request);
            if (at < 0) return;
            this.#queue.splice(at, 1);
            reject(new Error("AbortError"));
          });
          this.#pump(name);
        }),
      query: () => Promise.resolve({ pending: this.#queue.map(({ name }) => ({ name })) }),
    };
  }

  channel(tab: number): new (name: string) => BroadcastChannelLike {
    const channels = this.#channels;
    return class {
      onmessage: ((event: { data: unknown }) => void) | null = null;
      readonly #entry;
      constructor(name: string) {
        this.#entry = { tab, name, channel: this as BroadcastChannelLike, closed: false };
        channels.add(this.#entry);
      }
      postMessage(message: unknown): void {
        if (this.#entry.closed) return;
        const data = structuredClone(message);
        for (const other of channels) {
          if (other === this.#entry || other.name !== this.#entry.name || other.closed) continue;
          queueMicrotask(() => other.closed || other.channel.onmessage?.({ data }));
        }
      }
    };
  }

  /** The tab is gone: its locks are released, its requests and channels dropped. */
  crash(tab: number): void {
    for (const entry of this.#channels) if (entry.tab === tab) entry.closed = true;
    for (let i = this.#queue.length - 1; i >= 0; i--) if (this.#queue[i]!.tab === tab) this.#queue.splice(i, 1);
    for (const [name, request] of this.#held) {
      if (request.tab !== tab) continue;
      this.#held.delete(name);
      this.#pump(name);
    }
  }

  #pump(name: string): void {
    if (this.#held.has(name)) return;
    const next = this.#queue.find((request) => request.name === name);
    if (!next) return;
    this.#queue.splice(this.#queue.indexOf(next), 1);
    this.#held.set(name, next);
    const done = (outcome: { value: unknown } | { error: unknown }): void => {
      if (this.#held.get(name) !== next) return; // crashed meanwhile
      this.#held.delete(name);
      next.settle(outcome);
      this.#pump(name);
    };
    void Promise.resolve()
      .then(next.granted)
      .then(
        (value) => done({ value }),
        (error: unknown) => done({ error }),
      );
  }
}

// ---------------------------------------------------------------------------------------
// EventSource

/**
 * An EventSource double: records every instance, and lets a test push messages and
 * errors the way a browser would deliver them.
 */
export class FakeEventSource implements EventSourceLike {
  static readonly instances: FakeEventSource[] = [];

  static reset(): void {
    FakeEventSource.instances.length = 0;
  }

  /** The instances not closed yet. */
  static open(): FakeEventSource[] {
    return FakeEventSource.instances.filter((source) => !source.closed);
  }

  readyState = 0;
  closed = false;
  onopen: ((event: unknown) => unknown) | null = null;
  onmessage: ((event: StreamMessageLike) => unknown) | null = null;
  onerror: ((event: StreamErrorLike) => unknown) | null = null;

  constructor(
    readonly url: string,
    readonly init?: EventSourceInitLike,
  ) {
    FakeEventSource.instances.push(this);
  }

  /** Delivers one `data:` payload (a job snapshot or an ERROR event). */
  emit(event: Job | StreamErrorEvent): void {
    this.emitRaw(JSON.stringify(event));
  }

  emitRaw(data: string): void {
    if (this.closed) throw new Error("emit on a closed EventSource");
    if (this.readyState !== 1) this.open();
    this.onmessage?.({ data });
  }

  /** The response arrived: the source is OPEN (emit does this on the first message). */
  open(): void {
    if (this.closed) throw new Error("open on a closed EventSource");
    this.readyState = 1;
    this.onopen?.({ type: "open" });
  }

  /** A transient drop: the source reconnects by itself. */
  drop(): void {
    this.readyState = 0;
    this.onerror?.({ type: "error" });
  }

  /** A fatal failure (e.g. HTTP 404 on connect): the source gives up. */
  fail(code?: number): void {
    this.readyState = 2;
    this.onerror?.(Object.assign({ type: "error" }, code === undefined ? {} : { code }));
  }

  close(): void {
    this.readyState = 2;
    this.closed = true;
  }
}

// Every test of a file that uses the fakes starts with no EventSource recorded.
beforeEach(() => {
  FakeEventSource.reset();
});

/** The only open EventSource; fails the test when there is not exactly one. */
export function onlySource(): FakeEventSource {
  const open = FakeEventSource.open();
  expect(open).toHaveLength(1);
  return open[0]!;
}

// ---------------------------------------------------------------------------------------
// Jobs

export const CODE = "6f1c0b1e-4b7a-4c55-9c1e-3f0a8d2b7c11";
export const OTHER_CODE = "0d9c2a44-1b1e-4f3b-8e2a-5c6d7e8f9a0b";

/** A job snapshot with sensible defaults. */
export function job(overrides: Partial<Job> & { seq: number; status?: JobStatus }): Job {
  const base: Job = {
    code: CODE,
    status: "IN_PROGRESS",
    progress: 0,
    rowsDone: 0,
    rowsTotal: 1000,
    seq: overrides.seq,
    createdAt: "2026-11-25T09:00:00Z",
    updatedAt: "2026-11-25T09:00:01Z",
  };
  return { ...base, ...overrides };
}

export function completed(seq: number, code = CODE): Job {
  return job({
    code,
    seq,
    status: "COMPLETED",
    progress: 100,
    rowsDone: 1000,
    file: {
      name: "export.csv",
      size: 1234,
      sha256: "ab".repeat(32),
      contentType: "text/csv",
      url: `/api/exports/${code}/file`,
      expiresAt: "2026-11-25T10:00:00Z",
    },
  });
}

// ---------------------------------------------------------------------------------------
// fetch

export interface RecordedRequest {
  readonly url: string;
  readonly init: FetchInitLike;
}

type Answer = readonly [status: number, body?: unknown];

/**
 * A fetch double answering by `METHOD url`; anything else is a 404 NOT_FOUND. A string
 * body is sent as it is, anything else as JSON.
 */
export function routedFetch(routes: Record<string, Answer>): { fetch: FetchLike; requests: RecordedRequest[] } {
  return answeringFetch((url, init) => routes[`${init.method} ${url}`] ?? [404, { error: { code: "NOT_FOUND", message: "no such export" } }]);
}

/** A fetch double that answers every request with one status and body. */
export function fakeFetch(status: number, body: unknown): { fetch: FetchLike; requests: RecordedRequest[] } {
  return answeringFetch(() => [status, body]);
}

function answeringFetch(answer: (url: string, init: FetchInitLike) => Answer): { fetch: FetchLike; requests: RecordedRequest[] } {
  const requests: RecordedRequest[] = [];
  const fetch: FetchLike = (url, init) => {
    requests.push({ url, init });
    const [status, body] = answer(url, init);
    const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
    return Promise.resolve({ ok: status >= 200 && status < 300, status, statusText: "", text: () => Promise.resolve(text) });
  };
  return { fetch, requests };
}

/** A fetch that never answers: only the streams speak. */
const silentFetch: FetchLike = () => new Promise(() => {});

// ---------------------------------------------------------------------------------------
// The client under test

/**
 * A client on http://bff.test with {@link FakeEventSource} and, unless given, a fetch
 * that never answers (so in multiplex mode a seed GET stays silent).
 */
export function fakeClient(options: { mode?: StreamMode; fetch?: FetchLike | undefined } = {}): ExportClient {
  return createExportClient({
    baseUrl: "http://bff.test",
    EventSource: FakeEventSource,
    mode: options.mode ?? "per-job",
    fetch: options.fetch ?? silentFetch,
  });
}

/** A listener that keeps every event it gets. */
export interface Recorder {
  readonly events: ExportEvent[];
  readonly listener: (event: ExportEvent) => void;
  /** The seqs of the snapshots received, in order. */
  seqs(): number[];
}

export function recorder(): Recorder {
  const events: ExportEvent[] = [];
  return {
    events,
    listener: (event) => events.push(event),
    seqs: () => events.flatMap((event) => (event.type === "snapshot" ? [event.job.seq] : [])),
  };
}

/**
 * A client (as {@link fakeClient} makes it) with a recording listener subscribed to each
 * of `codes`, in order, and the one EventSource that opened for them.
 */
export function subscribed<const Codes extends readonly string[]>(
  codes: Codes,
  options: { mode?: StreamMode; fetch?: FetchLike | undefined } = {},
): { client: ExportClient; source: FakeEventSource; recorders: { -readonly [K in keyof Codes]: Recorder } } {
  const client = fakeClient(options);
  const recorders = codes.map((code) => {
    const each = recorder();
    client.subscribe(code, each.listener);
    return each;
  });
  return { client, source: onlySource(), recorders: recorders as { -readonly [K in keyof Codes]: Recorder } };
}

/** Lets queued microtasks (late-joiner snapshots) run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Runs `body` and returns the errors thrown outside it (a throwing listener's error is
 * rethrown on a microtask, like an event handler's), instead of failing the run.
 */
export async function catchingUncaught(body: () => Promise<void>): Promise<unknown[]> {
  const thrown: unknown[] = [];
  const saved = process.listeners("uncaughtException");
  process.removeAllListeners("uncaughtException");
  const collect = (error: unknown): void => {
    thrown.push(error);
  };
  process.on("uncaughtException", collect);
  try {
    await body();
    await flush();
  } finally {
    process.off("uncaughtException", collect);
    for (const listener of saved) process.on("uncaughtException", listener);
  }
  return thrown;
}

// ---------------------------------------------------------------------------------------
// docs/fixtures

/*
 * The shared wire fixtures (docs/fixtures/*.json), typed. The Go types
 * (backend/internal/job/fixtures_test.go), docs/openapi.yaml (the BFF's
 * openapi_test.go) and the client's types (fixtures.test-d.ts) are all checked
 * against these files, so none of them can rename or drop a field alone.
 *
 * A JSON import types `status` as `string`; `withStatus` checks it at run time
 * and narrows it to its literal, so each fixture must be assignable to the
 * client's types (`satisfies`), and fixtures.test-d.ts checks the keys both ways.
 */

/** T with its `status: string` narrowed to the literal S. */
type WithStatus<T extends { status: string }, S extends ExportStatus> = Omit<T, "status"> & {
  readonly status: S;
};

function withStatus<S extends ExportStatus>(status: S) {
  return <T extends { status: string }>(fixture: T): WithStatus<T, S> => {
    if (fixture.status !== status) throw new Error(`fixture has status ${fixture.status}, want ${status}`);
    return fixture as unknown as WithStatus<T, S>; // checked just above
  };
}

/** Every fixture of docs/fixtures; `jobs` by file name. */
export const wire = {
  jobs: {
    "job-pending.json": withStatus("PENDING")(pendingJSON) satisfies Job,
    "job-in-progress.json": withStatus("IN_PROGRESS")(inProgressJSON) satisfies Job,
    "job-completed.json": withStatus("COMPLETED")(completedJSON) satisfies Job,
    "job-failed.json": withStatus("FAILED")(failedJSON) satisfies Job,
    "job-cancelled.json": withStatus("CANCELLED")(cancelledJSON) satisfies Job,
  },
  errorEvent: withStatus("ERROR")(errorEventJSON) satisfies StreamErrorEvent,
} as const;

export type JobFixture = (typeof wire.jobs)[keyof typeof wire.jobs];

// ---------------------------------------------------------------------------------------
// Node against a real BFF

export type NodeFetch = typeof globalThis.fetch;

/**
 * A fetch that remembers the cookies the server sets and sends them back: the BFF keeps
 * the session in a cookie, and Node's fetch has no jar.
 */
export function cookieFetch(): NodeFetch {
  const jar = new Map<string, string>();
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    if (jar.size > 0) {
      headers.set("Cookie", [...jar].map(([name, value]) => `${name}=${value}`).join("; "));
    }
    const response = await fetch(input, { ...init, headers });
    for (const cookie of response.headers.getSetCookie()) {
      const pair = cookie.split(";", 1)[0] ?? "";
      const eq = pair.indexOf("=");
      if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return response;
  };
}

export interface CountingEventSource {
  readonly EventSource: EventSourceConstructorLike;
  /** URLs of every EventSource constructed, in order. */
  readonly constructed: string[];
}

/**
 * `inner`, recording each event stream request an EventSource makes through it: its URL
 * and the Last-Event-ID it resumed with (none: undefined).
 */
export function recordingStreams(inner: NodeFetch, streams: { url: string; lastEventId: string | undefined }[]): NodeFetch {
  return (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (new URL(url).pathname.endsWith("/events")) {
      streams.push({ url, lastEventId: new Headers(init?.headers).get("Last-Event-ID") ?? undefined });
    }
    return inner(input, init);
  };
}

/** The `eventsource` package's EventSource, counting constructions, sending `fetchImpl`'s cookies. */
export function countingEventSource(fetchImpl: NodeFetch): CountingEventSource {
  const constructed: string[] = [];
  class Counting extends EventSource {
    constructor(url: string, init?: EventSourceInitLike) {
      super(url, { ...init, fetch: fetchImpl });
      constructed.push(url);
    }
  }
  return { EventSource: Counting, constructed };
}

// ---------------------------------------------------------------------------------------
// A scripted backend

/** A loopback HTTP server: its origin and how to close it (open connections too). */
export interface Listening {
  readonly url: string;
  close(): Promise<void>;
}

/** Starts `server` on a free port of 127.0.0.1. */
export async function listen(server: Server): Promise<Listening> {
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((closed) => server.close(closed));
    },
  };
}

/**
 * The backend's bytes on its multiplexed stream for a subscribed job, in writes: the
 * wire's oddities in its framing, the job's events in envelopes.
 */
export type Script = (owner: string, code: string) => string[];

/** The i-th code of a scripted run (0: the create's). */
export function codeOf(i: number): string {
  return `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
}

export interface ScriptedBackend extends Listening {
  /** What the backend sends for code when the BFF subscribes it (once), then the job's end. */
  script(code: string, script: Script): void;
}

/**
 * A backend that speaks only the multiplexed stream (docs/multiplexed-stream.md), with
 * scripted bytes. A create (`POST`) is answered 202 with {@link codeOf}(0), which lets a
 * reader get the BFF's session cookie. The BFF's stream stays open; a job's subscription
 * (PUT) is answered 204 and its script written on the stream, then the job's end
 * (`end: "done"`), which the BFF answers by ending the job's stream.
 */
export async function startScriptedBackend(): Promise<ScriptedBackend> {
  const scripts = new Map<string, Script>();
  const streams = new Set<ServerResponse>();
  const backend = createServer((req, res) => {
    const url = req.url ?? "";
    if (req.method === "POST") {
      res.writeHead(202, { "Content-Type": "application/json" }).end(`{"code":"${codeOf(0)}","status":"PENDING"}`);
      return;
    }
    if (req.method === "GET" && url === "/v1/events") {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write('\ufeffretry: soon\n\nevent: stream\ndata: {"stream":"s1"}\n\n');
      streams.add(res);
      res.on("close", () => streams.delete(res));
      return;
    }
    const code = /^\/v1\/events\/s1\/subscriptions\/([^/]+)$/.exec(url)?.[1];
    const owner = req.headers["x-export-owner"];
    res.writeHead(code === undefined ? 404 : 204).end();
    const script = code === undefined ? undefined : scripts.get(code);
    if (req.method !== "PUT" || code === undefined || script === undefined || typeof owner !== "string") return;
    scripts.delete(code);
    const end = `data: ${JSON.stringify({ owner, code, end: "done" })}\n\n`;
    for (const stream of streams) for (const piece of [...script(owner, code), end]) stream.write(piece);
  });
  const listening = await listen(backend);
  return { ...listening, script: (code, script) => scripts.set(code, script) };
}
