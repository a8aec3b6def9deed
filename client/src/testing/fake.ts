/**
 * An in-memory exportstream BFF for unit tests of UI code: its fetch and EventSource
 * answer what the real BFF answers, and `server.client` is a real client (from
 * createExportClient) on them, so `useExport`, `waitFor`, the fallback… run as in the app.
 * Jobs follow the timeline their create request scripts (./timeline.ts), played with
 * setTimeout and dated with Date.now only: fake timers drive it.
 */
import { createExportClient } from "../client.js";
import type { ExportClient, ExportClientOptions } from "../client.js";
import { ExportError } from "../errors.js";
import type { FetchInitLike, FetchLike } from "../http.js";
import type { EventSourceConstructorLike, EventSourceInitLike, EventSourceLike, StreamErrorLike, StreamMessageLike } from "../stream.js";
import type { ExportRequest, Job, StreamEvent } from "../types.js";
import { cutsStream, fileName, isScripted, timeline, validationProblem } from "./timeline.js";
import type { TimelineStep } from "./timeline.js";

/** The scenario fields of a create request: what a test scripts. */
export type Scenario = Omit<ExportRequest, "rows" | "filename">;

export interface FakeExportServerOptions {
  /**
   * Scenario fields merged over every create request's own, so a test scripts what the
   * UI under test starts (`client.start({ rows })` in the component). Also `script()`.
   */
  readonly scenario?: Scenario;
  /** As the BFF's `SCENARIOS=on` (default true); false refuses scenario fields in a request. */
  readonly scenarios?: boolean;
  /** The backend's `PROGRESS_INTERVAL`: at most one progress event per this many ms. Default 100. */
  readonly progressIntervalMs?: number;
  /** The backend's `RETENTION`: a file's `expiresAt` after completion, without `expireAfterMs`. Default 1 h. */
  readonly retentionMs?: number;
  /**
   * The BFF's `SSE_RETRY`: how long an EventSource whose stream was cut (`dropStreamAt`)
   * waits before it reconnects. Default 2000.
   */
  readonly retryMs?: number;
  /** Every stream fails as when the relay loses the backend (also `relayGivesUp()`). */
  readonly relayGivesUp?: RelayFault;
  /** Options of `server.client` (the fake supplies `fetch`, `EventSource` and `baseUrl`). */
  readonly client?: Pick<ExportClientOptions, "mode" | "fallback">;
}

/** A download `client.download` or `client.downloadOnce` made (the fake clicks nothing). */
export interface FakeDownload {
  readonly code: string;
  /** The file's name, as the `<a download>` would get it. */
  readonly name: string;
  readonly url: string;
  /** True when made by `downloadOnce`. */
  readonly once: boolean;
}

/** An event stream request the server took: a first connect, or a reconnect. */
export interface FakeStreamRequest {
  /** `/api/exports/{code}/events` or `/api/events`, with the query the client gave it. */
  readonly url: string;
  /** The `Last-Event-ID` the EventSource resumed with; undefined on a first connect. */
  readonly lastEventId: string | undefined;
}

/** The relay-gives-up fault (the BFF's `?fault=relay-gives-up&faultAfterMs=&giveUpMs=`). */
export interface RelayFault {
  /** Each stream relays as usual this long after it opens, then goes silent. Default 0. */
  readonly afterMs?: number;
  /** Then, this much later, it sends each job it follows `ERROR` UPSTREAM_UNAVAILABLE and ends. Default 0. */
  readonly giveUpMs?: number;
}

export interface FakeExportServer {
  /** A client of this server, as `createExportClient` makes it; download clicks nothing. */
  readonly client: ExportClient;
  /** The server's fetch: `createExportClient({ fetch: server.fetch, EventSource: server.EventSource })` makes another client of the same session. */
  readonly fetch: FetchLike;
  readonly EventSource: EventSourceConstructorLike;
  /** Every create request as the server took it (with the scripted scenario), oldest first. */
  readonly requests: readonly ExportRequest[];
  /** The downloads the clients of this server made, oldest first. */
  readonly downloads: readonly FakeDownload[];
  /** Every event stream request, reconnects too, oldest first. */
  readonly streams: readonly FakeStreamRequest[];
  /** The session's exports, newest first (what `GET /api/exports` answers). */
  jobs(): Job[];
  /** Scripts the exports created from now on (replaces the `scenario` option; undefined: none). */
  script(scenario: Scenario | undefined): void;
  /** Streams opened from now on fail as when the relay loses the backend; undefined: no more. */
  relayGivesUp(fault: RelayFault | undefined): void;
  /** Stops every timer of the server (jobs freeze where they are); for `afterEach`. */
  close(): void;
}

