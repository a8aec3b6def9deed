import { ExportError } from "./errors.js";
import { isRecord, requestJSON } from "./http.js";
import type { FetchInitLike, FetchLike } from "./http.js";
import { isJobShape, perJobTransport, sharedTransport } from "./stream.js";
import type { EventSourceConstructorLike, PerJobTransport, SharedTransport } from "./stream.js";
import { SubscriptionRegistry } from "./subscriptions.js";
import type { ExportListener, JobObservation, SubscribeOptions, Unsubscribe } from "./subscriptions.js";
import type { ExportRequest, Job } from "./types.js";

/**
 * How the client listens.
 * - `per-job` (default): one EventSource per watched code on `/api/exports/{code}/events`.
 *   Simple, and each stream ends with its job; but a browser on HTTP/1.1 opens at most
 *   six connections per origin, so a seventh watched export (and any other request)
 *   waits until one ends.
 * - `multiplex`: one EventSource on `/api/events` for the whole client, however many
 *   exports are watched; opened with the first subscription, closed when none is left.
 */
export type StreamMode = "per-job" | "multiplex";

export interface ExportClientOptions {
  /** Origin (and optional path prefix) of the BFF; `""`, the default, is same origin. */
  readonly baseUrl?: string;
  /** EventSource implementation; defaults to `globalThis.EventSource`. */
  readonly EventSource?: EventSourceConstructorLike;
  /** fetch implementation; defaults to `globalThis.fetch`. */
  readonly fetch?: FetchLike;
  readonly mode?: StreamMode;
  /**
   * Cookie policy for requests and streams. The BFF keeps the session in a cookie; use
   * `"include"` when the BFF is on another origin. Default `"same-origin"`.
   */
  readonly credentials?: "omit" | "same-origin" | "include";
}

export interface RequestOptions {
  readonly signal?: AbortSignal;
}

export interface ExportClient {
  /** `POST /api/exports`: creates an export and returns its first snapshot. */
  start(request: ExportRequest, options?: RequestOptions): Promise<Job>;
  /** `GET /api/exports/{code}`: the current snapshot. */
  get(code: string, options?: RequestOptions): Promise<Job>;
  /** `GET /api/exports`: this session's exports, newest first. */
  list(options?: RequestOptions): Promise<Job[]>;
  /**
   * `DELETE /api/exports/{code}`: cancels a PENDING or IN_PROGRESS export and resolves
   * with its CANCELLED snapshot (its subscribers get that snapshot too); an export that
   * had already ended is deleted with its file, and the promise resolves `undefined`.
   */
  cancel(code: string, options?: RequestOptions): Promise<Job | undefined>;
  /**
   * Follows an export live. Listeners of the same code share one stream; each gets the
   * latest snapshot right after joining, then every newer one, and at last the terminal
   * snapshot or an error event. Returns the function that stops this listener.
   */
  subscribe(code: string, listener: ExportListener, options?: SubscribeOptions): Unsubscribe;
  /**
   * Every newer snapshot of any job the client learns about (from start, get, list,
   * cancel and every stream), and `removed` when a finished export was deleted. It
   * opens no stream by itself; the session list of a UI is built on it.
   */
  observe(observer: (observation: JobObservation) => void): Unsubscribe;
  /** The latest snapshot the client knows of `code`, without a request. */
  known(code: string): Job | undefined;
  /** The mode this client was created with. */
  readonly mode: StreamMode;
  /**
   * Resolves with the COMPLETED job; rejects with an {@link ExportError} when the job
   * ends FAILED or CANCELLED, the stream fails, or `signal` aborts.
   */
  waitFor(code: string, options?: RequestOptions): Promise<Job>;
  /** Absolute-or-same-origin URL of a completed job's file. */
  fileUrl(job: Job): string;
  /**
   * Downloads a COMPLETED job's file in the current tab (a temporary `<a download>`
   * click: no new window, no blob in memory; the BFF answers with
   * `Content-Disposition: attachment`). Browser only.
   */
  download(job: Job): void;
  /**
   * Codes subscribed right now (one entry per code, whatever the listener count). In
   * per-job mode each has its own EventSource; in multiplex mode they share one.
   */
  openStreams(): string[];
  /** How many EventSources the client holds open right now. */
  openConnections(): number;
}

