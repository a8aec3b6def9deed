import type {
  EventSourceInitLike,
  EventSourceLike,
  FetchInitLike,
  FetchLike,
  Job,
  JobStatus,
  StreamErrorEvent,
  StreamErrorLike,
  StreamMessageLike,
} from "../src/index.js";

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

/** Lets queued microtasks (late-joiner snapshots) run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

export interface RecordedRequest {
  readonly url: string;
  readonly init: FetchInitLike;
}

/** A fetch double that answers every request with one status and JSON body. */
export function fakeFetch(
  status: number,
  body: unknown,
): { fetch: FetchLike; requests: RecordedRequest[] } {
  const requests: RecordedRequest[] = [];
  const fetch: FetchLike = (url, init) => {
    requests.push({ url, init });
    return Promise.resolve({
      ok: status >= 200 && status < 300,
      status,
      statusText: "",
      text: () => Promise.resolve(typeof body === "string" ? body : JSON.stringify(body)),
    });
  };
  return { fetch, requests };
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

/** A fetch double answering by `METHOD url`; anything else is a 404 NOT_FOUND. */
export function routedFetch(
  routes: Record<string, readonly [status: number, body?: unknown]>,
): { fetch: FetchLike; requests: RecordedRequest[] } {
  const requests: RecordedRequest[] = [];
  const fetch: FetchLike = (url, init) => {
    requests.push({ url, init });
    const [status, body] = routes[`${init.method} ${url}`] ?? [404, { error: { code: "NOT_FOUND", message: "no such export" } }];
    return Promise.resolve({
      ok: status >= 200 && status < 300,
      status,
      statusText: "",
      text: () => Promise.resolve(body === undefined ? "" : JSON.stringify(body)),
    });
  };
  return { fetch, requests };
}