/** Creates an in-memory server and `server.client`, a client of it. */
export function createFakeExportServer(options: FakeExportServerOptions = {}): FakeExportServer {
  const state = new FakeState(options);
  const fetch: FetchLike = (url, init) => Promise.resolve(state.handle(url, init));
  const EventSource = fakeEventSourceClass(state);
  const client = createExportClient({ ...options.client, fetch, EventSource, crossTab: false });
  const download = (job: Job, once: boolean): void => {
    if (!job.file) {
      throw new ExportError("NOT_READY", `export ${job.code} has no file (${job.status})`, { jobStatus: job.status, job });
    }
    state.downloads.push({ code: job.code, name: job.file.name, url: job.file.url, once });
  };
  // Own properties over the class's methods: the instance stays the client the React
  // binding knows (it reads its subscription registry).
  Object.assign(client, {
    download: (job: Job) => download(job, false),
    downloadOnce: (job: Job) => {
      if (state.downloads.some((each) => each.code === job.code && each.once)) return Promise.resolve(false);
      try {
        download(job, true);
        return Promise.resolve(true);
      } catch (error) {
        return Promise.reject(error);
      }
    },
  } satisfies Pick<ExportClient, "download" | "downloadOnce">);
  return {
    client,
    fetch,
    EventSource,
    requests: state.requests,
    downloads: state.downloads,
    streams: state.streams,
    jobs: () => state.list(),
    script: (scenario) => {
      state.scenario = scenario;
    },
    relayGivesUp: (fault) => {
      state.fault = fault;
    },
    close: () => state.close(),
  };
}

interface FakeResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText: string;
  text(): Promise<string>;
}

function reply(status: number, body?: unknown): FakeResponse {
  const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  return { ok: status >= 200 && status < 300, status, statusText: "", text: () => Promise.resolve(text) };
}

function failure(status: number, code: string, message: string): FakeResponse {
  return reply(status, { error: { code, message } });
}

const REQUEST_FIELDS = new Set(["rows", "durationMs", "filename", "failAt", "errorCode", "startDelayMs", "stallAt", "stallMs", "dropStreamAt", "expireAfterMs", "rowsPerSecond"]);

/** One export: its latest snapshot and what is left of its timeline. */
interface FakeJob {
  job: Job;
  readonly request: ExportRequest;
  readonly steps: TimelineStep[];
  readonly createdAt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** Who hears a job's changes: an open event stream (per job: `code`; multiplexed: all). */
interface Follower {
  readonly code: string | undefined;
  send(event: StreamEvent): void;
}

/** The server's jobs, one session's, and its HTTP routes. */
class FakeState {
  readonly requests: ExportRequest[] = [];
  readonly downloads: FakeDownload[] = [];
  readonly streams: FakeStreamRequest[] = [];
  /** EventSources waiting to reconnect after a cut: close() stops them too. */
  readonly reconnects = new Set<ReturnType<typeof setTimeout>>();
  readonly followers = new Set<Follower>();
  scenario: Scenario | undefined;
  fault: RelayFault | undefined;
  readonly #jobs = new Map<string, FakeJob>();
  readonly #options: FakeExportServerOptions;
  #created = 0;

  constructor(options: FakeExportServerOptions) {
    this.#options = options;
    this.scenario = options.scenario;
    this.fault = options.relayGivesUp;
  }

  snapshot(code: string): Job | undefined {
    return this.#jobs.get(code)?.job;
  }

  dropStreamAt(code: string): number | undefined {
    return this.#jobs.get(code)?.request.dropStreamAt;
  }

