import { crossTabTransport, webLocks } from "./crosstab.js";
import type { CrossTabTransport } from "./crosstab.js";
import { clickDownload } from "./download.js";
import type { DownloadLog } from "./download-once.js";
import { jobEvents, waitForCompletion } from "./events.js";
import { fallbackSettings, perJobFallback, sharedFallback } from "./fallback.js";
import type { FallbackOptions } from "./fallback.js";
import { ExportsApi, SessionGate } from "./http.js";
import type { FetchLike, RequestOptions } from "./http.js";
import { ExportError } from "./errors.js";
import { NO_SESSION_HINT, perJobTransport, sharedTransport } from "./stream.js";
import type { EventSourceConstructorLike, TransportKind } from "./stream.js";
import type { ExportListener, SubscribeOptions, Unsubscribe } from "./subscription.js";
import { SubscriptionRegistry } from "./subscriptions.js";
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
  /**
   * Multiplex mode: share one stream among the tabs of this origin and `baseUrl` (Web
   * Locks elect the tab that holds it, a BroadcastChannel carries its events). Default
   * true; without Web Locks or BroadcastChannel (Node, http outside localhost, old
   * browsers) each tab streams alone.
   */
  readonly crossTab?: boolean;
  /**
   * When an event stream delivers nothing (a proxy that buffers or holds it) or keeps
   * failing, follow by snapshot GETs instead, retrying the stream in the background.
   * On by default; `false` turns it off.
   */
  readonly fallback?: FallbackOptions | false;
  /**
   * For demos and tests only: asks the BFF to script a relay failure on every event
   * stream this client opens (the BFF must run with `SCENARIOS=on`; docs/api.md "Relay
   * faults"). Never set it in production code.
   */
  readonly fault?: RelayFault;
}

/**
 * `relay-gives-up`: the stream relays for `faultAfterMs` (default 0), then goes silent as
 * if the backend were lost, and after `giveUpMs` (default: the BFF's UPSTREAM_GIVEUP)
 * ends with the `ERROR` event `UPSTREAM_UNAVAILABLE`.
 */
export interface RelayFault {
  readonly kind: "relay-gives-up";
  readonly faultAfterMs?: number;
  readonly giveUpMs?: number;
}

/** What {@link ExportClient.stats} reports: the client's streams right now. */
interface ExportClientStats {
  /** The mode the client was created with. */
  readonly mode: StreamMode;
  /**
   * Codes subscribed (one entry per code, whatever the listener count). In per-job mode
   * each has its own EventSource; in multiplex mode they share one.
   */
  readonly subscribed: string[];
  /** EventSources open in this tab (a tab that shares another tab's stream has none). */
  readonly connections: number;
  /** Multiplex mode: tabs sharing this tab's stream, this one included; 1 when not shared. */
  readonly tabs: number;
  /** Multiplex mode: true while this tab holds the stream (for the tabs sharing it). */
  readonly leader: boolean;
  /**
   * How the open streams get their events: `polling` when any has fallen back, `sse`
   * when all stream, undefined when none is open.
   */
  readonly transport: TransportKind | undefined;
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
   * Resolves with the COMPLETED job; rejects with an {@link ExportError} when the job
   * ends FAILED or CANCELLED, the stream fails, or `signal` aborts.
   */
  waitFor(code: string, options?: RequestOptions): Promise<Job>;
  /**
   * The snapshots of `code` as an async iterable (`for await`): every newer one, ending
   * after the terminal one — COMPLETED, FAILED and CANCELLED alike end it normally. A
   * failed stream (ERROR, STREAM_CLOSED, SESSION_EXPIRED) throws its {@link ExportError},
   * an abort of `signal` throws `ABORTED`; `break` or abort unsubscribes. A listener like
   * any other: it shares the code's stream.
   */
  events(code: string, options?: RequestOptions): AsyncGenerator<Job, void, undefined>;
  /**
   * Downloads a COMPLETED job's file in the current tab (a temporary `<a download>`
   * click: no new window, no blob in memory; the BFF answers with
   * `Content-Disposition: attachment`). Browser only. Throws `NOT_READY` for a job
   * without a file.
   */
  download(job: Job): void;
  /**
   * Downloads a COMPLETED job's file like {@link download}, at most once per export in
   * this browser: across tabs and reloads (a marker in `localStorage`, the last 200
   * codes, under a Web Lock), or once per client where those are missing. Resolves true
   * when this call downloaded.
   */
  downloadOnce(job: Job): Promise<boolean>;
  /** The mode, the codes subscribed and the EventSources open, right now. */
  stats(): ExportClientStats;
  /**
   * `POST /api/session`: starts a new session for this browser, in place of an expired
   * one. Calls and streams answer `ExportError` with code `SESSION_EXPIRED` once the
   * session has expired (the BFF starts no new one by itself: the exports of the old
   * one are out of reach from then on); call this when the app may go on without them.
   */
  renewSession(options?: RequestOptions): Promise<void>;
}

