/**
 * React binding: `import { ExportClientProvider, useExport, useExports } from
 * "@exportstream/client/react"`. A separate entry point so the core stays free of React.
 *
 * One client per app, given once through {@link ExportClientProvider}: every hook below
 * uses it, so every component shares its subscription Map — two components watching one
 * code open one stream, also under StrictMode's double mount (the client closes a stream
 * one microtask after its last listener left, and the remount rejoins it first).
 */
import { createContext, createElement, useContext, useEffect, useMemo, useSyncExternalStore } from "react";
import type { ReactElement, ReactNode } from "react";
import { registryOf } from "./client.js";
import type { ExportClient } from "./client.js";
import { ExportError } from "./errors.js";
import type { ConnectionState, TransportKind } from "./stream.js";
import type { Unsubscribe } from "./subscription.js";
import { isTerminalStatus } from "./types.js";
import type { ExportStatus, Job } from "./types.js";

const ExportClientContext = createContext<ExportClient | null>(null);

interface ExportClientProviderProps {
  readonly client: ExportClient;
  readonly children?: ReactNode;
}

/** Makes `client` the one the hooks below use. Create the client once, outside render. */
export function ExportClientProvider({ client, children }: ExportClientProviderProps): ReactElement {
  return createElement(ExportClientContext.Provider, { value: client }, children);
}

/** The client of the nearest {@link ExportClientProvider}. */
export function useExportClient(): ExportClient {
  const client = useContext(ExportClientContext);
  if (!client) {
    throw new Error("useExport/useExports need an <ExportClientProvider client={…}> above them");
  }
  return client;
}

/** What {@link useExport} returns. */
export interface ExportState {
  /** The latest snapshot, `undefined` until one is known (or while `code` is empty). */
  readonly job: Job | undefined;
  /** The job's status, or `ERROR` when its stream failed; `undefined` while unknown. */
  readonly status: ExportStatus | undefined;
  /** Integer percent, 0 while unknown. */
  readonly progress: number;
  /** Why it did not complete: the job's error (FAILED, CANCELLED) or the stream's (ERROR). */
  readonly error: ExportError | undefined;
  /** The connection behind it: `connecting` (also while reconnecting) or `open`. */
  readonly connection: ConnectionState | undefined;
  /**
   * Estimated milliseconds left (smoothed progress rate, as of the latest snapshot);
   * `undefined` until two snapshots showed progress, 0 once the job has ended.
   */
  readonly etaMs: number | undefined;
  /** How its events come: `sse`, or `polling` while the stream does not get through. */
  readonly transport: TransportKind | undefined;
}

const EMPTY: ExportState = {
  job: undefined,
  status: undefined,
  progress: 0,
  error: undefined,
  connection: undefined,
  etaMs: undefined,
  transport: undefined,
};

/** Options of {@link useExport}. */
export interface UseExportOptions {
  /**
   * Download the file when the export is COMPLETED, with `client.downloadOnce`: once per
   * export in this browser, whatever StrictMode's double effects, reloads and other tabs.
   */
  readonly downloadWhenCompleted?: boolean;
}

/**
 * Export `code`, live: the latest snapshot up to the terminal one. Starts from the
 * snapshot the client already knows (from `start`, `list`, …) so nothing flashes empty.
 */
export function useExport(code: string | null | undefined, options: UseExportOptions = {}): ExportState {
  const client = useExportClient();
  const store = useMemo(() => new ExportStore(client, code), [client, code]);
  const state = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  const completed = state.job?.status === "COMPLETED" ? state.job : undefined;
  const download = options.downloadWhenCompleted === true;
  useEffect(() => {
    // A failed download (no document, a refused lock) is rethrown as an uncaught error.
    if (download && completed) client.downloadOnce(completed).catch(rethrow);
  }, [client, download, completed]);
  return state;
}

function rethrow(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}

/** What useSyncExternalStore reads; both are bound, as it calls them unbound. */
interface Store<T> {
  readonly subscribe: (onChange: () => void) => () => void;
  readonly getSnapshot: () => T;
}

/** One code's {@link ExportState}, kept by one subscription while React listens. */
class ExportStore implements Store<ExportState> {
  readonly #client: ExportClient;
  readonly #code: string | null | undefined;
  #state: ExportState;

  constructor(client: ExportClient, code: string | null | undefined) {
    this.#client = client;
    this.#code = code;
    const known = code ? registryOf(client).known.get(code) : undefined;
    this.#state = known ? fromJob(known, undefined, undefined) : EMPTY;
  }

  readonly getSnapshot = (): ExportState => this.#state;