  get retryMs(): number {
    return this.#options.retryMs ?? 2000;
  }

  list(): Job[] {
    return [...this.#jobs.values()].reverse().map((each) => each.job);
  }

  close(): void {
    for (const each of this.#jobs.values()) clearTimeout(each.timer);
    for (const timer of this.reconnects) clearTimeout(timer);
    this.reconnects.clear();
  }

  handle(url: string, init: FetchInitLike): FakeResponse {
    const path = new URL(url, "http://fake.invalid").pathname;
    const method = init.method.toUpperCase();
    const match = /^\/api\/exports(?:\/([^/]+)(\/file)?)?$/.exec(path);
    if (path === "/api/session" && method === "POST") return this.#newSession();
    if (!match) return failure(404, "NO_ROUTE", `no route ${method} ${path}`);
    const [, rawCode, file] = match;
    if (rawCode === undefined) {
      if (method === "POST") return this.#create(init.body ?? "");
      if (method === "GET") return reply(200, { exports: this.list() });
    } else {
      const code = decodeURIComponent(rawCode);
      if (file !== undefined && method === "GET") return this.#file(code);
      if (file === undefined && method === "GET") return this.#get(code);
      if (file === undefined && method === "DELETE") return this.#delete(code);
    }
    return failure(405, "METHOD_NOT_ALLOWED", `${method} is not allowed on ${path}`);
  }

  #create(body: string): FakeResponse {
    let request: ExportRequest;
    try {
      request = JSON.parse(body) as ExportRequest;
    } catch (error) {
      return failure(400, "INVALID_JSON", `request body is not valid JSON: ${String(error)}`);
    }
    const unknown = Object.keys(request).find((key) => !REQUEST_FIELDS.has(key));
    if (unknown !== undefined) return failure(400, "INVALID_JSON", `request body is not valid JSON: json: unknown field "${unknown}"`);
    if (isScripted(request) && this.#options.scenarios === false) {
      return failure(400, "SCENARIOS_DISABLED", "scenario fields script an export for demos and tests; this backend runs with SCENARIOS=off");
    }
    const scripted: ExportRequest = { ...request, ...this.scenario };
    const problem = validationProblem(scripted);
    if (problem !== undefined) return failure(422, "VALIDATION_FAILED", problem);
    this.requests.push(scripted);
    const code = fakeCode(++this.#created);
    const now = Date.now();
    const at = new Date(now).toISOString();
    const job: Job = { code, status: "PENDING", progress: 0, rowsDone: 0, rowsTotal: scripted.rows, seq: 1, createdAt: at, updatedAt: at };
    const entry: FakeJob = { job, request: scripted, steps: timeline(scripted, this.#options.progressIntervalMs ?? 100), createdAt: now, timer: undefined };
    this.#jobs.set(code, entry);
    this.#publish(job);
    this.#schedule(entry);
    return reply(202, job);
  }

  /**
   * Plays the steps of `entry` as their times come: one timer per job at a time, and
   * every step due when it fires (so one tick of fake time shows them all).
   */
  #schedule(entry: FakeJob): void {
    const next = entry.steps[0];
    if (!next) return;
    entry.timer = setTimeout(
      () => {
        entry.timer = undefined;
        for (let step = entry.steps[0]; step && entry.createdAt + step.at <= Date.now(); step = entry.steps[0]) {
          entry.steps.shift();
          this.#apply(entry, step);
        }
        this.#schedule(entry);
      },
      Math.max(0, entry.createdAt + next.at - Date.now()),
    );
  }

  #apply(entry: FakeJob, step: TimelineStep): void {
    const at = entry.createdAt + step.at;
    const { error: _error, file: _file, ...previous } = entry.job;
    const job: Job = {
      ...previous,
      status: step.status,
      progress: step.progress,
      rowsDone: step.rowsDone,
      seq: previous.seq + 1,
      updatedAt: new Date(at).toISOString(),
      ...(step.error ? { error: step.error } : {}),
      ...(step.status === "COMPLETED" ? { file: this.#fileOf(entry.job.code, at, entry.request) } : {}),
    };
    entry.job = job;
    this.#publish(job);
  }

  #fileOf(code: string, completedAt: number, request: ExportRequest): NonNullable<Job["file"]> {
    const retention = this.#options.retentionMs ?? 3_600_000;
    const expiry = request.expireAfterMs ? Math.min(retention, request.expireAfterMs) : retention;
    return {
      name: fileName(request.filename, code),
      // Stand-ins: the fake writes no file. About the real size, not its bytes' hash.
      size: 34 + request.rows * (57 + String(request.rows).length),
      sha256: fakeHash(code),
      contentType: "text/csv; charset=utf-8",
      url: `/api/exports/${code}/file`,
      expiresAt: new Date(completedAt + expiry).toISOString(),
    };
  }

  #publish(job: Job): void {
    for (const follower of [...this.followers]) {
      if (follower.code === undefined || follower.code === job.code) follower.send(job);
    }
  }

  #get(code: string): FakeResponse {
    const job = this.snapshot(code);
    return job ? reply(200, job) : notFound(code);
  }

  #delete(code: string): FakeResponse {
    const entry = this.#jobs.get(code);
    if (!entry) return notFound(code);
    clearTimeout(entry.timer);
    if (entry.job.status === "PENDING" || entry.job.status === "IN_PROGRESS") {
      const job: Job = { ...entry.job, status: "CANCELLED", seq: entry.job.seq + 1, updatedAt: new Date(Date.now()).toISOString() };
      entry.job = job;
      entry.steps.length = 0;
      this.#publish(job);
      return reply(200, job);
    }
    this.#jobs.delete(code);
    return reply(204);
  }