/** Creates a client for the exportstream BFF. */
export function createExportClient(options: ExportClientOptions = {}): ExportClient {
  const baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "");
  const credentials = options.credentials ?? "same-origin";
  const fetchImpl: FetchLike =
    options.fetch ??
    ((url, init) => {
      if (typeof globalThis.fetch !== "function") {
        throw new TypeError("no fetch available: pass one to createExportClient({ fetch })");
      }
      return globalThis.fetch(url, init);
    });
  const exportsUrl = `${baseUrl}/api/exports`;
  const exportUrl = (code: string): string => `${exportsUrl}/${encodeURIComponent(code)}`;

  const mode: StreamMode = options.mode ?? "per-job";
  if (mode !== "per-job" && mode !== "multiplex") {
    throw new TypeError(`unknown mode ${String(mode)}: use "per-job" or "multiplex"`);
  }
  // Resolved on first use, so a client can be created where streams are not (SSR, Node).
  const transportOptions = () => ({
    EventSource: options.EventSource ?? defaultEventSource(),
    withCredentials: credentials === "include",
  });
  const subscriptions = new SubscriptionRegistry(
    mode === "per-job"
      ? {
          mode,
          transport: lazyPerJob(() =>
            perJobTransport({ ...transportOptions(), eventsUrl: (code) => `${exportUrl(code)}/events` }),
          ),
        }
      : {
          mode,
          transport: lazyShared(() => sharedTransport({ ...transportOptions(), url: `${baseUrl}/api/events` })),
          seed: (code) => job(exportUrl(code), init("GET", undefined)),
        },
  );

  let sessionEstablished = false;
  let firstStart: Promise<Job> | undefined;

  function init(method: string, requestOptions: RequestOptions | undefined): FetchInitLike {
    const result: FetchInitLike = { method, headers: { Accept: "application/json" }, credentials };
    if (requestOptions?.signal) result.signal = requestOptions.signal;
    return result;
  }

  async function job(url: string, requestInit: FetchInitLike): Promise<Job> {
    const body = await requestJSON(fetchImpl, url, requestInit);
    if (!isJobShape(body)) {
      throw new ExportError("BAD_RESPONSE", `${requestInit.method} ${url}: not a job`, {
        status: 200,
      });
    }
    return body as Job;
  }

  function fileUrl(target: Job): string {
    if (!target.file) {
      throw new ExportError("NOT_READY", `export ${target.code} has no file (${target.status})`, {
        status: target.status,
        job: target,
      });
    }
    const { url } = target.file;
    return /^[a-z][a-z\d+.-]*:/i.test(url) ? url : `${baseUrl}${url}`;
  }

  return {
    mode,

    async start(request, requestOptions) {
      const requestInit = init("POST", requestOptions);
      requestInit.headers["Content-Type"] = "application/json";
      requestInit.body = JSON.stringify(request);
      const post = async (): Promise<Job> => learnt(await job(exportsUrl, requestInit));
      // The BFF creates the session (its cookie) on the first POST. Cookie-less POSTs
      // sent at once would each get a session of their own, so until one POST of this
      // client succeeded, the next ones wait for it.
      if (sessionEstablished) return post();
      if (firstStart) {
        await firstStart.catch(() => {});
        return post();
      }
      firstStart = post();
      try {
        const created = await firstStart;
        sessionEstablished = true;
        return created;
      } finally {
        firstStart = undefined;
      }
    },

    async get(code, requestOptions) {
      return learnt(await job(exportUrl(code), init("GET", requestOptions)));
    },

    async list(requestOptions) {
      const requestInit = init("GET", requestOptions);
      const body = await requestJSON(fetchImpl, exportsUrl, requestInit);
      const exports = isRecord(body) ? body["exports"] : undefined;
      if (!Array.isArray(exports) || !exports.every(isJobShape)) {
        throw new ExportError("BAD_RESPONSE", `GET ${exportsUrl}: not a list of exports`, { status: 200 });
      }
      const jobs = exports as Job[];
      for (const each of [...jobs].reverse()) subscriptions.remember(each);
      return jobs;
    },

    async cancel(code, requestOptions) {
      const url = exportUrl(code);
      const requestInit = init("DELETE", requestOptions);
      const body = await requestJSON(fetchImpl, url, requestInit);
      if (body === undefined) {
        subscriptions.forget(code);
        return undefined;
      }
      if (!isJobShape(body)) {
        throw new ExportError("BAD_RESPONSE", `DELETE ${url}: not a job`, { status: 200 });
      }
      return learnt(body as Job);
    },

    subscribe(code, listener, subscribeOptions) {
      return subscriptions.subscribe(code, listener, subscribeOptions);
    },

    observe(observer) {
      return subscriptions.observe(observer);
    },

    known(code) {
      return subscriptions.known(code);
    },

    waitFor(code, requestOptions) {
      const signal = requestOptions?.signal;
      return new Promise<Job>((resolve, reject) => {
        if (signal?.aborted) {
          reject(aborted(code, signal));
          return;
        }
        let settled = false;
        const settle = (outcome: () => void): void => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener("abort", onAbort);
          unsubscribe();
          outcome();
        };
        const onAbort = (): void => {
          if (signal) settle(() => reject(aborted(code, signal)));
        };
        // Subscribed before the abort listener, so a synchronous throw (no EventSource)
        // leaves nothing behind.
        const unsubscribe = subscriptions.subscribe(code, (event) => {
          if (event.type === "error") {
            settle(() => reject(event.error));
            return;
          }
          const { job: snapshot } = event;
          if (snapshot.status === "COMPLETED") settle(() => resolve(snapshot));
          else if (snapshot.status === "FAILED" || snapshot.status === "CANCELLED") {
            settle(() => reject(ExportError.fromJob(snapshot)));
          }
        });
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },

    fileUrl,

    download(target) {
      const href = fileUrl(target);
      const doc = (globalThis as { document?: DocumentLike }).document;
      if (!doc) throw new TypeError("download() needs a browser document");
      const anchor = doc.createElement("a");
      anchor.href = href;
      // A hint only: the BFF's Content-Disposition names the file; cross-origin ignores it.
      anchor.download = target.file?.name ?? "";
      anchor.rel = "noopener";
      anchor.style.display = "none";
      doc.body.append(anchor);
      try {
        anchor.click();
      } finally {
        anchor.remove();
      }
    },

    openStreams() {
      return subscriptions.openCodes();
    },

    openConnections() {
      if (mode === "multiplex") return subscriptions.sharedOpen() ? 1 : 0;
      return subscriptions.openCodes().length;
    },
  };

  function learnt(snapshot: Job): Job {
    subscriptions.remember(snapshot);
    return snapshot;
  }
}