  readonly subscribe = (onChange: () => void): Unsubscribe => {
    const code = this.#code;
    // A finished job never changes: nothing to follow.
    if (!code || (this.#state.job && isTerminalStatus(this.#state.job.status))) return noop;
    const update = (state: ExportState): void => {
      this.#state = state;
      onChange();
    };
    return this.#client.subscribe(
      code,
      (event) =>
        update(
          event.type === "snapshot"
            ? { ...fromJob(event.job, this.#state.connection, event.etaMs), transport: this.#state.transport }
            : { ...this.#state, status: "ERROR", error: event.error },
        ),
      {
        onConnection: (connection) => update({ ...this.#state, connection }),
        onTransport: (transport) => update({ ...this.#state, transport }),
      },
    );
  };
}

function fromJob(job: Job, connection: ConnectionState | undefined, etaMs: number | undefined): ExportState {
  const failed = job.status === "FAILED" || job.status === "CANCELLED";
  return {
    job,
    status: job.status,
    progress: job.progress,
    error: failed ? ExportError.fromJob(job) : undefined,
    connection,
    etaMs: isTerminalStatus(job.status) ? 0 : etaMs,
    transport: undefined,
  };
}

/** What {@link useExports} returns. */
export interface ExportsState {
  /** This session's exports, newest first, each live while it runs. */
  readonly exports: readonly Job[];
  /** True until the first `GET /api/exports` answered. */
  readonly loading: boolean;
  /** Why the last list request failed. */
  readonly error: ExportError | undefined;
  /** Asks the server for the list again. */
  refresh(): void;
}

/**
 * The session's exports (`GET /api/exports` on first use), newest first, kept live: an
 * export started through the same client appears at once, a deleted one disappears, and
 * every unfinished one is subscribed (so in `per-job` mode each costs a connection —
 * `multiplex` mode carries them all on one). All components share one list per client.
 */
export function useExports(): ExportsState {
  const client = useExportClient();
  const store = sessionStore(client);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

const sessionStores = new WeakMap<ExportClient, SessionStore>();

function sessionStore(client: ExportClient): SessionStore {
  let store = sessionStores.get(client);
  if (!store) {
    store = new SessionStore(client);
    sessionStores.set(client, store);
  }
  return store;
}

/**
 * The session list of one client. While React listens it observes every job the client
 * learns of and subscribes every unfinished one (their updates arrive through the
 * observation); one microtask after the last listener left, it lets go of all of it, so
 * StrictMode's unmount + remount keeps everything.
 */
class SessionStore implements Store<ExportsState> {
  readonly #client: ExportClient;
  readonly #jobs = new Map<string, Job>();
  readonly #watching = new Map<string, Unsubscribe>();
  readonly #onChanges = new Set<() => void>();
  #unobserve: Unsubscribe | undefined;
  #teardownQueued = false;
  /** Counts list requests, so only the answer to the latest one is used. */
  #generation = 0;
  #state: ExportsState;

  constructor(client: ExportClient) {
    this.#client = client;
    this.#state = { exports: [], loading: true, error: undefined, refresh: () => this.#refresh() };
  }

  readonly getSnapshot = (): ExportsState => this.#state;

  readonly subscribe = (onChange: () => void): Unsubscribe => {
    this.#onChanges.add(onChange);
    if (!this.#unobserve) this.#setUp();
    this.#syncWatches();
    return () => {
      this.#onChanges.delete(onChange);
      if (this.#onChanges.size > 0 || this.#teardownQueued) return;
      this.#teardownQueued = true;
      queueMicrotask(() => {
        this.#teardownQueued = false;
        if (this.#onChanges.size === 0) this.#tearDown();
      });
    };
  };

  #refresh(): void {
    const current = ++this.#generation;
    this.#client.list().then(
      (list) => {
        if (current !== this.#generation) return;
        const listed = new Set(list.map((each) => each.code));
        for (const code of this.#jobs.keys()) if (!listed.has(code)) this.#jobs.delete(code);
        for (const each of list) this.#put(each);
        this.#publish({ loading: false, error: undefined });
      },
      (error: unknown) => {
        if (current !== this.#generation) return;
        this.#publish({
          loading: false,
          error: error instanceof ExportError ? error : new ExportError("NETWORK_ERROR", String(error)),
        });
      },
    );
  }

  /** Keeps `job` unless a snapshot at least as new is there; true when kept. */
  #put(job: Job): boolean {
    const had = this.#jobs.get(job.code);
    if (had && had.seq >= job.seq) return false;
    this.#jobs.set(job.code, job);
    return true;
  }

  #publish(patch: Partial<ExportsState>): void {
    const exports = [...this.#jobs.values()].sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
    this.#state = { ...this.#state, ...patch, exports };
    this.#syncWatches();
    for (const onChange of [...this.#onChanges]) onChange();
  }

  /** Subscribes every unfinished export (updates arrive through observe). */
  #syncWatches(): void {
    if (this.#onChanges.size === 0) return;
    for (const job of this.#jobs.values()) {
      if (isTerminalStatus(job.status) || this.#watching.has(job.code)) continue;
      const { code } = job;
      const stop = this.#client.subscribe(code, (event) => {
        if (event.type === "error" || isTerminalStatus(event.job.status)) this.#watching.delete(code);
      });
      this.#watching.set(code, stop);
    }
  }

  #setUp(): void {
    this.#unobserve = registryOf(this.#client).known.observe((observation) => {
      const changed =
        observation.type === "removed" ? this.#jobs.delete(observation.code) : this.#put(observation.job);
      if (changed) this.#publish({});
    });
    this.#refresh();
  }

  #tearDown(): void {
    this.#unobserve?.();
    this.#unobserve = undefined;
    for (const unsubscribe of this.#watching.values()) unsubscribe();
    this.#watching.clear();
    this.#generation++;
  }
}

function noop(): void {}