/** Creates a client for the exportstream BFF. */
export function createExportClient(options: ExportClientOptions = {}): ExportClient {
  return new Client(options);
}

/** The subscription registry of a client made by {@link createExportClient}, for the React binding. */
export function registryOf(client: ExportClient): SubscriptionRegistry {
  return Client.registryOf(client);
}

/**
 * Every snapshot the HTTP calls return is also remembered by the registry, so a later
 * subscribe starts from it and a subscription of the same code hears of it.
 */
class Client implements ExportClient {
  static registryOf(client: ExportClient): SubscriptionRegistry {
    if (!(client instanceof Client)) throw new TypeError("not a client made by createExportClient()");
    return client.#registry;
  }

  readonly #registry: SubscriptionRegistry;
  readonly #mode: StreamMode;
  readonly #api: ExportsApi;
  readonly #session = new SessionGate();
  /** A GET found a job in the session: this client's fetch carries the session cookie. */
  #sessionConfirmed = false;
  readonly #crossTab: CrossTabTransport | undefined;
  readonly #baseUrl: string;
  #downloads: Promise<DownloadLog> | undefined;

  constructor(options: ExportClientOptions) {
    const mode = options.mode ?? "per-job";
    if (mode !== "per-job" && mode !== "multiplex") {
      throw new TypeError(`unknown mode ${String(mode)}: use "per-job" or "multiplex"`);
    }
    const baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "");
    const credentials = options.credentials ?? "same-origin";
    this.#mode = mode;
    this.#api = new ExportsApi({ baseUrl, credentials, fetch: options.fetch ?? globalFetch });
    this.#baseUrl = baseUrl;
    const transport = {
      EventSource: () => options.EventSource ?? globalEventSource(),
      withCredentials: credentials === "include",
    };
    const fault = faultQuery(options.fault);
    const fallback = options.fallback === false ? undefined : fallbackSettings(options.fallback ?? {});
    const perJobSse = perJobTransport({
      ...transport,
      eventsUrl: (code) => `${this.#api.exportUrl(code)}/events${fault}`,
      probe: (code) => () => this.#api.sessionExpired(code),
    });
    const sharedSse = sharedTransport({
      ...transport,
      url: `${baseUrl}/api/events${fault}`,
      probe: () => this.#api.sessionExpired(),
    });
    // fallback(sse): a stream that does not deliver is replaced by snapshot GETs (per job:
    // the export; multiplexed: the session's list, as /api/events carries the session's
    // jobs). Anything sharing the stream across tabs wraps `shared` from outside, so the
    // tab holding the stream does the fallback and the others get its events and transport.
    const perJob = fallback
      ? perJobFallback(perJobSse, (code) => async (signal) => [await this.#api.get(code, { signal })], fallback)
      : perJobSse;
    const shared = fallback
      ? // Oldest first, as list() feeds the registry, so its bound drops the oldest.
        sharedFallback(sharedSse, async (signal) => (await this.#api.list({ signal })).reverse(), fallback)
      : sharedSse;
    this.#registry = new SubscriptionRegistry(
      mode === "per-job"
        ? { mode, transport: perJob }
        : {
            mode,
            // crossTab(fallback(sse)): the tab holding the stream does the fallback too.
            transport: (this.#crossTab = crossTabTransport(shared, { key: baseUrl + fault, enabled: options.crossTab !== false })),
            seed: (code) => this.#sessionOwns(code),
            verify: (code) => (this.#sessionConfirmed ? undefined : this.#sessionOwns(code)),
          },
    );
  }

  start(request: ExportRequest, options?: RequestOptions): Promise<Job> {
    return this.#session.run(async () => this.#learnt(await this.#api.create(request, options)), options?.signal);
  }

  async get(code: string, options?: RequestOptions): Promise<Job> {
    const job = await this.#api.get(code, options);
    this.#sessionConfirmed = true;
    return this.#learnt(job);
  }

  async list(options?: RequestOptions): Promise<Job[]> {
    const jobs = await this.#api.list(options);
    if (jobs.length > 0) this.#sessionConfirmed = true;
    // Oldest first, so the registry's bound drops the oldest.
    for (const job of [...jobs].reverse()) this.#registry.remember(job);
    return jobs;
  }

  async cancel(code: string, options?: RequestOptions): Promise<Job | undefined> {
    const cancelled = await this.#api.delete(code, options);
    if (cancelled) return this.#learnt(cancelled);
    this.#registry.known.forget(code);
    return undefined;
  }

  subscribe(code: string, listener: ExportListener, options?: SubscribeOptions): Unsubscribe {
    return this.#registry.subscribe(code, listener, options);
  }

  renewSession(options?: RequestOptions): Promise<void> {
    return this.#api.newSession(options);
  }

  waitFor(code: string, options?: RequestOptions): Promise<Job> {
    return waitForCompletion((each, listener) => this.#registry.subscribe(each, listener), code, options?.signal);
  }

  events(code: string, options?: RequestOptions): AsyncGenerator<Job, void, undefined> {
    return jobEvents((each, listener) => this.#registry.subscribe(each, listener), code, options?.signal);
  }

  download(job: Job): void {
    clickDownload(this.#api.fileUrl(job), job.file?.name ?? "");
  }

  async downloadOnce(job: Job): Promise<boolean> {
    // Calls in one tick (StrictMode) resume in order on the one promise: the first claims the code.
    const log = await (this.#downloads ??= import("./download-once.js").then(
      (module) => new module.DownloadLog(this.#baseUrl, { locks: webLocks() }),
      (error: unknown) => {
        this.#downloads = undefined; // a chunk that could not load is tried again next time
        throw error;
      },
    ));
    return log.once(job.code, () => this.download(job));
  }

  stats(): ExportClientStats {
    const shared = this.#crossTab?.stats();
    return {
      mode: this.#mode,
      subscribed: this.#registry.openCodes(),
      connections: shared ? Number(shared.leader) : this.#registry.openConnections(),
      tabs: shared?.tabs ?? 1,
      leader: shared?.leader ?? false,
      transport: this.#registry.transport(),
    };
  }

  /** `GET` of `code` for the multiplexed stream's seed and verify; NOT_FOUND says why it may be. */
  async #sessionOwns(code: string): Promise<Job> {
    try {
      const job = await this.#api.get(code, undefined);
      this.#sessionConfirmed = true;
      return job;
    } catch (error) {
      if (!(error instanceof ExportError) || error.code !== "NOT_FOUND") throw error;
      throw new ExportError("NOT_FOUND", `export ${code}: no such export in this session${NO_SESSION_HINT}`, {
        httpStatus: error.httpStatus,
        cause: error,
      });
    }
  }

  #learnt(job: Job): Job {
    this.#registry.remember(job);
    return job;
  }
}

/** The query a {@link RelayFault} adds to stream URLs (with its `?`), or "". */
function faultQuery(fault: RelayFault | undefined): string {
  if (fault === undefined) return "";
  const query = new URLSearchParams({ fault: fault.kind });
  if (fault.faultAfterMs !== undefined) query.set("faultAfterMs", String(fault.faultAfterMs));
  if (fault.giveUpMs !== undefined) query.set("giveUpMs", String(fault.giveUpMs));
  return `?${query.toString()}`;
}

const globalFetch: FetchLike = (url, init) => {
  if (typeof globalThis.fetch !== "function") {
    throw new TypeError("no fetch available: pass one to createExportClient({ fetch })");
  }
  return globalThis.fetch(url, init);
};

function globalEventSource(): EventSourceConstructorLike {
  const candidate = (globalThis as { EventSource?: EventSourceConstructorLike }).EventSource;
  if (!candidate) {
    throw new TypeError(
      "no EventSource available: pass one to createExportClient({ EventSource }) " +
        "(in Node: the `eventsource` package)",
    );
  }
  return candidate;
}
