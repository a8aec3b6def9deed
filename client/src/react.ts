/**
 * React binding: `import { ExportClientProvider, useExport, useExports } from
 * "@exportstream/client/react"`. A separate entry point so the core stays free of React.
 *
 * One client per app, given once through {@link ExportClientProvider}: every hook below
 * uses it, so every component shares its subscription Map — two components watching one
 * code open one stream, also under StrictMode's double mount (the client closes a stream
 * one microtask after its last listener left, and the remount rejoins it first).
 */
import { createContext, createElement, useContext, useMemo, useSyncExternalStore } from "react";
import type { ReactElement, ReactNode } from "react";
import type { ExportClient } from "./client.js";
import { ExportError } from "./errors.js";
import type { ConnectionState } from "./stream.js";
import type { Unsubscribe } from "./subscriptions.js";
import { isTerminalStatus } from "./types.js";
import type { ExportStatus, Job } from "./types.js";

const ExportClientContext = createContext<ExportClient | null>(null);

export interface ExportClientProviderProps {
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
}

const EMPTY: ExportState = {
  job: undefined,
  status: undefined,
  progress: 0,
  error: undefined,
  connection: undefined,
};

/**
 * Export `code`, live: the latest snapshot up to the terminal one. Starts from the
 * snapshot the client already knows (from `start`, `list`, …) so nothing flashes empty.
 */
export function useExport(code: string | null | undefined): ExportState {
  const client = useExportClient();
  const store = useMemo(() => exportStore(client, code), [client, code]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

interface Store<T> {
  subscribe(onChange: () => void): () => void;
  getSnapshot(): T;
}

function exportStore(client: ExportClient, code: string | null | undefined): Store<ExportState> {
  const known = code ? client.known(code) : undefined;
  let state: ExportState = known ? fromJob(known, undefined) : EMPTY;
  return {
    subscribe(onChange) {
      // A finished job never changes: nothing to follow.
      if (!code || (state.job && isTerminalStatus(state.job.status))) return noop;
      return client.subscribe(
        code,
        (event) => {
          state =
            event.type === "snapshot"
              ? fromJob(event.job, state.connection)
              : { ...state, status: "ERROR", error: event.error };
          onChange();
        },
        {
          onConnection: (connection) => {
            state = { ...state, connection };
            onChange();
          },
        },
      );
    },
    getSnapshot: () => state,
  };
}

function fromJob(job: Job, connection: ConnectionState | undefined): ExportState {
  const failed = job.status === "FAILED" || job.status === "CANCELLED";
  return {
    job,
    status: job.status,
    progress: job.progress,
    error: failed ? ExportError.fromJob(job) : undefined,
    connection,
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

const sessionStores = new WeakMap<ExportClient, Store<ExportsState>>();

function sessionStore(client: ExportClient): Store<ExportsState> {
  let store = sessionStores.get(client);
  if (!store) {
    store = createSessionStore(client);
    sessionStores.set(client, store);
  }
  return store;
}

function createSessionStore(client: ExportClient): Store<ExportsState> {
  const jobs = new Map<string, Job>();
  const watching = new Map<string, Unsubscribe>();
  const onChanges = new Set<() => void>();
  let unobserve: Unsubscribe | undefined;
  let teardownQueued = false;
  let generation = 0;

  const refresh = (): void => {
    const current = ++generation;
    client.list().then(
      (list) => {
        if (current !== generation) return;
        const listed = new Set(list.map((each) => each.code));
        for (const code of jobs.keys()) if (!listed.has(code)) jobs.delete(code);
        for (const each of list) put(each);
        publish({ loading: false, error: undefined });
      },
      (error: unknown) => {
        if (current !== generation) return;
        publish({
          loading: false,
          error: error instanceof ExportError ? error : new ExportError("NETWORK_ERROR", String(error), { status: 0 }),
        });
      },
    );
  };

  let state: ExportsState = { exports: [], loading: true, error: undefined, refresh };

  function put(job: Job): void {
    const had = jobs.get(job.code);
    if (had && had.seq >= job.seq) return;
    jobs.set(job.code, job);
  }

  function publish(patch: Partial<ExportsState>): void {
    const exports = [...jobs.values()].sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
    state = { ...state, ...patch, exports };
    syncWatches();
    for (const onChange of [...onChanges]) onChange();
  }

  /** Subscribes every unfinished export (updates arrive through observe). */
  function syncWatches(): void {
    if (onChanges.size === 0) return;
    for (const job of jobs.values()) {
      if (isTerminalStatus(job.status) || watching.has(job.code)) continue;
      const { code } = job;
      watching.set(
        code,
        client.subscribe(code, (event) => {
          if (event.type === "error" || isTerminalStatus(event.job.status)) watching.delete(code);
        }),
      );
    }
  }

  function setUp(): void {
    unobserve = client.observe((observation) => {
      if (observation.type === "removed") {
        if (!jobs.delete(observation.code)) return;
      } else {
        const had = jobs.get(observation.job.code);
        if (had && had.seq >= observation.job.seq) return;
        jobs.set(observation.job.code, observation.job);
      }
      publish({});
    });
    refresh();
  }

  function tearDown(): void {
    unobserve?.();
    unobserve = undefined;
    for (const unsubscribe of watching.values()) unsubscribe();
    watching.clear();
    generation++;
  }

  return {
    subscribe(onChange) {
      onChanges.add(onChange);
      if (!unobserve) setUp();
      syncWatches();
      return () => {
        onChanges.delete(onChange);
        if (onChanges.size > 0 || teardownQueued) return;
        // One microtask later, so StrictMode's unmount + remount keeps everything.
        teardownQueued = true;
        queueMicrotask(() => {
          teardownQueued = false;
          if (onChanges.size === 0) tearDown();
        });
      };
    },
    getSnapshot: () => state,
  };
}

function noop(): void {}