  #file(code: string): FakeResponse {
    const job = this.snapshot(code);
    if (!job) return notFound(code);
    if (job.status !== "COMPLETED" || !job.file) return failure(409, "NOT_READY", `export is ${job.status}: export file is not ready`);
    if (Date.now() > Date.parse(job.file.expiresAt)) return failure(410, "GONE", "export file has expired and was deleted");
    // The fake writes no file: an empty CSV body stands in for it.
    return reply(200, "");
  }

  /** `POST /api/session`: a new session, so the old one's exports are out of reach. */
  #newSession(): FakeResponse {
    this.close();
    this.#jobs.clear();
    return reply(204);
  }
}

function notFound(code: string): FakeResponse {
  return failure(404, "NOT_FOUND", `export ${code}: export not found`);
}

/** Codes are UUIDs, as the backend's, but counted: the nth export of a server is always the same. */
function fakeCode(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
}

/** 64 hex digits derived from the code (FNV-1a, 32-bit, in 8 rounds). */
function fakeHash(code: string): string {
  let out = "";
  for (let round = 0; round < 8; round++) {
    let h = 0x811c9dc5 ^ round;
    for (const char of code) h = Math.imul(h ^ char.charCodeAt(0), 0x01000193) >>> 0;
    out += h.toString(16).padStart(8, "0");
  }
  return out;
}

/** The EventSource of the fake server's streams (`/api/exports/{code}/events`, `/api/events`). */
function fakeEventSourceClass(state: FakeState): EventSourceConstructorLike {
  return class FakeServerEventSource implements EventSourceLike {
    static readonly CONNECTING = 0;
    static readonly OPEN = 1;
    static readonly CLOSED = 2;
    readyState = 0;
    onopen: ((event: unknown) => unknown) | null = null;
    onmessage: ((event: StreamMessageLike) => unknown) | null = null;
    onerror: ((event: StreamErrorLike) => unknown) | null = null;
    readonly url: string;
    #stop: () => void = () => {};
    #lastEventId: string | undefined;
    #retry: ReturnType<typeof setTimeout> | undefined;

    constructor(url: string, _init?: EventSourceInitLike) {
      this.url = url;
      this.#connect();
    }

    #connect(): void {
      this.#stop = openStream(state, this.url, this.#lastEventId, {
        open: () => {
          this.readyState = 1;
          this.onopen?.({ type: "open" });
        },
        message: (data, id) => {
          if (id !== undefined) this.#lastEventId = id;
          this.onmessage?.({ data });
        },
        // As the `eventsource` package reports a refused connect: with its HTTP status.
        refused: (status) => {
          this.readyState = 2;
          this.onerror?.({ type: "error", code: status } as StreamErrorLike);
        },
        // As a real EventSource whose response ended: CONNECTING, an error event, and
        // after the retry delay a new request with Last-Event-ID.
        cut: () => {
          this.readyState = 0;
          this.onerror?.({ type: "error" });
          const retry = setTimeout(() => {
            state.reconnects.delete(retry);
            if (this.readyState === 0) this.#connect();
          }, state.retryMs);
          state.reconnects.add(retry);
          this.#retry = retry;
        },
      });
    }

    close(): void {
      this.readyState = 2;
      this.#stop();
      if (this.#retry !== undefined) state.reconnects.delete(this.#retry);
      clearTimeout(this.#retry);
    }
  };
}

