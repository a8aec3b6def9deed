import { ExportError } from "./errors.js";
import { requestJSON } from "./http.js";
import type { FetchInitLike, FetchLike } from "./http.js";
import { isJobShape, perJobTransport } from "./stream.js";
import type { EventSourceConstructorLike, StreamTransport } from "./stream.js";
import { SubscriptionRegistry } from "./subscriptions.js";
import type { ExportListener, Unsubscribe } from "./subscriptions.js";
import type { ExportRequest, Job } from "./types.js";

/**
 * How the client listens. `per-job`: one EventSource per watched code on
 * `/api/exports/{code}/events`. (`multiplex`, one EventSource on `/api/events` for the
 * whole tab, will be added here once the BFF serves it.)
 */
export type StreamMode = "per-job";

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
  /**
   * Follows an export live. Listeners of the same code share one stream; each gets the
   * latest snapshot right after joining, then every newer one, and at last the terminal
   * snapshot or an error event. Returns the function that stops this listener.
   */
  subscribe(code: string, listener: ExportListener): Unsubscribe;
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
  /** Codes whose stream is open right now (one per code, whatever the listener count). */
  openStreams(): string[];
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

  const transport: StreamTransport = lazyTransport(() =>
    perJobTransport({
      EventSource: options.EventSource ?? defaultEventSource(),
      eventsUrl: (code) => `${exportUrl(code)}/events`,
      withCredentials: credentials === "include",
    }),
  );
  const subscriptions = new SubscriptionRegistry(transport);

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
    start(request, requestOptions) {
      const requestInit = init("POST", requestOptions);
      requestInit.headers["Content-Type"] = "application/json";
      requestInit.body = JSON.stringify(request);
      return job(exportsUrl, requestInit);
    },

    get(code, requestOptions) {
      return job(exportUrl(code), init("GET", requestOptions));
    },

    subscribe(code, listener) {
      return subscriptions.subscribe(code, listener);
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
  };
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

/** Resolves the transport on first use, so a client can be created where streams are not. */
function lazyTransport(create: () => StreamTransport): StreamTransport {
  let transport: StreamTransport | undefined;
  return {
    open(code, sink) {
      transport ??= create();
      return transport.open(code, sink);
    },
  };
}