/** The DOM the download needs, typed here so the library does not require lib.dom. */
interface DocumentLike {
  createElement(tag: "a"): {
    href: string;
    download: string;
    rel: string;
    style: { display: string };
    click(): void;
    remove(): void;
  };
  body: { append(node: unknown): void };
}

function aborted(code: string, signal: AbortSignal): ExportError {
  return new ExportError("ABORTED", `waiting for export ${code} aborted`, {
    status: 0,
    cause: signal.reason,
  });
}

function defaultEventSource(): EventSourceConstructorLike {
  const candidate = (globalThis as { EventSource?: EventSourceConstructorLike }).EventSource;
  if (!candidate) {
    throw new TypeError(
      "no EventSource available: pass one to createExportClient({ EventSource }) " +
        "(in Node: the `eventsource` package)",
    );
  }
  return candidate;
}

function lazyPerJob(create: () => PerJobTransport): PerJobTransport {
  let transport: PerJobTransport | undefined;
  return {
    open(code, sink) {
      transport ??= create();
      return transport.open(code, sink);
    },
  };
}

function lazyShared(create: () => SharedTransport): SharedTransport {
  let transport: SharedTransport | undefined;
  return {
    connect(sink) {
      transport ??= create();
      return transport.connect(sink);
    },
  };
}
