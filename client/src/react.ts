/**
 * React binding: `import { useExport } from "@exportstream/client/react"`.
 * A separate entry point so the core stays free of React.
 */
import { useMemo, useSyncExternalStore } from "react";
import type { ExportClient } from "./client.js";
import type { Job } from "./types.js";

/**
 * The latest snapshot of export `code`, live: `undefined` until the first snapshot
 * arrives (or while `code` is null/undefined), then every newer one up to the terminal
 * one. Components watching the same code share one stream through the client's dedupe.
 * Stream failures are not surfaced here; use `client.subscribe` or `client.waitFor`.
 */
export function useExport(client: ExportClient, code: string | null | undefined): Job | undefined {
  const store = useMemo(() => jobStore(client, code), [client, code]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

interface JobStore {
  subscribe(onChange: () => void): () => void;
  getSnapshot(): Job | undefined;
}

function jobStore(client: ExportClient, code: string | null | undefined): JobStore {
  let latest: Job | undefined;
  return {
    subscribe(onChange) {
      if (!code) return () => {};
      return client.subscribe(code, (event) => {
        if (event.type !== "snapshot") return;
        latest = event.job;
        onChange();
      });
    },
    getSnapshot: () => latest,
  };
}