interface StreamCallbacks {
  open(): void;
  /** An event, with its id (per job the seq, on a tab's stream `code:seq`; none on ERROR). */
  message(data: string, id: string | undefined): void;
  refused(status: number): void;
  /** The server ended the stream (dropStreamAt): the EventSource reconnects. */
  cut(): void;
}

/**
 * One event stream of the fake BFF, answered a microtask later (never a timer, so it
 * opens with fake timers too): the current snapshot(s), then every change; under a
 * relay fault, silence after `afterMs` and the ERRORs `giveUpMs` later. A per-job stream
 * resumed with `lastEventId` starts with a newer snapshot only (a tab's sends them all, as
 * the BFF's). Each stream that carries a job across its `dropStreamAt` ends right after
 * that snapshot. Returns its stop.
 */
function openStream(state: FakeState, url: string, lastEventId: string | undefined, on: StreamCallbacks): () => void {
  state.streams.push({ url, lastEventId });
  const path = new URL(url, "http://fake.invalid").pathname;
  const perJob = /^\/api\/exports\/([^/]+)\/events$/.exec(path);
  const code = perJob?.[1] === undefined ? undefined : decodeURIComponent(perJob[1]);
  const after = code === undefined ? 0 : Number.parseInt(lastEventId ?? "", 10) || 0;
  const fault = state.fault;
  let stopped = false;
  let silent = false;
  const timers: ReturnType<typeof setTimeout>[] = [];
  const carried = new Map<string, number>(); // the progress of the last snapshot sent, per code
  const follower: Follower = {
    code,
    send: (event) => {
      if (silent || stopped) return;
      if (event.status === "ERROR") return on.message(JSON.stringify(event), undefined);
      on.message(JSON.stringify(event), code === undefined ? `${event.code}:${event.seq}` : String(event.seq));
      const before = carried.get(event.code) ?? -1;
      carried.set(event.code, event.progress);
      if (cutsStream(event, before, state.dropStreamAt(event.code))) {
        stop();
        on.cut();
      }
    },
  };
  const stop = (): void => {
    stopped = true;
    state.followers.delete(follower);
    for (const timer of timers) clearTimeout(timer);
  };
  void Promise.resolve().then(() => {
    if (stopped) return;
    const known = code === undefined ? state.list().reverse() : [state.snapshot(code)].filter((job) => job !== undefined);
    // No such export in the session, or no such stream: the BFF answers 404.
    if ((code !== undefined && known.length === 0) || (code === undefined && path !== "/api/events")) return on.refused(404);
    on.open();
    if (fault) {
      silent = !fault.afterMs;
      timers.push(setTimeout(() => (silent = true), fault.afterMs ?? 0));
      timers.push(setTimeout(() => {
        const followed = code === undefined ? state.list().map((job) => job.code) : [code];
        for (const each of followed) on.message(JSON.stringify({ code: each, status: "ERROR", error: UNAVAILABLE }), undefined);
        stop();
      }, (fault.afterMs ?? 0) + (fault.giveUpMs ?? 0)));
    }
    // A resume with nothing newer: the BFF sends nothing until the next change.
    for (const job of known) if (job.seq > after) follower.send(job);
    state.followers.add(follower);
  });
  return stop;
}

const UNAVAILABLE = { code: "UPSTREAM_UNAVAILABLE", message: "the export service cannot be reached; try again later" };
